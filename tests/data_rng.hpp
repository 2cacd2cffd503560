#pragma once
// The tests' portable seeded generator (no GoogleTest dependency, so the fuzz harness shares it).

#include <cmath>
#include <cstdint>

#include "fastattn/types.hpp"

namespace fastattn::test {

/// SplitMix64 stream with Box-Muller normals: the same numbers on every platform.
class DataRng {
 public:
  explicit DataRng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  /// Uniform in [0, n); 0 when n <= 0.
  Index index(Index n) { return n > 0 ? static_cast<Index>(next() % std::uint64_t(n)) : 0; }

 private:
  std::uint64_t state_;
};

}  // namespace fastattn::test
