#pragma once
/// @file detail/simd/sincos.hpp
/// Vectorized joint sine and cosine for float and double (Eigen 3.4 vectorizes only float sin/cos,
/// and separately: the range reduction would be done twice).
///
/// Method: k = round(x * 2/pi); r = x - k*pi/2 with pi/2 split in three parts (Cody-Waite), so r is
/// exact to a few ulps for |x| <= kMaxReduced; minimax polynomials for sin and cos on [-pi/4, pi/4]
/// (the Cephes coefficients); the quadrant k mod 4 swaps and negates. Larger |x| (rare: features
/// are projections of normalized or scaled inputs) fall back to std::sin/std::cos per element.

#include <cmath>

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

template <class T>
struct SincosConstants;

template <>
struct SincosConstants<float> {
  static constexpr float two_over_pi = 0.636619772367581343f;
  static constexpr float pio2_hi = 1.5703125f;  // pi/2 = hi + mid + lo
  static constexpr float pio2_mid = 4.837512969970703125e-4f;
  static constexpr float pio2_lo = 7.54978995489188216e-8f;
  static constexpr float max_reduced = 8192.0f;  // k < 2^13, so k * pio2_hi (8 bits) is exact
  // sin r = r + r^3 (s1 + r^2 (s2 + r^2 s3)); cos r = 1 - r^2/2 + r^4 (c1 + r^2 (c2 + r^2 c3))
  static constexpr float sin_coef[] = {-1.9515295891e-4f, 8.3321608736e-3f, -1.6666654611e-1f};
  static constexpr float cos_coef[] = {2.443315711809948e-5f, -1.388731625493765e-3f,
                                       4.166664568298827e-2f};
};

template <>
struct SincosConstants<double> {
  static constexpr double two_over_pi = 0.63661977236758134307553505349006;
  static constexpr double pio2_hi = 1.57079632673412561417e0;     // pi/2 = hi + mid + lo (fdlibm)
  static constexpr double pio2_mid = 6.07710050630396597660e-11;  // 33 bits: k * mid exact too
  static constexpr double pio2_lo = 2.02226624879595063154e-21;
  static constexpr double max_reduced = 1.0e6;  // k < 2^20, so k * pio2_hi (33 bits) is exact
  static constexpr double sin_coef[] = {1.58962301576546568060e-10, -2.50507477628578072866e-8,
                                        2.75573136213857245213e-6,  -1.98412698295895385996e-4,
                                        8.33333333332211858878e-3,  -1.66666666666666307295e-1};
  static constexpr double cos_coef[] = {-1.13585365213876817300e-11, 2.08757008419747316778e-9,
                                        -2.75573141792967388112e-7,  2.48015872888517045348e-5,
                                        -1.38888888888730564116e-3,  4.16666666666665929218e-2};
};

/// Scalar version of the same algorithm (used for tails and without vectorization).
template <class T>
inline void sincos_scalar(T x, T& s, T& c) {
  using K = SincosConstants<T>;
  if (!(std::abs(x) <= K::max_reduced)) {  // also NaN
    s = std::sin(x);
    c = std::cos(x);
    return;
  }
  const T k = std::nearbyint(x * K::two_over_pi);
  const T r = ((x - k * K::pio2_hi) - k * K::pio2_mid) - k * K::pio2_lo;
  const T z = r * r;
  T ps = 0, pc = 0;
  for (T coef : K::sin_coef) ps = ps * z + coef;
  for (T coef : K::cos_coef) pc = pc * z + coef;
  const T sin_r = r + r * z * ps;
  const T cos_r = T(1) - T(0.5) * z + z * z * pc;
  const long quadrant = static_cast<long>(k) & 3;
  const T sv = (quadrant & 1) ? cos_r : sin_r;
  const T cv = (quadrant & 1) ? sin_r : cos_r;
  s = (quadrant & 2) ? -sv : sv;
  c = (quadrant == 1 || quadrant == 2) ? -cv : cv;
}

/// For j in [0, n): cos_out[j] = cos(x[j]), sin_out[j] = sin(x[j]). cos_out may alias x (in place).
template <class T>
void sincos(const T* x, T* cos_out, T* sin_out, Index n) {
  Index j = 0;
#ifndef EIGEN_DONT_VECTORIZE
  using K = SincosConstants<T>;
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index lanes =
      Eigen::internal::packet_traits<T>::size;  // (not unpacket_traits: GCC warns)
  if constexpr (lanes > 1) {
    using namespace Eigen::internal;
    const Packet two_over_pi = pset1<Packet>(K::two_over_pi), pio2_hi = pset1<Packet>(K::pio2_hi),
                 pio2_mid = pset1<Packet>(K::pio2_mid), pio2_lo = pset1<Packet>(K::pio2_lo),
                 limit = pset1<Packet>(K::max_reduced), one = pset1<Packet>(T(1)),
                 half = pset1<Packet>(T(0.5)), two = pset1<Packet>(T(2)),
                 four = pset1<Packet>(T(4)), quarter = pset1<Packet>(T(0.25));
    for (; j + lanes <= n; j += lanes) {
      const Packet xv = ploadu<Packet>(x + j);
      if (predux_any(pcmp_lt(limit, pabs(xv)))) {  // rare: some lane needs the slow path (NaN: not)
        for (Index t = 0; t < lanes; ++t) sincos_scalar(x[j + t], sin_out[j + t], cos_out[j + t]);
        continue;
      }
      const Packet k = print(pmul(xv, two_over_pi));  // nearest integer; |k| < 2^13 / 2^20
      Packet r = psub(xv, pmul(k, pio2_hi));
      r = psub(r, pmul(k, pio2_mid));
      r = psub(r, pmul(k, pio2_lo));
      const Packet z = pmul(r, r);
      Packet ps = pset1<Packet>(K::sin_coef[0]), pc = pset1<Packet>(K::cos_coef[0]);
      for (std::size_t t = 1; t < std::size(K::sin_coef); ++t)
        ps = pmadd(ps, z, pset1<Packet>(K::sin_coef[t]));
      for (std::size_t t = 1; t < std::size(K::cos_coef); ++t)
        pc = pmadd(pc, z, pset1<Packet>(K::cos_coef[t]));
      const Packet sin_r = pmadd(pmul(r, z), ps, r);
      const Packet cos_r = pmadd(pmul(z, z), pc, psub(one, pmul(half, z)));
      // quadrant q = k mod 4 in [0, 4), computed in floating point (exact for these k).
      const Packet q = psub(k, pmul(four, pfloor(pmul(k, quarter))));
      const Packet odd = pcmp_eq(psub(q, pmul(two, pfloor(pmul(q, half)))), one);
      const Packet sv = pselect(odd, cos_r, sin_r), cv = pselect(odd, sin_r, cos_r);
      const Packet sin_neg = pcmp_le(two, q);                                         // q in {2, 3}
      const Packet cos_neg = pand(pcmp_le(one, q), pcmp_lt(q, pset1<Packet>(T(3))));  // q in {1, 2}
      pstoreu(sin_out + j, pselect(sin_neg, pnegate(sv), sv));
      pstoreu(cos_out + j, pselect(cos_neg, pnegate(cv), cv));
    }
  }
#endif
  for (; j < n; ++j) sincos_scalar(x[j], sin_out[j], cos_out[j]);
}

}  // namespace fastattn::detail
