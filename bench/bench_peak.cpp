// This machine's single-thread FMA peak (independent FMA chains on the widest packet type this file
// is compiled for). Every kernel benchmark quotes its GFLOP/s as a fraction of it.

#include "common.hpp"

namespace fastattn::bench {
namespace {

template <class T>
void BM_FmaPeak(benchmark::State& state) {
  double flops = 0;
  for (auto _ : state) flops += fma_chains<T>(1'000'000);
  state.counters["GFLOPs"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsRate);
  state.SetLabel(type_name(T()));
}
BENCHMARK_TEMPLATE(BM_FmaPeak, float);
BENCHMARK_TEMPLATE(BM_FmaPeak, double);

}  // namespace
}  // namespace fastattn::bench
