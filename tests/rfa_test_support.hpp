#pragma once
// What the RFA test files (test_rfa.cpp, test_rfa_gated.cpp, test_rfa_statistics.cpp) share: the
// typed fixture, the tolerances against the double reference, and small conversions.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "fastattn/rfa.hpp"
#include "reference/exact.hpp"
#include "reference/linear.hpp"
#include "reference/rfa.hpp"

namespace fastattn::test {

template <class T>
class RfaTest : public ::testing::Test {};

using RfaTypes = ::testing::Types<float, double>;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Library vs. the double reference with the same projection. The features are cos/sin of
// arguments |w.x_hat| of a few units, computed in T with relative error ~ eps_T; the numerator
// sum_j K_ij v_j is a signed sum over 2 n_f Nk products with heavy cancellation (|sum| << sum|.|),
// so the output error relative to the output scale is amplified beyond eps_T by a data-dependent
// factor: float (eps 6e-8) gets 1e-4 relative to the output scale, double (eps 1.1e-16) 1e-10.
// Observed here: <= 1.5e-6 (float) and <= 3e-15 (double), so the bounds leave >= 60x headroom.
template <class T>
constexpr double kRfaRel = std::is_same_v<T, float> ? 1e-4 : 1e-10;
template <class T>
constexpr double kRfaAbs = std::is_same_v<T, float> ? 1e-6 : 1e-13;

template <class T>
RowMatrix<double> dbl(const RowMatrix<T>& x) {
  return x.template cast<double>();
}

/// NaN in the values of padded keys: they must never reach the output.
template <class T>
void poison_padded_values(RowMatrix<T>& v, const KeyMask& padding) {
  for (Index j = 0; j < v.rows(); ++j)
    if (ref::is_padded(padding, j)) v(j, 0) = static_cast<T>(kNaN);
}

/// K_ij for the library's features recomputed in double from the projection of `rfa`.
template <class T>
RowMatrix<double> rfa_kernel(const Rfa<T>& rfa, const RowMatrix<double>& q,
                             const RowMatrix<double>& k) {
  return ref::rfa_kernel(dbl(rfa.projection()), rfa.options().kernel, q, k);
}

/// [Nq, Nk] 1 where query i sees key j (not padded; bottom-right causal), else 0.
inline RowMatrix<double> visibility(Index nq, Index nk, bool causal, const KeyMask& padding) {
  return ref::linear_weights(nq, nk, ref::LinearSpec{causal, padding});
}

/// [Nq, Nk] the unrolled gated weights of docs/spec/rfa.md §6 (causal, bottom-right).
inline RowMatrix<double> gated_weights(Index nq, Index nk, const std::vector<double>& log_gates,
                                       const KeyMask& padding) {
  return ref::linear_weights(nq, nk, ref::LinearSpec{true, padding, log_gates});
}

/// True when no key has a non-zero weight for query i.
inline bool empty_row(const RowMatrix<double>& weights, Index i) {
  return !(weights.row(i).array() > 0).any();
}

/// log g_j, entry by entry.
inline std::vector<double> log_of(const Vector<double>& g) {
  std::vector<double> out(std::size_t(g.size()));
  for (Index j = 0; j < g.size(); ++j) out[std::size_t(j)] = std::log(g[j]);
  return out;
}

}  // namespace fastattn::test
