#pragma once
/// @file detail/clustered_eva/online_softmax.hpp
/// One softmax over entries that arrive in parts (summaries, window, exact clusters): per row a
/// running reference m, sum of exponentials l = sum e^(x - m) and weighted sum of values
/// acc = sum e^(x - m) v, merged part by part and normalized at the end. A part is a row of
/// logits turned into numerators by the shared masked row softmax (softmax_numerators) and
/// multiplied by its values, or the exact kernel's group update on a row's (m, l, acc) in place
/// (m is then a reference at most a few binary orders below the row's max, not the max itself:
/// any m gives the same normalized output).

#include <cmath>
#include <limits>

#include "fastattn/detail/simd/packet.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Running softmax state of `rows` query rows with Dv-wide values. The accumulator rows are
/// packet-aligned, Dv rounded up to whole packets apart (the exact kernel's value tiles write
/// whole packets; the padding stays 0).
template <class T>
class OnlineSoftmaxRows {
 public:
  /// Empty state for rows x dv (reference -inf, sum 0, accumulator 0). Reuses the storage.
  void reset(Index rows, Index dv) {
    dv_ = dv;
    stride_ = packet_padded<T>(dv);
    max_.setConstant(rows, -std::numeric_limits<T>::infinity());
    sum_.setZero(rows);
    acc_.setZero(rows * stride_);
  }

  /// State for rows x dv whose first part is parts[i] for row i (as softmax_numerators returns
  /// it); its weighted values go straight into accumulators(), which the caller fills next
  /// (instead of reset() and a merge() per row: one pass less over the accumulators).
  void start(Index rows, Index dv, const SoftmaxRow<T>* parts) {
    dv_ = dv;
    stride_ = packet_padded<T>(dv);
    max_.resize(rows);
    sum_.resize(rows);
    for (Index i = 0; i < rows; ++i) {
      max_[i] = parts[i].max;
      sum_[i] = parts[i].sum;
    }
    if (acc_.size() < rows * stride_) acc_.resize(rows * stride_);
    if (stride_ > dv)  // the padding columns stay 0
      for (Index i = 0; i < rows; ++i) acc_.segment(i * stride_ + dv, stride_ - dv).setZero();
  }

  /// The accumulators [rows, Dv] (row stride Dv rounded up to packets) as a matrix, for start().
  Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>> accumulators(Index rows) {
    return {acc_.data(), rows, dv_, Eigen::OuterStride<>(stride_)};
  }

  /// Adds a part to row i: `part` as returned by softmax_numerators on the part's logits, and
  /// `weighted` = (those numerators) x (the part's values), a [Dv] row.
  template <class Row>
  void merge(Index i, const SoftmaxRow<T>& part, const Row& weighted) {
    if (!part.visible()) return;
    auto acc = acc_.segment(i * stride_, dv_).transpose();
    if (part.max > max_[i]) {  // rescale what is there (exp(-inf) = 0 for an empty row)
      const T f = std::exp(max_[i] - part.max);
      acc = acc * f + weighted;
      sum_[i] = sum_[i] * f + part.sum;
      max_[i] = part.max;
    } else {
      const T f = std::exp(part.max - max_[i]);
      acc += f * weighted;
      sum_[i] += f * part.sum;
    }
  }

  /// Row i normalized into `out` (zeros for a row that saw no visible entry).
  template <class Row>
  void finish(Index i, Row&& out) const {
    const T inv = sum_[i] > 0 ? T(1) / sum_[i] : T(0);
    out = acc_.segment(i * stride_, dv_).transpose() * inv;
  }

  /// Row i's reference m, sum l and accumulator [stride] (packet-aligned), for kernels that
  /// update the state in place.
  T& reference(Index i) { return max_[i]; }
  T& sum(Index i) { return sum_[i]; }
  T* accumulator(Index i) { return acc_.data() + i * stride_; }

 private:
  Vector<T> max_, sum_;
  Vector<T> acc_;  // [rows][stride]
  Index dv_ = 0, stride_ = 0;
};

}  // namespace fastattn::detail
