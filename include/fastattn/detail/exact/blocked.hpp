#pragma once
/// @file detail/exact/blocked.hpp
/// The fast path of exact attention: blocked online softmax (docs/spec/exact.md §7,
/// FlashAttention-style). Query block x key block tiles; S = (s Q_I) K_J^T and acc += P V_J are
/// Eigen GEMMs; the running max/sum update is a vectorized pass over the tile. Never materializes
/// Nq x Nk. Memory per call: O(Br * (D + Dv + Bc)) for the tile workspace plus O(Nk) for the
/// per-key additive row.

#include <algorithm>
#include <cmath>
#include <limits>

#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/simd/exp.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Tile sizes of the blocked kernel. Defaults chosen by measurement on an AVX-512 machine (see
/// bench/bench_exact.cpp): Br x D queries and Bc x D keys stay in L2 next to the Br x Bc tile; Bc
/// is large enough for the P V GEMM (depth Bc) to run near peak.
struct ExactBlocking {
  Index block_q = 64;
  Index block_k = 256;
};

/// Workspace of one blocked call, sized once (no allocation per tile).
template <class T>
struct ExactTile {
  RowMatrix<T> q_scaled;  // [Br, D]   s * Q_I
  RowMatrix<T> s;         // [Br, Bc]  logits, then probabilities
  RowMatrix<T> acc;       // [Br, Dv]  running sum of p * v
  Vector<T> row_max;      // [Br]      running max m
  Vector<T> row_sum;      // [Br]      running sum l
  Vector<T> alpha;        // [Br]      exp(m - m_new)

  explicit ExactTile(Index br, Index bc, Index d, Index dv)
      : q_scaled(br, d), s(br, bc), acc(br, dv), row_max(br), row_sum(br), alpha(br) {}
};

/// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv] (and lse [Nq] if non-empty). `bias` is
/// [Nq, Nk], [1, Nk] or empty. Arguments are already validated.
template <class T>
void exact_blocked(const ConstMatRef<T>& q, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                   MatRef<T>& out, const AttentionOptions& opt, const ConstMatRef<T>& bias,
                   VecRef<T>& lse, ExactBlocking blocking) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const Index nq = q.rows(), nk = k.rows(), d = q.cols(), dv = v.cols();
  const Index delta = nk - nq;
  const T scale = static_cast<T>(resolve_scale(opt, d));
  const bool causal = opt.causal;
  const bool has_padding = opt.key_padding.size() != 0 && opt.key_padding.any();
  const bool full_bias = bias.size() != 0 && bias.rows() == nq && nq != 1;
  const bool key_bias = bias.size() != 0 && !full_bias;
  const T alibi = static_cast<T>(opt.alibi_slope);

  // Padding and a per-key bias are one additive row: -inf on padded keys, the bias elsewhere.
  Vector<T> key_add;
  if (has_padding || key_bias) {
    key_add = key_bias ? Vector<T>(bias.row(0).transpose()) : Vector<T>::Zero(nk);
    for (Index j = 0; j < nk; ++j)
      if (is_padded(opt.key_padding, j)) key_add[j] = neg_inf;
  }
  // A padded key has weight exactly 0, but -inf + NaN is NaN in the logits and 0 * NaN is NaN in
  // the P V product: zero the key and value rows of padded keys when (and only when) one of them
  // is not finite, so a padded key is ignored as if it did not exist (docs/spec/exact.md §2).
  using ConstRowMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
  auto without_padded_non_finite = [&](const ConstMatRef<T>& x, RowMatrix<T>& clean) {
    bool dirty = false;
    for (Index j = 0; j < nk && has_padding && !dirty; ++j)
      dirty = opt.key_padding[j] && !x.row(j).allFinite();
    if (!dirty)
      return ConstRowMap(x.data(), x.rows(), x.cols(), Eigen::OuterStride<>(x.outerStride()));
    clean = x;
    for (Index j = 0; j < nk; ++j)
      if (opt.key_padding[j]) clean.row(j).setZero();
    return ConstRowMap(clean.data(), clean.rows(), clean.cols(),
                       Eigen::OuterStride<>(clean.outerStride()));
  };
  RowMatrix<T> k_clean, v_clean;
  const ConstRowMap keys = without_padded_non_finite(k, k_clean);
  const ConstRowMap values = without_padded_non_finite(v, v_clean);

  const Index br = std::max<Index>(1, std::min(blocking.block_q, nq));
  const Index bc = std::max<Index>(1, std::min(blocking.block_k, nk));
  ExactTile<T> tile(br, bc, d, dv);
  Vector<T> key_positions;  // [Bc] j - c0 as T, for ALiBi
  if (alibi != 0) key_positions = Vector<T>::LinSpaced(bc, T(0), T(bc - 1));

  for (Index r0 = 0; r0 < nq; r0 += br) {
    const Index rows = std::min(br, nq - r0);
    // Keys any row of this block may see: all, or (causal) those with j <= r0 + rows - 1 + delta.
    const Index key_end = causal ? std::clamp<Index>(r0 + rows + delta, 0, nk) : nk;
    auto qs = tile.q_scaled.topRows(rows);
    auto acc = tile.acc.topRows(rows);
    auto m = tile.row_max.head(rows);
    auto l = tile.row_sum.head(rows);
    qs.noalias() = scale * q.middleRows(r0, rows);  // fold the scale into Q once per block
    acc.setZero();
    m.setConstant(neg_inf);
    l.setZero();

    for (Index c0 = 0; c0 < key_end; c0 += bc) {
      const Index cols = std::min(bc, key_end - c0);
      if (has_padding && opt.key_padding.segment(c0, cols).all()) continue;
      auto s = tile.s.topLeftCorner(rows, cols);
      s.noalias() = qs * keys.middleRows(c0, cols).transpose();

      if (full_bias) s += bias.block(r0, c0, rows, cols);
      if (key_add.size() != 0) s.rowwise() += key_add.segment(c0, cols).transpose();
      if (alibi != 0) {
        // b_ij = -slope * |i + delta - j|, one vectorized row at a time (never materialized).
        for (Index ii = 0; ii < rows; ++ii) {
          const T offset = static_cast<T>(r0 + ii + delta - c0);
          s.row(ii).array() -=
              alibi * (key_positions.head(cols).transpose().array() - offset).abs();
        }
      }
      // Diagonal block: row i sees keys j <= i + delta only.
      if (causal && c0 + cols - 1 > r0 + delta) {
        for (Index ii = 0; ii < rows; ++ii) {
          const Index visible = std::clamp<Index>(r0 + ii + delta - c0 + 1, 0, cols);
          s.row(ii).tail(cols - visible).setConstant(neg_inf);
        }
      }

      // Online softmax update; rows that have seen no visible key yet keep m = -inf, l = 0.
      bool rescale = false;
      for (Index ii = 0; ii < rows; ++ii) {
        const T m_new = std::max(m[ii], s.row(ii).maxCoeff());
        if (m_new == neg_inf) {  // nothing visible in this row yet: P row is all zeros
          s.row(ii).setZero();
          tile.alpha[ii] = 1;
          continue;
        }
        const T a = m[ii] == m_new ? T(1) : std::exp(m[ii] - m_new);  // exp(-inf) = 0
        tile.alpha[ii] = a;
        rescale |= a != T(1);
        l[ii] = a * l[ii] + exp_shifted_inplace_sum(&s(ii, 0), cols, m_new);
        m[ii] = m_new;
      }
      if (rescale) acc.array().colwise() *= tile.alpha.head(rows).array();
      acc.noalias() += s * values.middleRows(c0, cols);
    }

    for (Index ii = 0; ii < rows; ++ii) {
      if (l[ii] > 0) {
        out.row(r0 + ii) = acc.row(ii) / l[ii];
        if (lse.size() != 0) lse[r0 + ii] = m[ii] + std::log(l[ii]);
      } else {  // empty row (docs/spec/exact.md §4)
        out.row(r0 + ii).setZero();
        if (lse.size() != 0) lse[r0 + ii] = neg_inf;
      }
    }
  }
}

}  // namespace fastattn::detail
