#pragma once
/// @file detail/simd/packet.hpp
/// Packet-size helpers shared by the hand-vectorized loops (Eigen's packet abstraction: SSE,
/// AVX2, AVX-512, NEON; one lane under EIGEN_DONT_VECTORIZE).

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

}  // namespace fastattn::detail
