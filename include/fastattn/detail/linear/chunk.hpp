#pragma once
/// @file detail/linear/chunk.hpp
/// One chunk of the linear-attention core: its workspace, its query features (stabilized per row)
/// and its key features (stabilized by the running key shift, which rescales the key sums), and
/// the key sums carried from chunk to chunk. Log-domain shifts cancel exactly between numerator
/// and denominator (docs/spec/favor.md §6): no eps is added anywhere.

#include <algorithm>
#include <cmath>
#include <limits>

#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/prefetch.hpp"
#include "fastattn/detail/simd/exp2.hpp"
#include "fastattn/detail/simd/packet.hpp"
#include "fastattn/features.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The key-side state carried across chunks (and, for sequence parallelism, across ranks):
/// S = sum_j w_j exp(phi(k_j) - shift) [v_j, 1]^T [M, Dv + 1] (signed features: no shift), the
/// running key shift, and what the empty-row rule and the gated mass need.
template <class T>
struct LinearCarry {
  RowMatrix<T> sums;                              // [M, Dv + 1]
  T shift = -std::numeric_limits<T>::infinity();  // running max of the key log-features
  Index contributing = 0;                         // keys so far with non-zero weight
  T log_gate_sum = 0;                             // sum of log g over the keys so far (gated)

  LinearCarry() = default;
  explicit LinearCarry(Index m, Index dv) : sums(RowMatrix<T>::Zero(m, dv + 1)) {}

  /// Raises the shift to `new_shift` (>= shift), rescaling the sums so they stay exact.
  void raise_shift(T new_shift) {
    if (!(new_shift > shift)) return;
    if (shift != -std::numeric_limits<T>::infinity()) sums *= std::exp(shift - new_shift);
    shift = new_shift;
  }
};

/// Workspace of one core call, sized once (no allocation per chunk). The operands the products
/// read as their right-hand side ([V, 1] and the copy of the key sums) have rows padded to whole
/// packets, so each row starts aligned (measured: the key-sum product at 88% of the FMA peak
/// instead of 80% with rows Dv + 1 apart).
template <class T>
struct LinearWorkspace {
  RowMatrix<T> fq, fk;        // [C, M] query / key (log-)features
  RowMatrix<T> v1_rows;       // [C, Dv + 1 padded]: [V_c, 1] in the first Dv + 1 columns
  RowMatrix<T> sums_rows;     // [M, Dv padded]: the key sums S V, for the non-causal read-out
  RowMatrix<T> fkt;           // [M, C] the key features transposed (causal)
  RowMatrix<T> scores;        // [C, C] intra-chunk phi(Q_c) phi(K_c)^T (causal)
  RowMatrix<T> r;             // [C, Dv + 1] numerator and denominator
  Vector<T> feature_sums;     // [M] non-causal: a chunk's key feature sums, then S's ones column
  Vector<T> gam, key_weight;  // [C] gated causal: cumulative log g, 1 - g
  RowMatrix<T> input_rows;    // [C, D] a chunk of q or k rows copied from a strided view
  explicit LinearWorkspace(Index c, Index m, Index dv, bool causal)
      : fq(c, m),
        fk(c, m),
        v1_rows(c, packet_padded<T>(dv + 1)),
        sums_rows(causal ? 0 : m, causal ? 0 : packet_padded<T>(dv)),
        fkt(causal ? m : 0, causal ? c : 0),
        scores(causal ? c : 0, causal ? c : 0),
        r(c, dv + 1),
        feature_sums(causal ? 0 : m),
        gam(causal ? c : 0),
        key_weight(causal ? c : 0) {}

  /// [V, 1] of the first n keys of the chunk, [n, Dv + 1].
  auto v1(Index n) { return v1_rows.topLeftCorner(n, r.cols()); }
};

/// Rows [r0, r0 + n) of x copied into dst; when x's rows are strided (a head of [B, N, H, D]),
/// the same number of rows after them are prefetched into L2 for the next chunk: such rows defeat
/// the hardware prefetchers, so without it each row's misses would wait for memory when its chunk
/// starts. (Contiguous rows, which the hardware streams, get no prefetches.)
template <class Dst, class X>
void copy_chunk_prefetching_next(Dst&& dst, const X& x, Index r0, Index n) {
  const Index next_end = rows_strided(x) ? std::min(x.rows(), r0 + 2 * n) : 0;
  for (Index j = 0; j < n; ++j) {
    if (r0 + n + j < next_end) prefetch_row_l2(x.row(r0 + n + j).data(), x.cols());
    dst.row(j) = x.row(r0 + j);
  }
}

/// Rows [r0, r0 + n) of x for the feature product: x's own rows when they are contiguous, else a
/// copy in ws.input_rows that also prefetches the next chunk's rows. Why: the rows of one head of
/// a [B, N, H, D] tensor lie H·D elements apart (2 KiB for 8 heads of 64 floats), so the hardware
/// prefetchers do not follow them and they fall into an eighth of the cache sets; the product
/// reads each row once per panel of projections (8 times at m = 256). Read in place, FAVOR+ was
/// 11-14% slower on [B, N, H, D] than on [B, H, N, D] (docs/linear_kernel.md §9).
template <class T, class X>
ConstMatRef<T> chunk_rows(const X& x, Index r0, Index n, LinearWorkspace<T>& ws) {
  if (!rows_strided(x)) return x.middleRows(r0, n);
  if (ws.input_rows.rows() < n || ws.input_rows.cols() != x.cols())
    ws.input_rows.resize(std::max(n, ws.input_rows.rows()), x.cols());  // once per call
  auto rows = ws.input_rows.topRows(n);
  copy_chunk_prefetching_next(rows, x, r0, n);
  return rows;
}

/// Query (log-)features of rows [i0, i0 + n) of q into ws.fq, exponentiated with each row's max
/// (the query shift cancels in the row's ratio). input_factor: see FeatureMap::apply. With
/// key_mass [M] (the ones column of the key sums, contiguous), also each row's denominator
/// phi(q_i) . key_mass into the last column of ws.r, computed while the features are in registers.
template <class T, class Queries>
void query_features(const FeatureMap<T>& map, const Queries& q, Index i0, Index n,
                    LinearWorkspace<T>& ws, T input_factor, const T* key_mass = nullptr) {
  auto fq = ws.fq.topRows(n);
  const Index den = ws.r.cols() - 1, m = fq.cols();
  const ConstMatRef<T> rows = chunk_rows(q, i0, n, ws);
  if (!map.log_domain()) {  // the denominators in the map's pass, each row while it is in L1
    FeatureRowReductions<T> reductions;
    if (key_mass != nullptr) {
      reductions.weights = key_mass;
      reductions.dots = &ws.r(0, den);
      reductions.dots_stride = ws.r.outerStride();
    }
    map.apply(rows, fq, input_factor, reductions);
    return;
  }
  map.apply(rows, fq, input_factor);
  for (Index i = 0; i < n; ++i) {
    const T shift = fq.row(i).maxCoeff();
    if (key_mass != nullptr)
      ws.r(i, den) =
          exp_shifted_fast_inplace<T, false, true>(&fq(i, 0), m, shift, nullptr, key_mass);
    else
      exp_shifted_fast_inplace(&fq(i, 0), m, shift);
  }
}

/// True when a key of [c0, c0 + n) is padded.
inline bool any_padded(const KeyMask& padding, Index c0, Index n) {
  return padding.size() != 0 && padding.segment(c0, n).any();
}

/// [V, 1] of rows [c0, c0 + n) into ws.v1(n); a padded key's row is zeroed (it contributes
/// nothing, whatever its value).
template <class T>
void chunk_values(const ConstMatRef<T>& v, const KeyMask& padding, Index c0, Index n,
                  LinearWorkspace<T>& ws) {
  const Index dv = v.cols();
  auto v1 = ws.v1(n);
  copy_chunk_prefetching_next(v1.leftCols(dv), v, c0, n);
  v1.col(dv).setOnes();
  for (Index j = 0; j < n; ++j)
    if (is_padded(padding, c0 + j)) v1.row(j).setZero();
}

/// Key (log-)features of rows [c0, c0 + n) into ws.fk, padded rows zeroed (features) or -inf
/// (log-features). Log domain: raises the carried shift to cover this chunk (rescaling the
/// carried sums) and exponentiates. With column_sums [M] (zero on entry): also the sum of the
/// chunk's feature rows, phi(K_c)^T 1, computed while the features are in registers (log domain)
/// or in L1 (the map's own pass, when no key of the chunk is padded).
template <class T>
void key_features(const FeatureMap<T>& map, const ConstMatRef<T>& k, const KeyMask& padding,
                  Index c0, Index n, LinearCarry<T>& carry, LinearWorkspace<T>& ws, T input_factor,
                  T* column_sums = nullptr) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  auto fk = ws.fk.topRows(n);
  const bool padded = any_padded(padding, c0, n);
  FeatureRowReductions<T> reductions;
  if (!map.log_domain() && !padded) reductions.column_sums = column_sums;
  map.apply(chunk_rows(k, c0, n, ws), fk, input_factor, reductions);
  if (padded)
    for (Index j = 0; j < n; ++j)
      if (is_padded(padding, c0 + j))  // a padded key contributes nothing, whatever its value
        fk.row(j).setConstant(map.log_domain() ? neg_inf : T(0));
  const Index m = fk.cols();
  if (!map.log_domain()) {
    if (column_sums != nullptr && reductions.column_sums == nullptr)
      Eigen::Map<Vector<T>>(column_sums, m) = fk.colwise().sum().transpose();
    return;
  }
  carry.raise_shift(fk.maxCoeff());
  if (carry.shift == neg_inf) {  // no visible key yet (e.g. leading padding): weights exp(-inf) = 0
    fk.setZero();                // (left at -inf, (-inf) * 0 in the key sums would be NaN)
    return;
  }
  for (Index j = 0; j < n; ++j)
    if (column_sums != nullptr)
      exp_shifted_fast_inplace<T, true>(&fk(j, 0), m, carry.shift, column_sums);
    else
      exp_shifted_fast_inplace(&fk(j, 0), m, carry.shift);
}

}  // namespace fastattn::detail
