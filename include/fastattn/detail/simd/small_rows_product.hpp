#pragma once
/// @file detail/simd/small_rows_product.hpp
/// A product for a few rows (decoding) that streams the right-hand side once.

#include <algorithm>

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// out [n, m] = x [n, d] * b [d, m] for a few rows (n <= 4), all row-major with the given row
/// strides: one pass over b with the n output rows of a column block held in registers. Why:
/// Eigen's GEMM has fixed packing costs that dominate for one or two rows, and its GEMV would read
/// b once per row; decoding computes a query and a key row from the same b every step.
template <class T>
void small_rows_product(const T* x, Index x_stride, Index n, const T* b, Index d, Index m, T* out,
                        Index out_stride) {
  Index vectorized = 0;
#ifndef EIGEN_DONT_VECTORIZE
  constexpr Index kMaxRows = 4;
  eigen_assert(n <= kMaxRows);
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index lanes =
      Eigen::internal::packet_traits<T>::size;  // (not unpacket_traits: GCC warns)
  if constexpr (lanes > 1) {
    using namespace Eigen::internal;
    constexpr Index kBlock = 4;  // packets per column block (n * kBlock accumulators)
    vectorized = m / lanes * lanes;
    for (Index c0 = 0; c0 < vectorized; c0 += kBlock * lanes) {
      const Index np = std::min(kBlock, (vectorized - c0) / lanes);
      Packet acc[kMaxRows][kBlock];
      for (Index r = 0; r < n; ++r)
        for (Index p = 0; p < np; ++p) acc[r][p] = pset1<Packet>(T(0));
      for (Index j = 0; j < d; ++j) {
        const T* brow = b + j * m + c0;
        for (Index p = 0; p < np; ++p) {
          const Packet bp = ploadu<Packet>(brow + p * lanes);
          for (Index r = 0; r < n; ++r)
            acc[r][p] = pmadd(pset1<Packet>(x[r * x_stride + j]), bp, acc[r][p]);
        }
      }
      for (Index r = 0; r < n; ++r)
        for (Index p = 0; p < np; ++p) pstoreu(out + r * out_stride + c0 + p * lanes, acc[r][p]);
    }
  }
#endif
  for (Index r = 0; r < n; ++r)
    for (Index c = vectorized; c < m; ++c) {
      T sum = 0;
      for (Index j = 0; j < d; ++j) sum += x[r * x_stride + j] * b[j * m + c];
      out[r * out_stride + c] = sum;
    }
}

}  // namespace fastattn::detail
