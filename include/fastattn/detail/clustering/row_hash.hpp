#pragma once
/// @file detail/clustering/row_hash.hpp
/// A 64-bit hash of a row's bit pattern, so that a random choice among rows can depend on the
/// rows' contents instead of their positions (permutation-equivariant sampling).

#include <cstdint>
#include <cstring>

#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// x[0, d) -> a well-mixed 64-bit hash of its bits (equal rows hash equally; -0 and +0 differ).
template <class T>
std::uint64_t row_hash(const T* x, Index d) {
  std::uint64_t h = 0x6A09E667F3BCC909ull ^ static_cast<std::uint64_t>(d);
  for (Index j = 0; j < d; ++j) {
    std::uint64_t bits = 0;
    std::memcpy(&bits, x + j, sizeof(T));
    h ^= bits;
    h = splitmix64(h);  // advances h and mixes it: each word changes every bit of the result
  }
  return h;
}

/// A uniform number in (0, 1) determined by (hash, stream): the "random" draw of one row in one
/// round of a sampling procedure.
inline double hashed_uniform(std::uint64_t hash, std::uint64_t stream) {
  std::uint64_t state = hash ^ stream;
  const std::uint64_t bits = splitmix64(state) >> 11;  // 53 bits
  return (static_cast<double>(bits) + 0.5) * 0x1.0p-53;
}

}  // namespace fastattn::detail
