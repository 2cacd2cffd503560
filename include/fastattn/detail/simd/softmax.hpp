#pragma once
/// @file detail/simd/softmax.hpp
/// The masked row softmax that every exact and EVA path shares: row max, shifted exponentials
/// (exactly 0 for masked, -inf entries) and their sum in one fused pass, and the empty-row rule
/// (a row with no visible entry gets weight 0 everywhere and output 0).

#include <cmath>
#include <limits>
#include <type_traits>

#include <Eigen/Core>

#include "fastattn/detail/simd/exp.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// What remains of a row after softmax_numerators(): its max (the shift) and the sum of the
/// shifted exponentials. An empty row (every entry -inf) has max = -inf and sum = 0.
template <class T>
struct SoftmaxRow {
  T max;
  T sum;

  /// False for a row with no visible entry (the empty-row rule: output 0).
  bool visible() const { return sum > 0; }
  /// 1 / sum, or 0 for an empty row, so that "weights * inverse" is the empty row's zeros.
  T inverse_sum() const { return sum > 0 ? T(1) / sum : T(0); }
  /// log(sum exp(x)) of the original row, -inf for an empty row.
  T log_sum_exp() const {
    return sum > 0 ? max + std::log(sum) : -std::numeric_limits<T>::infinity();
  }
};

/// In place over the logits x[0, n) (-inf = masked): x_j <- exp(x_j - max_j x_j), exactly 0 where
/// x_j = -inf; returns the max and the sum. The caller normalizes (usually after multiplying by
/// the values: one division per output element instead of one per logit). An empty row is left
/// all zeros.
template <class T>
SoftmaxRow<T> softmax_numerators(T* x, Index n) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  if (n == 0) return {neg_inf, T(0)};
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> row(x, n);
  const T row_max = row.maxCoeff();
  if (row_max == neg_inf) {  // nothing visible: weights 0 (exp(-inf - -inf) would be NaN)
    row.setZero();
    return {neg_inf, T(0)};
  }
  return {row_max, exp_shifted_inplace_sum(x, n, row_max)};
}

/// softmax_numerators() on a contiguous Eigen row or vector expression (inner stride 1).
template <class Row>
auto softmax_numerators(Row&& row) {
  using T = typename std::decay_t<Row>::Scalar;
  eigen_assert(row.innerStride() == 1);
  return softmax_numerators<T>(row.data(), row.size());
}

}  // namespace fastattn::detail
