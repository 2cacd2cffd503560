// Tests of features.hpp and detail/sincos.hpp: the feature maps against an independent
// double-precision evaluation of their formulas (docs/spec/favor.md §3-§5, docs/spec/rfa.md §2, §7), the
// joint sin/cos against std::sin/std::cos, argument checks, and the statistical properties of the
// kernel estimates built from the features (docs/spec/favor.md §9, §10; docs/spec/rfa.md §3, §7, §9).
//
// Statistical tests run in double with fixed seeds (deterministic) and compare Monte Carlo means
// with exact values within kSe = 4 standard errors (SE = sample std / sqrt(draws)); each prints its
// observed margin in SE. Draw k of a test uses the projection seed derive_seed(seed, k).

#include "fastattn/features.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "fastattn/random.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::invalid_argument_message;
using test::near;
using test::random_matrix;
using test::Tol;

constexpr double kPi = 3.14159265358979323846;
constexpr double kSe = 4;  // every statistical comparison: |Monte Carlo mean - exact| <= 4 SE

constexpr FeatureKind kAllKinds[] = {
    FeatureKind::Positive, FeatureKind::Hyperbolic, FeatureKind::Optimal,    FeatureKind::Trig,
    FeatureKind::Relu,     FeatureKind::Identity,   FeatureKind::Exponential};

const char* kind_name(FeatureKind k) {
  switch (k) {
    case FeatureKind::Positive:
      return "Positive";
    case FeatureKind::Hyperbolic:
      return "Hyperbolic";
    case FeatureKind::Optimal:
      return "Optimal";
    case FeatureKind::Trig:
      return "Trig";
    case FeatureKind::Relu:
      return "Relu";
    case FeatureKind::Identity:
      return "Identity";
    case FeatureKind::Exponential:
      return "Exponential";
  }
  return "?";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- the independent double-precision reference ----------------------------------------------

/// The features of rows x [n, D] written from the formulas with plain loops: x~ = c psi o x_hat
/// (x_hat = x / |x| when normalizing, 0 for a zero row), h = |x~|^2 / 2, u_r = w_r . x~, and
///   Positive    u_r - h                          (log)
///   Hyperbolic  [u_r - h, -u_r - h]              (log)
///   Optimal     A |w_r|^2 + sqrt(1 - 4A) u_r - h (log)
///   Trig        [cos u_r, sin u_r]
///   Relu        max(u_r, 0) + eps
///   Identity    x~;  Exponential x~ (log)
RowMatrix<double> reference_features(FeatureKind kind, const RowMatrix<double>& w,
                                     const RowMatrix<double>& x, const FeatureMapOptions& o,
                                     const Eigen::VectorXd& psi) {
  const Index n = x.rows(), d = x.cols(), m = w.rows();
  const bool projected = kind != FeatureKind::Identity && kind != FeatureKind::Exponential;
  const Index cols = !projected                                                     ? d
                     : kind == FeatureKind::Hyperbolic || kind == FeatureKind::Trig ? 2 * m
                                                                                    : m;
  RowMatrix<double> out(n, cols);
  std::vector<double> xt(static_cast<size_t>(d));
  for (Index i = 0; i < n; ++i) {
    double norm2 = 0;
    for (Index l = 0; l < d; ++l) norm2 += x(i, l) * x(i, l);
    const double inv = !o.normalize ? 1.0 : norm2 > 0 ? 1 / std::sqrt(norm2) : 0.0;
    double h = 0;
    for (Index l = 0; l < d; ++l) {
      xt[size_t(l)] = o.input_scale * (psi.size() ? psi[l] : 1.0) * x(i, l) * inv;
      h += 0.5 * xt[size_t(l)] * xt[size_t(l)];
    }
    if (!projected) {
      for (Index l = 0; l < d; ++l) out(i, l) = xt[size_t(l)];
      continue;
    }
    for (Index r = 0; r < m; ++r) {
      double u = 0, w2 = 0;
      for (Index l = 0; l < d; ++l) {
        u += w(r, l) * xt[size_t(l)];
        w2 += w(r, l) * w(r, l);
      }
      switch (kind) {
        case FeatureKind::Positive:
          out(i, r) = u - h;
          break;
        case FeatureKind::Hyperbolic:
          out(i, r) = u - h;
          out(i, m + r) = -u - h;
          break;
        case FeatureKind::Optimal:
          out(i, r) = o.optimal_a * w2 + std::sqrt(1 - 4 * o.optimal_a) * u - h;
          break;
        case FeatureKind::Trig:
          out(i, r) = std::cos(u);
          out(i, m + r) = std::sin(u);
          break;
        case FeatureKind::Relu:
          out(i, r) = std::max(u, 0.0) + o.relu_eps;
          break;
        default:
          break;
      }
    }
  }
  return out;
}

struct OptionCase {
  const char* name;
  FeatureMapOptions options;
  bool with_psi;
};

std::vector<OptionCase> option_cases() {
  std::vector<OptionCase> cases;
  cases.push_back({"defaults", {}, false});
  FeatureMapOptions o;
  o.input_scale = 0.5;  // D^-1/4 at D = 16
  cases.push_back({"input_scale", o, false});
  o = {};
  o.normalize = true;
  cases.push_back({"normalize", o, false});
  cases.push_back({"dim_scale", {}, true});
  o = {};
  o.input_scale = 0.7;
  o.normalize = true;
  o.optimal_a = -0.3;
  o.relu_eps = 1e-3;
  cases.push_back({"all, A = -0.3, eps = 1e-3", o, true});
  o = {};
  o.input_scale = 0.4;
  o.optimal_a = 0.1;  // positive A < 1/8 (B < 1)
  o.relu_eps = 0.25;
  cases.push_back({"A = 0.1, eps = 0.25", o, true});
  return cases;
}

// Tolerances (relative to the largest feature, as in support.hpp's near()): the features are one
// GEMM of D = 16 products (plus h and, for Trig, a sin/cos of an argument of size ~10).
// float: each argument is rounded by ~D 2^-24 of the sum of |terms| (~1e-6 of the largest
// feature), and the library folds c, psi and B into W in float first, another 2^-24 per entry; so
// Tol<float> (1e-5 relative + 1e-6 absolute) holds with margin. double: the same count gives
// ~1e-15, so Tol<double> (1e-12) is loose and still catches any formula or layout error.

template <class T>
class FeatureMapTest : public ::testing::Test {
 protected:
  static constexpr Index kN = 6, kD = 16, kM = 24;  // rows, input width, projections
  RowMatrix<T> w_ = gaussian_projection<T>(kM, kD, 3);
  RowMatrix<T> x_ = make_x();
  Vector<T> psi_ = make_psi();

  static RowMatrix<T> make_x() {
    RowMatrix<T> x = random_matrix<T>(kN, kD, 4);
    x.row(2).setZero();  // a zero row: stays zero under normalize
    x.row(4) *= T(3);    // larger arguments, so Trig spans several quadrants
    return x;
  }
  static Vector<T> make_psi() {
    test::DataRng rng(5);
    Vector<T> psi(kD);
    for (Index l = 0; l < kD; ++l) psi[l] = static_cast<T>(0.5 + 1.5 * rng.uniform());
    return psi;
  }
};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(FeatureMapTest, Scalars);

TYPED_TEST(FeatureMapTest, EveryKindAndOptionMatchesTheDoubleReference) {
  using T = TypeParam;
  const RowMatrix<double> wd = this->w_.template cast<double>(),
                          xd = this->x_.template cast<double>();
  const Eigen::VectorXd psid = this->psi_.template cast<double>();
  for (FeatureKind kind : kAllKinds)
    for (const OptionCase& c : option_cases()) {
      SCOPED_TRACE(std::string(kind_name(kind)) + ", " + c.name);
      const FeatureMap<T> map(kind, this->w_, c.options, c.with_psi ? this->psi_ : Vector<T>());
      const RowMatrix<T> out = map(this->x_);
      const RowMatrix<double> ref =
          reference_features(kind, wd, xd, c.options, c.with_psi ? psid : Eigen::VectorXd());
      EXPECT_TRUE(near(out, ref, Tol<T>::rel, Tol<T>::abs));
      // apply() into caller buffers gives the same values.
      RowMatrix<T> out2(this->kN, map.feature_dim());
      map.apply(this->x_, out2);
      EXPECT_TRUE(near(out2, out, 0, 0));
    }
}

TEST(FeatureMap, FloatFeaturesAgreeWithDoubleFeatures) {
  // The same float-representable inputs through FeatureMap<float> and FeatureMap<double>, with an
  // orthogonal projection drawn for each type from the same seed: agreement to float tolerance.
  const Index n = 6, d = 16, m = 24;
  const RowMatrix<float> wf = orthogonal_projection<float>(m, d, 17);
  const RowMatrix<double> wd = orthogonal_projection<double>(m, d, 17);
  RowMatrix<float> xf = random_matrix<float>(n, d, 18);
  xf.row(1).setZero();
  const Vector<float> psif = (random_matrix<float>(d, 1, 19).array().abs() + 0.5f).matrix();
  for (FeatureKind kind : kAllKinds)
    for (const OptionCase& c : option_cases()) {
      SCOPED_TRACE(std::string(kind_name(kind)) + ", " + c.name);
      const FeatureMap<float> mf(kind, wf, c.options, c.with_psi ? psif : Vector<float>());
      const FeatureMap<double> md(
          kind, wd, c.options, c.with_psi ? Vector<double>(psif.cast<double>()) : Vector<double>());
      EXPECT_TRUE(near(mf(xf), md(xf.cast<double>()), Tol<float>::rel, Tol<float>::abs));
    }
}

TYPED_TEST(FeatureMapTest, ShapesAndDomainFlagsPerKind) {
  using T = TypeParam;
  const Index m = this->kM, d = this->kD;
  struct Row {
    FeatureKind kind;
    Index features;
    bool log_domain, nonnegative;
  };
  const Row table[] = {
      {FeatureKind::Positive, m, true, true},   {FeatureKind::Hyperbolic, 2 * m, true, true},
      {FeatureKind::Optimal, m, true, true},    {FeatureKind::Trig, 2 * m, false, false},
      {FeatureKind::Relu, m, false, true},      {FeatureKind::Identity, d, false, false},
      {FeatureKind::Exponential, d, true, true}};
  for (const Row& row : table) {
    SCOPED_TRACE(kind_name(row.kind));
    FeatureMapOptions o;
    o.input_scale = 0.5;
    const FeatureMap<T> map(row.kind, this->w_, o, this->psi_);
    EXPECT_EQ(map.kind(), row.kind);
    EXPECT_EQ(map.feature_dim(), row.features);
    EXPECT_EQ(map.log_domain(), row.log_domain);
    EXPECT_EQ(map.nonnegative(), row.nonnegative);
    EXPECT_EQ(map.input_dim(), d);
    EXPECT_EQ(map.options().input_scale, 0.5);
    EXPECT_TRUE(near(map.projection(), this->w_, 0, 0));
    EXPECT_TRUE(near(map.dim_scale(), this->psi_, 0, 0));
    EXPECT_EQ(map(this->x_).cols(), row.features);
  }
  // Identity and Exponential need only D: a [0, D] projection is fine.
  for (FeatureKind kind : {FeatureKind::Identity, FeatureKind::Exponential}) {
    const FeatureMap<T> map(kind, RowMatrix<T>(0, d));
    EXPECT_EQ(map.feature_dim(), d);
    EXPECT_TRUE(near(map(this->x_), this->x_, 0, 0));  // no options: the input itself
  }
}

TYPED_TEST(FeatureMapTest, StructuralIdentitiesOfTheLogFeatures) {
  // Direct checks of single ingredients (each would also break the reference comparison, but these
  // name the culprit): Hyperbolic halves sum to -2h; Optimal at x = 0 is exactly A |w_r|^2; Optimal
  // minus its offset equals sqrt(1 - 4A) times the Positive argument (both + h); Relu at x = 0 is
  // eps; a zero row under normalize gives u = 0 (Trig: cos 1, sin 0).
  using T = TypeParam;
  const Index n = this->kN, m = this->kM;
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-12;
  FeatureMapOptions o;
  o.optimal_a = -0.3;
  o.relu_eps = 0.01;
  const RowMatrix<T> pos = FeatureMap<T>(FeatureKind::Positive, this->w_, o)(this->x_);
  const RowMatrix<T> hyp = FeatureMap<T>(FeatureKind::Hyperbolic, this->w_, o)(this->x_);
  const RowMatrix<T> opt = FeatureMap<T>(FeatureKind::Optimal, this->w_, o)(this->x_);
  const RowMatrix<T> relu = FeatureMap<T>(FeatureKind::Relu, this->w_, o)(this->x_);
  const double b = std::sqrt(1 - 4 * o.optimal_a);
  for (Index i = 0; i < n; ++i) {
    const double h = 0.5 * this->x_.row(i).template cast<double>().squaredNorm();
    for (Index r = 0; r < m; ++r) {
      const double scale = 1 + h + std::abs(double(pos(i, r)));
      const double w2 = this->w_.row(r).template cast<double>().squaredNorm();
      EXPECT_NEAR(hyp(i, r), pos(i, r), tol * scale);
      EXPECT_NEAR(double(hyp(i, r)) + double(hyp(i, m + r)), -2 * h, tol * scale);
      EXPECT_NEAR(double(opt(i, r)) - o.optimal_a * w2 + h, b * (double(pos(i, r)) + h),
                  tol * (scale + w2));
      if (i == 2) {  // the zero row
        EXPECT_NEAR(double(opt(i, r)), o.optimal_a * w2, tol * w2);
        EXPECT_NEAR(double(relu(i, r)), o.relu_eps, tol);
      }
    }
  }
  FeatureMapOptions norm;
  norm.normalize = true;
  const RowMatrix<T> trig = FeatureMap<T>(FeatureKind::Trig, this->w_, norm)(this->x_);
  const RowMatrix<T> id = FeatureMap<T>(FeatureKind::Identity, this->w_, norm)(this->x_);
  for (Index r = 0; r < m; ++r) {
    EXPECT_EQ(trig(2, r), T(1));
    EXPECT_EQ(trig(2, m + r), T(0));
  }
  EXPECT_TRUE(id.row(2).isZero(0));
  EXPECT_TRUE(test::all_finite(trig));
  for (Index i = 0; i < n; ++i) {
    if (i == 2) continue;
    EXPECT_NEAR(id.row(i).template cast<double>().norm(), 1.0, tol);
  }
}

TYPED_TEST(FeatureMapTest, ApplyWritesOnlyItsBlockOfStridedViews) {
  // x and out as blocks of larger row-major matrices (outer stride != cols): the result equals the
  // contiguous one and nothing outside the out block is touched (this exercises Hyperbolic's right
  // half and Trig's sin pointer at &out(i, m)).
  using T = TypeParam;
  const Index n = this->kN, d = this->kD;
  RowMatrix<T> big_x = random_matrix<T>(n + 3, d + 5, 9);
  big_x.block(1, 2, n, d) = this->x_;
  for (FeatureKind kind : kAllKinds) {
    SCOPED_TRACE(kind_name(kind));
    FeatureMapOptions o;
    o.normalize = kind == FeatureKind::Trig;
    const FeatureMap<T> map(kind, this->w_, o, this->psi_);
    const Index mf = map.feature_dim();
    RowMatrix<T> big_out = RowMatrix<T>::Constant(n + 2, mf + 7, T(12345));
    auto out_view = big_out.block(1, 3, n, mf);
    auto x_view = big_x.block(1, 2, n, d);
    map.apply(x_view, out_view);
    EXPECT_TRUE(near(out_view, map(this->x_), 0, 0));
    RowMatrix<T> outside = big_out;
    outside.block(1, 3, n, mf).setConstant(T(12345));
    EXPECT_TRUE((outside.array() == T(12345)).all()) << "apply() wrote outside its out block";
  }
  // Zero rows in, zero rows out.
  const FeatureMap<T> map(FeatureKind::Hyperbolic, this->w_);
  RowMatrix<T> empty_out(0, map.feature_dim());
  map.apply(RowMatrix<T>(0, d), empty_out);
  EXPECT_EQ(map(RowMatrix<T>(0, d)).rows(), 0);
}

TYPED_TEST(FeatureMapTest, TextbookMapsKeepTheirConstants) {
  // positive_features: m^-1/2 exp(w.x - |x|^2/2); trig_features: m^-1/2 exp(|x|^2/2) [cos | sin].
  using T = TypeParam;
  const Index n = this->kN, m = this->kM, d = this->kD;
  const RowMatrix<T> x = this->x_ * T(0.4);  // keep exp(|x|^2/2) moderate
  const RowMatrix<T> pos = positive_features<T>(x, this->w_);
  const RowMatrix<T> trig = trig_features<T>(x, this->w_);
  ASSERT_EQ(pos.rows(), n);
  ASSERT_EQ(pos.cols(), m);
  ASSERT_EQ(trig.cols(), 2 * m);
  RowMatrix<double> ref_pos(n, m), ref_trig(n, 2 * m);
  for (Index i = 0; i < n; ++i) {
    double h = 0;
    for (Index l = 0; l < d; ++l) h += 0.5 * double(x(i, l)) * double(x(i, l));
    for (Index r = 0; r < m; ++r) {
      double u = 0;
      for (Index l = 0; l < d; ++l) u += double(this->w_(r, l)) * double(x(i, l));
      ref_pos(i, r) = std::exp(u - h) / std::sqrt(double(m));
      ref_trig(i, r) = std::exp(h) * std::cos(u) / std::sqrt(double(m));
      ref_trig(i, m + r) = std::exp(h) * std::sin(u) / std::sqrt(double(m));
    }
  }
  // Relative per entry (the exponentials spread the magnitudes): exp amplifies the argument's
  // float error (~1e-6 absolute for arguments ~5), so float gets 1e-5 relative.
  for (Index i = 0; i < n; ++i)
    for (Index r = 0; r < m; ++r) {
      EXPECT_NEAR(pos(i, r), ref_pos(i, r), Tol<T>::rel * std::abs(ref_pos(i, r)));
      const double trig_scale = std::exp(0.5 * x.row(i).template cast<double>().squaredNorm());
      for (Index c : {r, m + r})
        EXPECT_NEAR(trig(i, c), ref_trig(i, c), (Tol<T>::rel + Tol<T>::abs) * trig_scale);
    }
  const std::string msg = invalid_argument_message(
      [&] { positive_features<T>(x, RowMatrix<T>(this->w_.leftCols(5))); });
  EXPECT_TRUE(contains(msg, "positive_features") && contains(msg, "same D")) << msg;
  const std::string msg2 =
      invalid_argument_message([&] { trig_features<T>(x, RowMatrix<T>(this->w_.leftCols(5))); });
  EXPECT_TRUE(contains(msg2, "trig_features") && contains(msg2, "same D")) << msg2;
}

TYPED_TEST(FeatureMapTest, BadArgumentsThrowUsefulMessages) {
  using T = TypeParam;
  const Index d = this->kD;
  auto ctor_message = [&](FeatureKind kind, RowMatrix<T> w, FeatureMapOptions o = {},
                          Vector<T> psi = Vector<T>()) {
    return invalid_argument_message([&] { const FeatureMap<T> map(kind, w, o, psi); });
  };
  // Projected kinds need m >= 1 rows; every kind needs D >= 1.
  for (FeatureKind kind : kAllKinds) {
    SCOPED_TRACE(kind_name(kind));
    const std::string zero_rows = ctor_message(kind, RowMatrix<T>(0, d));
    if (kind == FeatureKind::Identity || kind == FeatureKind::Exponential) {
      EXPECT_EQ(zero_rows, "");
    } else {
      EXPECT_TRUE(contains(zero_rows, "at least one row") && contains(zero_rows, "[0, 16]"))
          << zero_rows;
    }
    const std::string zero_cols = ctor_message(kind, RowMatrix<T>(4, 0));
    EXPECT_TRUE(contains(zero_cols, "D >= 1") && contains(zero_cols, "[4, 0]")) << zero_cols;
  }
  for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity()}) {
    RowMatrix<T> w = this->w_;
    w(3, 5) = bad;
    const std::string msg = ctor_message(FeatureKind::Positive, w);
    EXPECT_TRUE(contains(msg, "non-finite")) << msg;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double s : {0.0, -1.0, nan, inf}) {
    FeatureMapOptions o;
    o.input_scale = s;
    const std::string msg = ctor_message(FeatureKind::Positive, this->w_, o);
    EXPECT_TRUE(contains(msg, "input_scale must be finite and > 0")) << s << ": " << msg;
  }
  for (double a : {0.125, 0.2, nan, inf}) {
    FeatureMapOptions o;
    o.optimal_a = a;
    const std::string msg = ctor_message(FeatureKind::Optimal, this->w_, o);
    EXPECT_TRUE(contains(msg, "optimal_a must be finite and < 1/8")) << a << ": " << msg;
  }
  {
    FeatureMapOptions o;
    o.optimal_a = 0.1249;  // just below the limit, and a very negative A: both fine
    EXPECT_EQ(ctor_message(FeatureKind::Optimal, this->w_, o), "");
    o.optimal_a = -5;
    EXPECT_EQ(ctor_message(FeatureKind::Optimal, this->w_, o), "");
  }
  for (double eps : {-1e-9, nan, inf}) {
    FeatureMapOptions o;
    o.relu_eps = eps;
    const std::string msg = ctor_message(FeatureKind::Relu, this->w_, o);
    EXPECT_TRUE(contains(msg, "relu_eps must be finite and >= 0")) << eps << ": " << msg;
  }
  {
    const std::string msg =
        ctor_message(FeatureKind::Positive, this->w_, {}, Vector<T>::Ones(d + 1));
    EXPECT_TRUE(contains(msg, "dim_scale has size 17 but D = 16")) << msg;
  }
  for (T bad :
       {T(0), T(-1), std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity()}) {
    Vector<T> psi = this->psi_;
    psi[7] = bad;
    const std::string msg = ctor_message(FeatureKind::Optimal, this->w_, {}, psi);
    EXPECT_TRUE(contains(msg, "dim_scale entries must be finite and > 0")) << bad << ": " << msg;
  }

  // apply(): x [n, D] and out [n, M].
  const FeatureMap<T> map(FeatureKind::Trig, this->w_);  // D = 16, M = 48
  const Index n = this->kN;
  auto apply_message = [&](Index xr, Index xc, Index orows, Index ocols) {
    RowMatrix<T> x = RowMatrix<T>::Ones(xr, xc), out(orows, ocols);
    return invalid_argument_message([&] { map.apply(x, out); });
  };
  EXPECT_EQ(apply_message(n, 16, n, 48), "");
  for (auto [xr, xc, orows, ocols] : {std::tuple<Index, Index, Index, Index>{n, 15, n, 48},
                                      {n, 16, n + 1, 48},
                                      {n, 16, n - 1, 48},
                                      {n, 16, n, 24},
                                      {n, 16, n, 49}}) {
    const std::string msg = apply_message(xr, xc, orows, ocols);
    EXPECT_TRUE(contains(msg, "FeatureMap::apply") && contains(msg, "D = 16, M = 48") &&
                contains(msg, "x [" + std::to_string(xr) + ", " + std::to_string(xc) + "]") &&
                contains(msg, "out [" + std::to_string(orows) + ", " + std::to_string(ocols) + "]"))
        << msg;
  }
}

// ---- detail::sincos ----------------------------------------------------------------------------

template <class T>
class SincosTest : public ::testing::Test {
 protected:
  // Largest |x| served by the polynomial path (beyond it: std::sin/std::cos per element).
  static constexpr double max_reduced = detail::SincosConstants<T>::max_reduced;
  // Allowed |error| against std::sin/std::cos in double: 2 ulp of 1 (2^-22 float, 2^-51 double).
  // A correct Cody-Waite reduction plus the Cephes polynomials is within 1 ulp of the true value,
  // and so is the double libm reference.
  static constexpr double tol = std::is_same_v<T, float> ? 0x1p-22 : 0x1p-51;

  /// Runs detail::sincos on xs and reports the largest errors against double std::sin/std::cos.
  static ::testing::AssertionResult accurate(const std::vector<T>& xs, double bound) {
    const Index n = static_cast<Index>(xs.size());
    std::vector<T> c(xs.size()), s(xs.size());
    detail::sincos(xs.data(), c.data(), s.data(), n);
    double worst = 0, at = 0;
    for (size_t j = 0; j < xs.size(); ++j) {
      const double xd = double(xs[j]);
      const double e =
          std::max(std::abs(double(s[j]) - std::sin(xd)), std::abs(double(c[j]) - std::cos(xd)));
      if (!(e <= worst)) worst = e, at = xd;  // NaN counts as the worst
    }
    if (worst <= bound) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "max |error| " << worst << " at x = " << at << " exceeds " << bound;
  }
};
TYPED_TEST_SUITE(SincosTest, Scalars);

TYPED_TEST(SincosTest, AccurateForModerateArguments) {
  // |x| <= 100: a dense grid (every quadrant, both signs, k up to 64) and random points, with a
  // length that is not a multiple of the packet width so the scalar tail runs too.
  using T = TypeParam;
  std::vector<T> xs;
  for (int i = -200001; i <= 200001; ++i) xs.push_back(static_cast<T>(i * (100.0 / 200001)));
  test::DataRng rng(21);
  for (int i = 0; i < 100003; ++i) xs.push_back(static_cast<T>(200 * rng.uniform() - 100));
  for (double special : {0.0, -0.0, 1e-30, kPi / 4, kPi / 2, kPi, 3 * kPi / 4, -kPi / 4, 2.5})
    xs.push_back(static_cast<T>(special));
  EXPECT_TRUE(this->accurate(xs, this->tol));
}

TYPED_TEST(SincosTest, AccurateUpToTheEndOfTheReducedRange) {
  // 100 < |x| <= max_reduced (8192 float, 1e6 double), still the polynomial path: the three-part
  // pi/2 must represent pi/2 to well below ulp(1) / k. Random points plus the boundary itself.
  using T = TypeParam;
  std::vector<T> xs;
  test::DataRng rng(22);
  for (int i = 0; i < 200001; ++i) {
    const double mag = 100 + (this->max_reduced - 100) * rng.uniform();
    xs.push_back(static_cast<T>(i % 2 ? mag : -mag));
  }
  xs.push_back(static_cast<T>(this->max_reduced));
  xs.push_back(static_cast<T>(-this->max_reduced));
  EXPECT_TRUE(this->accurate(xs, this->tol));
}

TYPED_TEST(SincosTest, LargeArgumentsUseTheFallbackAndMixWithSmallOnes) {
  // 1e4, 1e7, 1e9 (beyond max_reduced for float; 1e7 and 1e9 for double) interleaved with small
  // arguments in the same packets: every lane is right, whichever path its packet takes.
  using T = TypeParam;
  std::vector<T> xs;
  for (double big : {1e4, 1e7, 1e9, -1e9, 3.4e38})
    for (double small : {0.5, -2.0, 7.0, 1e-3, -30.0}) {
      xs.push_back(static_cast<T>(small));
      xs.push_back(static_cast<T>(big));
      xs.push_back(static_cast<T>(small * 3));
    }
  // The fallback is std::sin/std::cos in T; its own error at huge arguments is that of libm.
  EXPECT_TRUE(this->accurate(xs, this->tol));
}

TYPED_TEST(SincosTest, NanAndInfinityGiveNanWithoutDisturbingNeighbours) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  std::vector<T> xs = {T(0.3), nan, T(-1.2), T(2.5), T(4), inf, T(-0.7), -inf, T(1), nan, T(9)};
  std::vector<T> c(xs.size()), s(xs.size());
  detail::sincos(xs.data(), c.data(), s.data(), static_cast<Index>(xs.size()));
  for (size_t j = 0; j < xs.size(); ++j) {
    if (std::isfinite(xs[j])) {
      EXPECT_NEAR(double(s[j]), std::sin(double(xs[j])), this->tol) << "x = " << xs[j];
      EXPECT_NEAR(double(c[j]), std::cos(double(xs[j])), this->tol) << "x = " << xs[j];
    } else {
      EXPECT_TRUE(std::isnan(s[j]) && std::isnan(c[j])) << "x = " << xs[j];
    }
  }
  T sv, cv;
  detail::sincos_scalar(nan, sv, cv);
  EXPECT_TRUE(std::isnan(sv) && std::isnan(cv));
}

TYPED_TEST(SincosTest, CosineMayOverwriteTheInput) {
  // Trig features call sincos(u, u, u + m, m): the cosines replace the arguments in place.
  using T = TypeParam;
  std::vector<T> buf(2 * 37);
  for (size_t j = 0; j < 37; ++j) buf[j] = static_cast<T>(0.37 * double(j) - 5);
  const std::vector<T> xs(buf.begin(), buf.begin() + 37);
  detail::sincos(buf.data(), buf.data(), buf.data() + 37, 37);
  for (size_t j = 0; j < 37; ++j) {
    EXPECT_NEAR(double(buf[j]), std::cos(double(xs[j])), this->tol);
    EXPECT_NEAR(double(buf[37 + j]), std::sin(double(xs[j])), this->tol);
  }
}

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
    double t = std::cos(kPi * (i + 0.75) / (n + 0.5)), dp = 1;
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

/// The exact MSE of orthogonal positive features (docs/spec/favor.md §9.2): MSE_+ + (P/m^2) Cst with
/// Cst = e^{-|x|^2-|y|^2} (E_v[M_d(a v1) M_d(a v2)] - e^{a^2}), a = |x + y|, the expectation over
/// the density Gamma(d/2)/(pi Gamma(d/2 - 1)) (1 - v1^2 - v2^2)^{(d-4)/2} on the unit disk: polar
/// coordinates, s = rho^2 by Gauss-Legendre, the angle by the (spectrally accurate) trapezoid rule.
double orthogonal_positive_mse(const Eigen::VectorXd& x, const Eigen::VectorXd& y, Index m) {
  const Index d = x.size();
  const double dd = static_cast<double>(d);
  const double z2 = (x + y).squaredNorm(), a = std::sqrt(z2);
  const double sm = std::exp(x.dot(y));
  const double iid = sm * sm / double(m) * std::expm1(z2);
  const double c = std::exp(std::lgamma(dd / 2) - std::lgamma(dd / 2 - 1)) / kPi;
  std::vector<double> s, ws;
  gauss_legendre(40, s, ws);
  const int angles = 64;
  double e = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double rho = std::sqrt(s[i]);
    double ring = 0;
    for (int j = 0; j < angles; ++j) {
      const double phi = 2 * kPi * j / angles;
      ring += chi_mgf(d, a * rho * std::cos(phi)) * chi_mgf(d, a * rho * std::sin(phi));
    }
    e += ws[i] * std::pow(1 - s[i], (dd - 4) / 2) * 0.5 * ring * (2 * kPi / angles);
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

/// A* of docs/spec/favor.md §4 for one pair: (1/16)(1 - 2 rho - sqrt((2 rho + 1)^2 + 8 rho)), rho =
/// |z|^2/d.
double optimal_a(const Eigen::VectorXd& x, const Eigen::VectorXd& y) {
  const double rho = (x + y).squaredNorm() / double(x.size());
  return (1 - 2 * rho - std::sqrt((2 * rho + 1) * (2 * rho + 1) + 8 * rho)) / 16;
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

double arccos_j1(double theta) { return std::sin(theta) + (kPi - theta) * std::cos(theta); }
double arccos_j2(double theta) {
  return 3 * std::sin(theta) * std::cos(theta) +
         (kPi - theta) * (1 + 2 * std::cos(theta) * std::cos(theta));
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
  double lo = 0, hi = kPi;  // J1 decreases on [0, pi]
  for (int i = 0; i < 100; ++i) {
    const double mid = (lo + hi) / 2;
    (arccos_j1(mid) / (2 * kPi) > 0.19815 ? lo : hi) = mid;
  }
  EXPECT_NEAR(arccos_j2(lo) / (2 * kPi) - 0.19815 * 0.19815, 0.31697, 5e-6);
  // SMREG at d = 8 vs SM: the 0F1 mean is below SM, term by term.
  const Eigen::VectorXd x = table_x8(), y = table_y8();
  const double smreg =
      std::exp(-(x.squaredNorm() + y.squaredNorm()) / 2) * hyp0f1(4, 8 * (x + y).squaredNorm() / 4);
  EXPECT_LT(smreg, std::exp(x.dot(y)));
  // 0F1(; d/2; d|z|^2/4) -> exp(|z|^2/2) as d -> infinity (then SMREG = SM).
  EXPECT_NEAR(hyp0f1(5e5, 1e6 * 0.3 / 4), std::exp(0.15), 1e-6);
}

// ---- statistical tests -------------------------------------------------------------------------

/// Mean and standard error of a sample (Welford's running moments).
class Moments {
 public:
  void add(double v) {
    ++n_;
    const double delta = v - mean_;
    mean_ += delta / static_cast<double>(n_);
    m2_ += delta * (v - mean_);
  }
  double mean() const { return mean_; }
  double se() const {
    return std::sqrt(m2_ / static_cast<double>(n_ - 1) / static_cast<double>(n_));
  }
  long count() const { return n_; }

 private:
  long n_ = 0;
  double mean_ = 0, m2_ = 0;
};

/// |mean - expected| <= k SE; prints the observed margin in SE so the test log documents it.
::testing::AssertionResult within_se(const std::string& what, const Moments& s, double expected,
                                     double k = kSe) {
  const double z = (s.mean() - expected) / s.se();
  std::printf("[ stats    ] %s: %.6g vs %.6g, %+.2f SE (SE %.3g, n %ld)\n", what.c_str(), s.mean(),
              expected, z, s.se(), s.count());
  if (std::abs(z) <= k) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << s.mean() << " vs expected " << expected << " is " << z
         << " SE away (SE " << s.se() << ", n " << s.count() << "), more than " << k;
}

/// Monte Carlo of a kernel estimator: the estimates and their squared errors against `target`.
struct MonteCarlo {
  Moments estimate, squared_error;
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
  EXPECT_TRUE(within_se(what + ": mean vs SM", mc.estimate, sm));
  EXPECT_TRUE(within_se(what + ": MSE vs theory", mc.squared_error, mse));
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
    EXPECT_LT(mse, iid - kSe * se) << tag;
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
    EXPECT_TRUE(
        within_se("Positive simplex m=" + std::to_string(m) + ": mean vs SM", mc.estimate, sm));
    const double iid = sm * sm / double(m) * std::expm1((x + y).squaredNorm());
    EXPECT_LT(mc.squared_error.mean(), iid - kSe * mc.squared_error.se());
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
  EXPECT_TRUE(within_se("SMREG: mean vs 0F1 formula", mc.estimate, smreg));
  const double away = (sm - mc.estimate.mean()) / mc.estimate.se();
  std::printf("[ stats    ] SMREG: mean is %.1f SE below SM = %.5f\n", away, sm);
  EXPECT_GT(away, kSe) << "the fixed-norm estimate is indistinguishable from the softmax kernel";
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
  EXPECT_TRUE(within_se("RFA trig sigma=1.3: mean", mc.estimate, mean));
  EXPECT_TRUE(within_se("RFA trig sigma=1.3: variance", mc.squared_error, var));
}

TEST(FeatureStatistics, ReluOnUnitInputsEstimatesTheArcCosineKernel) {
  // RFA-arccos (rfa §7): Relu, eps = 0, normalize = true, W iid N(0, 1); d = 8, m = 4, 100000 draws
  // (seed 1013). Mean J1(theta)/(2 pi), variance (J2/(2 pi) - (J1/(2 pi))^2) / m.
  const Eigen::VectorXd x = vec({1.0, 2.0, -0.5, 0.3, 0, 1.1, -0.7, 0.2});
  const Eigen::VectorXd y = vec({0.2, 1.5, 0.4, -0.6, 0.9, 0.1, 0.3, -0.2});
  const Index d = 8, m = 4;
  const RowMatrix<double> xy = stack(x, y);
  const double theta = std::acos(x.normalized().dot(y.normalized()));
  const double mean = arccos_j1(theta) / (2 * kPi);
  const double var = (arccos_j2(theta) / (2 * kPi) - mean * mean) / m;
  FeatureMapOptions o;
  o.normalize = true;
  const MonteCarlo mc = monte_carlo(100000, 1013, mean, [&](std::uint64_t s) {
    const FeatureMap<double> map(FeatureKind::Relu, gaussian_projection<double>(m, d, s), o);
    return kernel_estimate(map, xy, 1.0 / m);
  });
  EXPECT_TRUE(within_se("Relu arc-cosine: mean", mc.estimate, mean));
  EXPECT_TRUE(within_se("Relu arc-cosine: variance", mc.squared_error, var));
}

}  // namespace
}  // namespace fastattn
