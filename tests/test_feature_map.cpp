// Tests of features.hpp: every feature map and option against the independent double-precision
// evaluation of their formulas (tests/reference/features.hpp; docs/spec/favor.md §3-§5,
// docs/spec/rfa.md §2, §7), shapes and domain flags, structural identities, strided views, the
// textbook maps' constants, and argument checks. The joint sin/cos: test_sincos.cpp; the
// statistics of the kernel estimates: test_feature_statistics.cpp.

#include "fastattn/features.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "fastattn/random.hpp"
#include "reference/features.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

namespace ref = test::ref;
using test::invalid_argument_message;
using test::near;
using test::random_matrix;
using test::Tol;

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

/// The reference spec (tests/reference/features.hpp) of a FeatureMap's options and psi.
ref::FeatureSpec spec_of(const FeatureMapOptions& o, const Eigen::VectorXd& psi) {
  ref::FeatureSpec s;
  s.input_scale = o.input_scale;
  s.normalize = o.normalize;
  s.dim_scale = psi;
  s.optimal_a = o.optimal_a;
  s.relu_eps = o.relu_eps;
  return s;
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
      const RowMatrix<double> expected =
          ref::features(kind, wd, xd, spec_of(c.options, c.with_psi ? psid : Eigen::VectorXd()));
      EXPECT_TRUE(near(out, expected, Tol<T>::rel, Tol<T>::abs));
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

TYPED_TEST(FeatureMapTest, RowReductionsEqualTheSumsAndDotsOfTheOutput) {
  // apply() with FeatureRowReductions: column_sums += the sum of the rows and dots[i stride] = row
  // i . weights, against the same reductions done by Eigen in double on the plain output. Every
  // kind that is not log-domain, with and without normalization; n = 3 takes the decoding path,
  // the others the GEMM. Tolerance: sums of at most 7 features of size <= ~10 (the Relu and
  // Identity features of inputs with norm up to ~10), each within Tol<T> of its double value, so
  // Tol<T> relative to the largest sum with a factor 10 for the accumulation holds with margin.
  using T = TypeParam;
  for (FeatureKind kind : {FeatureKind::Trig, FeatureKind::Relu, FeatureKind::Identity})
    for (bool normalize : {false, true})
      for (Index n : {Index(3), Index(7)}) {
        SCOPED_TRACE(std::string(kind_name(kind)) + (normalize ? ", normalized" : "") +
                     ", n = " + std::to_string(n));
        FeatureMapOptions o;
        o.normalize = normalize;
        const FeatureMap<T> map(kind, this->w_, o);
        const Index mf = map.feature_dim();
        const RowMatrix<T> x = random_matrix<T>(n, this->kD, 31 + n, 2.0);
        RowMatrix<T> plain(n, mf);
        map.apply(x, plain, T(0.5));

        const Vector<T> weights = random_matrix<T>(mf, 1, 37);
        Vector<T> sums = random_matrix<T>(mf, 1, 41);  // reductions add to what is there
        const Vector<T> sums_before = sums;
        RowMatrix<T> dots = RowMatrix<T>::Constant(n, 3, T(12345));  // a strided column
        FeatureRowReductions<T> reductions;
        reductions.column_sums = sums.data();
        reductions.weights = weights.data();
        reductions.dots = &dots(0, 1);
        reductions.dots_stride = dots.outerStride();
        RowMatrix<T> out(n, mf);
        map.apply(x, out, T(0.5), reductions);

        EXPECT_TRUE(near(out, plain, 0, 0)) << "the reductions changed the features";
        const RowMatrix<double> pd = plain.template cast<double>();
        const Eigen::VectorXd expected_sums =
            sums_before.template cast<double>() + pd.colwise().sum().transpose();
        EXPECT_TRUE(near(sums, expected_sums, 10 * Tol<T>::rel, 10 * Tol<T>::abs));
        EXPECT_TRUE(near(dots.col(1), pd * weights.template cast<double>(), 10 * Tol<T>::rel,
                         10 * Tol<T>::abs));
        EXPECT_TRUE((dots.col(0).array() == T(12345)).all() &&
                    (dots.col(2).array() == T(12345)).all())
            << "dots written outside their column";

        // Column sums alone and dots alone.
        Vector<T> sums_only = Vector<T>::Zero(mf);
        FeatureRowReductions<T> only_sums;
        only_sums.column_sums = sums_only.data();
        map.apply(x, out, T(0.5), only_sums);
        EXPECT_TRUE(
            near(sums_only, pd.colwise().sum().transpose(), 10 * Tol<T>::rel, 10 * Tol<T>::abs));
        Vector<T> dots_only = Vector<T>::Zero(n);
        FeatureRowReductions<T> only_dots;
        only_dots.weights = weights.data();
        only_dots.dots = dots_only.data();
        map.apply(x, out, T(0.5), only_dots);
        EXPECT_TRUE(near(dots_only, pd * weights.template cast<double>(), 10 * Tol<T>::rel,
                         10 * Tol<T>::abs));
      }
  // Log-features cannot be reduced this way, and dots need their weights.
  RowMatrix<T> out(this->kN, this->kM);
  Vector<T> sums(this->kM);
  FeatureRowReductions<T> reductions;
  reductions.column_sums = sums.data();
  const std::string log_msg = invalid_argument_message([&] {
    FeatureMap<T>(FeatureKind::Positive, this->w_).apply(this->x_, out, T(1), reductions);
  });
  EXPECT_TRUE(contains(log_msg, "row reductions need features")) << log_msg;
  FeatureRowReductions<T> no_weights;
  no_weights.dots = sums.data();
  const std::string dots_msg = invalid_argument_message(
      [&] { FeatureMap<T>(FeatureKind::Relu, this->w_).apply(this->x_, out, T(1), no_weights); });
  EXPECT_TRUE(contains(dots_msg, "dots need weights")) << dots_msg;
}

TYPED_TEST(FeatureMapTest, TrigRowGroupsMatchTheReference) {
  // The trig map computes its product and its sines and cosines together, one group of kRows rows
  // at a time, when M is a whole number of register-tile widths (detail/simd/
  // trig_feature_kernel.hpp), and row by row otherwise. Against the double reference: D below,
  // at and above the tile's packet count (the sines of a tile are spread over the next tile's
  // product steps, and D = 3 leaves most of them after the steps), M of one, two and three tile
  // widths and one that is not a multiple; n from 5 (past the decoding path) over whole, partial
  // and several groups; normalized, with a zero row and a row whose |x|^2 underflows in the last
  // groups (they send their group row by row), and not normalized, with an input factor. The row
  // reductions are checked on the same calls (they run per group on the fused path).
  // Tolerance: as EveryKindAndOptionMatchesTheDoubleReference (arguments of size ~10 here).
  using T = TypeParam;
  using Tile = detail::RegisterTile<T>;
  const Index group = Tile::kRows, width = Tile::kCols;
  const T tiny = std::is_same_v<T, float> ? T(1e-25) : T(1e-160);  // |x|^2 below T's min
  for (Index d : {Index(3), Index(16), Index(64)})  // fewer, as many and more product steps
    for (Index m : {width, 2 * width, 3 * width, width + 1})  // than a tile has packets
      for (Index n : {Index(5), group, group + 3, 2 * group + 1})
        for (bool normalize : {true, false}) {
          SCOPED_TRACE("D = " + std::to_string(d) + ", m = " + std::to_string(m) +
                       ", n = " + std::to_string(n) + (normalize ? ", normalized" : ""));
          const RowMatrix<T> w = gaussian_projection<T>(m, d, 40 + m);
          RowMatrix<T> x = random_matrix<T>(n, d, 50 + n, 4 / std::sqrt(double(d)));  // |x| ~ 4
          RowMatrix<double> x_ref = x.template cast<double>();  // (normalizing is scale invariant)
          if (normalize && n > group) {  // (the groups before them stay fused)
            x.row(n - 1).setZero();
            x_ref.row(n - 1).setZero();
            x.row(n - 2) *= tiny;
          }
          FeatureMapOptions o;
          o.normalize = normalize;
          const FeatureMap<T> map(FeatureKind::Trig, w, o);
          const T factor = normalize ? T(1) : T(1.5);  // (ignored when normalizing)
          ref::FeatureSpec spec;
          spec.normalize = normalize;
          const RowMatrix<double> expected = ref::features(
              FeatureKind::Trig, w.template cast<double>(), x_ref * double(factor), spec);

          RowMatrix<T> out = RowMatrix<T>::Constant(n, 2 * m, T(7));
          Vector<T> sums = Vector<T>::Zero(2 * m), dots(n);
          const Vector<T> weights = random_matrix<T>(2 * m, 1, 60);
          FeatureRowReductions<T> reductions;
          reductions.column_sums = sums.data();
          reductions.weights = weights.data();
          reductions.dots = dots.data();
          map.apply(x, out, factor, reductions);
          EXPECT_TRUE(near(out, expected, Tol<T>::rel, Tol<T>::abs));
          const RowMatrix<double> outd = out.template cast<double>();
          const Eigen::VectorXd sums_ref = outd.colwise().sum().transpose();
          const Eigen::VectorXd dots_ref = outd * weights.template cast<double>();
          EXPECT_TRUE(near(sums, sums_ref, Tol<T>::rel, Tol<T>::abs * double(n)));
          EXPECT_TRUE(near(dots, dots_ref, Tol<T>::rel, Tol<T>::abs * double(m)));
        }
}

TYPED_TEST(FeatureMapTest, TrigRowGroupsBeyondTheReducedRangeStayExact) {
  // A fused group skips the sincos's per-packet range test when |f| |x| max_j |w_j| bounds its
  // arguments within the reduced range (features.hpp); a group with a larger bound must keep the
  // test, so that lanes past the range take std::sin/std::cos. Rows are scaled unit vectors
  // s e_l and W has integer entries, so every argument s W_jl is exact in T and the double
  // reference sees the same arguments: small ones (|s W| <= 9) beside 2^60 * 9 (past the packet
  // path's rounding trick in float and double). Not normalized, one group of three holds a huge
  // row; normalized (the bound is then max |w_j|), W scaled by 2^20 sends every group through
  // the test, with arguments up to 9 * 2^20 in every lane.
  using T = TypeParam;
  using Tile = detail::RegisterTile<T>;
  const Index group = Tile::kRows, d = 16, m = 2 * Tile::kCols, n = 3 * group;
  RowMatrix<T> w(m, d);
  test::DataRng rng(70);
  for (Index j = 0; j < m; ++j)
    for (Index l = 0; l < d; ++l) w(j, l) = T(std::floor(19 * rng.uniform()) - 9);
  for (bool normalize : {false, true}) {
    SCOPED_TRACE(normalize ? "normalized" : "not normalized");
    RowMatrix<T> x = RowMatrix<T>::Zero(n, d);
    for (Index i = 0; i < n; ++i) x(i, i % d) = T(1);
    if (!normalize) x(group + 2, 5) = T(0x1p60);  // the middle group
    const RowMatrix<T> w_used = normalize ? RowMatrix<T>(w * T(0x1p20)) : w;
    FeatureMapOptions o;
    o.normalize = normalize;
    const FeatureMap<T> map(FeatureKind::Trig, w_used, o);
    ref::FeatureSpec spec;
    spec.normalize = normalize;
    const RowMatrix<double> expected = ref::features(
        FeatureKind::Trig, w_used.template cast<double>(), x.template cast<double>(), spec);
    RowMatrix<T> out(n, 2 * m);
    map.apply(x, out);
    EXPECT_TRUE(near(out, expected, Tol<T>::rel, Tol<T>::abs));
  }
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
  // The reference maps without the constants, which are restored here.
  const RowMatrix<double> xd = x.template cast<double>(), wd = this->w_.template cast<double>();
  const RowMatrix<double> log_pos = ref::features(FeatureKind::Positive, wd, xd, {});
  const RowMatrix<double> cos_sin = ref::features(FeatureKind::Trig, wd, xd, {});
  RowMatrix<double> ref_pos(n, m), ref_trig(n, 2 * m);
  for (Index i = 0; i < n; ++i) {
    double h = 0;
    for (Index l = 0; l < d; ++l) h += 0.5 * xd(i, l) * xd(i, l);
    for (Index r = 0; r < m; ++r) {
      ref_pos(i, r) = std::exp(log_pos(i, r)) / std::sqrt(double(m));
      ref_trig(i, r) = std::exp(h) * cos_sin(i, r) / std::sqrt(double(m));
      ref_trig(i, m + r) = std::exp(h) * cos_sin(i, m + r) / std::sqrt(double(m));
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

}  // namespace
}  // namespace fastattn
