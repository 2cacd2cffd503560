#pragma once
/// @file detail/simd/packet.hpp
/// Packet-size helpers shared by the hand-vectorized loops (Eigen's packet abstraction: SSE,
/// AVX2, AVX-512, NEON; one lane under EIGEN_DONT_VECTORIZE).

#include <cstdint>

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The number of columns rounded up to whole packets of T (for row strides of small states).
template <class T>
constexpr Index packet_padded(Index cols) {
#ifndef EIGEN_DONT_VECTORIZE
  constexpr Index lanes = Eigen::internal::packet_traits<T>::size;
#else
  constexpr Index lanes = 1;
#endif
  return (cols + lanes - 1) / lanes * lanes;
}

/// True when every row of the row-major m starts on a packet boundary (its data aligned to a
/// packet and its row stride whole packets): the products read such rows at full speed.
template <class M>
bool rows_packet_aligned(const M& m) {
  using T = typename M::Scalar;
  constexpr Index padded_one = packet_padded<T>(1);  // the packet's lanes
  return reinterpret_cast<std::uintptr_t>(m.data()) % (padded_one * sizeof(T)) == 0 &&
         m.outerStride() % padded_one == 0;
}

}  // namespace fastattn::detail
