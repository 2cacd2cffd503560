#pragma once
/// @file detail/clustering/row_hash.hpp
/// A 64-bit hash of a row's bit pattern, so that a random choice among rows can depend on the
/// rows' contents instead of their positions (permutation-equivariant sampling).

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// x[0, d) -> a well-mixed 64-bit hash of its bits (equal rows hash equally; -0 and +0 differ).
/// Each element contributes (bits + j K1) K2 independently (no dependency chain, so it vectorizes),
/// and one SplitMix64 step mixes the sum. Rows differing in one element always hash differently
/// before the final mix (K2 is odd).
template <class T>
std::uint64_t row_hash(const T* x, Index d) {
  using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  constexpr std::uint64_t k1 = 0x9E3779B97F4A7C15ull, k2 = 0xBF58476D1CE4E5B9ull;
  std::uint64_t sum = static_cast<std::uint64_t>(d);
  for (Index j = 0; j < d; ++j) {
    Bits bits;
    std::memcpy(&bits, x + j, sizeof(T));
    sum += (static_cast<std::uint64_t>(bits) + static_cast<std::uint64_t>(j) * k1) * k2;
  }
  return splitmix64(sum);
}

/// A uniform number in (0, 1) determined by (hash, stream): the "random" draw of one row in one
/// round of a sampling procedure.
inline double hashed_uniform(std::uint64_t hash, std::uint64_t stream) {
  std::uint64_t state = hash ^ stream;
  const std::uint64_t bits = splitmix64(state) >> 11;  // 53 bits
  return (static_cast<double>(bits) + 0.5) * 0x1.0p-53;
}

}  // namespace fastattn::detail
