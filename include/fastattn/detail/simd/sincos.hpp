#pragma once
/// @file detail/simd/sincos.hpp
/// Vectorized joint sine and cosine for float and double (Eigen 3.4 vectorizes only float sin/cos,
/// and separately: the range reduction would be done twice).
///
/// Method: k = round(x * 2/pi) by adding a "magic" 1.5 * 2^(mantissa bits), which leaves k in the
/// low bits of the sum; r = x - k*pi/2 with pi/2 split in parts (Cody-Waite), so r is exact to a
/// few ulps for |x| <= max_reduced; minimax polynomials for sin and cos on [-pi/4, pi/4] (the
/// Cephes coefficients); the quadrant k mod 4 swaps and negates (in float, read from those low bits
/// and applied to the sign bits). Larger |x| (rare: features are projections of normalized or
/// scaled inputs) fall back to std::sin/std::cos per element.
///
/// With fused multiply-adds (EIGEN_VECTORIZE_FMA) the packet path splits pi/2 in two parts, the
/// first pi/2 rounded to T: k * hi is exact inside the FMA and x - k * hi is a multiple of
/// ulp(hi) below 1 in magnitude, so it is exact too, and one more FMA with the remainder gives r.
/// Without them (and in the scalar code) the first part has few enough bits that k * hi is exact
/// as a product, which needs a third part. One operation fewer per packet on the pipes the
/// products use (the trig features run this between the FMAs of their product).

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

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
  static constexpr float fma_pio2_hi = 0x1.921fb6p+0f;  // pi/2 rounded to float (FMA split)
  static constexpr float fma_pio2_lo = -0x1.777a5cp-25f;
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
  static constexpr double fma_pio2_hi = 0x1.921fb54442d18p+0;  // pi/2 rounded to double
  static constexpr double fma_pio2_lo = 0x1.1a62633145c07p-54;
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
  const T cos_r = T(1) + z * (T(-0.5) + z * pc);
  const long quadrant = static_cast<long>(k) & 3;
  const T sv = (quadrant & 1) ? cos_r : sin_r;
  const T cv = (quadrant & 1) ? sin_r : cos_r;
  s = (quadrant & 2) ? -sv : sv;
  c = (quadrant == 1 || quadrant == 2) ? -cv : cv;
}

namespace sincos_detail {

/// The quadrant k mod 4 of the reduction, applied to sin r and cos r: k odd swaps them; sin is
/// negated for k mod 4 in {2, 3}, cos for {1, 2}. `t` is the rounding sum magic + k (k in its low
/// mantissa bits, two's complement), `k` the integer k as T.
/// float: from the bits of t (k mod 4 = t's two lowest bits, signs by exclusive or), on the
/// packet's integer twin. double (Eigen 3.4 has no 64-bit integer packets on x86), and any ISA
/// without the twin: from k in floating point.
template <class Packet, class = void>
struct HasIntegerPacket : std::false_type {};
template <class Packet>
struct HasIntegerPacket<Packet,
                        std::void_t<decltype(sizeof(
                            typename Eigen::internal::unpacket_traits<Packet>::integer_packet))>>
    : std::true_type {};

template <class Packet>
EIGEN_STRONG_INLINE void apply_quadrant(const Packet& t, const Packet& k, const Packet& sin_r,
                                        const Packet& cos_r, Packet& s, Packet& c) {
  using namespace Eigen::internal;
  using T = typename unpacket_traits<Packet>::type;
  if constexpr (std::is_same_v<T, float> && HasIntegerPacket<Packet>::value) {
    using PacketI = typename unpacket_traits<Packet>::integer_packet;
    const PacketI bits = preinterpret<PacketI>(t), one = pset1<PacketI>(1);
    const PacketI sign = pset1<PacketI>(std::int32_t(0x80000000u));
    const Packet odd = preinterpret<Packet>(pcmp_eq(pand(bits, one), one));
    // bit 1 of k (resp. k + 1), moved to the sign bit
    const PacketI sin_sign = pand(plogical_shift_left<30>(bits), sign);
    const PacketI cos_sign = pand(plogical_shift_left<30>(padd(bits, one)), sign);
    s = pxor(pselect(odd, cos_r, sin_r), preinterpret<Packet>(sin_sign));
    c = pxor(pselect(odd, sin_r, cos_r), preinterpret<Packet>(cos_sign));
  } else {
    const Packet one = pset1<Packet>(T(1)), two = pset1<Packet>(T(2));
    const Packet q = psub(k, pmul(pset1<Packet>(T(4)), pfloor(pmul(k, pset1<Packet>(T(0.25))))));
    const Packet odd = pcmp_eq(psub(q, pmul(two, pfloor(pmul(q, pset1<Packet>(T(0.5)))))), one);
    const Packet sv = pselect(odd, cos_r, sin_r), cv = pselect(odd, sin_r, cos_r);
    const Packet sin_neg = pcmp_le(two, q);                                         // q in {2, 3}
    const Packet cos_neg = pand(pcmp_le(one, q), pcmp_lt(q, pset1<Packet>(T(3))));  // q in {1, 2}
    s = pselect(sin_neg, pnegate(sv), sv);
    c = pselect(cos_neg, pnegate(cv), cv);
  }
}

/// cos and sin of the packet x (|x| <= max_reduced in every lane; see sincos_packet).
template <class Packet>
EIGEN_STRONG_INLINE void sincos_reduced(const Packet& xv, Packet& sv, Packet& cv) {
  using namespace Eigen::internal;
  using T = typename unpacket_traits<Packet>::type;
  using K = SincosConstants<T>;
  // magic = 1.5 * 2^mantissa bits: adding it rounds to an integer, left in the low bits.
  constexpr T magic = T(1.5) * T(std::uint64_t(1) << (std::numeric_limits<T>::digits - 1));
  const Packet magic_p = pset1<Packet>(magic);
  const Packet t = pmadd(xv, pset1<Packet>(K::two_over_pi), magic_p);  // magic + k
  const Packet k = psub(t, magic_p);  // k = round(x 2/pi), |k| < 2^13 / 2^20: exact
#ifdef EIGEN_VECTORIZE_FMA
  Packet r = pmadd(k, pset1<Packet>(-K::fma_pio2_hi), xv);
  r = pmadd(k, pset1<Packet>(-K::fma_pio2_lo), r);
#else
  Packet r = pmadd(k, pset1<Packet>(-K::pio2_hi), xv);
  r = pmadd(k, pset1<Packet>(-K::pio2_mid), r);
  r = pmadd(k, pset1<Packet>(-K::pio2_lo), r);
#endif
  const Packet z = pmul(r, r);
  Packet ps = pset1<Packet>(K::sin_coef[0]), pc = pset1<Packet>(K::cos_coef[0]);
  for (std::size_t i = 1; i < std::size(K::sin_coef); ++i)
    ps = pmadd(ps, z, pset1<Packet>(K::sin_coef[i]));
  for (std::size_t i = 1; i < std::size(K::cos_coef); ++i)
    pc = pmadd(pc, z, pset1<Packet>(K::cos_coef[i]));
  const Packet sin_r = pmadd(pmul(r, z), ps, r);
  // cos r = 1 + z (-1/2 + z pc), all in Horner form: one operation fewer than 1 - z/2 + z^2 pc.
  pc = pmadd(pc, z, pset1<Packet>(T(-0.5)));
  const Packet cos_r = pmadd(pc, z, pset1<Packet>(T(1)));
  apply_quadrant(t, k, sin_r, cos_r, sv, cv);
}

}  // namespace sincos_detail

/// cos and sin of scale * x[j] for the one packet of j in [0, L) (L = Eigen's packet size for T;
/// 1 under EIGEN_DONT_VECTORIZE), stored unaligned to cos_out and sin_out; cos_out may alias x.
/// A packet with a lane beyond the reduction's range takes the scalar path (std::sin, std::cos).
/// kKnownInRange: the caller has proved |scale * x[j]| <= max_reduced for every lane (or NaN),
/// so the packet skips that test (a comparison, a mask test and a branch per packet: 6% of the
/// fused trig feature kernel's time, measured).
template <bool kKnownInRange = false, class T>
EIGEN_STRONG_INLINE void sincos_packet(const T* x, T* cos_out, T* sin_out, T scale) {
  constexpr Index lanes = Eigen::internal::packet_traits<T>::size;
#ifndef EIGEN_DONT_VECTORIZE
  if constexpr (lanes > 1) {
    using namespace Eigen::internal;
    using Packet = typename packet_traits<T>::type;
    const Packet xv = pmul(ploadu<Packet>(x), pset1<Packet>(scale));
    // (a NaN lane compares false: it stays on the packet path, which propagates it)
    if (kKnownInRange ||
        !predux_any(pcmp_lt(pset1<Packet>(SincosConstants<T>::max_reduced), pabs(xv)))) {
      Packet sv, cv;
      sincos_detail::sincos_reduced(xv, sv, cv);
      pstoreu(sin_out, sv);
      pstoreu(cos_out, cv);
      return;
    }
  }
#endif
  for (Index t = 0; t < lanes; ++t) sincos_scalar(scale * x[t], sin_out[t], cos_out[t]);
}

/// For j in [0, n): cos_out[j] = cos(scale x[j]), sin_out[j] = sin(scale x[j]). cos_out may alias
/// x (in place). `scale` folds a row factor into this pass (the trig features' 1/|x|).
template <class T>
void sincos(const T* x, T* cos_out, T* sin_out, Index n, T scale = T(1)) {
  constexpr Index lanes = Eigen::internal::packet_traits<T>::size;
  Index j = 0;
  for (; j + lanes <= n; j += lanes) sincos_packet(x + j, cos_out + j, sin_out + j, scale);
  for (; j < n; ++j) sincos_scalar(scale * x[j], sin_out[j], cos_out[j]);
}

}  // namespace fastattn::detail
