#pragma once
/// @file detail/simd/transpose.hpp
/// A row-major matrix transposed into another, by square blocks of one packet per row (Eigen's
/// ptranspose: AVX-512, AVX, SSE, NEON and the other ISAs Eigen vectorizes), the edges element
/// by element. Why: the causal linear core needs the key features of a chunk as columns (the
/// intra-chunk scores phi(Q_c) phi(K_c)^T run on gemm_rows). Measured on a 32 x 256 float chunk
/// (AVX-512): element by element 1.5 us, by blocks 0.5 us, the scores product itself 2.3 us.

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// dst [cols, rows] = src [rows, cols]^T; src and dst row-major with leading dimensions lds and
/// ldd, any alignment, not overlapping.
template <class T>
void transpose_into(const T* src, Index lds, Index rows, Index cols, T* dst, Index ldd) {
  Index vec_rows = 0, vec_cols = 0;  // the part done by whole blocks
#ifndef EIGEN_DONT_VECTORIZE
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index lanes = packet_traits<T>::size;
  if constexpr (lanes > 1) {
    vec_rows = rows / lanes * lanes;
    vec_cols = cols / lanes * lanes;
    for (Index i0 = 0; i0 < vec_rows; i0 += lanes)
      for (Index j0 = 0; j0 < vec_cols; j0 += lanes) {
// PacketBlock of a vector type: GCC warns that the type's alignment attribute is ignored as a
// template argument, which is harmless here (a local array of packets) and is Eigen's own usage.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif
        PacketBlock<Packet, lanes> block;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
        for (Index r = 0; r < lanes; ++r)
          block.packet[r] = ploadu<Packet>(src + (i0 + r) * lds + j0);
        ptranspose(block);
        for (Index r = 0; r < lanes; ++r) pstoreu(dst + (j0 + r) * ldd + i0, block.packet[r]);
      }
  }
#endif
  for (Index i = 0; i < rows; ++i)  // the edges: rows past vec_rows, and columns past vec_cols
    for (Index j = i < vec_rows ? vec_cols : 0; j < cols; ++j) dst[j * ldd + i] = src[i * lds + j];
}

}  // namespace fastattn::detail
