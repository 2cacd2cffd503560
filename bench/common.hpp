#pragma once
// Shared pieces of the throughput benchmarks: this machine's measured FMA peak (so kernels can be
// quoted as a fraction of it), seeded inputs, and the standard counters.

#include <benchmark/benchmark.h>
#include <time.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>

#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn::bench {

/// Runs `iters` rounds of kChains independent FMA chains on Eigen's widest packet type for T (the
/// ISA this file is compiled for) and returns the flops done. 16 chains cover 2 FMA pipes x 4-8
/// cycles latency, so the loop is throughput-bound.
template <class T>
EIGEN_DONT_INLINE double fma_chains(std::int64_t iters) {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr int kChains = 16;
  const int lanes = Eigen::internal::packet_traits<T>::size;  // not unpacket_traits: GCC warns
  Packet acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = Eigen::internal::pset1<Packet>(T(1) + T(c) * T(1e-3));
  const Packet a = Eigen::internal::pset1<Packet>(T(0.999999));
  const Packet b = Eigen::internal::pset1<Packet>(T(1e-6));
  // The accumulators stay in registers (no memory clobber inside the loop); their sum is consumed
  // once at the end, so the compiler can neither drop nor shorten the chains.
  for (std::int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = Eigen::internal::pmadd(acc[c], a, b);
  Packet total = acc[0];
  for (int c = 1; c < kChains; ++c) total = Eigen::internal::padd(total, acc[c]);
  T sink = Eigen::internal::predux(total);
  benchmark::DoNotOptimize(sink);
  return 2.0 * double(iters) * kChains * lanes;
}

/// This machine's single-thread FMA peak in GFLOP/s for T (best of several timed runs; measured
/// once per process).
template <class T>
double fma_peak_gflops() {
  static const double peak = [] {
    double best = 0;
    for (int rep = 0; rep < 5; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      const double flops = fma_chains<T>(20'000'000);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, flops / s * 1e-9);
    }
    return best;
  }();
  return peak;
}

/// This thread's CPU time in seconds.
inline double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

/// The FMA peak of T in flop/s on this thread's CPU time (best of several runs; once per process).
template <class T>
double cpu_time_peak() {
  static const double peak = [] {
    double best = 0;
    for (int rep = 0; rep < 7; ++rep) {
      const double t0 = thread_seconds();
      const double flops = fma_chains<T>(5'000'000);
      best = std::max(best, flops / (thread_seconds() - t0));
    }
    return best;
  }();
  return peak;
}

/// Sets the standard counters: GFLOP/s, percent of this machine's FMA peak for T, tokens/s.
template <class T>
void set_counters(benchmark::State& state, double flops_per_iter, double tokens_per_iter) {
  state.counters["GFLOPs"] =
      benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["tokens_per_s"] =
      benchmark::Counter(tokens_per_iter, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["peak_GFLOPs"] = fma_peak_gflops<T>();
}

/// [rows, cols] with iid N(0, stddev^2) entries from the library's seeded generator.
template <class T>
RowMatrix<T> random_input(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
  return (gaussian_projection<double>(rows, cols, seed) * stddev).template cast<T>();
}

inline const char* type_name(float) { return "float"; }
inline const char* type_name(double) { return "double"; }

}  // namespace fastattn::bench
