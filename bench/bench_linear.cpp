// Random features and the linear-attention core: feature-map throughput, joint sin/cos throughput,
// and the core's non-causal vs causal (chunked) cost.

#include "common.hpp"
#include "fastattn/detail/simd/sincos.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear.hpp"

namespace fastattn::bench {
namespace {

/// Args: kind (FeatureKind), N, D, m. Counts the GEMM: 2 N m D flops.
template <class T>
void BM_FeatureMap(benchmark::State& state) {
  const auto kind = static_cast<FeatureKind>(state.range(0));
  const Index n = state.range(1), d = state.range(2), m = state.range(3);
  FeatureMapOptions fo;
  fo.input_scale = std::pow(double(d), -0.25);
  fo.normalize = kind == FeatureKind::Trig;
  const FeatureMap<T> map(kind, orthogonal_projection<T>(m, d, 1), fo);
  const RowMatrix<T> x = random_input<T>(n, d, 2);
  RowMatrix<T> out(n, map.feature_dim());
  for (auto _ : state) {
    map.apply(x, out);
    benchmark::DoNotOptimize(out.data());
  }
  set_counters<T>(state, 2.0 * double(n) * double(m) * double(d), double(n));
  state.counters["rows_per_s"] = state.counters["tokens_per_s"];
}

template <class T>
void BM_Sincos(benchmark::State& state) {
  const Index n = state.range(0);
  const RowMatrix<T> x = random_input<T>(1, n, 3, 3.0);
  RowMatrix<T> c(1, n), s(1, n);
  for (auto _ : state) {
    detail::sincos(x.data(), c.data(), s.data(), n);
    benchmark::DoNotOptimize(s.data());
  }
  state.counters["sincos_per_s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

/// The scalar reference point: std::sin + std::cos.
template <class T>
void BM_SincosLibm(benchmark::State& state) {
  const Index n = state.range(0);
  const RowMatrix<T> x = random_input<T>(1, n, 3, 3.0);
  RowMatrix<T> c(1, n), s(1, n);
  for (auto _ : state) {
    for (Index j = 0; j < n; ++j) {
      s(0, j) = std::sin(x(0, j));
      c(0, j) = std::cos(x(0, j));
    }
    benchmark::DoNotOptimize(s.data());
  }
  state.counters["sincos_per_s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

/// Positive features through the core. Args: N, D (= Dv), m, causal, chunk (0 = default).
/// Flops: 4 N m D (features of q and k) + 4 N M (Dv + 1) (the two contractions); causal adds the
/// intra-chunk products 2 N C M + 2 N C (Dv + 1).
template <class T>
void BM_LinearCore(benchmark::State& state) {
  const Index n = state.range(0), d = state.range(1), m = state.range(2);
  const bool causal = state.range(3) != 0;
  const LinearOptions lopt{state.range(4), 0};
  FeatureMapOptions fo;
  fo.input_scale = std::pow(double(d), -0.25);
  const FeatureMap<T> map(FeatureKind::Positive, orthogonal_projection<T>(m, d, 1), fo);
  const RowMatrix<T> q = random_input<T>(n, d, 2, 0.5), k = random_input<T>(n, d, 3, 0.5),
                     v = random_input<T>(n, d, 4);
  RowMatrix<T> out(n, d);
  AttentionOptions opt;
  opt.causal = causal;
  for (auto _ : state) {
    linear_attention<T>(map, map, q, k, v, out, opt, lopt);
    benchmark::DoNotOptimize(out.data());
  }
  double flops = 4.0 * n * m * d + 4.0 * n * m * (d + 1);
  if (causal) {
    const double c = double(lopt.chunk_size > 0 ? lopt.chunk_size : 32);
    flops += 2.0 * n * c * m + 2.0 * n * c * (d + 1);
  }
  set_counters<T>(state, flops, double(n));
}

void feature_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"kind", "N", "D", "m"});
  for (auto kind : {FeatureKind::Positive, FeatureKind::Hyperbolic, FeatureKind::Trig})
    b->Args({static_cast<long>(kind), 4096, 64, 256});
  b->Unit(benchmark::kMicrosecond);
}

void core_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "D", "m", "causal", "chunk"});
  b->Args({4096, 64, 256, 0, 0});
  for (Index chunk : {32, 64, 128, 256}) b->Args({4096, 64, 256, 1, chunk});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_FeatureMap, float)->Apply(feature_args);
BENCHMARK_TEMPLATE(BM_FeatureMap, double)->Apply(feature_args);
BENCHMARK_TEMPLATE(BM_Sincos, float)->Arg(1 << 16);
BENCHMARK_TEMPLATE(BM_Sincos, double)->Arg(1 << 16);
BENCHMARK_TEMPLATE(BM_SincosLibm, float)->Arg(1 << 16);
BENCHMARK_TEMPLATE(BM_SincosLibm, double)->Arg(1 << 16);
BENCHMARK_TEMPLATE(BM_LinearCore, float)->Apply(core_args);
BENCHMARK_TEMPLATE(BM_LinearCore, double)->Apply(core_args);

}  // namespace
}  // namespace fastattn::bench
