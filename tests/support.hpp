#pragma once
// Test support: a portable seeded data generator, an independent double-precision reference of
// exact attention (written separately from the library on purpose), and comparison helpers.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "data_rng.hpp"
#include "fastattn/types.hpp"

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

/// Everything the double reference needs to know about one call.
struct RefSpec {
  double scale = 0;        // 0: 1/sqrt(D)
  bool causal = false;     // bottom-right: j <= i + Nk - Nq
  KeyMask padding;         // true = padded
  RowMatrix<double> bias;  // [Nq, Nk], [1, Nk] or empty
  double alibi_slope = 0;  // adds -slope * |i + Nk - Nq - j|
};

/// Exact softmax attention in double, materializing every logit. Empty rows give 0 and lse -inf.
inline RowMatrix<double> reference_attention(const RowMatrix<double>& q, const RowMatrix<double>& k,
                                             const RowMatrix<double>& v, const RefSpec& spec,
                                             Eigen::VectorXd* lse = nullptr) {
  const Index nq = q.rows(), nk = k.rows(), dv = v.cols();
  const double s = spec.scale != 0 ? spec.scale : 1.0 / std::sqrt(double(q.cols()));
  const double inf = std::numeric_limits<double>::infinity();
  RowMatrix<double> out = RowMatrix<double>::Zero(nq, dv);
  if (lse) lse->setConstant(nq, -inf);
  for (Index i = 0; i < nq; ++i) {
    std::vector<double> logit(static_cast<size_t>(nk), -inf);
    double mx = -inf;
    for (Index j = 0; j < nk; ++j) {
      if (spec.padding.size() && spec.padding[j]) continue;
      if (spec.causal && j > i + nk - nq) continue;
      double l = 0;
      for (Index d = 0; d < q.cols(); ++d) l += q(i, d) * k(j, d);
      l *= s;
      if (spec.bias.size()) l += spec.bias(spec.bias.rows() == 1 ? 0 : i, j);
      l -= spec.alibi_slope * std::abs(double(i + nk - nq - j));
      logit[size_t(j)] = l;
      mx = std::max(mx, l);
    }
    if (mx == -inf) continue;
    double sum = 0;
    for (Index j = 0; j < nk; ++j) {
      if (logit[size_t(j)] == -inf) continue;
      const double p = std::exp(logit[size_t(j)] - mx);
      sum += p;
      out.row(i) += p * v.row(j);
    }
    out.row(i) /= sum;
    if (lse) (*lse)[i] = mx + std::log(sum);
  }
  return out;
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
