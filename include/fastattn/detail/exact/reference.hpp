#pragma once
/// @file detail/exact/reference.hpp
/// The reference path of exact attention: one query row at a time, materializing that row's
/// logits (O(Nk) memory). Deliberately plain: it is the anchor the fast kernel is tested against.

#include <cmath>
#include <limits>

#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Logit bias of exact attention at (i, j): the explicit bias ([Nq, Nk] or [1, Nk]; none when
/// empty) plus ALiBi -slope * |i + Nk - Nq - j|.
template <class T>
struct LogitBias {
  const ConstMatRef<T>& bias;
  double alibi_slope;
  Index delta;  // Nk - Nq

  bool any() const { return bias.size() != 0 || alibi_slope != 0; }
  T operator()(Index i, Index j) const {
    T b = 0;
    if (bias.size() != 0) b += bias(bias.rows() == 1 ? 0 : i, j);
    if (alibi_slope != 0) {
      const double distance = std::abs(static_cast<double>(i + delta - j));
      b -= static_cast<T>(alibi_slope * distance);
    }
    return b;
  }
};

/// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv]; lse [Nq] when non-empty. Arguments are
/// already validated.
template <class T>
void exact_reference(const ConstMatRef<T>& q, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                     MatRef<T>& out, const AttentionOptions& opt, const ConstMatRef<T>& bias,
                     VecRef<T>& lse) {
  const Index nq = q.rows(), nk = k.rows();
  const Index delta = nk - nq;
  const T scale = static_cast<T>(resolve_scale(opt, q.cols()));
  const LogitBias<T> logit_bias{bias, opt.alibi_slope, delta};
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();

  Vector<T> logits(nk);
  for (Index i = 0; i < nq; ++i) {
    logits.noalias() = k * q.row(i).transpose();
    for (Index j = 0; j < nk; ++j) {
      const bool hidden = is_padded(opt.key_padding, j) || (opt.causal && j > i + delta);
      logits[j] = hidden ? neg_inf : scale * logits[j] + logit_bias(i, j);
    }
    // Masked entries are -inf and get weight exactly 0. Only visible keys enter the sum, so a
    // padded key's value never reaches the output (even if it is not finite).
    const SoftmaxRow<T> row = softmax_numerators(logits);
    out.row(i).setZero();
    for (Index j = 0; j < nk; ++j)
      if (logits[j] != 0) out.row(i) += logits[j] * v.row(j);
    if (row.visible()) out.row(i) /= row.sum;  // an empty row stays 0 (docs/spec/exact.md §4)
    if (lse.size() != 0) lse[i] = row.log_sum_exp();
  }
}

}  // namespace fastattn::detail
