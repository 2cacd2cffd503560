#pragma once
/// @file softmax.hpp
/// The masked row softmax of the softmax-based references (exact attention, EVA, log-domain
/// linear attention), written once: a row is a list of terms (logit, value row); the terms a query
/// does not see are simply absent, and a query that sees nothing gets 0.
///
/// Every header under tests/reference/ is an independent double-precision reference: plain loops
/// written from docs/spec, never the library's kernels or feature maps (only its public types),
/// and no GoogleTest dependency, so the fuzz harness (tests/fuzz) shares them with the unit tests.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastattn/types.hpp"

namespace fastattn::test::ref {

/// One term of a softmax-weighted average: its logit and the row of the value matrix it weighs.
struct Term {
  double logit;
  Index row;
};

/// [1, Dv]: sum_t exp(l_t - m) values.row(r_t) / sum_t exp(l_t - m), m = max_t l_t. No terms
/// (a query that sees no key) gives 0 and *lse = -inf; otherwise *lse = m + log(sum).
inline Eigen::RowVectorXd softmax_average(const std::vector<Term>& terms,
                                          const RowMatrix<double>& values, double* lse = nullptr) {
  const Index dv = values.cols();
  Eigen::RowVectorXd acc = Eigen::RowVectorXd::Zero(dv);
  if (terms.empty()) {
    if (lse) *lse = -std::numeric_limits<double>::infinity();
    return acc;
  }
  double mx = -std::numeric_limits<double>::infinity();
  for (const Term& t : terms) mx = std::max(mx, t.logit);
  double sum = 0;
  for (const Term& t : terms) {
    const double p = std::exp(t.logit - mx);
    sum += p;
    for (Index c = 0; c < dv; ++c) acc[c] += p * values(t.row, c);
  }
  if (lse) *lse = mx + std::log(sum);
  return acc / sum;
}

}  // namespace fastattn::test::ref
