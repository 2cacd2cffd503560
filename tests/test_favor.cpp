// Tests of favor.hpp: Favor<T> against independent double-precision evaluations of the FAVOR
// formulas (docs/spec/favor.md §3-§5, §11), decoding, invariants, and the accuracy ordering of the
// estimators.

#include "fastattn/favor.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "fastattn/exact.hpp"
#include "fastattn/metrics.hpp"
#include "reference/favor.hpp"
#include "reference/features.hpp"
#include "reference/linear.hpp"
#include "reference/statistics.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

namespace ref = test::ref;
using test::near;
using test::random_matrix;
using MatD = RowMatrix<double>;

/// What FAVOR's reference features need: kernel, logit scale s, FAVOR++ A, ReLU eps, rescaling
/// psi (x -> psi o x for queries, y -> y / psi for keys; empty = none).
struct RefFeatures {
  FavorKernel kernel = FavorKernel::Positive;
  double scale = 0;
  double a = 0;
  double relu_eps = 1e-3;
  Eigen::VectorXd psi;
};

/// phi(x) of docs/spec/favor.md §3-§4 from the reference maps (tests/reference/features.hpp), in
/// double with no stabilization (small inputs).
MatD ref_features(const RefFeatures& f, const MatD& w, const MatD& x, bool is_query) {
  ref::FeatureSpec spec;
  spec.input_scale = std::sqrt(f.scale != 0 ? f.scale : 1 / std::sqrt(double(x.cols())));
  if (f.psi.size()) spec.dim_scale = is_query ? f.psi : Eigen::VectorXd(f.psi.cwiseInverse());
  spec.optimal_a = f.a;
  spec.relu_eps = f.relu_eps;
  const FeatureKind kind = f.kernel == FavorKernel::Hyperbolic ? FeatureKind::Hyperbolic
                           : f.kernel == FavorKernel::Optimal  ? FeatureKind::Optimal
                           : f.kernel == FavorKernel::Relu     ? FeatureKind::Relu
                                                               : FeatureKind::Positive;
  const MatD phi = ref::features(kind, w, x, spec);
  return ref::log_domain(kind) ? MatD(phi.unaryExpr([](double l) { return std::exp(l); })) : phi;
}

/// out_i = phi_i . sum_{j visible} phi_j v_j / phi_i . sum_{j visible} phi_j
/// (reference/linear.hpp).
MatD ref_linear(const MatD& fq, const MatD& fk, const MatD& v, bool causal, const KeyMask& pad) {
  return ref::linear_attention(fq, fk, v, ref::LinearSpec{causal, pad});
}

template <class T>
class FavorTest : public ::testing::Test {
 protected:
  static MatD d(const RowMatrix<T>& x) { return x.template cast<double>(); }
};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(FavorTest, Types);

// Feature sums in T against a double evaluation of the same formula: a few times the rounding of a
// positive weighted average (and of the feature GEMM) in T.
template <class T>
constexpr double kRel = std::is_same_v<T, float> ? 2e-4 : 1e-11;

TYPED_TEST(FavorTest, ForwardEqualsIndependentEvaluationForEveryKernel) {
  using T = TypeParam;
  const Index nq = 19, nk = 27, d = 8, m = 24, dv = 5;
  const auto q = random_matrix<T>(nq, d, 1, 0.6), k = random_matrix<T>(nk, d, 2, 0.6);
  const auto v = random_matrix<T>(nk, dv, 3);
  const RowMatrix<T> w = gaussian_projection<T>(m, d, 4);
  for (auto kernel :
       {FavorKernel::Positive, FavorKernel::Hyperbolic, FavorKernel::Optimal, FavorKernel::Relu}) {
    FavorOptions fo;
    fo.kernel = kernel;
    fo.optimal_a = -0.05;
    const Favor<T> favor(w, fo);
    RefFeatures rf;
    rf.kernel = kernel;
    rf.a = -0.05;
    for (int causal = 0; causal < 2; ++causal)
      for (double scale : {0.0, 0.2}) {
        SCOPED_TRACE(testing::Message()
                     << "kernel " << int(kernel) << " causal " << causal << " scale " << scale);
        AttentionOptions opt;
        opt.causal = causal;
        opt.scale = scale;
        opt.key_padding = test::random_mask(nk, 0.3, 5);
        rf.scale = scale;
        const MatD expected = ref_linear(ref_features(rf, this->d(w), this->d(q), true),
                                         ref_features(rf, this->d(w), this->d(k), false),
                                         this->d(v), opt.causal, opt.key_padding);
        EXPECT_TRUE(near(favor(q, k, v, opt), expected, kRel<T>, kRel<T>));
      }
  }
}

TYPED_TEST(FavorTest, OptimalAndRescalingFitTheirParametersFromTheData) {
  using T = TypeParam;
  // Non-causal FAVOR++ with A = A* from docs/spec/favor.md §4, and the diagonal rescaling of §5
  // (anisotropic q and k scales make psi far from 1).
  const Index nq = 21, nk = 30, d = 6, m = 32, dv = 3;
  RowMatrix<T> q = random_matrix<T>(nq, d, 1, 0.5), k = random_matrix<T>(nk, d, 2, 0.5);
  for (Index l = 0; l < d; ++l) q.col(l) *= T(0.3 + 0.4 * l), k.col(l) /= T(0.3 + 0.4 * l);
  const auto v = random_matrix<T>(nk, dv, 3);
  const RowMatrix<T> w = gaussian_projection<T>(m, d, 4);
  AttentionOptions opt;
  opt.key_padding = test::random_mask(nk, 0.2, 5);
  const double s = 1 / std::sqrt(double(d));
  const MatD qd = this->d(q), kd = this->d(k);
  for (int rescale = 0; rescale < 2; ++rescale) {
    // psi and A* fitted from q and the valid keys (tests/reference/favor.hpp).
    const ref::FavorFit fit = ref::favor_fit(qd, kd, opt.key_padding, s, rescale, true);
    const double a_star = fit.a;
    ASSERT_LT(a_star, 0);
    FavorOptions fo;
    fo.kernel = FavorKernel::Optimal;
    fo.rescale = rescale;
    RefFeatures rf;
    rf.kernel = FavorKernel::Optimal;
    rf.a = a_star;
    if (rescale) rf.psi = fit.psi;
    const MatD expected =
        ref_linear(ref_features(rf, this->d(w), qd, true), ref_features(rf, this->d(w), kd, false),
                   this->d(v), false, opt.key_padding);
    EXPECT_TRUE(near(Favor<T>(w, fo)(q, k, v, opt), expected, kRel<T>, kRel<T>))
        << "rescale " << rescale;
  }
}

TYPED_TEST(FavorTest, DecodingTokenByTokenEqualsCausalForward) {
  using T = TypeParam;
  const Index n = 70, d = 16, dv = 8;
  const auto q = random_matrix<T>(n, d, 1), k = random_matrix<T>(n, d, 2);
  auto v = random_matrix<T>(n, dv, 3);
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = test::random_mask(n, 0.15, 4);
  for (auto kernel : {FavorKernel::Positive, FavorKernel::Hyperbolic, FavorKernel::Optimal,
                      FavorKernel::Relu, FavorKernel::Smreg}) {
    FavorOptions fo;
    fo.kernel = kernel;
    fo.num_features = 64;
    fo.optimal_a = -0.02;
    fo.chunk_size = 16;
    Favor<T> favor(d, fo);
    const RowMatrix<T> expected = favor(q, k, v, opt);
    auto state = favor.make_state(dv);
    favor.redraw(99);  // the state keeps the features it was made with
    RowMatrix<T> out(n, dv), vv = v;
    for (Index j = 0; j < n; ++j)
      if (opt.key_padding[j]) vv(j, 1) = std::numeric_limits<T>::infinity();
    for (Index t = 0; t < n; ++t)
      Favor<T>(d, fo).step(state, q.row(t), k.row(t), vv.row(t), out.row(t), opt.key_padding[t]);
    ASSERT_TRUE(test::all_finite(out)) << "kernel " << int(kernel);
    EXPECT_TRUE(near(out, expected, kRel<T>, kRel<T>)) << "kernel " << int(kernel);
    EXPECT_EQ(state.tokens(), n);
  }
}

TYPED_TEST(FavorTest, InvariantsOfPositiveFeatures) {
  using T = TypeParam;
  const Index nq = 12, nk = 25, d = 16, dv = 4;
  const auto q = random_matrix<T>(nq, d, 1), k = random_matrix<T>(nk, d, 2);
  const auto v = random_matrix<T>(nk, dv, 3);
  const Favor<T> favor(d);
  const RowMatrix<T> out = favor(q, k, v);
  // Identical keys -> the mean of the values, whatever the features.
  const RowMatrix<T> same = random_matrix<T>(1, d, 4).replicate(nk, 1);
  EXPECT_TRUE(
      near(favor(q, same, v), RowMatrix<T>(v.colwise().mean().replicate(nq, 1)), kRel<T>, kRel<T>));
  // V + c -> out + c.
  EXPECT_TRUE(near(favor(q, k, RowMatrix<T>(v.array() + T(2))), RowMatrix<T>(out.array() + T(2)),
                   kRel<T>, kRel<T>));
  // Key permutation.
  Eigen::PermutationMatrix<Eigen::Dynamic> perm(nk);
  perm.setIdentity();
  std::reverse(perm.indices().data(), perm.indices().data() + nk);
  EXPECT_TRUE(
      near(favor(q, RowMatrix<T>(perm * k), RowMatrix<T>(perm * v)), out, kRel<T>, kRel<T>));
}

// ---- compatibility modes: the reference implementations' formulas ------------------------------

/// docs/spec/favor.md §11, written out for the test: softmax_kernel of performer-pytorch / google
/// jax / the EVA repo, fast-transformers' hyperbolic Favor, performer-pytorch's ReLU features.
MatD compat_features(FavorCompat c, bool relu, const MatD& w, const MatD& x, bool is_query) {
  const Index n = x.rows(), m = w.rows(), d = x.cols();
  const MatD xs = x * std::pow(double(d), -0.25);
  const MatD u = xs * w.transpose();
  if (relu) return (u.array().max(0.0) + 1e-3).matrix();
  MatD f(n, c == FavorCompat::FastTransformers ? 2 * m : m);
  const double key_max = u.maxCoeff();
  for (Index i = 0; i < n; ++i) {
    const double h = 0.5 * xs.row(i).squaredNorm();
    for (Index r = 0; r < m; ++r) {
      if (c == FavorCompat::FastTransformers) {
        const double offset = h + 0.5 * std::log(2.0 * double(m));
        f(i, r) = std::exp(u(i, r) - offset);
        f(i, m + r) = std::exp(-u(i, r) - offset);
        continue;
      }
      const double shift = is_query ? u.row(i).maxCoeff() : key_max;
      const double e = std::exp(u(i, r) - h - shift), ratio = 1 / std::sqrt(double(m));
      if (c == FavorCompat::EvaRepo)
        f(i, r) = ratio * e + 1e-4;
      else
        f(i, r) = ratio * (e + (c == FavorCompat::GoogleJax ? 1e-6 : 1e-4));
    }
  }
  return f;
}

MatD compat_attention(FavorCompat c, bool relu, const MatD& w, const MatD& q, const MatD& k,
                      const MatD& v, bool causal) {
  const MatD fq = compat_features(c, relu, w, q, true), fk = compat_features(c, relu, w, k, false);
  const Index nq = q.rows(), nk = k.rows();
  MatD out(nq, v.cols());
  for (Index i = 0; i < nq; ++i) {
    Eigen::RowVectorXd num = Eigen::RowVectorXd::Zero(v.cols());
    Eigen::VectorXd key_sum = Eigen::VectorXd::Zero(fk.cols());
    for (Index j = 0; j < nk && (!causal || j <= i + nk - nq); ++j) {
      num += fq.row(i).dot(fk.row(j)) * v.row(j);
      key_sum += fk.row(j).transpose();
    }
    if (causal && c == FavorCompat::PerformerPytorch) key_sum.array() += 1e-6;
    double den = fq.row(i).dot(key_sum);
    if (c == FavorCompat::GoogleJax && std::abs(den) <= 1e-6) den += 2e-6;
    if (c == FavorCompat::FastTransformers) den += 1e-6;
    if (c == FavorCompat::EvaRepo) den = std::max(den, 1e-2);
    out.row(i) = num / den;
  }
  return out;
}

TYPED_TEST(FavorTest, CompatModesEqualTheReferenceFormulas) {
  using T = TypeParam;
  const Index nq = 14, nk = 22, d = 16, m = 32, dv = 4;
  const auto q = random_matrix<T>(nq, d, 1), k = random_matrix<T>(nk, d, 2);
  const auto v = random_matrix<T>(nk, dv, 3);
  const RowMatrix<T> w = gaussian_projection<T>(m, d, 4);
  struct Mode {
    FavorCompat compat;
    FavorKernel kernel;
  };
  for (Mode mode : {Mode{FavorCompat::PerformerPytorch, FavorKernel::Positive},
                    Mode{FavorCompat::PerformerPytorch, FavorKernel::Relu},
                    Mode{FavorCompat::GoogleJax, FavorKernel::Positive},
                    Mode{FavorCompat::FastTransformers, FavorKernel::Hyperbolic},
                    Mode{FavorCompat::EvaRepo, FavorKernel::Positive}}) {
    FavorOptions fo;
    fo.compat = mode.compat;
    fo.kernel = mode.kernel;
    const Favor<T> favor(w, fo);
    for (int causal = 0; causal < 2; ++causal) {
      AttentionOptions opt;
      opt.causal = causal;
      const MatD expected =
          compat_attention(mode.compat, mode.kernel == FavorKernel::Relu, this->d(w), this->d(q),
                           this->d(k), this->d(v), causal);
      EXPECT_TRUE(near(favor(q, k, v, opt), expected, kRel<T>, kRel<T>))
          << "compat " << int(mode.compat) << " kernel " << int(mode.kernel) << " causal "
          << causal;
    }
    EXPECT_THROW(favor.make_state(dv), std::invalid_argument);  // not causal: no decoding
  }
}

TYPED_TEST(FavorTest, CompatModesRemovePaddedKeys) {
  using T = TypeParam;
  // A padded key is as if absent: excluded from the key max and the sums (the references would
  // keep it in the denominator).
  const Index nq = 9, nk = 15, d = 8, dv = 3;
  const auto q = random_matrix<T>(nq, d, 1), k = random_matrix<T>(nk, d, 2);
  const auto v = random_matrix<T>(nk, dv, 3);
  AttentionOptions opt;
  opt.key_padding = test::random_mask(nk, 0.4, 4);
  Index valid = 0;
  RowMatrix<T> kv(nk, d), vv(nk, dv);
  for (Index j = 0; j < nk; ++j)
    if (!opt.key_padding[j]) kv.row(valid) = k.row(j), vv.row(valid++) = v.row(j);
  FavorOptions fo;
  fo.compat = FavorCompat::PerformerPytorch;
  const Favor<T> favor(d, fo);
  EXPECT_TRUE(
      near(favor(q, k, v, opt), favor(q, kv.topRows(valid), vv.topRows(valid)), kRel<T>, kRel<T>));
}

// ---- accuracy against exact attention ---------------------------------------------------------

/// Mean relative error against exact attention over `seeds` independent data and projections.
double mean_error(FavorOptions fo, Index n, Index d, double sigma, int seeds, bool causal = false) {
  double total = 0;
  for (int s = 0; s < seeds; ++s) {
    const MatD q = random_matrix<double>(n, d, 100 + s, sigma),
               k = random_matrix<double>(n, d, 200 + s, sigma),
               v = random_matrix<double>(n, d, 300 + s);
    AttentionOptions opt;
    opt.causal = causal;
    fo.seed = 400 + std::uint64_t(s);
    total +=
        relative_error<double>(Favor<double>(d, fo)(q, k, v, opt), Exact<double>()(q, k, v, opt));
  }
  return total / seeds;
}

TEST(FavorAccuracy, ErrorDecreasesLikeInverseSqrtOfFeatures) {
  // Small-norm regime (d = 16, sigma = 0.3): the estimator's variance dominates, so the error
  // against exact attention falls like m^-1/2 (docs/spec/favor.md §10.7). Fitted log-log slope.
  std::vector<double> features, errors;
  for (Index m : {32, 128, 512, 2048}) {
    FavorOptions fo;
    fo.num_features = m;
    features.push_back(double(m));
    errors.push_back(mean_error(fo, 256, 16, 0.3, 4));
  }
  const double slope = ref::loglog_slope(features, errors);
  EXPECT_GT(slope, -0.75);
  EXPECT_LT(slope, -0.35);
}

TEST(FavorAccuracy, HyperbolicAndOptimalBeatPositiveAtEqualFeatures) {
  // docs/spec/favor.md §9.1, §12 (d = 16, sigma = 0.5, |x|^2 ~ 1): hyperbolic with m/2 projections
  // (m features) and FAVOR++ with m have lower error than FAVOR+ with m. Paired seeds, 8 of them.
  FavorOptions positive, hyperbolic, optimal;
  positive.num_features = optimal.num_features = 64;
  hyperbolic.num_features = 32;
  hyperbolic.kernel = FavorKernel::Hyperbolic;
  optimal.kernel = FavorKernel::Optimal;
  const double e_pos = mean_error(positive, 512, 16, 0.5, 8);
  const double e_hyp = mean_error(hyperbolic, 512, 16, 0.5, 8);
  const double e_opt = mean_error(optimal, 512, 16, 0.5, 8);
  EXPECT_LT(e_hyp, e_pos);
  EXPECT_LT(e_opt, e_pos);
}

// ---- construction, determinism and bad input --------------------------------------------------

TYPED_TEST(FavorTest, SameSeedSameProjectionAndRedrawIsExplicit) {
  using T = TypeParam;
  FavorOptions fo;
  fo.seed = 5;
  Favor<T> a(32, fo), b(32, fo);
  EXPECT_TRUE((a.projection().array() == b.projection().array()).all());
  EXPECT_EQ(a.projection().rows(), 256);
  EXPECT_EQ(a.feature_dim(), 256);
  a.redraw(6);
  EXPECT_FALSE((a.projection().array() == b.projection().array()).all());
  a.redraw(5);
  EXPECT_TRUE((a.projection().array() == b.projection().array()).all());
  fo.kernel = FavorKernel::Hyperbolic;
  EXPECT_EQ(Favor<T>(32, fo).feature_dim(), 512);
  fo.kernel = FavorKernel::Smreg;  // fixed norms sqrt(d)
  const RowMatrix<T> w = Favor<T>(32, fo).projection();
  EXPECT_NEAR(w.rowwise().norm().minCoeff(), std::sqrt(32.0), 1e-4);
  EXPECT_NEAR(w.rowwise().norm().maxCoeff(), std::sqrt(32.0), 1e-4);
}

TYPED_TEST(FavorTest, BadInputThrowsWithUsefulMessage) {
  using T = TypeParam;
  const auto q = random_matrix<T>(3, 8, 1), k = random_matrix<T>(5, 8, 2);
  const auto v = random_matrix<T>(5, 2, 3);
  RowMatrix<T> out(3, 2);
  auto message = [](auto&& fn) { return test::invalid_argument_message(fn); };
  AttentionOptions alibi;
  alibi.alibi_slope = 0.5;
  EXPECT_NE(message([&] { Favor<T>(8).forward(q, k, v, out, alibi); }).find("ALiBi"),
            std::string::npos);
  EXPECT_NE(message([&] { Favor<T>(6).forward(q, k, v, out); }).find("head_dim = 6"),
            std::string::npos);
  FavorOptions optimal;
  optimal.kernel = FavorKernel::Optimal;  // A from the data: not causal
  AttentionOptions causal;
  causal.causal = true;
  EXPECT_NE(
      message([&] { Favor<T>(8, optimal).forward(q, k, v, out, causal); }).find("data-independent"),
      std::string::npos);
  EXPECT_THROW(Favor<T>(8, optimal).make_state(2), std::invalid_argument);
  FavorOptions bad;
  bad.kernel = FavorKernel::Smreg;
  bad.projection = Projection::Gaussian;
  EXPECT_NE(message([&] { Favor<T>(8, bad); }).find("Smreg"), std::string::npos);
  bad = FavorOptions{};
  bad.optimal_a = 0.2;
  EXPECT_NE(message([&] { Favor<T>(8, bad); }).find("1/8"), std::string::npos);
  bad = FavorOptions{};
  bad.compat = FavorCompat::FastTransformers;
  EXPECT_NE(message([&] { Favor<T>(8, bad); }).find("Hyperbolic"), std::string::npos);
  bad = FavorOptions{};
  bad.num_features = 16;
  EXPECT_NE(message([&] { Favor<T>(RowMatrix<T>::Ones(8, 4), bad); }).find("num_features = 16"),
            std::string::npos);
  EXPECT_THROW(Favor<T>(0), std::invalid_argument);
  // redraw() would silently replace a caller's projection with a default random one.
  Favor<T> given(RowMatrix<T>::Ones(8, 4));
  EXPECT_NE(message([&] { given.redraw(1); }).find("caller-supplied"), std::string::npos);
  EXPECT_EQ(given.projection().rows(), 8);
  // A negative scale is named as such (the features use sqrt(scale)), not as a FeatureMap error.
  AttentionOptions negative;
  negative.scale = -0.5;
  EXPECT_NE(
      message([&] { Favor<T>(8).forward(q, k, v, out, negative); }).find("Favor::forward: scale"),
      std::string::npos);
  EXPECT_NE(message([&] { Favor<T>(8).make_state(2, negative); }).find("Favor::make_state: scale"),
            std::string::npos);
  // Decoding options it would otherwise ignore silently.
  EXPECT_NE(message([&] { Favor<T>(8).make_state(2, alibi); }).find("ALiBi"), std::string::npos);
  AttentionOptions padded;
  padded.key_padding = KeyMask::Constant(3, false);
  EXPECT_NE(message([&] { Favor<T>(8).make_state(2, padded); }).find("key_padding must be empty"),
            std::string::npos);
}

}  // namespace
}  // namespace fastattn
