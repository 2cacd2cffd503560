#pragma once
/// @file statistics.hpp
/// The statistical tests' helpers: running moments with their standard error, the "within k
/// standard errors" assertion (which prints its observed margin, so the test log documents it),
/// and the least-squares slope of a log-log curve.
///
/// Statistical tests run with fixed seeds (deterministic) and compare a Monte Carlo mean with its
/// exact value within kSe = 4 standard errors.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace fastattn::test::ref {

/// Standard errors allowed between a Monte Carlo mean and its exact value.
constexpr double kSe = 4;

/// Mean, variance and standard error of a sample (Welford's running moments).
class Moments {
 public:
  void add(double v) {
    ++n_;
    const double delta = v - mean_;
    mean_ += delta / static_cast<double>(n_);
    m2_ += delta * (v - mean_);
  }
  double mean() const { return mean_; }
  /// The sample variance (n - 1 in the denominator).
  double variance() const { return m2_ / static_cast<double>(n_ - 1); }
  /// The standard error of the mean, sqrt(variance / n).
  double se() const { return std::sqrt(variance() / static_cast<double>(n_)); }
  long count() const { return n_; }

 private:
  long n_ = 0;
  double mean_ = 0, m2_ = 0;
};

/// |mean - expected| <= k SE; prints the observed margin in SE.
inline ::testing::AssertionResult within_se(const std::string& what, const Moments& s,
                                            double expected, double k = kSe) {
  const double z = (s.mean() - expected) / s.se();
  std::printf("[ stats    ] %s: mean %.6g vs %.6g, %+.2f SE (SE %.3g, n %ld)\n", what.c_str(),
              s.mean(), expected, z, s.se(), s.count());
  if (std::abs(z) <= k) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": mean " << s.mean() << " vs expected " << expected << " is " << z
         << " SE away (SE " << s.se() << ", n " << s.count() << "), more than " << k;
}

/// Least-squares slope of log(y) against log(x).
inline double loglog_slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = double(x.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double lx = std::log(x[i]), ly = std::log(y[i]);
    sx += lx;
    sy += ly;
    sxx += lx * lx;
    sxy += lx * ly;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

}  // namespace fastattn::test::ref
