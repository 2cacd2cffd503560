#pragma once
/// @file detail/simd/bf16.hpp
/// bfloat16 elements for the kernels (docs/bfloat16.md): the compile-time switch between the
/// vdpbf16ps path and the widening path, and exact scalar conversions.
///
/// FASTATTN_BF16_DOT is 1 when the user compiles with AVX512_BF16 (e.g. -march=native on Zen 4/5,
/// Cooper Lake, Sapphire Rapids, or -mavx512bf16) and Eigen vectorizes with AVX-512: the exact
/// kernels then keep keys and values as bfloat16 pairs and multiply them with _mm512_dpbf16_ps
/// (two bfloat16 products per float lane, accumulated in float). Otherwise bfloat16 inputs are
/// widened to float where they are packed and the float kernels run (no runtime dispatch, as for
/// every other ISA choice of the library).

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <Eigen/Core>

#if defined(__AVX512BF16__) && defined(EIGEN_VECTORIZE_AVX512) && !defined(EIGEN_DONT_VECTORIZE)
#define FASTATTN_BF16_DOT 1
#include <immintrin.h>
#else
#define FASTATTN_BF16_DOT 0
#endif

namespace fastattn::detail {

/// The 16 bits of a bfloat16.
inline std::uint16_t bf16_bits(Eigen::bfloat16 x) {
  return Eigen::numext::bit_cast<std::uint16_t>(x);
}

/// A bfloat16 from its 16 bits.
inline Eigen::bfloat16 bf16_from_bits(std::uint16_t bits) {
  return Eigen::numext::bit_cast<Eigen::bfloat16>(bits);
}

/// bfloat16 -> float, exact (a bfloat16 is the top half of a float). Written on the bits so that
/// it compiles to a shift in the packing loops.
inline float bf16_to_float(Eigen::bfloat16 x) {
  const std::uint32_t bits = std::uint32_t(bf16_bits(x)) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

/// x as T: exact for bfloat16 (through float), a cast otherwise.
template <class T, class In>
T widen(In x) {
  if constexpr (std::is_same_v<In, Eigen::bfloat16>)
    return static_cast<T>(bf16_to_float(x));
  else
    return static_cast<T>(x);
}

/// x rounded to bfloat16 (to nearest, ties to even); a bfloat16 is returned as is.
template <class In>
Eigen::bfloat16 to_bf16(In x) {
  if constexpr (std::is_same_v<In, Eigen::bfloat16>)
    return x;
  else
    return Eigen::bfloat16(static_cast<float>(x));
}

}  // namespace fastattn::detail
