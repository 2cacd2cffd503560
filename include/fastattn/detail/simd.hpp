#pragma once
/// @file detail/simd.hpp
/// Fused element-wise functors that Eigen has no single expression for, written on Eigen's packet
/// abstraction so they vectorize for whatever ISA the user compiles for (SSE, AVX2, AVX-512, NEON)
/// and fall back to scalar code under EIGEN_DONT_VECTORIZE. Use them with `array.unaryExpr(f)`.

#include <cmath>
#include <limits>

#include <Eigen/Core>

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
