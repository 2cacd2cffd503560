#pragma once
// The synthetic input regimes of the accuracy sweep (small-norm, large-norm, smooth, clustered),
// in one place: bench/accuracy.cpp and bench/clustered_eva_study.cpp draw the same inputs from
// the same seeds.

#include <cmath>
#include <cstdint>
#include <string>

#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn::bench {

/// q, k, v of one regime, in double.
struct RegimeInputs {
  RowMatrix<double> q, k, v;
};

/// q, k, v [n, d] of `regime` from `seed` (bench/accuracy.cpp's synthetic_regimes() describes them).
inline RegimeInputs draw_regime(const std::string& regime, Index n, Index d, std::uint64_t seed) {
  using MatD = RowMatrix<double>;
  Rng rng(seed);
  auto gaussian = [&](Index rows, Index cols, double sd) {
    MatD m(rows, cols);
    for (Index i = 0; i < rows; ++i)
      for (Index j = 0; j < cols; ++j) m(i, j) = sd * rng.normal();
    return m;
  };
  RegimeInputs x;
  if (regime == "smooth") {
    const double rho = 0.98, innovation = std::sqrt(1 - rho * rho);
    for (MatD* m : {&x.q, &x.k, &x.v}) {
      *m = gaussian(n, d, 1.0);
      for (Index t = 1; t < n; ++t) m->row(t) = rho * m->row(t - 1) + innovation * m->row(t);
    }
    return x;
  }
  if (regime == "clustered") {
    const MatD centres = gaussian(8, d, 1.0);
    x.q = gaussian(n, d, 0.3);
    x.k = gaussian(n, d, 0.3);
    for (Index t = 0; t < n; ++t) {
      x.q.row(t) += centres.row(Index(rng.next_u64() % 8));
      x.k.row(t) += centres.row(Index(rng.next_u64() % 8));
    }
    x.v = gaussian(n, d, 1.0);
    return x;
  }
  const double sd = regime == "small-norm" ? 0.3 : 1.0;
  x.q = gaussian(n, d, sd);
  x.k = gaussian(n, d, sd);
  x.v = gaussian(n, d, 1.0);
  return x;
}

}  // namespace fastattn::bench
