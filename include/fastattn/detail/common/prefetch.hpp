#pragma once
/// @file detail/common/prefetch.hpp
/// Software prefetches of whole rows (64-byte lines), for rows the hardware prefetchers follow
/// poorly: the rows of one head of a [B, N, H, D] tensor, H·D elements apart.

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Prefetches the cache lines of row[0, n) (into L1).
template <class T>
void prefetch_row(const T* row, Index n) {
  for (Index c = 0; c < n; c += Index(64 / sizeof(T))) Eigen::internal::prefetch(row + c);
}

/// Prefetches the cache lines of row[0, n) into L2 (not L1), for rows used a while later:
/// prefetched into L1, the strided query rows of the exact kernel's next block were evicted
/// before their use (measured on Zen 4, causal [B, N, H, D]: 1% faster with this hint, in both
/// layouts).
template <class T>
void prefetch_row_l2(const T* row, Index n) {
  for (Index c = 0; c < n; c += Index(64 / sizeof(T))) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(row + c, 0, 2);  // prefetcht1 on x86
#else
    Eigen::internal::prefetch(row + c);
#endif
  }
}

/// Prefetches the cache lines of row[0, n) into L2 for writing (prefetchw where the target has
/// it): output rows of a strided head, written a chunk later.
template <class T>
void prefetch_row_for_write(T* row, Index n) {
  for (Index c = 0; c < n; c += Index(64 / sizeof(T))) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(row + c, 1, 2);
#else
    Eigen::internal::prefetch(row + c);
#endif
  }
}

/// True when x's rows are not contiguous (e.g. one head of a [B, N, H, D] tensor): the rows the
/// hardware prefetchers follow poorly.
template <class M>
bool rows_strided(const M& x) {
  return x.rows() > 1 && x.outerStride() != x.cols();
}

}  // namespace fastattn::detail
