#pragma once
/// @file detail/simd/softmax.hpp
/// The masked row softmax that every exact and EVA path shares: row max, shifted exponentials
/// (exactly 0 for masked, -inf entries) and their sum in one fused pass, and the empty-row rule
/// (a row with no visible entry gets weight 0 everywhere and output 0). The same over the
/// columns of a matrix, for logits stored transposed (softmax_numerators_columns).

#include <algorithm>
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

/// The softmax numerators of every column of x [n, cols] (row stride ld), in place: column j's
/// entries become exp(x - max_j), exactly 0 where x = -inf, and parts[j] = {max_j, sum_j} as
/// softmax_numerators() would return for that column (an all -inf column: weights 0, {-inf, 0}).
/// Why by columns: ClusteredEva keeps its cluster logits [C, queries], so that the top-r
/// selection reads one packet of queries per cluster; a packet then holds one entry of L
/// softmaxes, and the max, exp and sum are vertical (no horizontal reduction per row).
template <class T>
void softmax_numerators_columns(T* x, Index ld, Index n, Index cols, SoftmaxRow<T>* parts) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  Index j = 0;
#ifndef EIGEN_DONT_VECTORIZE
  constexpr Index lanes = Eigen::internal::packet_traits<T>::size;
  if constexpr (lanes > 1 && Eigen::internal::packet_traits<T>::HasExp) {
    using namespace Eigen::internal;
    using Packet = typename packet_traits<T>::type;
    const Packet minus_inf = pset1<Packet>(neg_inf);
    alignas(64) T max_lanes[lanes], sum_lanes[lanes];
    for (; j + lanes <= cols; j += lanes) {
      Packet m = minus_inf;
      for (Index i = 0; i < n; ++i) m = pmax(m, ploadu<Packet>(x + i * ld + j));
      // An all -inf column: shift 0 (every entry is -inf and gets weight 0 below).
      const Packet shift = pselect(pcmp_eq(m, minus_inf), pset1<Packet>(T(0)), m);
      Packet sum = pset1<Packet>(T(0));
      for (Index i = 0; i < n; ++i) {
        const Packet v = ploadu<Packet>(x + i * ld + j);
        const Packet e = pand(pcmp_lt(minus_inf, v), pexp(psub(v, shift)));
        pstoreu(x + i * ld + j, e);
        sum = padd(sum, e);
      }
      pstore(max_lanes, m);
      pstore(sum_lanes, sum);
      for (Index l = 0; l < lanes; ++l) parts[j + l] = {max_lanes[l], sum_lanes[l]};
    }
  }
#endif
  for (; j < cols; ++j) {
    T m = neg_inf;
    for (Index i = 0; i < n; ++i) m = std::max(m, x[i * ld + j]);
    const ShiftedExp<T> f{m == neg_inf ? T(0) : m};
    T sum = 0;
    for (Index i = 0; i < n; ++i) {
      x[i * ld + j] = f(x[i * ld + j]);
      sum += x[i * ld + j];
    }
    parts[j] = {m, sum};
  }
}

}  // namespace fastattn::detail
