// The packed exact-attention kernel against the machine's limits (docs/exact_kernel.md):
//  - BM_KernelExact: forward at N = 4096, D = 64 and 128, float and double, causal and not, as a
//    percentage of this machine's FMA peak measured in the same process (pct_peak);
//  - BM_KernelReadBandwidth: a read-only stream over buffers from L1 to DRAM sizes (bytes/s);
//  - BM_KernelDecode: one decoding step at 4K and 16K context, its bytes/s, and the percentage of
//    a read stream over a buffer the size of its KV cache (pct_bw: the bandwidth of the level the
//    cache lives in, stream_GBps), measured in the same process;
//  - BM_KernelMultiheadLayout/<method>: B = 1, H = 8 heads on [B, N, H, D] (strided heads) and
//    on [B, H, N, D], run back to back in each iteration, for Exact, FAVOR+, RFA, EVA and
//    ClusteredEva; bnhd_over_bhnd is the median over the iterations of the ratio of the two
//    times (robust to other processes on a shared machine).
// The percentages use the benchmark thread's CPU time for the kernel and for the peak and
// bandwidth references alike, so time slices lost to other processes on a shared machine do not
// enter the ratios (wall-clock peaks measured under load come out low and inflate them).

#include <algorithm>
#include <string>
#include <vector>

#include "common.hpp"
#include "fastattn/clustered_eva.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/multihead.hpp"
#include "fastattn/rfa.hpp"
#include "methods.hpp"

namespace fastattn::bench {
namespace {

/// Sums `bytes` of floats with eight independent packet accumulators: a read stream that is
/// limited by the bandwidth of the level the buffer lives in.
EIGEN_DONT_INLINE float read_stream(const float* data, Index n) {
  using namespace Eigen::internal;
  using Packet = packet_traits<float>::type;
  constexpr Index lanes = packet_traits<float>::size;
  Packet acc[8];
  for (auto& a : acc) a = pset1<Packet>(0.f);
  Index i = 0;
  for (; i + 8 * lanes <= n; i += 8 * lanes)
    for (int u = 0; u < 8; ++u) acc[u] = padd(acc[u], pload<Packet>(data + i + u * lanes));
  float sum = 0;
  for (; i < n; ++i) sum += data[i];
  for (int u = 0; u < 8; ++u) sum += predux(acc[u]);
  return sum;
}

/// Read bandwidth in bytes/s (thread CPU time) over a warm buffer of `bytes` (once per size).
double read_bandwidth(std::size_t bytes) {
  static std::vector<std::pair<std::size_t, double>> cache;
  for (const auto& [b, bw] : cache)
    if (b == bytes) return bw;
  const Index n = Index(bytes / sizeof(float));
  Vector<float> buffer = Vector<float>::Constant(n, 1.f);
  const int passes = int(std::max<std::size_t>(1, (std::size_t(1) << 30) / bytes));  // ~1 GiB
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const double t0 = thread_seconds();
    float sink = 0;
    for (int p = 0; p < passes; ++p) {
      sink += read_stream(buffer.data(), n);
      benchmark::ClobberMemory();  // (the stream is a pure function: keep every call)
    }
    benchmark::DoNotOptimize(sink);
    best = std::max(best, double(bytes) * passes / (thread_seconds() - t0));
  }
  cache.emplace_back(bytes, best);
  return best;
}

// ---- forward -----------------------------------------------------------------------------------

/// One exact forward per iteration (the default blocked kernel). Args: N, D, causal.
template <class T>
void BM_KernelExact(benchmark::State& state) {
  const Index n = state.range(0), d = state.range(1);
  AttentionOptions opt;
  opt.causal = state.range(2) != 0;
  const Exact<T> exact;
  const RowMatrix<T> q = random_input<T>(n, d, 1), k = random_input<T>(n, d, 2),
                     v = random_input<T>(n, d, 3);
  RowMatrix<T> out(n, d);
  const double peak = cpu_time_peak<T>();
  const double t0 = thread_seconds();
  for (auto _ : state) {
    exact.forward(q, k, v, out, opt);
    benchmark::DoNotOptimize(out.data());
  }
  const double seconds = (thread_seconds() - t0) / double(state.iterations());
  // 4 N^2 D flops (Q K^T and P V), half of it causal.
  const double flops = (opt.causal ? 2.0 : 4.0) * double(n) * double(n) * double(d);
  state.counters["GFLOPs"] = flops / seconds * 1e-9;
  state.counters["peak_GFLOPs"] = peak * 1e-9;
  state.counters["pct_peak"] = 100 * flops / seconds / peak;
  state.SetLabel(type_name(T()));
}

void forward_sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "D", "causal"});
  for (Index d : {64, 128})
    for (Index causal : {0, 1}) b->Args({4096, d, causal});
  b->Unit(benchmark::kMillisecond);
}
BENCHMARK_TEMPLATE(BM_KernelExact, float)->Apply(forward_sizes);
BENCHMARK_TEMPLATE(BM_KernelExact, double)->Apply(forward_sizes);

// ---- memory bandwidth and decoding -------------------------------------------------------------

/// A read stream over a warm buffer of range(0) KiB.
void BM_KernelReadBandwidth(benchmark::State& state) {
  const std::size_t bytes = std::size_t(state.range(0)) << 10;
  const Index n = Index(bytes / sizeof(float));
  Vector<float> buffer = Vector<float>::Constant(n, 1.f);
  for (auto _ : state) {
    benchmark::DoNotOptimize(read_stream(buffer.data(), n));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
}
BENCHMARK(BM_KernelReadBandwidth)
    ->ArgName("KiB")
    ->Arg(32)          // L1
    ->Arg(512)         // L2
    ->Arg(2 << 10)     // L3 (and the float 4K-context cache at D = 64)
    ->Arg(8 << 10)     // L3 (the float 16K-context cache at D = 64)
    ->Arg(512 << 10);  // DRAM

/// One decoding step per iteration at a fixed context: step() appends a token and attends over
/// context + 1 keys, then truncate() rolls it back. Args: context, D (= Dv).
template <class T>
void BM_KernelDecode(benchmark::State& state) {
  const Index context = state.range(0), d = state.range(1);
  const Exact<T> exact;
  const RowMatrix<T> k = random_input<T>(context + 1, d, 1), v = random_input<T>(context + 1, d, 2);
  const RowMatrix<T> q = random_input<T>(1, d, 3);
  auto cache = exact.make_state(d, AttentionOptions{}, context + 1);
  RowMatrix<T> out(1, d);
  for (Index t = 0; t < context; t += 256) {  // prefill in chunks
    const Index len = std::min<Index>(256, context - t);
    RowMatrix<T> o(len, d);
    exact.step(cache, k.middleRows(t, len), k.middleRows(t, len), v.middleRows(t, len), o);
  }
  const double t0 = thread_seconds();
  for (auto _ : state) {
    exact.step(cache, q, k.row(context), v.row(context), out);
    cache.truncate(context);
    benchmark::DoNotOptimize(out.data());
  }
  const double seconds = (thread_seconds() - t0) / double(state.iterations());
  // What a step streams: the packed keys and values of context + 1 tokens (the value rows are
  // padded to whole packets).
  const double bytes =
      double(context + 1) * double(d + detail::packet_padded<T>(d)) * double(sizeof(T));
  const double reference = read_bandwidth(std::size_t(bytes));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
  state.counters["cache_MiB"] = bytes / double(1 << 20);
  state.counters["GBps"] = bytes / seconds * 1e-9;
  state.counters["stream_GBps"] = reference * 1e-9;  // a read stream over the same bytes
  state.counters["pct_bw"] = 100 * bytes / seconds / reference;
  state.SetLabel(type_name(T()));
}
void decode_sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"context", "D"});
  for (Index context : {4096, 16384})
    for (Index d : {64, 128}) b->Args({context, d});
  b->Unit(benchmark::kMicrosecond);
}
BENCHMARK_TEMPLATE(BM_KernelDecode, float)->Apply(decode_sizes);
BENCHMARK_TEMPLATE(BM_KernelDecode, double)->Apply(decode_sizes);

// ---- multi-head layouts ------------------------------------------------------------------------

/// B = 1, H = 8 heads, N tokens, D = 64, one thread: the same heads stored as [B, N, H, D]
/// (strided heads) and as [B, H, N, D], run alternately with `method`.
template <class Method>
void run_multihead_layouts(benchmark::State& state, const Method& method, Index n, bool causal) {
  using T = float;
  const Index b = 1, h = 8, d = 64;
  MultiheadOptions opt;
  opt.causal = causal;
  opt.threads = 1;
  const RowMatrix<T> q = random_input<T>(b * n * h, d, 1), k = random_input<T>(b * n * h, d, 2),
                     v = random_input<T>(b * n * h, d, 3);
  RowMatrix<T> out(b * n * h, d);
  // Each iteration runs both layouts back to back, so they see the same machine state; the
  // median of the per-iteration ratios ignores the iterations that another process disturbed.
  std::vector<double> ratios;
  double best_bnhd = 1e30, best_bhnd = 1e30;
  for (auto _ : state) {
    double t0 = thread_seconds();
    multihead(method, TensorView<const T>::bnhd(q.data(), b, n, h, d),
              TensorView<const T>::bnhd(k.data(), b, n, h, d),
              TensorView<const T>::bnhd(v.data(), b, n, h, d),
              TensorView<T>::bnhd(out.data(), b, n, h, d), opt);
    const double t_bnhd = thread_seconds() - t0;
    t0 = thread_seconds();
    multihead(method, TensorView<const T>::bhnd(q.data(), b, h, n, d),
              TensorView<const T>::bhnd(k.data(), b, h, n, d),
              TensorView<const T>::bhnd(v.data(), b, h, n, d),
              TensorView<T>::bhnd(out.data(), b, h, n, d), opt);
    const double t_bhnd = thread_seconds() - t0;
    benchmark::DoNotOptimize(out.data());
    ratios.push_back(t_bnhd / t_bhnd);
    best_bnhd = std::min(best_bnhd, t_bnhd);
    best_bhnd = std::min(best_bhnd, t_bhnd);
  }
  std::sort(ratios.begin(), ratios.end());
  const size_t mid = ratios.size() / 2;
  state.counters["bnhd_ms"] = 1e3 * best_bnhd;
  state.counters["bhnd_ms"] = 1e3 * best_bhnd;
  state.counters["bnhd_over_bhnd"] =
      ratios.size() % 2 ? ratios[mid] : 0.5 * (ratios[mid - 1] + ratios[mid]);
}

/// BM_KernelMultiheadLayout/<method>/N:4096/causal:<0|1> for every method with a multi-head
/// path (ClusteredEva: non-causal only).
const bool layouts_registered = [] {
  const Index n = 4096, d = 64;
  for (int causal = 0; causal < 2; ++causal) {
    auto add = [&](const std::string& name, int iterations, auto make_method) {
      const std::string id = "BM_KernelMultiheadLayout/" + name + "/N:" + std::to_string(n) +
                             "/causal:" + std::to_string(causal);
      benchmark::RegisterBenchmark(
          id.c_str(),
          [=](benchmark::State& s) { run_multihead_layouts(s, make_method(), n, causal != 0); })
          ->Iterations(iterations)
          ->Unit(benchmark::kMillisecond);
    };
    add("Exact", 15, [] { return Exact<float>(); });
    add("FAVOR+", 31, [] { return Favor<float>(d); });
    add("RFA", 31, [] { return Rfa<float>(d); });
    add("EVA-Reference", 31, [=] { return Eva<float>(d, eva_options(false, n, causal != 0)); });
    if (!causal) add("ClusteredEva", 15, [] { return ClusteredEva<float>(d); });
  }
  return true;
}();

}  // namespace
}  // namespace fastattn::bench
