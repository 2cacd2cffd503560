// Tests of rfa.hpp (Random Feature Attention, docs/spec/rfa.md): the forward passes against an
// independent double-precision evaluation with the same projection (features recomputed here with
// std::cos/std::sin, every (query, key) weight evaluated explicitly), gated RFA against the
// unrolled form of spec §6, decoding, the statistical properties of the kernel estimate (spec §3,
// §7, §9), convergence to the exact attention targets, the invariants, the denominator guard (§8),
// determinism and argument validation.

#include "fastattn/rfa.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fastattn/random.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::near;
using test::random_mask;
using test::random_matrix;
using test::Tol;
using MatD = RowMatrix<double>;

constexpr double kPi = 3.14159265358979323846;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- the independent double-precision reference -----------------------------------------------

template <class T>
MatD dbl(const RowMatrix<T>& x) {
  return x.template cast<double>();
}

bool is_padded(const KeyMask& padding, Index j) { return padding.size() != 0 && padding[j]; }

/// x / |x| per row; a zero row stays zero.
MatD normalized_rows(const MatD& x) {
  MatD out = x;
  for (Index i = 0; i < x.rows(); ++i) {
    double sq = 0;
    for (Index c = 0; c < x.cols(); ++c) sq += x(i, c) * x(i, c);
    if (sq > 0) out.row(i) /= std::sqrt(sq);
  }
  return out;
}

/// Features of the normalized rows of x under projection w [m, D], in double with std::cos and
/// std::sin: [cos(W x_hat), sin(W x_hat)] (Trig) or relu(W x_hat) (Arccos). No m^-1/2 factor (it
/// cancels in attention, and the library drops it too).
MatD reference_features(const MatD& x, const MatD& w, RfaKernel kernel) {
  const MatD xh = normalized_rows(x);
  const Index n = x.rows(), m = w.rows();
  MatD f(n, kernel == RfaKernel::Trig ? 2 * m : m);
  for (Index i = 0; i < n; ++i)
    for (Index r = 0; r < m; ++r) {
      double u = 0;
      for (Index c = 0; c < x.cols(); ++c) u += w(r, c) * xh(i, c);
      if (kernel == RfaKernel::Trig) {
        f(i, r) = std::cos(u);
        f(i, m + r) = std::sin(u);
      } else {
        f(i, r) = std::max(u, 0.0);
      }
    }
  return f;
}

/// K_ij = phi(q_i) . phi(k_j).
MatD feature_kernel(const MatD& fq, const MatD& fk) {
  MatD kern(fq.rows(), fk.rows());
  for (Index i = 0; i < fq.rows(); ++i)
    for (Index j = 0; j < fk.rows(); ++j) {
      double s = 0;
      for (Index r = 0; r < fq.cols(); ++r) s += fq(i, r) * fk(j, r);
      kern(i, j) = s;
    }
  return kern;
}

/// K_ij for the library's features recomputed here from the projection of `rfa`.
template <class T>
MatD rfa_kernel(const Rfa<T>& rfa, const MatD& q, const MatD& k) {
  // Kernel units: phi(x).phi(y) with phi carrying n_f^{-1/2} (docs/spec/rfa.md §2), the units den_eps is
  // defined in.
  const RfaKernel kernel = rfa.options().kernel;
  const MatD w = dbl(rfa.projection());
  return feature_kernel(reference_features(q, w, kernel), reference_features(k, w, kernel)) /
         double(w.rows());
}

/// 1 where query i sees key j (not padded; bottom-right causal: j <= i + Nk - Nq), else 0.
MatD visibility(Index nq, Index nk, bool causal, const KeyMask& padding) {
  MatD w = MatD::Zero(nq, nk);
  for (Index i = 0; i < nq; ++i)
    for (Index j = 0; j < nk; ++j)
      if (!is_padded(padding, j) && (!causal || j <= i + nk - nq)) w(i, j) = 1;
  return w;
}

/// The unrolled gated weights of docs/spec/rfa.md §6, one (i, j) pair at a time:
/// w_ij = (1 - g_j) prod_{j < l <= p} g_l for j <= p = i + Nk - Nq, padded keys acting as g = 1
/// (no weight, no decay). 1 - g is computed as -expm1(log g).
MatD gated_weights(Index nq, Index nk, const std::vector<double>& log_gates,
                   const KeyMask& padding) {
  MatD w = MatD::Zero(nq, nk);
  for (Index i = 0; i < nq; ++i) {
    const Index p = i + nk - nq;
    for (Index j = 0; j <= p && j < nk; ++j) {
      if (is_padded(padding, j)) continue;
      double log_decay = 0;
      for (Index l = j + 1; l <= p; ++l)
        if (!is_padded(padding, l)) log_decay += log_gates[size_t(l)];
      w(i, j) = -std::expm1(log_gates[size_t(j)]) * std::exp(log_decay);
    }
  }
  return w;
}

/// out_i = sum_j w_ij K_ij v_j / sum_j w_ij K_ij with the library's guard (docs/spec/rfa.md §8): a row
/// with no key of non-zero weight is 0; otherwise N / max(den, den_eps), counting clamped rows.
/// Keys of zero weight are skipped entirely (their values may be NaN).
MatD guarded_average(const MatD& kern, const MatD& weights, const MatD& v, double den_eps,
                     Index* guarded = nullptr) {
  const Index nq = kern.rows(), nk = kern.cols(), dv = v.cols();
  MatD out = MatD::Zero(nq, dv);
  if (guarded) *guarded = 0;
  for (Index i = 0; i < nq; ++i) {
    bool visible = false;
    double den = 0;
    Eigen::RowVectorXd num = Eigen::RowVectorXd::Zero(dv);
    for (Index j = 0; j < nk; ++j) {
      if (!(weights(i, j) > 0)) continue;
      visible = true;
      const double a = weights(i, j) * kern(i, j);
      den += a;
      for (Index c = 0; c < dv; ++c) num[c] += a * v(j, c);
    }
    if (!visible) continue;
    // The guard is relative to the row's total visible weight (RfaOptions::den_eps).
    const double floor = den_eps * weights.row(i).sum();
    if (den > floor) {
      out.row(i) = num / den;
    } else {
      out.row(i) = num / floor;
      if (guarded) ++*guarded;
    }
  }
  return out;
}

/// True when no key has a non-zero weight for query i.
bool empty_row(const MatD& weights, Index i) { return !(weights.row(i).array() > 0).any(); }

double relative_frobenius(const MatD& approx, const MatD& exact) {
  return (approx - exact).norm() / exact.norm();
}

std::vector<double> log_of(const Vector<double>& g) {
  std::vector<double> out(size_t(g.size()));
  for (Index j = 0; j < g.size(); ++j) out[size_t(j)] = std::log(g[j]);
  return out;
}

/// The exact (infinite-feature) kernels the estimators converge to, on normalized rows.
/// exp(qh' S kh - kh' S kh / 2) with S = diag(s2) (docs/spec/rfa.md §3; scalar sigma: s2 = sigma^2,
/// where the key factor is a constant).
MatD gaussian_target_kernel(const MatD& qh, const MatD& kh, const Eigen::VectorXd& s2) {
  MatD kern(qh.rows(), kh.rows());
  for (Index i = 0; i < qh.rows(); ++i)
    for (Index j = 0; j < kh.rows(); ++j) {
      double cross = 0, self = 0;
      for (Index c = 0; c < qh.cols(); ++c) {
        cross += s2[c] * qh(i, c) * kh(j, c);
        self += s2[c] * kh(j, c) * kh(j, c);
      }
      kern(i, j) = std::exp(cross - 0.5 * self);
    }
  return kern;
}

double j1(double theta) { return std::sin(theta) + (kPi - theta) * std::cos(theta); }
double j2(double theta) {
  const double c = std::cos(theta);
  return 3 * std::sin(theta) * c + (kPi - theta) * (1 + 2 * c * c);
}

/// kappa_1(theta) = J1(theta) / (2 pi) on normalized rows (docs/spec/rfa.md §7).
MatD arccos_target_kernel(const MatD& qh, const MatD& kh) {
  MatD kern(qh.rows(), kh.rows());
  for (Index i = 0; i < qh.rows(); ++i)
    for (Index j = 0; j < kh.rows(); ++j) {
      const double cosine = std::clamp(qh.row(i).dot(kh.row(j)), -1.0, 1.0);
      kern(i, j) = j1(std::acos(cosine)) / (2 * kPi);
    }
  return kern;
}

// ---- typed fixture ------------------------------------------------------------------------------

template <class T>
class RfaTest : public ::testing::Test {};

using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RfaTest, Types);

// Library vs. the double reference with the same projection. The features are cos/sin of
// arguments |w.x_hat| of a few units, computed in T with relative error ~ eps_T; the numerator
// sum_j K_ij v_j is a signed sum over 2 n_f Nk products with heavy cancellation (|sum| << sum|.|),
// so the output error relative to the output scale is amplified beyond eps_T by a data-dependent
// factor: float (eps 6e-8) gets 1e-4 relative to the output scale, double (eps 1.1e-16) 1e-10.
// Observed here: <= 1.5e-6 (float) and <= 3e-15 (double), so the bounds leave >= 60x headroom.
template <class T>
constexpr double kRel = std::is_same_v<T, float> ? 1e-4 : 1e-10;
template <class T>
constexpr double kAbs = std::is_same_v<T, float> ? 1e-6 : 1e-13;

/// NaN in the values of padded keys: they must never reach the output.
template <class T>
void poison_padded_values(RowMatrix<T>& v, const KeyMask& padding) {
  for (Index j = 0; j < v.rows(); ++j)
    if (is_padded(padding, j)) v(j, 0) = static_cast<T>(kNaN);
}

// ---- 1. forward = independent double evaluation ------------------------------------------------

TYPED_TEST(RfaTest, ForwardMatchesIndependentDoubleEvaluation) {
  using T = TypeParam;
  struct Case {
    Index nq, nk;
    bool causal;
  };
  // Cross-attention both ways; causal bottom-right aligned with Nq = Nk, Nq < Nk and Nq > Nk.
  const Case cases[] = {
      {23, 41, false}, {41, 23, false}, {37, 37, true}, {25, 37, true}, {45, 37, true}};
  const Index d = 8, dv = 5;
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    for (const Case& c : cases) {
      // Inputs of varied norms (normalization removes them), a zero query and a zero key row.
      RowMatrix<T> q = random_matrix<T>(c.nq, d, 100 + c.nq, 2.0);
      RowMatrix<T> k = random_matrix<T>(c.nk, d, 200 + c.nk, 0.5);
      q.row(3).setZero();
      k.row(4).setZero();
      RowMatrix<T> v = random_matrix<T>(c.nk, dv, 300 + c.nk);
      AttentionOptions opt;
      opt.causal = c.causal;
      opt.key_padding = random_mask(c.nk, 0.25, 400 + c.nk);
      const MatD vd = dbl(v);
      poison_padded_values(v, opt.key_padding);
      for (Index chunk : {0, 5}) {
        RfaOptions o;
        o.num_features = 256;
        o.sigma = 1.0;
        o.kernel = kernel;
        o.seed = 11;
        o.chunk_size = chunk;
        const Rfa<T> rfa(d, o);
        ASSERT_EQ(rfa.feature_dim(), kernel == RfaKernel::Trig ? 512 : 256);
        const MatD weights = visibility(c.nq, c.nk, c.causal, opt.key_padding);
        Index ref_guarded = 0;
        const MatD ref =
            guarded_average(rfa_kernel(rfa, dbl(q), dbl(k)), weights, vd, o.den_eps, &ref_guarded);
        RowMatrix<T> out(c.nq, dv);
        LinearStats stats;
        stats.guarded_rows = -1;
        rfa.forward(q, k, v, out, opt, &stats);
        const std::string where = "kernel " + std::to_string(int(kernel)) + " Nq " +
                                  std::to_string(c.nq) + " Nk " + std::to_string(c.nk) +
                                  " causal " + std::to_string(c.causal) + " chunk " +
                                  std::to_string(chunk);
        ASSERT_TRUE(test::all_finite(out)) << where;
        EXPECT_TRUE(near(out, ref, kRel<T>, kAbs<T>)) << where;
        // Only the Arccos zero query (all features 0, so den = 0) may be guarded here.
        EXPECT_EQ(stats.guarded_rows, ref_guarded) << where;
        EXPECT_LE(ref_guarded, kernel == RfaKernel::Arccos ? 1 : 0) << where;
        for (Index i = 0; i < c.nq; ++i)
          if (empty_row(weights, i)) {
            EXPECT_TRUE(out.row(i).isZero(0)) << where << " row " << i;
          }
        // operator() is forward().
        const RowMatrix<T> again = rfa(q, k, v, opt);
        EXPECT_TRUE((again.array() == out.array()).all()) << where;
      }
    }
  }
}

// ---- 2. the kernel estimate is unbiased, with the predicted variance --------------------------

/// Per projection r and pair (x, y): the estimate c_r = phi_r(x) phi_r(y) (Trig: cos.cos + sin.sin
/// = cos(w_r.(x_hat - y_hat)); Arccos: relu(w_r.x_hat) relu(w_r.y_hat)). Over seeds, the mean of
/// phi(x).phi(y) / n_f and the mean of (1/n_f) sum_r (c_r - kappa)^2, each with its standard error
/// (seeds are independent; the rows within one orthogonal block are not, so the SE is taken over
/// per-seed averages).
struct Moments {
  double mean = 0, mean_se = 0, var = 0, var_se = 0;
};

template <class T>
std::vector<Moments> kernel_moments(RfaOptions o, const RowMatrix<T>& x, const RowMatrix<T>& ys,
                                    const std::vector<double>& kappa, int draws,
                                    std::uint64_t first_seed) {
  const Index npairs = ys.rows();
  RowMatrix<T> xy(npairs + 1, x.cols());
  xy.row(0) = x.row(0);
  xy.bottomRows(npairs) = ys;
  const size_t np = static_cast<size_t>(npairs);
  std::vector<double> s_mean(np), s_mean2(np), s_var(np), s_var2(np);
  const bool trig = o.kernel == RfaKernel::Trig;
  for (int s = 0; s < draws; ++s) {
    o.seed = first_seed + std::uint64_t(s);
    const Rfa<T> rfa(x.cols(), o);
    const MatD f = dbl(RowMatrix<T>(rfa.feature_map()(xy)));
    const Index m = rfa.projection().rows();
    for (Index p = 0; p < npairs; ++p) {
      const double e = f.row(0).dot(f.row(p + 1)) / double(m);
      double sq = 0;
      for (Index r = 0; r < m; ++r) {
        double c = f(0, r) * f(p + 1, r);
        if (trig) c += f(0, m + r) * f(p + 1, m + r);
        sq += (c - kappa[size_t(p)]) * (c - kappa[size_t(p)]);
      }
      const double v = sq / double(m);
      s_mean[size_t(p)] += e;
      s_mean2[size_t(p)] += e * e;
      s_var[size_t(p)] += v;
      s_var2[size_t(p)] += v * v;
    }
  }
  std::vector<Moments> out(np);
  const double r = draws;
  for (size_t p = 0; p < np; ++p) {
    Moments& mo = out[p];
    mo.mean = s_mean[p] / r;
    mo.mean_se = std::sqrt((s_mean2[p] / r - mo.mean * mo.mean) / (r - 1));
    mo.var = s_var[p] / r;
    mo.var_se = std::sqrt((s_var2[p] / r - mo.var * mo.var) / (r - 1));
  }
  return out;
}

/// Unit x and, for each angle theta, a unit y with angle(x, y) = theta (d = 8). The rows are
/// then scaled by 2.5 and 0.4: the feature map must normalize them.
struct Pairs {
  RowMatrix<double> x, ys;
  std::vector<double> thetas;
};

Pairs make_pairs(const std::vector<double>& thetas) {
  const Index d = 8;
  Eigen::RowVectorXd x = random_matrix<double>(1, d, 7).row(0).normalized();
  Eigen::RowVectorXd u = random_matrix<double>(1, d, 8).row(0);
  u -= u.dot(x) * x;
  u.normalize();
  Pairs p;
  p.thetas = thetas;
  p.x = 2.5 * x;
  p.ys.resize(Index(thetas.size()), d);
  for (size_t t = 0; t < thetas.size(); ++t)
    p.ys.row(Index(t)) = 0.4 * (std::cos(thetas[t]) * x + std::sin(thetas[t]) * u);
  return p;
}

// R = 100000 independent projections per setting, n_f = 8 = d (one full orthogonal block) each.
constexpr int kDraws = 100000;
constexpr double kSe = 4;  // standard errors

TEST(RfaStatistics, TrigKernelEstimateIsUnbiasedWithPredictedVariance) {
  const double sigma = 1.3;
  const Pairs pairs = make_pairs({0.6, 1.9});
  std::vector<double> kappa, var;
  for (double theta : pairs.thetas) {
    const double dist2 = 2 - 2 * std::cos(theta);  // |x_hat - y_hat|^2
    kappa.push_back(std::exp(-sigma * sigma * dist2 / 2));
    var.push_back(std::pow(1 - std::exp(-sigma * sigma * dist2), 2) / 2);
  }
  for (Projection proj : {Projection::Gaussian, Projection::Orthogonal}) {
    RfaOptions o;
    o.num_features = 8;
    o.sigma = sigma;
    o.projection = proj;
    const auto mo = kernel_moments<double>(o, pairs.x, pairs.ys, kappa, kDraws, 1000);
    for (size_t p = 0; p < mo.size(); ++p) {
      const std::string where =
          "projection " + std::to_string(int(proj)) + " theta " + std::to_string(pairs.thetas[p]);
      EXPECT_NEAR(mo[p].mean, kappa[p], kSe * mo[p].mean_se) << where;
      EXPECT_NEAR(mo[p].var, var[p], kSe * mo[p].var_se) << where;
      // The test has power: a kernel of the wrong width (e.g. sigma^2 as the row std, or the
      // length-scale reading 1/sigma) would be many SE away.
      const double dist2 = 2 - 2 * std::cos(pairs.thetas[p]);
      EXPECT_GT(std::abs(std::exp(-dist2 / (2 * sigma * sigma)) - kappa[p]), 20 * mo[p].mean_se);
      RecordProperty("trig_" + std::to_string(int(proj)) + "_" + std::to_string(p) + "_mean_z",
                     std::to_string((mo[p].mean - kappa[p]) / mo[p].mean_se));
      RecordProperty("trig_" + std::to_string(int(proj)) + "_" + std::to_string(p) + "_var_z",
                     std::to_string((mo[p].var - var[p]) / mo[p].var_se));
    }
  }
  // float spot check: the same estimate from Rfa<float> is unbiased too.
  RfaOptions o;
  o.num_features = 8;
  o.sigma = sigma;
  o.projection = Projection::Gaussian;
  const auto mo =
      kernel_moments<float>(o, RowMatrix<float>(pairs.x.cast<float>()),
                            RowMatrix<float>(pairs.ys.cast<float>()), kappa, 4000, 50000);
  for (size_t p = 0; p < mo.size(); ++p) {
    EXPECT_NEAR(mo[p].mean, kappa[p], kSe * mo[p].mean_se) << "float, pair " << p;
    EXPECT_NEAR(mo[p].var, var[p], kSe * mo[p].var_se) << "float, pair " << p;
  }
}

TEST(RfaStatistics, ArccosKernelEstimateIsUnbiasedWithPredictedVariance) {
  const Pairs pairs = make_pairs({0.6, 1.9});
  std::vector<double> kappa, var;
  for (double theta : pairs.thetas) {
    kappa.push_back(j1(theta) / (2 * kPi));
    var.push_back(j2(theta) / (2 * kPi) - std::pow(j1(theta) / (2 * kPi), 2));
  }
  for (Projection proj : {Projection::Gaussian, Projection::Orthogonal}) {
    RfaOptions o;
    o.num_features = 8;
    o.kernel = RfaKernel::Arccos;
    o.projection = proj;
    const auto mo = kernel_moments<double>(o, pairs.x, pairs.ys, kappa, kDraws, 3000000);
    for (size_t p = 0; p < mo.size(); ++p) {
      const std::string where =
          "projection " + std::to_string(int(proj)) + " theta " + std::to_string(pairs.thetas[p]);
      EXPECT_NEAR(mo[p].mean, kappa[p], kSe * mo[p].mean_se) << where;
      EXPECT_NEAR(mo[p].var, var[p], kSe * mo[p].var_se) << where;
      RecordProperty("arccos_" + std::to_string(int(proj)) + "_" + std::to_string(p) + "_mean_z",
                     std::to_string((mo[p].mean - kappa[p]) / mo[p].mean_se));
      RecordProperty("arccos_" + std::to_string(int(proj)) + "_" + std::to_string(p) + "_var_z",
                     std::to_string((mo[p].var - var[p]) / mo[p].var_se));
    }
  }
}

// ---- 3. convergence to exact attention as n_f grows --------------------------------------------

/// Least-squares slope of log(err) against log(n_f).
double loglog_slope(const std::vector<double>& nf, const std::vector<double>& err) {
  const double n = double(nf.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < nf.size(); ++i) {
    const double x = std::log(nf[i]), y = std::log(err[i]);
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

const std::vector<Index> kFeatureCounts = {64, 256, 1024, 4096};
constexpr int kConvergenceSeeds = 4;

/// Mean relative (Frobenius) error over seeds, per n_f; `run` maps an Rfa to its output.
template <class Make, class Run>
std::vector<double> error_curve(const Make& make, const Run& run, const MatD& target) {
  std::vector<double> err;
  for (Index nf : kFeatureCounts) {
    double sum = 0;
    for (int s = 0; s < kConvergenceSeeds; ++s) sum += relative_frobenius(run(make(nf, s)), target);
    err.push_back(sum / kConvergenceSeeds);
  }
  return err;
}

::testing::AssertionResult converges(const std::vector<double>& err) {
  std::vector<double> nf(kFeatureCounts.begin(), kFeatureCounts.end());
  const double slope = loglog_slope(nf, err);
  std::string curve;
  for (size_t i = 0; i < err.size(); ++i)
    curve += std::to_string(kFeatureCounts[i]) + ": " + std::to_string(err[i]) + "  ";
  // ~ n_f^-1/2; the O(1/n_f) bias of the ratio estimator and seed noise move the fit a little.
  if (!(slope >= -0.75 && slope <= -0.3) || !(err.back() < 0.25 * err.front()))
    return ::testing::AssertionFailure() << "slope " << slope << ", errors " << curve;
  return ::testing::AssertionSuccess() << "slope " << slope << ", errors " << curve;
}

struct ConvergenceData {
  Index nq = 48, nk = 64, d = 8, dv = 4;
  RowMatrix<double> q = random_matrix<double>(48, 8, 61), k = random_matrix<double>(64, 8, 62);
  RowMatrix<double> v = random_matrix<double>(64, 4, 63);
  RowMatrix<double> qh = normalized_rows(q), kh = normalized_rows(k);
  KeyMask padding = random_mask(64, 0.2, 64);
};

TEST(RfaConvergence, ScalarSigmaConvergesToSoftmaxOfCosines) {
  const ConvergenceData data;
  const double sigma = 1.5;  // inverse temperature 2.25: logits spread over ~ +-2
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    opt.key_padding = data.padding;
    test::RefSpec spec;
    spec.scale = sigma * sigma;
    spec.causal = causal;
    spec.padding = data.padding;
    const MatD target = test::reference_attention(data.qh, data.kh, data.v, spec);
    auto make = [&](Index nf, int s) {
      RfaOptions o;
      o.num_features = nf;
      o.sigma = sigma;
      o.seed = 500 + std::uint64_t(s);
      return Rfa<double>(data.d, o);
    };
    auto run = [&](const Rfa<double>& rfa) {
      MatD out(data.nq, data.dv);
      rfa.forward(data.q, data.k, data.v, out, opt);
      return out;
    };
    const auto err = error_curve(make, run, target);
    const auto result = converges(err);
    EXPECT_TRUE(result) << "causal " << causal;
    RecordProperty("scalar_causal_" + std::to_string(causal), result.message());

    // float spot check at n_f = 4096: the same projection (drawn in double) gives the same output.
    const Rfa<double> rd = make(4096, 0);
    RfaOptions of;
    of.num_features = 4096;
    of.sigma = sigma;
    of.seed = 500;
    const Rfa<float> rf(data.d, of);
    RowMatrix<float> out_f(data.nq, data.dv);
    rf.forward(RowMatrix<float>(data.q.cast<float>()), RowMatrix<float>(data.k.cast<float>()),
               RowMatrix<float>(data.v.cast<float>()), out_f, opt);
    EXPECT_TRUE(near(out_f, run(rd), 1e-4, 1e-6)) << "causal " << causal;
  }
}

TEST(RfaConvergence, VectorSigmaConvergesToTheAnisotropicTarget) {
  const ConvergenceData data;
  Vector<double> sigma(data.d);
  for (Index c = 0; c < data.d; ++c) sigma[c] = 0.6 + 0.2 * double(c);  // 0.6 .. 2.0
  const Eigen::VectorXd s2 = sigma.array().square();
  AttentionOptions opt;
  opt.key_padding = data.padding;
  const MatD weights = visibility(data.nq, data.nk, false, data.padding);
  // Weights ~ exp(qh' S kh - kh' S kh / 2) (docs/spec/rfa.md §3); and, to show the test can tell the
  // difference, the target without the key factor.
  const MatD target =
      guarded_average(gaussian_target_kernel(data.qh, data.kh, s2), weights, data.v, 0);
  MatD no_key_factor = gaussian_target_kernel(data.qh, data.kh, s2);
  for (Index j = 0; j < data.nk; ++j) {
    double self = 0;
    for (Index c = 0; c < data.d; ++c) self += s2[c] * data.kh(j, c) * data.kh(j, c);
    no_key_factor.col(j) *= std::exp(0.5 * self);
  }
  const MatD wrong_target = guarded_average(no_key_factor, weights, data.v, 0);
  auto make = [&](Index nf, int s) {
    RfaOptions o;
    o.num_features = nf;
    o.seed = 700 + std::uint64_t(s);
    return Rfa<double>(data.d, o, sigma);
  };
  auto run = [&](const Rfa<double>& rfa) {
    MatD out(data.nq, data.dv);
    rfa.forward(data.q, data.k, data.v, out, opt);
    return out;
  };
  const auto err = error_curve(make, run, target);
  const auto result = converges(err);
  EXPECT_TRUE(result);
  RecordProperty("vector_sigma", result.message());
  const double wrong = relative_frobenius(run(make(4096, 0)), wrong_target);
  EXPECT_GT(wrong, 3 * err.back()) << "the two targets must be distinguishable";
  RecordProperty("vector_sigma_wrong_target_error", std::to_string(wrong));
}

TEST(RfaConvergence, ArccosConvergesToTheArcCosineKernelAverage) {
  const ConvergenceData data;
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    opt.key_padding = data.padding;
    const MatD target =
        guarded_average(arccos_target_kernel(data.qh, data.kh),
                        visibility(data.nq, data.nk, causal, data.padding), data.v, 0);
    auto make = [&](Index nf, int s) {
      RfaOptions o;
      o.num_features = nf;
      o.kernel = RfaKernel::Arccos;
      o.sigma = 1.7;  // no effect on the arc-cosine kernel's attention weights
      o.seed = 900 + std::uint64_t(s);
      return Rfa<double>(data.d, o);
    };
    auto run = [&](const Rfa<double>& rfa) {
      MatD out(data.nq, data.dv);
      rfa.forward(data.q, data.k, data.v, out, opt);
      return out;
    };
    const auto result = converges(error_curve(make, run, target));
    EXPECT_TRUE(result) << "causal " << causal;
    RecordProperty("arccos_causal_" + std::to_string(causal), result.message());
  }
}

TEST(RfaConvergence, GatedConvergesToTheGatedExactReference) {
  const ConvergenceData data;
  const Index n = data.nk;
  // Gates in [0.8, 1) keep ~10 keys in play; with fewer (or a larger sigma) small n_f gives
  // denominators <= den_eps on some rows, which the guard clamps (docs/spec/rfa.md §8) and which then
  // dominate the error.
  const double sigma = 1.2;
  test::DataRng rng(65);
  Vector<double> gates(n);
  for (Index j = 0; j < n; ++j) gates[j] = 0.8 + 0.2 * rng.uniform();
  gates[9] = 1;
  AttentionOptions opt;
  opt.key_padding = data.padding;
  const MatD q = random_matrix<double>(n - 10, data.d, 66);  // Nq < Nk, bottom-right aligned
  const MatD qh = normalized_rows(q);
  const Eigen::VectorXd s2 = Eigen::VectorXd::Constant(data.d, sigma * sigma);
  const MatD target =
      guarded_average(gaussian_target_kernel(qh, data.kh, s2),
                      gated_weights(q.rows(), n, log_of(gates), data.padding), data.v, 0);
  auto make = [&](Index nf, int s) {
    RfaOptions o;
    o.num_features = nf;
    o.sigma = sigma;
    o.seed = 1100 + std::uint64_t(s);
    return Rfa<double>(data.d, o);
  };
  auto run = [&](const Rfa<double>& rfa) {
    MatD out(q.rows(), data.dv);
    rfa.forward_gated(q, data.k, data.v, gates, out, opt);
    return out;
  };
  const auto result = converges(error_curve(make, run, target));
  EXPECT_TRUE(result);
  RecordProperty("gated", result.message());
}

// ---- 4. gated RFA ---------------------------------------------------------------------------

TYPED_TEST(RfaTest, GatedMatchesUnrolledRecurrenceForEveryChunkSize) {
  using T = TypeParam;
  const Index d = 8, dv = 4, nk = 37;
  test::DataRng rng(31);
  Vector<T> gates(nk);
  for (Index j = 0; j < nk; ++j) gates[j] = static_cast<T>(0.3 + 0.7 * rng.uniform());
  gates[5] = gates[6] = gates[20] = 1;                       // ignored tokens: no weight, no decay
  const Vector<T> log_gates = gates.array().log().matrix();  // as forward_gated computes them
  std::vector<double> ref_log_gates = log_of(gates.template cast<double>());
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    for (Index nq : {nk, nk - 9, nk + 5}) {
      const RowMatrix<T> q = random_matrix<T>(nq, d, 32 + nq), k = random_matrix<T>(nk, d, 33);
      RowMatrix<T> v = random_matrix<T>(nk, dv, 34);
      AttentionOptions opt;  // causal is implied (opt.causal stays false here on purpose)
      opt.key_padding = random_mask(nk, 0.2, 35);
      opt.key_padding[5] = false;
      const MatD vd = dbl(v);
      poison_padded_values(v, opt.key_padding);
      RowMatrix<T> first(nq, dv);
      for (Index chunk : {1, 4, 7, 64}) {
        RfaOptions o;
        o.num_features = 256;
        o.kernel = kernel;
        o.seed = 36;
        o.chunk_size = chunk;
        const Rfa<T> rfa(d, o);
        const MatD weights = gated_weights(nq, nk, ref_log_gates, opt.key_padding);
        Index ref_guarded = 0;
        const MatD ref =
            guarded_average(rfa_kernel(rfa, dbl(q), dbl(k)), weights, vd, o.den_eps, &ref_guarded);
        const std::string where = "kernel " + std::to_string(int(kernel)) + " Nq " +
                                  std::to_string(nq) + " chunk " + std::to_string(chunk);
        RowMatrix<T> out(nq, dv), out_log(nq, dv);
        LinearStats stats;
        stats.guarded_rows = -1;
        rfa.forward_gated(q, k, v, gates, out, opt, &stats);
        ASSERT_TRUE(test::all_finite(out)) << where;
        EXPECT_TRUE(near(out, ref, kRel<T>, kAbs<T>)) << where;
        EXPECT_EQ(stats.guarded_rows, ref_guarded) << where;
        EXPECT_EQ(ref_guarded, 0) << where;
        for (Index i = 0; i < nq; ++i)
          if (empty_row(weights, i)) {
            EXPECT_TRUE(out.row(i).isZero(0)) << where << " row " << i;
          }
        // The log-gate overload with the same log g is the same computation.
        rfa.forward_gated_log(q, k, v, log_gates, out_log, opt);
        EXPECT_TRUE(near(out_log, out, Tol<T>::rel, Tol<T>::abs)) << where;
        // causal = true changes nothing (it is implied).
        AttentionOptions causal_opt = opt;
        causal_opt.causal = true;
        RowMatrix<T> out_causal(nq, dv);
        rfa.forward_gated(q, k, v, gates, out_causal, causal_opt);
        EXPECT_TRUE((out_causal.array() == out.array()).all()) << where;
        // Every chunk size agrees with C = 1 (the recurrence, one token per chunk).
        if (chunk == 1)
          first = out;
        else
          EXPECT_TRUE(near(out, first, kRel<T>, kAbs<T>)) << where;
      }
    }
  }
}

TYPED_TEST(RfaTest, GatedLogOverloadKeepsGatesCloseToOnePrecise) {
  using T = TypeParam;
  // log g in [-2e-6, -1e-6]: in float, g = exp(log g) itself carries a relative error of ~3% in
  // 1 - g; the log overload computes 1 - g = -expm1(log g) and must match the reference.
  const Index n = 30, d = 8, dv = 3;
  test::DataRng rng(41);
  Vector<T> log_gates(n);
  for (Index j = 0; j < n; ++j) log_gates[j] = static_cast<T>(-1e-6 * (1 + rng.uniform()));
  const RowMatrix<T> q = random_matrix<T>(n, d, 42), k = random_matrix<T>(n, d, 43);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 44);
  RfaOptions o;
  o.num_features = 256;
  o.seed = 45;
  const Rfa<T> rfa(d, o);
  std::vector<double> lg(static_cast<size_t>(n));
  for (Index j = 0; j < n; ++j) lg[size_t(j)] = double(log_gates[j]);
  const MatD ref = guarded_average(rfa_kernel(rfa, dbl(q), dbl(k)), gated_weights(n, n, lg, {}),
                                   dbl(v), o.den_eps);
  RowMatrix<T> out(n, dv);
  LinearStats stats;
  rfa.forward_gated_log(q, k, v, log_gates, out, {}, &stats);
  EXPECT_EQ(stats.guarded_rows, 0);
  EXPECT_TRUE(near(out, ref, kRel<T>, kAbs<T>));
}

TYPED_TEST(RfaTest, GatedSpecialCases) {
  using T = TypeParam;
  const Index n = 20, d = 6, dv = 3;
  const RowMatrix<T> q = random_matrix<T>(n, d, 51), k = random_matrix<T>(n, d, 52);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 53);
  for (Index chunk : {1, 3, 64}) {
    RfaOptions o;
    o.num_features = 256;
    o.seed = 54;
    o.chunk_size = chunk;
    const Rfa<T> rfa(d, o);
    RowMatrix<T> out(n, dv);

    // g_0 < 1, g_t = 1 after: only token 0 has weight, so every output equals v_0 (the
    // denominators (1 - g_0) K_t0 are comfortably positive with 256 projections).
    Vector<T> gates = Vector<T>::Ones(n);
    gates[0] = T(0.4);
    rfa.forward_gated(q, k, v, gates, out);
    for (Index t = 0; t < n; ++t)
      EXPECT_TRUE(near(out.row(t), v.row(0), 10 * Tol<T>::rel, 10 * Tol<T>::abs))
          << "chunk " << chunk << " t " << t;

    // Constant gate g0: out_t = sum_j (1 - g0) g0^(t - j) K_tj v_j / sum_j (1 - g0) g0^(t - j)
    // K_tj.
    const double g0 = 0.8;
    gates.setConstant(static_cast<T>(g0));
    const double g0t = double(static_cast<T>(g0));
    MatD weights = MatD::Zero(n, n);
    for (Index t = 0; t < n; ++t)
      for (Index j = 0; j <= t; ++j) weights(t, j) = (1 - g0t) * std::pow(g0t, double(t - j));
    const MatD ref = guarded_average(rfa_kernel(rfa, dbl(q), dbl(k)), weights, dbl(v), o.den_eps);
    rfa.forward_gated(q, k, v, gates, out);
    EXPECT_TRUE(near(out, ref, kRel<T>, kAbs<T>)) << "chunk " << chunk;

    // All gates 1: no key has weight; every row is empty (0) and none is counted as guarded.
    gates.setOnes();
    LinearStats stats;
    stats.guarded_rows = -1;
    rfa.forward_gated(q, k, v, gates, out, {}, &stats);
    EXPECT_TRUE(out.isZero(0)) << "chunk " << chunk;
    EXPECT_EQ(stats.guarded_rows, 0);

    // Tiny gates reset the memory: out_t = v_t (k = q, so K_tt = n_f > 0). The total decay of a
    // chunk reaches e^-2500: only differences may be exponentiated.
    gates.setConstant(static_cast<T>(1e-30));
    rfa.forward_gated(q, q, v, gates, out);
    ASSERT_TRUE(test::all_finite(out)) << "chunk " << chunk;
    EXPECT_TRUE(near(out, v, 10 * Tol<T>::rel, 10 * Tol<T>::abs)) << "chunk " << chunk;
  }
}

// ---- 5. decoding -------------------------------------------------------------------------------

TYPED_TEST(RfaTest, StepTokenByTokenEqualsForward) {
  using T = TypeParam;
  const Index n = 29, d = 8, dv = 4;
  const RowMatrix<T> q = random_matrix<T>(n, d, 71), k = random_matrix<T>(n, d, 72);
  RowMatrix<T> v = random_matrix<T>(n, dv, 73);
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = random_mask(n, 0.25, 74);
  opt.key_padding[0] = true;  // the first query sees nothing
  poison_padded_values(v, opt.key_padding);
  test::DataRng rng(75);
  Vector<T> gates(n);
  for (Index j = 0; j < n; ++j) gates[j] = static_cast<T>(0.4 + 0.6 * rng.uniform());
  gates[7] = 1;
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    RfaOptions o;
    o.num_features = 64;
    o.kernel = kernel;
    o.seed = 76;
    o.chunk_size = 8;  // the forward is chunked; step() is the recurrence
    const Rfa<T> rfa(d, o);

    RowMatrix<T> expected(n, dv), out(n, dv);
    rfa.forward(q, k, v, expected, opt);
    auto state = rfa.make_state(dv);
    EXPECT_EQ(state.tokens(), 0);
    for (Index t = 0; t < n; ++t) {
      rfa.step(state, q.row(t), k.row(t), v.row(t), out.row(t), opt.key_padding[t]);
      EXPECT_EQ(state.tokens(), t + 1);  // padded tokens count too
    }
    ASSERT_TRUE(test::all_finite(out));
    EXPECT_TRUE(out.row(0).isZero(0));
    EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>)) << "kernel " << int(kernel);

    RowMatrix<T> expected_gated(n, dv), out_gated(n, dv);
    rfa.forward_gated(q, k, v, gates, expected_gated, opt);
    auto gated_state = rfa.make_state(dv);
    for (Index t = 0; t < n; ++t)
      rfa.step(gated_state, q.row(t), k.row(t), v.row(t), gates[t], out_gated.row(t),
               opt.key_padding[t]);
    EXPECT_EQ(gated_state.tokens(), n);
    ASSERT_TRUE(test::all_finite(out_gated));
    EXPECT_TRUE(near(out_gated, expected_gated, kRel<T>, kAbs<T>)) << "kernel " << int(kernel);
    // The gated recurrence differs from the ungated one (the gates are used).
    EXPECT_FALSE(near(out_gated, out, 1e-3, 0));
  }
}

TYPED_TEST(RfaTest, StateKeepsItsOwnFeatureMap) {
  using T = TypeParam;
  const Index n = 16, d = 8, dv = 3;
  const RowMatrix<T> q = random_matrix<T>(n, d, 81), k = random_matrix<T>(n, d, 82);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 83);
  AttentionOptions causal;
  causal.causal = true;
  RfaOptions o;
  o.num_features = 32;
  o.seed = 84;
  Rfa<T> rfa(d, o);
  const Rfa<T> original = rfa;  // a copy keeps the first projection
  auto state = rfa.make_state(dv);
  RowMatrix<T> out(n, dv);
  rfa.step(state, q.row(0), k.row(0), v.row(0), out.row(0));
  rfa.redraw(85);  // after make_state and mid-sequence
  ASSERT_FALSE((rfa.projection().array() == original.projection().array()).all());
  for (Index t = 1; t < n; ++t) rfa.step(state, q.row(t), k.row(t), v.row(t), out.row(t));
  RowMatrix<T> expected(n, dv), redrawn(n, dv);
  original.forward(q, k, v, expected, causal);
  EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>));
  // A state made after the redraw uses the new projection.
  rfa.forward(q, k, v, redrawn, causal);
  auto fresh = rfa.make_state(dv);
  RowMatrix<T> out_fresh(n, dv);
  for (Index t = 0; t < n; ++t) rfa.step(fresh, q.row(t), k.row(t), v.row(t), out_fresh.row(t));
  EXPECT_TRUE(near(out_fresh, redrawn, kRel<T>, kAbs<T>));
  EXPECT_FALSE(near(out_fresh, out, 1e-3, 0));
}

// ---- grouped-query attention ------------------------------------------------------------------

TYPED_TEST(RfaTest, ForwardGroupEqualsPerHeadForward) {
  using T = TypeParam;
  // Three query heads sharing one key/value head, read from and written to interleaved
  // [N, H, D] buffers (outer stride H D), as a multi-head caller does.
  const Index heads = 3, nq = 13, nk = 21, d = 8, dv = 4;
  const RowMatrix<T> qbuf = random_matrix<T>(nq, heads * d, 131);
  const RowMatrix<T> k = random_matrix<T>(nk, d, 132), v = random_matrix<T>(nk, dv, 133);
  RfaOptions o;
  o.num_features = 48;
  o.seed = 134;
  o.chunk_size = 5;
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    o.kernel = kernel;
    const Rfa<T> rfa(d, o);
    for (int causal = 0; causal < 2; ++causal) {
      AttentionOptions opt;
      opt.causal = causal;
      opt.key_padding = random_mask(nk, 0.2, 135);
      RowMatrix<T> obuf = RowMatrix<T>::Constant(nq, heads * dv, T(-7));
      std::vector<ConstMatMap<T>> qs;
      std::vector<MatMap<T>> outs;
      for (Index h = 0; h < heads; ++h) {
        qs.emplace_back(qbuf.data() + h * d, nq, d, Eigen::OuterStride<>(heads * d));
        outs.emplace_back(obuf.data() + h * dv, nq, dv, Eigen::OuterStride<>(heads * dv));
      }
      rfa.forward_group(qs, k, v, outs, opt);
      for (Index h = 0; h < heads; ++h) {
        const RowMatrix<T> qh = qbuf.middleCols(h * d, d);
        RowMatrix<T> expected(nq, dv);
        rfa.forward(qh, k, v, expected, opt);
        const RowMatrix<T> got = obuf.middleCols(h * dv, dv);
        EXPECT_TRUE(near(got, expected, Tol<T>::rel, Tol<T>::abs))
            << "kernel " << int(kernel) << " causal " << causal << " head " << h;
      }
    }
  }
}

// ---- 6. invariants -----------------------------------------------------------------------------

TYPED_TEST(RfaTest, Invariants) {
  using T = TypeParam;
  const Index nq = 19, nk = 31, d = 8, dv = 4;
  const RowMatrix<T> q = random_matrix<T>(nq, d, 91), k = random_matrix<T>(nk, d, 92);
  const RowMatrix<T> v = random_matrix<T>(nk, dv, 93);
  const KeyMask padding = random_mask(nk, 0.2, 94);
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    RfaOptions o;
    o.num_features = 128;
    o.sigma = 1.2;
    o.kernel = kernel;
    o.seed = 95;
    const Rfa<T> rfa(d, o);
    for (int causal = 0; causal < 2; ++causal) {
      const std::string where =
          "kernel " + std::to_string(int(kernel)) + " causal " + std::to_string(causal);
      AttentionOptions opt;
      opt.causal = causal;
      opt.key_padding = padding;
      RowMatrix<T> base(nq, dv), other(nq, dv);
      LinearStats stats;
      rfa.forward(q, k, v, base, opt, &stats);
      ASSERT_EQ(stats.guarded_rows, 0) << where;

      // q -> alpha q, k -> beta k (alpha, beta > 0): normalization removes the norms.
      rfa.forward(RowMatrix<T>(T(3.7) * q), RowMatrix<T>(T(0.21) * k), v, other, opt);
      EXPECT_TRUE(near(other, base, kRel<T>, kAbs<T>)) << where;

      // V + c -> out + c (no row is clamped here).
      const T c = T(2.5);
      rfa.forward(q, k, RowMatrix<T>(v.array() + c), other, opt);
      EXPECT_TRUE(near(other, RowMatrix<T>(base.array() + c), kRel<T>, kAbs<T>)) << where;

      // The attention scale has no effect at all.
      AttentionOptions scaled = opt;
      scaled.scale = 0.01;
      rfa.forward(q, k, v, other, scaled);
      EXPECT_TRUE((other.array() == base.array()).all()) << where;
      scaled.scale = 7;
      rfa.forward(q, k, v, other, scaled);
      EXPECT_TRUE((other.array() == base.array()).all()) << where;

      if (causal) continue;
      // Key permutation equivariance (bidirectional): permute keys, values and padding together.
      std::vector<Index> perm(static_cast<size_t>(nk));
      for (Index j = 0; j < nk; ++j) perm[size_t(j)] = (7 * j + 3) % nk;  // 7 is prime to 31
      RowMatrix<T> kp(nk, d), vp(nk, dv);
      KeyMask pp(nk);
      for (Index j = 0; j < nk; ++j) {
        kp.row(j) = k.row(perm[size_t(j)]);
        vp.row(j) = v.row(perm[size_t(j)]);
        pp[j] = padding[perm[size_t(j)]];
      }
      AttentionOptions popt = opt;
      popt.key_padding = pp;
      rfa.forward(q, kp, vp, other, popt);
      EXPECT_TRUE(near(other, base, kRel<T>, kAbs<T>)) << where;
    }
  }
}

// ---- 7. denominator guard ----------------------------------------------------------------------

TYPED_TEST(RfaTest, DenominatorGuardOnConstructedInputs) {
  using T = TypeParam;
  // One projection w = (2, 0): phi(x).phi(y) = cos(2 (x_hat_1 - y_hat_1)), negative when the
  // first coordinates of the normalized rows differ by more than pi/4.
  RowMatrix<T> w(1, 2);
  w << T(2), T(0);
  RfaOptions o;
  o.den_eps = 1e-3;
  const Rfa<T> rfa(w, o);
  EXPECT_EQ(rfa.feature_dim(), 2);
  EXPECT_TRUE((rfa.projection().array() == w.array()).all());
  RowMatrix<T> q(4, 2), k(2, 2), v(2, 2);
  q << T(1), T(0), T(0), T(3), T(-2), T(0), T(0.6), T(0.8);  // x_hat_1 = 1, 0, -1, 0.6
  k << T(0), T(1), T(5), T(0);                               // x_hat_1 = 0, 1
  v << T(1), T(2), T(-3), T(0.5);
  const double k02 = std::cos(-2.0), k12 = std::cos(-4.0);  // query 2 against keys 0 and 1
  auto check = [&](const AttentionOptions& opt, Index expected_guarded, const char* what) {
    const MatD weights = visibility(q.rows(), k.rows(), opt.causal, opt.key_padding);
    Index ref_guarded = 0;
    const MatD ref =
        guarded_average(rfa_kernel(rfa, dbl(q), dbl(k)), weights, dbl(v), o.den_eps, &ref_guarded);
    EXPECT_EQ(ref_guarded, expected_guarded) << what;  // the construction does what it says
    RowMatrix<T> out(q.rows(), 2);
    LinearStats stats;
    stats.guarded_rows = -1;
    rfa.forward(q, k, v, out, opt, &stats);
    EXPECT_TRUE(test::all_finite(out)) << what;
    EXPECT_EQ(stats.guarded_rows, expected_guarded) << what;
    EXPECT_TRUE(near(out, ref, 1e-5, 0)) << what;  // values up to ~2e3: plain rounding
    return out;
  };
  // Bidirectional: query 2 has den = cos 2 + cos 4 = -1.07 over 2 visible keys -> clamped:
  // N / (den_eps * 2).
  const RowMatrix<T> bi = check(AttentionOptions{}, 1, "bidirectional");
  EXPECT_NEAR(double(bi(2, 0)), (k02 * 1 + k12 * -3) / 2e-3, 1e-2);
  EXPECT_NEAR(double(bi(2, 1)), (k02 * 2 + k12 * 0.5) / 2e-3, 1e-2);
  // Key 1 padded: queries 0 and 2 see only key 0 with K = cos 2 < 0.
  AttentionOptions padded;
  padded.key_padding = KeyMask(2);
  padded.key_padding << false, true;
  check(padded, 2, "key 1 padded");
  // Causal, Nq = 4 > Nk = 2: queries 0 and 1 see no key (0, not counted); query 2 sees key 0 with
  // K = cos 2 < 0 (clamped); query 3 sees both (den = cos 1.2 + cos 0.8 > 0).
  AttentionOptions causal;
  causal.causal = true;
  const RowMatrix<T> ca = check(causal, 1, "causal");
  EXPECT_TRUE(ca.topRows(2).isZero(0));
  EXPECT_NEAR(double(ca(2, 0)), k02 * 1 / 1e-3, 1e-2);
  // Every key padded: every row is empty, none is counted.
  AttentionOptions all_padded;
  all_padded.key_padding = KeyMask::Constant(2, true);
  for (int c = 0; c < 2; ++c) {
    all_padded.causal = c;
    EXPECT_TRUE(check(all_padded, 0, "all padded").isZero(0));
  }
  // Nk = 0: every row is 0, none counted; Nq = 0: nothing to do.
  RowMatrix<T> out(4, 2);
  LinearStats stats;
  rfa.forward(q, RowMatrix<T>(0, 2), RowMatrix<T>(0, 2), out, {}, &stats);
  EXPECT_TRUE(out.isZero(0));
  EXPECT_EQ(stats.guarded_rows, 0);
  RowMatrix<T> none(0, 2);
  rfa.forward(RowMatrix<T>(0, 2), k, v, none, causal);

  // Boundary: with the single projection w = 0, K = cos 0 cos 0 + sin 0 sin 0 = 1 for every pair,
  // so the denominator is exactly the total visible weight. With den_eps = 1 it equals the floor
  // and is guarded (LinearStats: den <= den_eps * weight; the clamped value N / floor = N / den,
  // so only the count tells); with den_eps = 0.999 no row is guarded.
  RfaOptions unit_eps;
  unit_eps.den_eps = 1.0;
  const Rfa<T> flat(RowMatrix<T>::Zero(1, 2), unit_eps);
  AttentionOptions one_key;
  one_key.key_padding = KeyMask(2);
  one_key.key_padding << true, false;
  RowMatrix<T> flat_out(4, 2);
  LinearStats flat_stats;
  flat.forward(q, k, v, flat_out, one_key, &flat_stats);
  EXPECT_EQ(flat_stats.guarded_rows, 4);
  EXPECT_TRUE(near(flat_out, RowMatrix<T>(v.row(1).replicate(4, 1)), Tol<T>::rel, 0));
  flat.forward(q, k, v, flat_out, {}, &flat_stats);
  EXPECT_EQ(flat_stats.guarded_rows, 4);
  EXPECT_TRUE(near(flat_out, RowMatrix<T>(v.colwise().mean().replicate(4, 1)), Tol<T>::rel, 0));
  unit_eps.den_eps = 0.999;
  Rfa<T>(RowMatrix<T>::Zero(1, 2), unit_eps).forward(q, k, v, flat_out, {}, &flat_stats);
  EXPECT_EQ(flat_stats.guarded_rows, 0);

  // Decoding applies the same guard and counts it: token 0 (q_hat_1 = -1 against k_hat_1 = 0)
  // is clamped, token 1 is not.
  RowMatrix<T> sq(2, 2), sk(2, 2), sv(2, 2);
  sq << T(-1), T(0), T(0.6), T(0.8);
  sk << T(0), T(1), T(1), T(0);
  sv << T(1), T(2), T(-3), T(0.5);
  RowMatrix<T> expected(2, 2), stepped(2, 2);
  LinearStats fstats;
  rfa.forward(sq, sk, sv, expected, causal, &fstats);
  EXPECT_EQ(fstats.guarded_rows, 1);
  auto state = rfa.make_state(2);
  for (Index t = 0; t < 2; ++t) rfa.step(state, sq.row(t), sk.row(t), sv.row(t), stepped.row(t));
  EXPECT_EQ(state.linear().guarded_rows(), 1);
  EXPECT_TRUE(near(stepped, expected, 1e-5, 0));
  EXPECT_NEAR(double(stepped(0, 1)), std::cos(-2.0) * 2 / 1e-3, 1e-2);
}

TYPED_TEST(RfaTest, DenominatorGuardWithTinyFeatureCount) {
  using T = TypeParam;
  // n_f = 2 random projections: many rows get a denominator <= den_eps. Deterministic (fixed
  // seeds); the reference applies the same rule and must agree on which rows are clamped.
  const Index nq = 60, nk = 40, d = 4, dv = 3;
  const RowMatrix<T> q = random_matrix<T>(nq, d, 101), k = random_matrix<T>(nk, d, 102);
  const RowMatrix<T> v = random_matrix<T>(nk, dv, 103);
  RfaOptions o;
  o.num_features = 2;
  o.sigma = 2.0;
  o.projection = Projection::Gaussian;
  o.seed = 104;
  o.den_eps = 1e-2;
  const Rfa<T> rfa(d, o);
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    opt.key_padding = random_mask(nk, 0.2, 105);
    const MatD weights = visibility(nq, nk, causal, opt.key_padding);
    Index ref_guarded = 0;
    const MatD ref =
        guarded_average(rfa_kernel(rfa, dbl(q), dbl(k)), weights, dbl(v), o.den_eps, &ref_guarded);
    EXPECT_GT(ref_guarded, 3) << "the data must produce non-positive denominators";
    RowMatrix<T> out(nq, dv);
    LinearStats stats;
    rfa.forward(q, k, v, out, opt, &stats);
    ASSERT_TRUE(test::all_finite(out));
    EXPECT_EQ(stats.guarded_rows, ref_guarded) << "causal " << causal;
    // Rows near the threshold are ill-conditioned; compare relative to the output scale.
    EXPECT_TRUE(near(out, ref, 10 * kRel<T>, kAbs<T>)) << "causal " << causal;
    for (Index i = 0; i < nq; ++i)
      if (empty_row(weights, i)) {
        EXPECT_TRUE(out.row(i).isZero(0));
      }
  }
}

// ---- 8. determinism ----------------------------------------------------------------------------

template <class T>
bool same_bits(const RowMatrix<T>& a, const RowMatrix<T>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() && (a.array() == b.array()).all();
}

TYPED_TEST(RfaTest, SameSeedSameBitsAndRedrawIsExplicit) {
  using T = TypeParam;
  const Index n = 21, d = 8, dv = 3, m = 20;
  const RowMatrix<T> q = random_matrix<T>(n, d, 111), k = random_matrix<T>(n, d, 112);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 113);
  AttentionOptions causal;
  causal.causal = true;
  RfaOptions o;
  o.num_features = m;
  o.sigma = 1.3;
  o.seed = 114;
  Rfa<T> a(d, o);
  const Rfa<T> b(d, o);
  ASSERT_TRUE(same_bits(a.projection(), b.projection()));
  const RowMatrix<T> out_a = a(q, k, v, causal);
  EXPECT_TRUE(same_bits(out_a, b(q, k, v, causal)));
  EXPECT_TRUE(same_bits(out_a, a(q, k, v, causal)));  // repeated calls: nothing is redrawn
  // W = sigma E with E the library's orthogonal projection of that seed (docs/spec/rfa.md §4).
  EXPECT_TRUE(near(a.projection(), RowMatrix<T>(T(1.3) * orthogonal_projection<T>(m, d, 114)),
                   Tol<T>::rel, 0));
  EXPECT_EQ(a.head_dim(), d);
  EXPECT_EQ(a.feature_dim(), 2 * m);

  const RowMatrix<T> first = a.projection();
  a.redraw(115);
  EXPECT_EQ(a.options().seed, 115u);
  EXPECT_FALSE(near(a.projection(), first, 1e-2, 0));
  EXPECT_EQ(a.projection().rows(), m);
  EXPECT_FALSE(near(a(q, k, v, causal), out_a, 1e-3, 0));
  a.redraw(114);
  EXPECT_TRUE(same_bits(a.projection(), first));
  EXPECT_TRUE(same_bits(a(q, k, v, causal), out_a));

  // Gaussian and Orthogonal draws differ; each is the documented sampler scaled by sigma.
  RfaOptions g = o;
  g.projection = Projection::Gaussian;
  const Rfa<T> gauss(d, g);
  EXPECT_FALSE(near(gauss.projection(), a.projection(), 1e-2, 0));
  EXPECT_TRUE(near(gauss.projection(), RowMatrix<T>(T(1.3) * gaussian_projection<T>(m, d, 114)),
                   Tol<T>::rel, 0));

  // Vector sigma: W = E diag(sigma) (columns scaled).
  Vector<T> sigma(d);
  for (Index c = 0; c < d; ++c) sigma[c] = T(0.5 + 0.25 * double(c));
  RfaOptions vo = o;
  vo.sigma = 1.0;
  const Rfa<T> vec(d, vo, sigma);
  EXPECT_TRUE(near(vec.projection(),
                   RowMatrix<T>(orthogonal_projection<T>(m, d, 114) * sigma.asDiagonal()),
                   Tol<T>::rel, 0));

  // Default feature count: 128 projections (256 trig features, 128 arc-cosine features).
  EXPECT_EQ(Rfa<T>(d).projection().rows(), 128);
  EXPECT_EQ(Rfa<T>(d).feature_dim(), 256);
  RfaOptions ao;
  ao.kernel = RfaKernel::Arccos;
  EXPECT_EQ(Rfa<T>(d, ao).feature_dim(), 128);
}

// ---- 9. bad input ------------------------------------------------------------------------------

TYPED_TEST(RfaTest, BadInputThrowsWithUsefulMessage) {
  using T = TypeParam;
  using test::invalid_argument_message;
  const Index d = 4, n = 5, dv = 2;
  auto expect_message = [](const std::string& msg, const char* fragment) {
    EXPECT_NE(msg.find(fragment), std::string::npos)
        << "expected \"" << fragment << "\" in \"" << msg << "\"";
  };
  auto with = [](auto edit) {
    RfaOptions o;
    edit(o);
    return o;
  };
  // redraw() would silently replace a caller's projection (sigma included) with a default one.
  Rfa<T> given(RowMatrix<T>::Ones(6, d));
  expect_message(invalid_argument_message([&] { given.redraw(1); }), "caller-supplied");
  EXPECT_EQ(given.projection().rows(), 6);
  for (double s : {0.0, -1.0, kNaN, std::numeric_limits<double>::infinity()})
    expect_message(invalid_argument_message(
                       [&] { (void)Rfa<T>(d, with([&](RfaOptions& o) { o.sigma = s; })); }),
                   "sigma must be finite and > 0");
  for (double e : {0.0, -1e-6, kNaN})
    expect_message(invalid_argument_message(
                       [&] { (void)Rfa<T>(d, with([&](RfaOptions& o) { o.den_eps = e; })); }),
                   "den_eps must be finite and > 0");
  expect_message(invalid_argument_message(
                     [&] { (void)Rfa<T>(d, with([](RfaOptions& o) { o.num_features = -1; })); }),
                 "num_features must be >= 0");
  expect_message(invalid_argument_message([&] { (void)Rfa<T>(0); }), "head_dim must be at least 1");
  expect_message(invalid_argument_message(
                     [&] { (void)Rfa<T>(d, with([](RfaOptions& o) { o.chunk_size = -2; })); }),
                 "chunk_size must be >= 0");
  expect_message(invalid_argument_message([&] { (void)Rfa<T>(d, {}, Vector<T>::Ones(d + 1)); }),
                 "sigma_per_dim has size 5 but head_dim = 4");
  Vector<T> bad_sigma = Vector<T>::Ones(d);
  bad_sigma[2] = 0;
  expect_message(invalid_argument_message([&] { (void)Rfa<T>(d, {}, bad_sigma); }),
                 "sigma_per_dim entries must be finite and > 0");
  bad_sigma[2] = static_cast<T>(kNaN);
  expect_message(invalid_argument_message([&] { (void)Rfa<T>(d, {}, bad_sigma); }),
                 "sigma_per_dim entries must be finite and > 0");
  expect_message(invalid_argument_message([&] {
                   (void)Rfa<T>(d, with([](RfaOptions& o) { o.sigma = 2; }), Vector<T>::Ones(d));
                 }),
                 "either sigma or sigma_per_dim");
  const RowMatrix<T> w = random_matrix<T>(6, d, 121);
  expect_message(
      invalid_argument_message([&] { (void)Rfa<T>(w, with([](RfaOptions& o) { o.sigma = 2; })); }),
      "options.sigma must stay 1");
  expect_message(invalid_argument_message(
                     [&] { (void)Rfa<T>(w, with([](RfaOptions& o) { o.num_features = 7; })); }),
                 "num_features = 7 but projection [6, 4]");
  expect_message(invalid_argument_message([&] { (void)Rfa<T>(RowMatrix<T>(0, d)); }), "non-empty");

  RfaOptions o;
  o.num_features = 16;
  const Rfa<T> rfa(d, o);
  const RowMatrix<T> q = random_matrix<T>(n, d, 122), k = random_matrix<T>(n, d, 123);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 124);
  RowMatrix<T> out(n, dv);
  expect_message(
      invalid_argument_message([&] { rfa.forward(random_matrix<T>(n, d + 1, 125), k, v, out); }),
      "must have D = head_dim = 4");
  expect_message(
      invalid_argument_message([&] { rfa.forward(q, random_matrix<T>(n, d + 1, 125), v, out); }),
      "must have D = 4");
  AttentionOptions alibi;
  alibi.alibi_slope = 0.5;
  expect_message(invalid_argument_message([&] { rfa.forward(q, k, v, out, alibi); }), "ALiBi");
  expect_message(
      invalid_argument_message([&] { rfa.forward_gated(q, k, v, Vector<T>::Ones(n), out, alibi); }),
      "ALiBi");
  expect_message(invalid_argument_message(
                     [&] { rfa.forward_gated(q, k, v, Vector<T>::Constant(n - 1, T(0.5)), out); }),
                 "gates has size 4 but k has Nk = 5");
  for (double g : {0.0, -0.5, 1.5, kNaN}) {
    Vector<T> gates = Vector<T>::Constant(n, T(0.5));
    gates[3] = static_cast<T>(g);
    expect_message(invalid_argument_message([&] { rfa.forward_gated(q, k, v, gates, out); }),
                   "gates must be in (0, 1]");
  }
  for (double lg : {0.1, kNaN, -std::numeric_limits<double>::infinity()}) {
    Vector<T> log_gates = Vector<T>::Constant(n, T(-0.5));
    log_gates[1] = static_cast<T>(lg);
    expect_message(
        invalid_argument_message([&] { rfa.forward_gated_log(q, k, v, log_gates, out); }),
        "log_gates must be finite and <= 0");
  }
  auto state = rfa.make_state(dv);
  RowMatrix<T> out_t(1, dv);
  for (double g : {0.0, -0.1, 1.01, kNaN})
    expect_message(invalid_argument_message([&] {
                     rfa.step(state, q.row(0), k.row(0), v.row(0), static_cast<T>(g), out_t);
                   }),
                   "gate must be in (0, 1]");
  EXPECT_EQ(state.tokens(), 0);  // rejected steps change nothing
  RowMatrix<T> wide(1, dv + 1);
  expect_message(
      invalid_argument_message([&] { rfa.step(state, q.row(0), k.row(0), v.row(0), wide); }),
      "must be one row each");
  expect_message(invalid_argument_message([&] { (void)rfa.make_state(-1); }),
                 "value_dim must be >= 0");
}

}  // namespace
}  // namespace fastattn
