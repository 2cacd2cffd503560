#pragma once
/// @file detail/simd/exp.hpp
/// The shifted exponential of every softmax: exp(x - shift) with exp(-inf) exactly 0, as a functor
/// on Eigen's packet abstraction (SSE, AVX2, AVX-512, NEON; scalar under EIGEN_DONT_VECTORIZE) and
/// as a fused in-place pass that also returns the sum.

#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// x -> exp(x - shift), and exactly 0 for x = -inf.
/// Why not `(x - shift).exp()`: Eigen's vectorized exp clamps its argument (to about -88.4 for
/// float, -709 for double), so exp(-inf) comes out as a denormal, not 0, and a masked key would
/// keep a tiny weight (and let an Inf in its value through).
template <class T>
struct ShiftedExp {
  T shift;
  T operator()(const T& x) const {
    return x == -std::numeric_limits<T>::infinity() ? T(0) : std::exp(x - shift);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    using namespace Eigen::internal;
    const Packet visible = pcmp_lt(pset1<Packet>(-std::numeric_limits<T>::infinity()), x);
    return pand(visible, pexp(psub(x, pset1<Packet>(shift))));
  }
};

/// In place over x[0, n): x_j <- exp(x_j - shift) (exactly 0 where x_j = -inf); returns the sum of
/// the new values. One pass instead of an exp pass plus a sum pass: the softmax's hot loop.
template <class T>
T exp_shifted_inplace_sum(T* x, Index n, T shift) {
  const ShiftedExp<T> f{shift};
  Index j = 0;
  T total = 0;
#ifndef EIGEN_DONT_VECTORIZE
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  // packet_traits<T>::size, not unpacket_traits<Packet>: instantiating a template on a vector type
  // makes GCC warn (-Wignored-attributes) in users' builds.
  constexpr Index lanes = Eigen::internal::packet_traits<T>::size;
  if constexpr (lanes > 1 && Eigen::internal::packet_traits<T>::HasExp) {
    using namespace Eigen::internal;
    Packet sum0 = pset1<Packet>(T(0)), sum1 = sum0;  // two accumulators hide the add latency
    for (; j + 2 * lanes <= n; j += 2 * lanes) {
      const Packet p0 = f.packetOp(ploadu<Packet>(x + j));
      const Packet p1 = f.packetOp(ploadu<Packet>(x + j + lanes));
      pstoreu(x + j, p0);
      pstoreu(x + j + lanes, p1);
      sum0 = padd(sum0, p0);
      sum1 = padd(sum1, p1);
    }
    if (j + lanes <= n) {  // one more packet, so the scalar tail is under one packet
      const Packet p0 = f.packetOp(ploadu<Packet>(x + j));
      pstoreu(x + j, p0);
      sum0 = padd(sum0, p0);
      j += lanes;
    }
    total = predux(padd(sum0, sum1));
  }
#endif
  for (; j < n; ++j) {
    x[j] = f(x[j]);
    total += x[j];
  }
  return total;
}

}  // namespace fastattn::detail

namespace Eigen::internal {
template <class T>
struct functor_traits<fastattn::detail::ShiftedExp<T>> {
  enum {
    Cost = functor_traits<scalar_exp_op<T>>::Cost + 3 * NumTraits<T>::AddCost,
    PacketAccess = packet_traits<T>::HasExp && packet_traits<T>::HasCmp
  };
};
}  // namespace Eigen::internal
