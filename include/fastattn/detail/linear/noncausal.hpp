#pragma once
/// @file detail/linear/noncausal.hpp
/// Non-causal linear attention: S = sum_j phi(k_j) [v_j, 1]^T accumulated over key chunks (one
/// GEMM each), then out = phi(Q) S per query chunk (one GEMM each); the ones column of [V, 1]
/// carries the denominator. Every query sees every visible key.

#include <algorithm>

#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/linear/chunk.hpp"
#include "fastattn/detail/linear/rows.hpp"
#include "fastattn/detail/simd/gemm_kernel.hpp"
#include "fastattn/detail/simd/packet.hpp"
#include "fastattn/options.hpp"

namespace fastattn::detail {

/// Adds the keys k [Nk, D], v [Nk, Dv] (key padding from opt) to carry: its sums, shift and
/// number of contributing keys. ws must have room for `chunk` rows.
template <class T>
void accumulate_key_sums(const FeatureMap<T>& key_map, const ConstMatRef<T>& k,
                         const ConstMatRef<T>& v, const KeyMask& padding, Index chunk,
                         LinearCarry<T>& carry, LinearWorkspace<T>& ws, T input_factor) {
  const Index dv = v.cols();
  for (Index c0 = 0; c0 < k.rows(); c0 += chunk) {
    const Index n = std::min(chunk, k.rows() - c0);
    // The ones column of [V, 1] (1, or 0 for a padded key, whose features are 0 too) is the
    // chunk's feature sums, taken in the exponential pass instead of by a GEMV over phi(K_c).
    ws.feature_sums.setZero();
    key_features(key_map, k, padding, c0, n, carry, ws, input_factor, ws.feature_sums.data());
    // (strided rows, e.g. a head of [B, N, H, D], are copied too, with the next chunk's rows
    // prefetched: the product reads each row once per group of 8 features, see chunk_rows)
    if (any_padded(padding, c0, n) || !rows_packet_aligned(v) || rows_strided(v)) {
      chunk_values(v, padding, c0, n, ws);  // padded rows zeroed, rows aligned
      gemm_transposed<T, true>(ws.fk.topRows(n), ws.v1(n).leftCols(dv), carry.sums.leftCols(dv));
    } else {  // read in place: no copy
      gemm_transposed<T, true>(ws.fk.topRows(n), v.middleRows(c0, n), carry.sums.leftCols(dv));
    }
    carry.sums.col(dv) += ws.feature_sums;
    for (Index j = 0; j < n; ++j) carry.contributing += !is_padded(padding, c0 + j);
  }
}

/// out = phi(Q) S / (phi(Q) z) for every query head, from the complete key sums in carry.
template <class T>
LinearStats read_out_queries(const FeatureMap<T>& query_map, const QueryHeads<T>& heads,
                             const LinearCarry<T>& carry, Index chunk, T den_eps,
                             LinearWorkspace<T>& ws, T input_factor) {
  LinearStats stats;
  const Index nq = heads.rows();
  const T mass = static_cast<T>(carry.contributing);  // every query sees every visible key
  const Index dv = carry.sums.cols() - 1;
  auto sums = ws.sums_rows.leftCols(dv);  // aligned rows for the product
  sums = carry.sums.leftCols(dv);
  ws.feature_sums = carry.sums.col(dv);  // the denominators' weights, contiguous
  for (Index g = 0; g < heads.count; ++g)
    for (Index i0 = 0; i0 < nq; i0 += chunk) {
      const Index n = std::min(chunk, nq - i0);
      query_features(query_map, heads.q[g], i0, n, ws, input_factor, ws.feature_sums.data());
      gemm_rows<T, false>(ws.fq.topRows(n), sums, ws.r.topLeftCorner(n, dv));
      auto& out = heads.out[g];
      const bool strided = rows_strided(out);
      for (Index i = 0; i < n; ++i) {
        // (strided output rows, e.g. a head of [B, N, H, D]: the next chunk's rows are fetched
        // for writing while this chunk finishes, see copy_chunk_prefetching_next)
        if (strided && i0 + n + i < nq) prefetch_row_for_write(out.row(i0 + n + i).data(), dv);
        stats.guarded_rows += finish_row(ws.r.row(i), out.row(i0 + i), mass, den_eps);
      }
    }
  return stats;
}

/// Non-causal linear attention of the query heads over k [Nk, D], v [Nk, Dv]. Arguments are
/// validated by the caller.
template <class T>
LinearStats linear_noncausal(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                             const QueryHeads<T>& heads, const ConstMatRef<T>& k,
                             const ConstMatRef<T>& v, const KeyMask& padding,
                             const LinearOptions& lopt, T input_factor = T(1)) {
  SerialEigenScope serial_eigen;
  const Index c = linear_chunk(lopt, false);
  LinearWorkspace<T> ws(std::min(c, std::max(heads.rows(), k.rows())) + 1, key_map.feature_dim(),
                        v.cols(), false);
  LinearCarry<T> carry(key_map.feature_dim(), v.cols());
  accumulate_key_sums(key_map, k, v, padding, c, carry, ws, input_factor);
  return read_out_queries(query_map, heads, carry, c, static_cast<T>(lopt.den_eps), ws,
                          input_factor);
}

}  // namespace fastattn::detail
