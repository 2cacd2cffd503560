// Exact attention throughput: the blocked kernel, the reference path, and the naive Eigen
// implementation that materializes the N x N matrix (softmax(s Q K^T) V).
//
// Flops counted as in the issue: 4 N^2 D non-causal, 2 N^2 D causal (QK^T and PV, D = Dv).

#include "common.hpp"
#include "fastattn/exact.hpp"

namespace fastattn::bench {
namespace {

double exact_flops(Index n, Index d, bool causal) {
  return (causal ? 2.0 : 4.0) * double(n) * double(n) * double(d);
}

/// One exact forward per iteration. Args: N, D, causal (0/1), then (blocked only) block_q and
/// block_k (0 = default).
template <class T>
void run_exact(benchmark::State& state, const ExactOptions& options) {
  const Index n = state.range(0), d = state.range(1);
  AttentionOptions opt;
  opt.causal = state.range(2) != 0;
  const Exact<T> exact(options);
  const RowMatrix<T> q = random_input<T>(n, d, 1), k = random_input<T>(n, d, 2),
                     v = random_input<T>(n, d, 3);
  RowMatrix<T> out(n, d);
  for (auto _ : state) {
    exact.forward(q, k, v, out, opt);
    benchmark::DoNotOptimize(out.data());
  }
  set_counters<T>(state, exact_flops(n, d, opt.causal), double(n));
}

template <class T>
void BM_ExactBlocked(benchmark::State& state) {
  run_exact<T>(state, ExactOptions{ExactKernel::Blocked, state.range(3), state.range(4)});
}

template <class T>
void BM_ExactReference(benchmark::State& state) {
  run_exact<T>(state, ExactOptions{ExactKernel::Reference});
}

/// What a user writes without fastattn: materialize S = (s Q) K^T, row softmax, S V. Non-causal.
template <class T>
void BM_ExactNaiveEigen(benchmark::State& state) {
  const Index n = state.range(0), d = state.range(1);
  const RowMatrix<T> q = random_input<T>(n, d, 1), k = random_input<T>(n, d, 2),
                     v = random_input<T>(n, d, 3);
  const T scale = T(1) / std::sqrt(T(d));
  RowMatrix<T> s(n, n), out(n, d);
  for (auto _ : state) {
    s.noalias() = (q * scale) * k.transpose();
    const Vector<T> row_max = s.rowwise().maxCoeff();
    s = (s.colwise() - row_max).array().exp();
    const Vector<T> row_sum = s.rowwise().sum();
    out.noalias() = s * v;
    out.array().colwise() /= row_sum.array();
    benchmark::DoNotOptimize(out.data());
  }
  set_counters<T>(state, exact_flops(n, d, false), double(n));
}

/// The literal formula: softmax((Q K^T) * scale) V with Eigen expressions as written in a textbook.
template <class T>
void BM_ExactNaiveEigenLiteral(benchmark::State& state) {
  const Index n = state.range(0), d = state.range(1);
  const RowMatrix<T> q = random_input<T>(n, d, 1), k = random_input<T>(n, d, 2),
                     v = random_input<T>(n, d, 3);
  const T scale = T(1) / std::sqrt(T(d));
  RowMatrix<T> out(n, d);
  for (auto _ : state) {
    RowMatrix<T> s = (q * k.transpose()) * scale;
    for (Index i = 0; i < n; ++i) {
      s.row(i).array() = (s.row(i).array() - s.row(i).maxCoeff()).exp();
      s.row(i) /= s.row(i).sum();
    }
    out = s * v;
    benchmark::DoNotOptimize(out.data());
  }
  set_counters<T>(state, exact_flops(n, d, false), double(n));
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "D", "causal", "bq", "bk"});
  for (Index n : {256, 1024, 4096})
    for (Index causal : {0, 1}) b->Args({n, 64, causal, 0, 0});
  for (Index d : {32, 128}) b->Args({4096, d, 0, 0, 0});
  b->Unit(benchmark::kMillisecond);
}

void tilings(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "D", "causal", "bq", "bk"});
  for (Index causal : {0, 1})
    for (Index bq : {64, 128, 256})
      for (Index bk : {128, 256, 512}) b->Args({4096, 64, causal, bq, bk});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK_TEMPLATE(BM_ExactBlocked, float)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_ExactBlocked, double)->Apply(sizes);
BENCHMARK_TEMPLATE(BM_ExactBlocked, float)->Name("BM_ExactBlockedTiling<float>")->Apply(tilings);
BENCHMARK_TEMPLATE(BM_ExactBlocked, double)->Name("BM_ExactBlockedTiling<double>")->Apply(tilings);
BENCHMARK_TEMPLATE(BM_ExactReference, float)
    ->ArgNames({"N", "D", "causal"})
    ->Args({1024, 64, 0})
    ->Args({4096, 64, 0})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_ExactNaiveEigen, float)
    ->ArgNames({"N", "D"})
    ->Args({1024, 64})
    ->Args({4096, 64})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_ExactNaiveEigenLiteral, float)
    ->ArgNames({"N", "D"})
    ->Args({4096, 64})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_ExactNaiveEigen, double)
    ->ArgNames({"N", "D"})
    ->Args({4096, 64})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace fastattn::bench
