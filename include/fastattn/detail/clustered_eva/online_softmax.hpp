#pragma once
/// @file detail/clustered_eva/online_softmax.hpp
/// One softmax over entries that arrive in parts (summaries, window, exact clusters): per row a
/// running max, sum of exponentials and weighted sum of values, merged part by part and
/// normalized at the end. A part is a row of logits turned into numerators by the shared masked
/// row softmax (softmax_numerators) and multiplied by its values.

#include <cmath>
#include <limits>

#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Running softmax state of `rows` query rows with Dv-wide values.
template <class T>
class OnlineSoftmaxRows {
 public:
  /// Empty state for rows x dv (max -inf, sum 0, accumulator 0). Reuses the storage.
  void reset(Index rows, Index dv) {
    max_.setConstant(rows, -std::numeric_limits<T>::infinity());
    sum_.setZero(rows);
    acc_.setZero(rows, dv);
  }

  /// Adds a part to row i: `part` as returned by softmax_numerators on the part's logits, and
  /// `weighted` = (those numerators) x (the part's values), a [Dv] row.
  template <class Row>
  void merge(Index i, const SoftmaxRow<T>& part, const Row& weighted) {
    if (!part.visible()) return;
    if (part.max > max_[i]) {  // rescale what is there (exp(-inf) = 0 for an empty row)
      const T f = std::exp(max_[i] - part.max);
      acc_.row(i) = acc_.row(i) * f + weighted;
      sum_[i] = sum_[i] * f + part.sum;
      max_[i] = part.max;
    } else {
      const T f = std::exp(part.max - max_[i]);
      acc_.row(i) += f * weighted;
      sum_[i] += f * part.sum;
    }
  }

  /// Row i normalized into `out` (zeros for a row that saw no visible entry).
  template <class Row>
  void finish(Index i, Row&& out) const {
    const T inv = sum_[i] > 0 ? T(1) / sum_[i] : T(0);
    out = acc_.row(i) * inv;
  }

 private:
  Vector<T> max_, sum_;
  RowMatrix<T> acc_;
};

}  // namespace fastattn::detail
