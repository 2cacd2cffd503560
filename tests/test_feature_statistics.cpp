// Statistical tests of the kernel estimates built from features.hpp's maps (docs/spec/favor.md §9,
// §10; docs/spec/rfa.md §3, §7, §9): unbiasedness and the MSE of every estimator against its closed
// form (iid, orthogonal, simplex and fixed-norm projections; Positive, Hyperbolic, Optimal, trig,
// RFA's trig with sigma, arc-cosine), and the closed forms themselves against the spec's tables.
//
// Statistical tests run in double with fixed seeds (deterministic) and compare Monte Carlo means
// with exact values within kSe = 4 standard errors (SE = sample std / sqrt(draws)); each prints its
// observed margin in SE. Draw k of a test uses the projection seed derive_seed(seed, k).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "fastattn/features.hpp"
#include "fastattn/random.hpp"
#include "reference/favor.hpp"
#include "reference/kernels.hpp"
#include "reference/statistics.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

namespace ref = test::ref;

// ---- exact values for the statistical tests --------------------------------------------------

/// 1F1(a; b; x) by its power series (x >= 0 small here).
double hyp1f1(double a, double b, double x) {
  double term = 1, sum = 1;
  for (int k = 0; k < 500 && std::abs(term) > 1e-18 * std::abs(sum); ++k) {
    term *= (a + k) / (b + k) * x / (k + 1);
    sum += term;
  }
  return sum;
}

/// 0F1(; b; x) by its power series.
double hyp0f1(double b, double x) {
  double term = 1, sum = 1;
  for (int k = 0; k < 500 && std::abs(term) > 1e-18 * std::abs(sum); ++k) {
    term *= x / ((b + k) * (k + 1));
    sum += term;
  }
  return sum;
}

/// M_d(t) = E[e^{t r}], r ~ chi_d (docs/spec/favor.md §9.2).
double chi_mgf(Index d, double t) {
  const double dd = static_cast<double>(d);
  return hyp1f1(dd / 2, 0.5, t * t / 2) +
         std::sqrt(2.0) * t * std::exp(std::lgamma((dd + 1) / 2) - std::lgamma(dd / 2)) *
             hyp1f1((dd + 1) / 2, 1.5, t * t / 2);
}

/// Gauss-Legendre nodes and weights on [0, 1].
void gauss_legendre(int n, std::vector<double>& nodes, std::vector<double>& weights) {
  nodes.resize(size_t(n));
  weights.resize(size_t(n));
  for (int i = 0; i < n; ++i) {
    double t = std::cos(ref::kPi * (i + 0.75) / (n + 0.5)), dp = 1;
    for (int iter = 0; iter < 100; ++iter) {
      double p0 = 1, p1 = t;
      for (int k = 2; k <= n; ++k) {
        const double p2 = ((2 * k - 1) * t * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      dp = n * (t * p1 - p0) / (t * t - 1);
      const double step = p1 / dp;
      t -= step;
      if (std::abs(step) < 1e-16) break;
    }
    nodes[size_t(i)] = (t + 1) / 2;
    weights[size_t(i)] = 1 / ((1 - t * t) * dp * dp);  // 2 / (...) on [-1, 1], halved
  }
}

/// The exact MSE of orthogonal positive features (docs/spec/favor.md §9.2): MSE_+ + (P/m^2) Cst
/// with Cst = e^{-|x|^2-|y|^2} (E_v[M_d(a v1) M_d(a v2)] - e^{a^2}), a = |x + y|, the expectation
/// over the density Gamma(d/2)/(pi Gamma(d/2 - 1)) (1 - v1^2 - v2^2)^{(d-4)/2} on the unit disk:
/// polar coordinates, s = rho^2 by Gauss-Legendre, the angle by the (spectrally accurate) trapezoid
/// rule.
double orthogonal_positive_mse(const Eigen::VectorXd& x, const Eigen::VectorXd& y, Index m) {
  const Index d = x.size();
  const double dd = static_cast<double>(d);
  const double z2 = (x + y).squaredNorm(), a = std::sqrt(z2);
  const double sm = std::exp(x.dot(y));
  const double iid = sm * sm / double(m) * std::expm1(z2);
  const double c = std::exp(std::lgamma(dd / 2) - std::lgamma(dd / 2 - 1)) / ref::kPi;
  std::vector<double> s, ws;
  gauss_legendre(40, s, ws);
  const int angles = 64;
  double e = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double rho = std::sqrt(s[i]);
    double ring = 0;
    for (int j = 0; j < angles; ++j) {
      const double phi = 2 * ref::kPi * j / angles;
      ring += chi_mgf(d, a * rho * std::cos(phi)) * chi_mgf(d, a * rho * std::sin(phi));
    }
    e += ws[i] * std::pow(1 - s[i], (dd - 4) / 2) * 0.5 * ring * (2 * ref::kPi / angles);
  }
  e *= c;
  const double cst = std::exp(-x.squaredNorm() - y.squaredNorm()) * (e - std::exp(z2));
  const Index b = m / d, r = m % d;
  const double pairs = double(b * d * (d - 1) + r * (r - 1));
  return iid + pairs / double(m * m) * cst;
}

/// The multi-block bound of docs/spec/favor.md §9.2: MSE_+ - (P/m^2) (2/(d+2)) (SM -
/// e^{-(|x|^2+|y|^2)/2})^2.
double orthogonal_positive_bound(const Eigen::VectorXd& x, const Eigen::VectorXd& y, Index m) {
  const Index d = x.size(), b = m / d, r = m % d;
  const double sm = std::exp(x.dot(y));
  const double iid = sm * sm / double(m) * std::expm1((x + y).squaredNorm());
  const double pairs = double(b * d * (d - 1) + r * (r - 1));
  const double gap = sm - std::exp(-(x.squaredNorm() + y.squaredNorm()) / 2);
  return iid - pairs / double(m * m) * 2.0 / double(d + 2) * gap * gap;
}

/// A* of docs/spec/favor.md §4 for one pair: rho = |x + y|^2 / d.
double optimal_a(const Eigen::VectorXd& x, const Eigen::VectorXd& y) {
  return ref::optimal_a((x + y).squaredNorm() / double(x.size()));
}

/// The iid MSE of OPRF with m projections (docs/spec/favor.md §9.4).
double optimal_mse(const Eigen::VectorXd& x, const Eigen::VectorXd& y, double a, Index m) {
  const double dd = static_cast<double>(x.size()), z2 = (x + y).squaredNorm();
  const double second =
      std::pow((1 - 4 * a) * (1 - 4 * a) / (1 - 8 * a), dd / 2) *
      std::exp(2 * (1 - 4 * a) * z2 / (1 - 8 * a) - x.squaredNorm() - y.squaredNorm());
  const double sm = std::exp(x.dot(y));
  return (second - sm * sm) / double(m);
}

Eigen::VectorXd vec(std::initializer_list<double> v) {
  Eigen::VectorXd out(static_cast<Index>(v.size()));
  Index i = 0;
  for (double e : v) out[i++] = e;
  return out;
}

// The pairs of the docs/spec/favor.md §9.2 check-value table.
Eigen::VectorXd table_x8() { return vec({0.3, 0.2, 0, 0, 0, 0, 0, 0.1}); }
Eigen::VectorXd table_y8() { return vec({0.25, -0.1, 0.3, 0, 0, 0, 0, 0}); }
Eigen::VectorXd table_x16() { return Eigen::VectorXd::Constant(16, 0.12); }
Eigen::VectorXd table_y16() {
  Eigen::VectorXd y = Eigen::VectorXd::Zero(16);
  y.head(8).setConstant(0.15);
  return y;
}

TEST(ExactValues, ReproduceTheSpecCheckValues) {
  // The closed forms used below, against the tables of docs/spec/favor.md §9.2 (to their printed
  // digits) and the rfa §9 check values (formula columns): guards the formulas in this file.
  struct Row {
    Eigen::VectorXd x, y;
    Index m;
    double sm, iid, ort, bound;
  };
  const Row rows[] = {{table_x8(), table_y8(), 8, 1.05654, 0.07124, 0.06349, 0.06446},
                      {table_x16(), table_y16(), 16, 1.15488, 0.08424, 0.06848, 0.07217},
                      {table_x16(), table_y16(), 24, 1.15488, 0.05616, 0.04752, 0.04954}};
  for (const Row& r : rows) {
    const double sm = std::exp(r.x.dot(r.y));
    EXPECT_NEAR(sm, r.sm, 5e-6);
    EXPECT_NEAR(sm * sm / double(r.m) * std::expm1((r.x + r.y).squaredNorm()), r.iid, 5e-6);
    EXPECT_NEAR(orthogonal_positive_mse(r.x, r.y, r.m), r.ort, 5e-6);
    EXPECT_NEAR(orthogonal_positive_bound(r.x, r.y, r.m), r.bound, 5e-6);
  }
  // Trig RFA, d = 8, sigma = 1.3: mean 0.23732 <=> sigma^2 |D|^2 = -2 log(0.23732), variance
  // (1 - mean^2)^2 / 2 = 0.44527.
  const double mean = 0.23732;
  EXPECT_NEAR(std::pow(1 - mean * mean, 2) / 2, 0.44527, 5e-6);
  // Arc-cosine: the angle with J1/(2 pi) = 0.19815 has J2/(2 pi) - 0.19815^2 = 0.31697.
  double lo = 0, hi = ref::kPi;  // J1 decreases on [0, pi]
  for (int i = 0; i < 100; ++i) {
    const double mid = (lo + hi) / 2;
    (ref::arccos_j1(mid) / (2 * ref::kPi) > 0.19815 ? lo : hi) = mid;
  }
  EXPECT_NEAR(ref::arccos_j2(lo) / (2 * ref::kPi) - 0.19815 * 0.19815, 0.31697, 5e-6);
  // SMREG at d = 8 vs SM: the 0F1 mean is below SM, term by term.
  const Eigen::VectorXd x = table_x8(), y = table_y8();
  const double smreg =
      std::exp(-(x.squaredNorm() + y.squaredNorm()) / 2) * hyp0f1(4, 8 * (x + y).squaredNorm() / 4);
  EXPECT_LT(smreg, std::exp(x.dot(y)));
  // 0F1(; d/2; d|z|^2/4) -> exp(|z|^2/2) as d -> infinity (then SMREG = SM).
  EXPECT_NEAR(hyp0f1(5e5, 1e6 * 0.3 / 4), std::exp(0.15), 1e-6);
}

// ---- statistical tests -------------------------------------------------------------------------

/// Monte Carlo of a kernel estimator: the estimates and their squared errors against `target`.
struct MonteCarlo {
  ref::Moments estimate, squared_error;
};

MonteCarlo monte_carlo(int draws, std::uint64_t seed, double target,
                       const std::function<double(std::uint64_t)>& estimate) {
  MonteCarlo mc;
  for (int k = 0; k < draws; ++k) {
    const double s = estimate(derive_seed(seed, static_cast<std::uint64_t>(k)));
    mc.estimate.add(s);
    mc.squared_error.add((s - target) * (s - target));
  }
  return mc;
}

RowMatrix<double> stack(const Eigen::VectorXd& x, const Eigen::VectorXd& y) {
  RowMatrix<double> xy(2, x.size());
  xy.row(0) = x.transpose();
  xy.row(1) = y.transpose();
  return xy;
}

/// phi(x) . phi(y) from the library's features of xy = [x; y], times the constant factor
/// `constant` (the square of the per-feature factor the FeatureMap drops). Log-domain features
/// are exponentiated.
double kernel_estimate(const FeatureMap<double>& map, const RowMatrix<double>& xy,
                       double constant) {
  const RowMatrix<double> f = map(xy);
  double s = 0;
  for (Index k = 0; k < f.cols(); ++k)
    s += map.log_domain() ? std::exp(f(0, k) + f(1, k)) : f(0, k) * f(1, k);
  return constant * s;
}

/// Unbiasedness and MSE for a softmax-kernel estimator with a known MSE.
void expect_unbiased_with_mse(const std::string& what, const MonteCarlo& mc, double sm,
                              double mse) {
  EXPECT_TRUE(ref::within_se(what + ": mean vs SM", mc.estimate, sm));
  EXPECT_TRUE(ref::within_se(what + ": MSE vs theory", mc.squared_error, mse));
}

TEST(FeatureStatistics, PositiveIidIsUnbiasedWithTheMseOfSection91) {
  // d = 8, m = 8, the §9.2 row-1 pair (|x+y|^2 = 0.4125), 100000 iid projections, seed 1001.
  const Eigen::VectorXd x = table_x8(), y = table_y8();
  const Index d = 8, m = 8;
  const RowMatrix<double> xy = stack(x, y);
  const double sm = std::exp(x.dot(y)), mse = sm * sm / m * std::expm1((x + y).squaredNorm());
  const MonteCarlo mc = monte_carlo(100000, 1001, sm, [&](std::uint64_t seed) {
    const FeatureMap<double> map(FeatureKind::Positive, gaussian_projection<double>(m, d, seed));
    return kernel_estimate(map, xy, 1.0 / m);  // (m^-1/2)^2
  });
  expect_unbiased_with_mse("Positive iid", mc, sm, mse);
}

TEST(FeatureStatistics, HyperbolicIidIsUnbiasedWithTheMseOfSection91) {
  // Same pair and sizes, seed 1002: MSE_hyp = (1 - e^{-|z|^2}) MSE_+ / 2. A layout bug that makes
  // the second half a copy of the first (+u) keeps the mean but gives MSE_+ (~6x larger here).
  const Eigen::VectorXd x = table_x8(), y = table_y8();
  const Index d = 8, m = 8;
  const RowMatrix<double> xy = stack(x, y);
  const double z2 = (x + y).squaredNorm(), sm = std::exp(x.dot(y));
  const double mse = 0.5 * -std::expm1(-z2) * sm * sm / m * std::expm1(z2);
  const MonteCarlo mc = monte_carlo(100000, 1002, sm, [&](std::uint64_t seed) {
    const FeatureMap<double> map(FeatureKind::Hyperbolic, gaussian_projection<double>(m, d, seed));
    return kernel_estimate(map, xy, 1.0 / (2 * m));  // ((2m)^-1/2)^2
  });
  expect_unbiased_with_mse("Hyperbolic iid", mc, sm, mse);
}

TEST(FeatureStatistics, OptimalIidIsUnbiasedWithTheMseOfSection94) {
  // FAVOR++ with A = A* of §4 for the d = 16 pair (|x+y|^2 = 0.6984, A* = -0.0203) and with a large
  // A = -0.25 (B = sqrt 2, where a wrong B or a missing A|w|^2 offset is far off), m = 16, 40000
  // iid projections (seeds 1003, 1004). The dropped constant (1 - 4A)^{d/4} per feature is
  // restored.
  const Eigen::VectorXd x = table_x16(), y = table_y16();
  const Index d = 16, m = 16;
  const RowMatrix<double> xy = stack(x, y);
  const double sm = std::exp(x.dot(y));
  const double a_star = optimal_a(x, y);
  EXPECT_LT(a_star, 0);
  std::uint64_t seed = 1003;
  for (double a : {a_star, -0.25}) {
    FeatureMapOptions o;
    o.optimal_a = a;
    const double constant = std::pow(1 - 4 * a, double(d) / 2) / m;
    const MonteCarlo mc = monte_carlo(40000, seed++, sm, [&](std::uint64_t s) {
      const FeatureMap<double> map(FeatureKind::Optimal, gaussian_projection<double>(m, d, s), o);
      return kernel_estimate(map, xy, constant);
    });
    expect_unbiased_with_mse("Optimal iid, A = " + std::to_string(a), mc, sm,
                             optimal_mse(x, y, a, m));
  }
}

TEST(FeatureStatistics, TextbookTrigIidIsUnbiasedWithTheMseOfSection91) {
  // trig_features (constants kept): d = 8 pair, m = 8, 100000 iid projections, seed 1005;
  // MSE_trig = e^{|x|^2+|y|^2} (1 - e^{-|x-y|^2})^2 / (2m).
  const Eigen::VectorXd x = table_x8(), y = table_y8();
  const Index d = 8, m = 8;
  const RowMatrix<double> xy = stack(x, y);
  const double sm = std::exp(x.dot(y));
  const double mse = std::exp(x.squaredNorm() + y.squaredNorm()) *
                     std::pow(-std::expm1(-(x - y).squaredNorm()), 2) / (2.0 * m);
  const MonteCarlo mc = monte_carlo(100000, 1005, sm, [&](std::uint64_t seed) {
    const RowMatrix<double> f = trig_features<double>(xy, gaussian_projection<double>(m, d, seed));
    return f.row(0).dot(f.row(1));
  });
  expect_unbiased_with_mse("trig_features iid", mc, sm, mse);
}

TEST(FeatureStatistics, OrthogonalPositiveMatchesTheExactMseOfSection92) {
  // The three rows of the §9.2 check-value table (d = 8, m = 8; d = 16, m = 16; d = 16, m = 24,
  // i.e. a full and a partial block), Positive features on orthogonal_projection (seeds 1006-1008):
  // unbiased; MSE within 4 SE of the exact value (computed here by quadrature, equal to the table's
  // "ORT exact" column), below the iid MSE by more than 4 SE, and below the multi-block bound.
  struct Row {
    Eigen::VectorXd x, y;
    Index m;
    int draws;
  };
  const Row rows[] = {{table_x8(), table_y8(), 8, 150000},
                      {table_x16(), table_y16(), 16, 60000},
                      {table_x16(), table_y16(), 24, 60000}};
  std::uint64_t seed = 1006;
  for (const Row& r : rows) {
    const Index d = r.x.size(), m = r.m;
    const RowMatrix<double> xy = stack(r.x, r.y);
    const double sm = std::exp(r.x.dot(r.y));
    const double iid = sm * sm / double(m) * std::expm1((r.x + r.y).squaredNorm());
    const double exact = orthogonal_positive_mse(r.x, r.y, m);
    const double bound = orthogonal_positive_bound(r.x, r.y, m);
    const MonteCarlo mc = monte_carlo(r.draws, seed++, sm, [&](std::uint64_t s) {
      const FeatureMap<double> map(FeatureKind::Positive, orthogonal_projection<double>(m, d, s));
      return kernel_estimate(map, xy, 1.0 / double(m));
    });
    const std::string tag = "Positive ORF d=" + std::to_string(d) + " m=" + std::to_string(m);
    expect_unbiased_with_mse(tag, mc, sm, exact);
    const double mse = mc.squared_error.mean(), se = mc.squared_error.se();
    std::printf(
        "[ stats    ] %s: MSE %.5f is %.1f SE below iid %.5f and %.1f SE below bound %.5f\n",
        tag.c_str(), mse, (iid - mse) / se, iid, (bound - mse) / se, bound);
    EXPECT_LT(mse, iid - ref::kSe * se) << tag;
    EXPECT_LT(mse, bound) << tag;
  }
}

TEST(FeatureStatistics, SimplexPositiveIsUnbiased) {
  // Positive features on simplex_projection (chi norms), d = 8, m = 8 and m = 12 (a partial block),
  // 40000 draws each (seeds 1009, 1010): mean = SM within 4 SE; the MSE is also below iid.
  const Eigen::VectorXd x = table_x8(), y = table_y8();
  const Index d = 8;
  const RowMatrix<double> xy = stack(x, y);
  const double sm = std::exp(x.dot(y));
  std::uint64_t seed = 1009;
  for (Index m : {8, 12}) {
    const MonteCarlo mc = monte_carlo(40000, seed++, sm, [&](std::uint64_t s) {
      const FeatureMap<double> map(FeatureKind::Positive, simplex_projection<double>(m, d, s));
      return kernel_estimate(map, xy, 1.0 / double(m));
    });
    EXPECT_TRUE(ref::within_se("Positive simplex m=" + std::to_string(m) + ": mean vs SM",
                               mc.estimate, sm));
    const double iid = sm * sm / double(m) * std::expm1((x + y).squaredNorm());
    EXPECT_LT(mc.squared_error.mean(), iid - ref::kSe * mc.squared_error.se());
  }
}

TEST(FeatureStatistics, FixedNormPositiveEstimatesSmregNotSoftmax) {
  // fixed_norm_projection + Positive (SMREG, §2.3/§9.3), d = 8, m = 8, |x+y|^2 = 1.49, 100000 draws
  // (seed 1011): the mean is e^{-(|x|^2+|y|^2)/2} 0F1(; d/2; d|x+y|^2/4) within 4 SE, and is more
  // than 4 SE away from SM = exp(x.y) (the gap is ~4.7% of SM here).
  const Eigen::VectorXd x = vec({0.5, 0.3, 0.2, 0, -0.1, 0.2, 0, 0});
  const Eigen::VectorXd y = vec({0.4, 0.2, 0.3, 0.1, 0, 0.2, 0, 0});
  const Index d = 8, m = 8;
  const RowMatrix<double> xy = stack(x, y);
  const double sm = std::exp(x.dot(y));
  const double smreg = std::exp(-(x.squaredNorm() + y.squaredNorm()) / 2) *
                       hyp0f1(double(d) / 2, double(d) * (x + y).squaredNorm() / 4);
  const MonteCarlo mc = monte_carlo(100000, 1011, smreg, [&](std::uint64_t s) {
    const FeatureMap<double> map(FeatureKind::Positive, fixed_norm_projection<double>(m, d, s));
    return kernel_estimate(map, xy, 1.0 / m);
  });
  EXPECT_TRUE(ref::within_se("SMREG: mean vs 0F1 formula", mc.estimate, smreg));
  const double away = (sm - mc.estimate.mean()) / mc.estimate.se();
  std::printf("[ stats    ] SMREG: mean is %.1f SE below SM = %.5f\n", away, sm);
  EXPECT_GT(away, ref::kSe)
      << "the fixed-norm estimate is indistinguishable from the softmax kernel";
}

TEST(FeatureStatistics, RfaTrigEstimatesTheGaussianKernelWithSigma) {
  // RFA (rfa §3, §9): FeatureMap Trig with normalize = true on non-unit x, y and W = sigma E, E iid
  // N(0, 1); d = 8, sigma = 1.3, m = 4, 100000 draws (seed 1012). phi(x).phi(y) / m is unbiased for
  // exp(-sigma^2 |x_hat - y_hat|^2 / 2) and its variance is (1 - e^{-sigma^2 |Delta|^2})^2 / (2m).
  const Eigen::VectorXd x = vec({1.0, 2.0, -0.5, 0.3, 0, 1.1, -0.7, 0.2});
  const Eigen::VectorXd y = vec({0.2, 1.5, 0.4, -0.6, 0.9, 0.1, 0.3, -0.2});
  const Index d = 8, m = 4;
  const double sigma = 1.3;
  const RowMatrix<double> xy = stack(x, y);
  const double delta2 = (x.normalized() - y.normalized()).squaredNorm();
  const double mean = std::exp(-sigma * sigma * delta2 / 2);
  const double var = std::pow(-std::expm1(-sigma * sigma * delta2), 2) / (2.0 * m);
  FeatureMapOptions o;
  o.normalize = true;
  const MonteCarlo mc = monte_carlo(100000, 1012, mean, [&](std::uint64_t s) {
    const FeatureMap<double> map(FeatureKind::Trig, sigma * gaussian_projection<double>(m, d, s),
                                 o);
    return kernel_estimate(map, xy, 1.0 / m);
  });
  EXPECT_TRUE(ref::within_se("RFA trig sigma=1.3: mean", mc.estimate, mean));
  EXPECT_TRUE(ref::within_se("RFA trig sigma=1.3: variance", mc.squared_error, var));
}

TEST(FeatureStatistics, ReluOnUnitInputsEstimatesTheArcCosineKernel) {
  // RFA-arccos (rfa §7): Relu, eps = 0, normalize = true, W iid N(0, 1); d = 8, m = 4, 100000 draws
  // (seed 1013). Mean J1(theta)/(2 pi), variance (J2/(2 pi) - (J1/(2 pi))^2) / m.
  const Eigen::VectorXd x = vec({1.0, 2.0, -0.5, 0.3, 0, 1.1, -0.7, 0.2});
  const Eigen::VectorXd y = vec({0.2, 1.5, 0.4, -0.6, 0.9, 0.1, 0.3, -0.2});
  const Index d = 8, m = 4;
  const RowMatrix<double> xy = stack(x, y);
  const double theta = std::acos(x.normalized().dot(y.normalized()));
  const double mean = ref::arccos_j1(theta) / (2 * ref::kPi);
  const double var = (ref::arccos_j2(theta) / (2 * ref::kPi) - mean * mean) / m;
  FeatureMapOptions o;
  o.normalize = true;
  const MonteCarlo mc = monte_carlo(100000, 1013, mean, [&](std::uint64_t s) {
    const FeatureMap<double> map(FeatureKind::Relu, gaussian_projection<double>(m, d, s), o);
    return kernel_estimate(map, xy, 1.0 / m);
  });
  EXPECT_TRUE(ref::within_se("Relu arc-cosine: mean", mc.estimate, mean));
  EXPECT_TRUE(ref::within_se("Relu arc-cosine: variance", mc.squared_error, var));
}

}  // namespace
}  // namespace fastattn
