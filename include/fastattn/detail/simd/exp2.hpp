#pragma once
/// @file detail/simd/exp2.hpp
/// 2^x on Eigen packets for the softmax weights of the attention kernels: x <= 127 (float) or
/// 1023 (double), and exactly 0 for x = -inf (a masked key must get weight exactly 0).
///
/// Why not Eigen's pexp: it computes e^x with a Cody-Waite range reduction and clamps its
/// argument, so exp(-inf) is a denormal, not 0; and it is about twice the work of the 2^x below.
/// The kernels compute x = (S - m) log2(e) (S in natural units), so the cost of a weight is a
/// subtraction and a multiplication plus this function.
///
/// Method: clamp x to [lo, ...] (lo = -127 for float, -1023 for double), split x = n + f with n
/// the nearest integer and |f| <= 1/2 by the "magic number" rounding (adding 1.5 * 2^23, resp.
/// 2^52, rounds to an integer that lands in the low mantissa bits), evaluate a minimax polynomial
/// p(f) ~ 2^f, and multiply by 2^n built by shifting n + bias into the exponent field. At the
/// clamp, n + bias = 0 gives 2^n = +0 exactly, so every x <= lo (in particular -inf) returns 0;
/// the true value there is below the smallest normal number. With AVX-512 (DQ), f comes from
/// vreduce and 2^n p from vscalef, which need no clamp: x = -inf gives 0, and values below the
/// smallest normal number underflow gradually (denormals, then 0) instead of being flushed.
/// Accuracy: the polynomial's relative error is 7.5e-8 (float, degree 5) and 3e-18 (double,
/// degree 11); with the rounding of the evaluation, about 2 ulp in float and 2 ulp in double.
/// Coefficients: scripts/exp2_minimax.py (Remez exchange, relative error, on [-1/2, 1/2]).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// log2(e) and ln(2): the kernels compute e^x as 2^(x log2 e).
template <class T>
constexpr T kLog2e = T(1.442695040888963407359924681001892137);
template <class T>
constexpr T kLn2 = T(0.693147180559945309417232121458176568);

/// Constants of the 2^x evaluation for T.
template <class T>
struct Exp2Constants;

template <>
struct Exp2Constants<float> {
  static constexpr float kLowest = -127.0f;              // 2^kLowest is built as +0
  static constexpr float kMagic = 12582912.0f + 127.0f;  // 1.5 * 2^23 + exponent bias
  static constexpr int kMantissaBits = 23;
  static constexpr int kDegree = 5;
  static constexpr float kCoefficients[kDegree + 1] = {
      1.00000007165464163823e+0f, 6.93146967065264927607e-1f, 2.40221197239691780473e-1f,
      5.55071327287539117803e-2f, 9.67554133102139114515e-3f, 1.32764721678199433294e-3f};
};

template <>
struct Exp2Constants<double> {
  static constexpr double kLowest = -1023.0;
  static constexpr double kMagic = 6755399441055744.0 + 1023.0;  // 1.5 * 2^52 + exponent bias
  static constexpr int kMantissaBits = 52;
  static constexpr int kDegree = 11;
  static constexpr double kCoefficients[kDegree + 1] = {
      9.99999999999999997100e-1, 6.93147180559945330461e-1, 2.40226506959101562046e-1,
      5.55041086648199214830e-2, 9.61812910758833508332e-3, 1.33335581467899503225e-3,
      1.54035304625146130256e-4, 1.52527334899608046001e-5, 1.32154330895946290369e-6,
      1.01781980333285276616e-7, 7.07410562624565937085e-9, 4.43528094461033616106e-10};
};

namespace exp2_detail {

// The bits of t shifted left by the mantissa width, reinterpreted: for t = kMagic + n (an exact
// integer in the low mantissa bits), the sign, exponent and leading mantissa bits of t shift out
// and n + bias lands in the exponent field, giving 2^n. Overloads per packet type; the vector
// double overloads use intrinsics because Eigen 3.4 has no 64-bit integer packets on x86.

inline float shift_into_exponent(float t) {
  std::uint32_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits <<= Exp2Constants<float>::kMantissaBits;
  std::memcpy(&t, &bits, sizeof bits);
  return t;
}

inline double shift_into_exponent(double t) {
  std::uint64_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits <<= Exp2Constants<double>::kMantissaBits;
  std::memcpy(&t, &bits, sizeof bits);
  return t;
}

#if defined(EIGEN_VECTORIZE_AVX512)
inline Eigen::internal::Packet16f shift_into_exponent(const Eigen::internal::Packet16f& t) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(t), 23));
}
inline Eigen::internal::Packet8d shift_into_exponent(const Eigen::internal::Packet8d& t) {
  return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_castpd_si512(t), 52));
}
#endif
#if defined(EIGEN_VECTORIZE_AVX)
inline Eigen::internal::Packet8f shift_into_exponent(const Eigen::internal::Packet8f& t) {
#if defined(EIGEN_VECTORIZE_AVX2)
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
#else  // AVX without AVX2: no 256-bit integer shifts, shift the two halves
  const __m256i bits = _mm256_castps_si256(t);
  const __m128i lo = _mm_slli_epi32(_mm256_castsi256_si128(bits), 23);
  const __m128i hi = _mm_slli_epi32(_mm256_extractf128_si256(bits, 1), 23);
  return _mm256_castsi256_ps(_mm256_insertf128_si256(_mm256_castsi128_si256(lo), hi, 1));
#endif
}
inline Eigen::internal::Packet4d shift_into_exponent(const Eigen::internal::Packet4d& t) {
#if defined(EIGEN_VECTORIZE_AVX2)
  return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(t), 52));
#else
  const __m256i bits = _mm256_castpd_si256(t);
  const __m128i lo = _mm_slli_epi64(_mm256_castsi256_si128(bits), 52);
  const __m128i hi = _mm_slli_epi64(_mm256_extractf128_si256(bits, 1), 52);
  return _mm256_castsi256_pd(_mm256_insertf128_si256(_mm256_castsi128_si256(lo), hi, 1));
#endif
}
#endif
#if defined(EIGEN_VECTORIZE_SSE2)
inline Eigen::internal::Packet4f shift_into_exponent(const Eigen::internal::Packet4f& t) {
  return _mm_castsi128_ps(_mm_slli_epi32(_mm_castps_si128(t), 23));
}
inline Eigen::internal::Packet2d shift_into_exponent(const Eigen::internal::Packet2d& t) {
  return _mm_castsi128_pd(_mm_slli_epi64(_mm_castpd_si128(t), 52));
}
#endif
#if defined(EIGEN_VECTORIZE_NEON)
inline Eigen::internal::Packet4f shift_into_exponent(const Eigen::internal::Packet4f& t) {
  return vreinterpretq_f32_u32(vshlq_n_u32(vreinterpretq_u32_f32(t), 23));
}
#if EIGEN_ARCH_ARM64
inline Eigen::internal::Packet2d shift_into_exponent(const Eigen::internal::Packet2d& t) {
  return vreinterpretq_f64_u64(vshlq_n_u64(vreinterpretq_u64_f64(t), 52));
}
#endif
#endif

// Any other vector ISA Eigen supports (AltiVec, ZVector, MSA, ...): lane by lane. Correct, not
// fast; add an overload above for an ISA that matters.
template <class Packet>
Packet shift_into_exponent(const Packet& t) {
  using T = typename Eigen::internal::unpacket_traits<Packet>::type;
  constexpr int lanes = Eigen::internal::unpacket_traits<Packet>::size;
  T buffer[lanes];
  Eigen::internal::pstoreu(buffer, t);
  for (T& x : buffer) x = shift_into_exponent(x);
  return Eigen::internal::ploadu<Packet>(buffer);
}

/// p(f) ~ 2^f for |f| <= 1/2: the minimax polynomial of Exp2Constants<T>, by Horner's rule.
template <class T, class Packet>
EIGEN_STRONG_INLINE Packet polynomial(const Packet& f) {
  using namespace Eigen::internal;
  using C = Exp2Constants<T>;
  Packet p = pset1<Packet>(C::kCoefficients[C::kDegree]);
  for (int i = C::kDegree - 1; i >= 0; --i) p = pmadd(p, f, pset1<Packet>(C::kCoefficients[i]));
  return p;
}

}  // namespace exp2_detail

/// True when pexp2<T> runs on AVX-512 DQ's vreduce and vscalef (a full packet of float or
/// double): results below the smallest normal number then underflow gradually (denormals, then
/// 0); otherwise every x <= Exp2Constants<T>::kLowest gives 0. (Decided on T and the lane count:
/// std::is_same on the __m512 types warns about their ignored attributes.)
template <class T>
constexpr bool kExp2UnderflowsGradually =
#if defined(EIGEN_VECTORIZE_AVX512DQ)
    (std::is_same_v<T, float> && Eigen::internal::packet_traits<T>::size == 16) ||
    (std::is_same_v<T, double> && Eigen::internal::packet_traits<T>::size == 8);
#else
    false;
#endif

/// Element-wise 2^x for x <= 127 (float) or 1023 (double); exactly 0 for x = -inf, and 0 or a
/// denormal for x <= Exp2Constants<T>::kLowest (see kExp2UnderflowsGradually). One packet of T.
template <class T>
EIGEN_STRONG_INLINE typename Eigen::internal::packet_traits<T>::type pexp2(
    const typename Eigen::internal::packet_traits<T>::type& x) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  using C = Exp2Constants<T>;
#if defined(EIGEN_VECTORIZE_AVX512DQ)
  // AVX-512: f = x - round(x) by vreduce (0 for x = +-inf) and 2^n p by vscalef, which also
  // handles the range: 2^-inf = 0, and results below the smallest normal underflow gradually to
  // 0. Three instructions instead of six (clamp, rounding, exponent bits and product), measured
  // 2-3% faster on the exact kernel's score pass.
  if constexpr (kExp2UnderflowsGradually<T>) {
    if constexpr (std::is_same_v<T, float>) {
      const Packet f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT);
      return _mm512_scalef_ps(exp2_detail::polynomial<T>(f), psub(x, f));  // x - f = round(x)
    } else {
      const Packet f = _mm512_reduce_pd(x, _MM_FROUND_TO_NEAREST_INT);
      return _mm512_scalef_pd(exp2_detail::polynomial<T>(f), psub(x, f));
    }
  }
#endif
  const Packet clamped = pmax(x, pset1<Packet>(C::kLowest));
  const Packet magic = pset1<Packet>(C::kMagic);
  const Packet t = padd(clamped, magic);           // rounds: t = magic + n exactly
  const Packet f = psub(clamped, psub(t, magic));  // |f| <= 1/2
  return pmul(exp2_detail::polynomial<T>(f), exp2_detail::shift_into_exponent(t));
}

/// In place over x[0, n): x_j <- e^(x_j - shift) = 2^((x_j - shift) log2 e), exactly 0 for
/// x_j = -inf; shift finite and >= every x_j. The random-feature exponentials: pexp2 is about
/// half the work of Eigen's pexp, and the features are estimates whose own noise is far above
/// the ~1e-6 relative error of the rounded argument. While each packet is in registers:
/// kSum adds the new values to sums[0, n); kDot returns their dot product with w[0, n) (else 0).
template <class T, bool kSum = false, bool kDot = false>
T exp_shifted_fast_inplace(T* x, Index n, T shift, T* sums = nullptr, const T* w = nullptr) {
  Index j = 0;
  T dot = 0;
#ifndef EIGEN_DONT_VECTORIZE
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index lanes = packet_traits<T>::size;
  const Packet s = pset1<Packet>(shift), log2e = pset1<Packet>(kLog2e<T>);
  Packet dot_acc = pset1<Packet>(T(0));
  for (; j + lanes <= n; j += lanes) {
    const Packet e = pexp2<T>(pmul(psub(ploadu<Packet>(x + j), s), log2e));
    pstoreu(x + j, e);
    if constexpr (kSum) pstoreu(sums + j, padd(ploadu<Packet>(sums + j), e));
    if constexpr (kDot) dot_acc = pmadd(e, ploadu<Packet>(w + j), dot_acc);
  }
  if constexpr (kDot) dot = predux(dot_acc);
#endif
  for (; j < n; ++j) {
    x[j] = std::exp(x[j] - shift);  // exp(-inf) = 0 exactly
    if constexpr (kSum) sums[j] += x[j];
    if constexpr (kDot) dot += x[j] * w[j];
  }
  return dot;
}

}  // namespace fastattn::detail
