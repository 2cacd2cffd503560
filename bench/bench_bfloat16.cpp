// bfloat16 storage against float (docs/bfloat16.md), one thread, float and bfloat16 run alternately
// in every iteration so that both see the same machine (it is shared): the speed-up is the median
// of the per-iteration ratios, the times are the best per-iteration times, all on the benchmark
// thread's CPU time. The label says which path ran: "vdpbf16ps" (compiled with AVX512_BF16) or
// "widening" (bfloat16 widened to float while packing).
//  - BM_Bf16Exact: exact forward, N = 4096, D = 64 (and 128), non-causal and causal; pct_peak of
//    each against the float FMA peak measured in the same process (peak_GFLOPs), and for bfloat16
//    also against the vdpbf16ps peak (dp_peak_GFLOPs: twice the multiply-adds per instruction).
//  - BM_Bf16Decode: one decoding step at 4K and 16K context, D = 64, with a float cache and with a
//    bfloat16 cache (CacheStorage::BFloat16); GB/s of each over the bytes its cache holds.

#include <algorithm>
#include <vector>

#include "common.hpp"
#include "fastattn/bfloat16.hpp"
#include "fastattn/detail/exact/packed_kv_bf16.hpp"
#include "fastattn/exact.hpp"

namespace fastattn::bench {
namespace {

#if FASTATTN_BF16_DOT
/// As fma_chains for vdpbf16ps: 16 independent chains, each instruction 16 lanes x 2
/// multiply-adds. Returns the flops done.
EIGEN_DONT_INLINE double dpbf16_chains(std::int64_t iters) {
  constexpr int kChains = 16;
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1.0f + 1e-3f * float(c));
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.999f), _mm512_set1_ps(0.999f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
  for (std::int64_t i = 0; i < iters; ++i)
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  __m512 total = acc[0];
  for (int c = 1; c < kChains; ++c) total = _mm512_add_ps(total, acc[c]);
  float sink = _mm512_reduce_add_ps(total);
  benchmark::DoNotOptimize(sink);
  return 4.0 * double(iters) * kChains * 16;
}

/// The vdpbf16ps peak in flop/s on this thread's CPU time (once per process).
double dp_peak() {
  static const double peak = [] {
    double best = 0;
    for (int rep = 0; rep < 7; ++rep) {
      const double t0 = thread_seconds();
      const double flops = dpbf16_chains(5'000'000);
      best = std::max(best, flops / (thread_seconds() - t0));
    }
    return best;
  }();
  return peak;
}
#endif

const char* path_label() { return bfloat16_dot_product() ? "vdpbf16ps" : "widening"; }

/// The median of a[i] / b[i].
double median_ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) r[i] = a[i] / b[i];
  std::nth_element(r.begin(), r.begin() + std::ptrdiff_t(r.size() / 2), r.end());
  return r.empty() ? 0.0 : r[r.size() / 2];
}

/// Float then bfloat16 exact forward in each iteration. Args: N, D, causal.
void BM_Bf16Exact(benchmark::State& state) {
  const Index n = state.range(0), d = state.range(1);
  AttentionOptions opt;
  opt.causal = state.range(2) != 0;
  const Exact<float> exact;
  const RowMatrix<float> q = random_input<float>(n, d, 1), k = random_input<float>(n, d, 2),
                         v = random_input<float>(n, d, 3);
  const RowMatrix<bfloat16> qb = to_bfloat16(q), kb = to_bfloat16(k), vb = to_bfloat16(v);
  RowMatrix<float> out(n, d);
  const double peak = cpu_time_peak<float>();
  std::vector<double> tf, tb;
  for (auto _ : state) {
    const double t0 = thread_seconds();
    exact.forward(q, k, v, out, opt);
    benchmark::DoNotOptimize(out.data());
    const double t1 = thread_seconds();
    exact.forward(qb, kb, vb, out, opt);
    benchmark::DoNotOptimize(out.data());
    tf.push_back(t1 - t0);
    tb.push_back(thread_seconds() - t1);
  }
  const double best_f = *std::min_element(tf.begin(), tf.end());
  const double best_b = *std::min_element(tb.begin(), tb.end());
  const double flops = (opt.causal ? 2.0 : 4.0) * double(n) * double(n) * double(d);
  state.counters["float_ms"] = best_f * 1e3;
  state.counters["bf16_ms"] = best_b * 1e3;
  state.counters["speedup"] = median_ratio(tf, tb);
  state.counters["peak_GFLOPs"] = peak * 1e-9;
  state.counters["float_pct_peak"] = 100 * flops / best_f / peak;
  state.counters["bf16_pct_peak"] = 100 * flops / best_b / peak;
#if FASTATTN_BF16_DOT
  state.counters["dp_peak_GFLOPs"] = dp_peak() * 1e-9;
  state.counters["bf16_pct_dp_peak"] = 100 * flops / best_b / dp_peak();
#endif
  state.SetLabel(path_label());
}
BENCHMARK(BM_Bf16Exact)
    ->ArgNames({"N", "D", "causal"})
    ->Args({4096, 64, 0})
    ->Args({4096, 64, 1})
    ->Args({4096, 128, 0})
    ->Args({4096, 128, 1})
    ->Iterations(15)
    ->Unit(benchmark::kMillisecond);

/// One decoding step with a float cache, then one with a bfloat16 cache, per iteration, at a fixed
/// context (each step appends a token, attends over context + 1 keys and is rolled back). Args:
/// context, D (= Dv).
void BM_Bf16Decode(benchmark::State& state) {
  const Index context = state.range(0), d = state.range(1);
  ExactOptions bf16_cache;
  bf16_cache.cache = CacheStorage::BFloat16;
  const Exact<float> exact, exact16(bf16_cache);
  const RowMatrix<float> k = random_input<float>(context + 1, d, 1),
                         v = random_input<float>(context + 1, d, 2),
                         q = random_input<float>(1, d, 3);
  auto cache = exact.make_state(d, AttentionOptions{}, context + 1);
  auto cache16 = exact16.make_state(d, AttentionOptions{}, context + 1);
  for (Index t = 0; t < context; t += 256) {  // prefill in chunks
    const Index len = std::min<Index>(256, context - t);
    RowMatrix<float> o(len, d);
    exact.step(cache, k.middleRows(t, len), k.middleRows(t, len), v.middleRows(t, len), o);
    exact16.step(cache16, k.middleRows(t, len), k.middleRows(t, len), v.middleRows(t, len), o);
  }
  RowMatrix<float> out(1, d);
  const double peak = cpu_time_peak<float>();
  std::vector<double> tf, tb;
  tf.reserve(1 << 16);
  tb.reserve(1 << 16);
  for (auto _ : state) {
    const double t0 = thread_seconds();
    exact.step(cache, q, k.row(context), v.row(context), out);
    cache.truncate(context);
    benchmark::DoNotOptimize(out.data());
    const double t1 = thread_seconds();
    exact16.step(cache16, q, k.row(context), v.row(context), out);
    cache16.truncate(context);
    benchmark::DoNotOptimize(out.data());
    tf.push_back(t1 - t0);
    tb.push_back(thread_seconds() - t1);
  }
  std::vector<double> sf = tf, sb = tb;  // medians: single steps are short, take the typical one
  std::nth_element(sf.begin(), sf.begin() + std::ptrdiff_t(sf.size() / 2), sf.end());
  std::nth_element(sb.begin(), sb.begin() + std::ptrdiff_t(sb.size() / 2), sb.end());
  const double mf = sf[sf.size() / 2], mb = sb[sb.size() / 2];
  // What a step streams: keys and values of context + 1 tokens in each cache's layout.
  const double tokens = double(context + 1);
  const double bytes_f = tokens * double(d + detail::packet_padded<float>(d)) * 4;
  const double bytes_b =
      tokens * double(detail::pair_depth(d) + detail::packet_padded<float>(d)) * 2;
  state.counters["float_us"] = mf * 1e6;
  state.counters["bf16_us"] = mb * 1e6;
  state.counters["speedup"] = median_ratio(tf, tb);
  state.counters["float_GBps"] = bytes_f / mf * 1e-9;
  state.counters["bf16_GBps"] = bytes_b / mb * 1e-9;
  state.counters["float_cache_MiB"] = bytes_f / double(1 << 20);
  state.counters["peak_GFLOPs"] = peak * 1e-9;
  state.SetLabel(path_label());
}
BENCHMARK(BM_Bf16Decode)
    ->ArgNames({"context", "D"})
    ->Args({4096, 64})
    ->Args({16384, 64})
    ->Args({4096, 128})
    ->Args({16384, 128})
    ->MinTime(1.0)
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace fastattn::bench
