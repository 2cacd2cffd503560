#pragma once
// Test support: seeded random data, typed tolerances and comparison helpers. The independent
// double-precision references are in tests/reference/ (one header per concept).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "data_rng.hpp"
#include "fastattn/types.hpp"
#include "reference/exact.hpp"

namespace fastattn::test {

/// [rows, cols] with iid N(0, stddev^2) entries.
template <class T>
RowMatrix<T> random_matrix(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
  DataRng rng(seed);
  RowMatrix<T> m(rows, cols);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) m(i, j) = static_cast<T>(stddev * rng.normal());
  return m;
}

/// [n] mask with each key padded with probability p.
inline KeyMask random_mask(Index n, double p, std::uint64_t seed) {
  DataRng rng(seed);
  KeyMask m(n);
  for (Index j = 0; j < n; ++j) m[j] = rng.uniform() < p;
  return m;
}

// The exact reference lives in reference/exact.hpp; these two names stay for existing callers.
using RefSpec = ref::ExactSpec;
inline RowMatrix<double> reference_attention(const RowMatrix<double>& q, const RowMatrix<double>& k,
                                             const RowMatrix<double>& v, const RefSpec& spec,
                                             Eigen::VectorXd* lse = nullptr) {
  return ref::exact_attention(q, k, v, spec, lse);
}

/// Typed-test tolerances. float: ~1e-5 relative for the O(D + Nk) rounding of a softmax-weighted
/// sum of O(1) values (unit roundoff 6e-8 times a few hundred operations); double: 1e-12.
template <class T>
struct Tol;
template <>
struct Tol<float> {
  static constexpr double rel = 1e-5;
  static constexpr double abs = 1e-6;
};
template <>
struct Tol<double> {
  static constexpr double rel = 1e-12;
  static constexpr double abs = 1e-13;
};

/// Asserts |actual - expected| <= abs + rel * max|expected| elementwise, with a useful message.
template <class A, class B>
::testing::AssertionResult near(const A& actual, const B& expected, double rel, double abs) {
  if (actual.rows() != expected.rows() || actual.cols() != expected.cols())
    return ::testing::AssertionFailure() << "shape " << actual.rows() << "x" << actual.cols()
                                         << " vs " << expected.rows() << "x" << expected.cols();
  const Eigen::MatrixXd a = actual.template cast<double>();
  const Eigen::MatrixXd e = expected.template cast<double>();
  const double scale = e.size() ? e.cwiseAbs().maxCoeff() : 0.0;
  const double bound = abs + rel * scale;
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) {
      const double diff = std::abs(a(i, j) - e(i, j));
      if (!(diff <= bound))  // also catches NaN
        return ::testing::AssertionFailure()
               << "at (" << i << ", " << j << "): " << a(i, j) << " vs " << e(i, j) << ", |diff| "
               << diff << " > " << bound;
    }
  return ::testing::AssertionSuccess();
}

/// True when every entry is finite.
template <class M>
bool all_finite(const M& m) {
  return m.array().isFinite().all();
}

/// Runs `fn` and returns the std::invalid_argument message it throws ("" if it does not throw).
template <class Fn>
std::string invalid_argument_message(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace fastattn::test
