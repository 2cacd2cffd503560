#pragma once
/// @file detail/linear/causal.hpp
/// Causal linear attention, chunked (docs/spec/favor.md §7, docs/spec/rfa.md §5-§6): per key chunk
/// one masked intra-chunk GEMM phi(Q_c) phi(K_c)^T [V_c, 1] plus phi(Q_c) S for the carried-in
/// key sums, then S += phi(K_c)^T [V_c, 1]; never per-token rank-1 updates. The gated form
/// (RFA-Gate: S_t = g_t S_{t-1} + (1 - g_t) phi(k_t) [v_t, 1]^T) is the same chunk step with decay
/// factors, chosen at compile time (Ungated / Gated), so the ungated loops carry no gate tests.

#include <algorithm>
#include <cmath>

#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/linear/chunk.hpp"
#include "fastattn/detail/linear/rows.hpp"
#include "fastattn/detail/simd/gemm_kernel.hpp"
#include "fastattn/detail/simd/transpose.hpp"
#include "fastattn/options.hpp"

namespace fastattn::detail {

/// Plain causal attention: every visible key has weight 1.
struct Ungated {
  static constexpr bool gated = false;
};

/// Gated causal attention: log_gates [Nk] = log g_j <= 0 (finite); padded keys act as g = 1.
template <class T>
struct Gated {
  static constexpr bool gated = true;
  const T* log_gates;
};

/// One key chunk [c0, c0 + n) of causal attention: the outputs of the queries aligned with it
/// (query i sits at key position i + delta), then the chunk folded into carry.
template <class T, class Gating>
void causal_chunk_step(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                       const QueryHeads<T>& heads, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                       const KeyMask& padding, const Gating& gating, Index c0, Index n, Index delta,
                       T den_eps, T input_factor, LinearCarry<T>& carry, LinearWorkspace<T>& ws,
                       LinearStats& stats) {
  key_features(key_map, k, padding, c0, n, carry, ws, input_factor);
  chunk_values(v, padding, c0, n, ws);
  auto fk = ws.fk.topRows(n);
  auto v1 = ws.v1(n);
  auto gam = ws.gam.head(n);            // gated: gam_t = sum_{c0 <= l <= t} log g_l
  auto weight = ws.key_weight.head(n);  // gated: 1 - g_j
  if constexpr (Gating::gated) {
    T running = 0;
    for (Index j = 0; j < n; ++j) {
      const T lg = is_padded(padding, c0 + j) ? T(0) : gating.log_gates[c0 + j];
      running += lg;
      gam[j] = running;
      weight[j] = -std::expm1(lg);
    }
  }
  // A key counts as contributing when it is visible and has non-zero weight.
  auto contributes = [&](Index j) {
    if (is_padded(padding, c0 + j)) return false;
    if constexpr (Gating::gated) return weight[j] > 0;
    return true;
  };

  constexpr Index R = RegisterTile<T>::kRows, L = RegisterTile<T>::kLanes;
  const Index nq = heads.rows();
  const Index i0 = std::max<Index>(0, c0 - delta), i1 = std::min<Index>(nq, c0 + n - delta);
  auto fkt = ws.fkt.leftCols(n);   // the scores' right-hand side, [M, n]: only when scores are due
  if (heads.count > 0 && i1 > i0)  // (a fold without queries, e.g. fold_keys, skips it)
    transpose_into(fk.data(), fk.outerStride(), n, fk.cols(), fkt.data(), fkt.outerStride());
  for (Index g = 0; g < heads.count && i1 > i0; ++g) {
    const Index nqc = i1 - i0, t0 = i0 + delta - c0;  // query i0 sits at chunk offset t0
    query_features(query_map, heads.q[g], i0, nqc, ws, input_factor);
    auto fq = ws.fq.topRows(nqc);
    auto r = ws.r.topRows(nqc);
    auto scores = ws.scores.topLeftCorner(nqc, n);
    gemm_rows<T, false>(fq, carry.sums, r);  // the carried-in keys
    // The chunk's own keys, a group of R query rows at a time: row ii sees the keys j <= t0 + ii,
    // so a group scores only the keys its last row sees (in whole packets) and multiplies only
    // those into [V_c, 1]; the rest of the chunk's square is never computed.
    for (Index g0 = 0; g0 < nqc; g0 += R) {
      const Index rows = std::min<Index>(R, nqc - g0);
      const Index visible = std::min(n, t0 + g0 + rows);  // >= rows, as t0 >= 0
      const Index cols = std::min(n, (visible + L - 1) / L * L);
      gemm_rows<T, false>(fq.middleRows(g0, rows), fkt.leftCols(cols),
                          scores.block(g0, 0, rows, cols));
      for (Index ii = g0; ii < g0 + rows; ++ii) {
        const Index t = t0 + ii;  // keys j <= t of this chunk are visible
        if (t + 1 < cols) scores.row(ii).segment(t + 1, cols - t - 1).setZero();
        if constexpr (Gating::gated) {
          r.row(ii) *= std::exp(gam[t]);
          for (Index j = 0; j <= t; ++j) scores(ii, j) *= weight[j] * std::exp(gam[t] - gam[j]);
        }
      }
      gemm_rows<T, true>(scores.block(g0, 0, rows, visible), v1.topRows(visible),
                         r.middleRows(g0, rows));
    }
    Index seen = carry.contributing;
    auto& out = heads.out[g];
    const bool strided = rows_strided(out);
    for (Index ii = 0, j = 0; ii < nqc; ++ii) {
      // (strided output rows: the next chunk's are fetched for writing, see noncausal.hpp)
      if (strided && i1 + ii < nq) prefetch_row_for_write(out.row(i1 + ii).data(), out.cols());
      for (; j <= t0 + ii; ++j) seen += contributes(j);
      T mass = T(seen);
      if constexpr (Gating::gated) mass = -std::expm1(carry.log_gate_sum + gam[t0 + ii]);
      stats.guarded_rows +=
          finish_row(r.row(ii), out.row(i0 + ii), seen > 0 ? mass : T(0), den_eps);
    }
  }

  // Fold the chunk into the carry: S <- prod(g) S + phi(K_c)^T diag(w) [V_c, 1].
  if constexpr (Gating::gated) {
    carry.sums *= std::exp(gam[n - 1]);
    for (Index j = 0; j < n; ++j) v1.row(j) *= weight[j] * std::exp(gam[n - 1] - gam[j]);
    carry.log_gate_sum += gam[n - 1];
  }
  gemm_transposed<T, true>(fk, v1, carry.sums);
  for (Index j = 0; j < n; ++j) carry.contributing += contributes(j);
}

/// Causal (bottom-right aligned: query i sees keys j <= i + Nk - Nq) linear attention of the
/// query heads over k [Nk, D], v [Nk, Dv], continuing from `carry` (the keys before k: empty for
/// a whole sequence) and leaving the carry of all keys in it. Arguments are validated by the
/// caller.
template <class T, class Gating>
LinearStats linear_causal(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                          const QueryHeads<T>& heads, const ConstMatRef<T>& k,
                          const ConstMatRef<T>& v, const KeyMask& padding, const Gating& gating,
                          const LinearOptions& lopt, LinearCarry<T>& carry, T input_factor = T(1)) {
  SerialEigenScope serial_eigen;
  const Index nq = heads.rows(), nk = k.rows();
  const Index c = linear_chunk(lopt, true);
  const T den_eps = static_cast<T>(lopt.den_eps);
  LinearWorkspace<T> ws(std::min(c, std::max(nq, nk)) + 1, key_map.feature_dim(), v.cols(), true);
  LinearStats stats;
  const Index delta = nk - nq;
  // Queries before the first key of this block see only the carried-in keys.
  const Index first_aligned = std::clamp<Index>(-delta, 0, nq);
  if (first_aligned > 0) {
    for (Index g = 0; g < heads.count; ++g) {
      auto out = heads.out[g].topRows(first_aligned);
      if (carry.contributing == 0) {
        out.setZero();
        continue;
      }
      for (Index i0 = 0; i0 < first_aligned; i0 += c) {
        const Index n = std::min(c, first_aligned - i0);
        query_features(query_map, heads.q[g], i0, n, ws, input_factor);
        gemm_rows<T, false>(ws.fq.topRows(n), carry.sums, ws.r.topRows(n));
        T mass = T(carry.contributing);
        if constexpr (Gating::gated) mass = -std::expm1(carry.log_gate_sum);
        for (Index i = 0; i < n; ++i)
          stats.guarded_rows += finish_row(ws.r.row(i), out.row(i0 + i), mass, den_eps);
      }
    }
  }
  for (Index c0 = 0; c0 < nk; c0 += c)
    causal_chunk_step(query_map, key_map, heads, k, v, padding, gating, c0, std::min(c, nk - c0),
                      delta, den_eps, input_factor, carry, ws, stats);
  return stats;
}

}  // namespace fastattn::detail
