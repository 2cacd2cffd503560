// Tests of linear.hpp: the linear-attention core against the independent double-precision reference
// (tests/reference/linear.hpp: every (query, key) weight evaluated explicitly), for the non-causal,
// chunked causal, gated and recurrent forms; plus the invariants of docs/spec/favor.md §10.

#include "fastattn/linear.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "fastattn/random.hpp"
#include "reference/linear.hpp"
#include "support.hpp"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace fastattn {
namespace {

namespace ref = test::ref;
using test::near;
using test::random_matrix;
using test::Tol;

template <class T>
class LinearTest : public ::testing::Test {
 protected:
  using M = RowMatrix<T>;
  // phi(x) = x: the caller's matrices are the features; phi(x) = exp(x): they are log-features.
  static FeatureMap<T> identity(Index d) { return FeatureMap<T>(FeatureKind::Identity, M(0, d)); }
  static FeatureMap<T> exponential(Index d) {
    return FeatureMap<T>(FeatureKind::Exponential, M(0, d));
  }
  // Strictly positive "features" so denominators are positive and well conditioned.
  static M positive(Index n, Index m, std::uint64_t seed) {
    return (random_matrix<T>(n, m, seed).array().abs() + T(0.1)).matrix();
  }
  static RowMatrix<double> d(const M& x) { return x.template cast<double>(); }
};

using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LinearTest, Types);

// Summation orders differ from the reference (chunked GEMMs vs. one pair at a time): allow a few
// times the usual rounding of a weighted average over up to a few hundred keys.
template <class T>
constexpr double kRel = 20 * Tol<T>::rel;
template <class T>
constexpr double kAbs = 20 * Tol<T>::abs;

TYPED_TEST(LinearTest, NonCausalMatchesNaiveReference) {
  using T = TypeParam;
  const Index nq = 23, nk = 41, m = 12, dv = 5;
  const auto fq = this->positive(nq, m, 1), fk = this->positive(nk, m, 2);
  const auto v = random_matrix<T>(nk, dv, 3);
  AttentionOptions opt;
  opt.key_padding = test::random_mask(nk, 0.3, 4);
  const ref::LinearSpec spec{false, opt.key_padding};
  const auto expected = ref::linear_attention(this->d(fq), this->d(fk), this->d(v), spec);
  const auto map = this->identity(m);
  for (Index chunk : {0, 1, 7, 100}) {
    RowMatrix<T> out(nq, dv);
    linear_attention<T>(map, map, fq, fk, v, out, opt, LinearOptions{chunk, 0});
    EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>)) << "chunk " << chunk;
  }
}

TYPED_TEST(LinearTest, CausalChunkedEqualsNaivePrefixSumsForAnyChunkSizeAndAlignment) {
  using T = TypeParam;
  const Index nk = 37, m = 9, dv = 4;
  for (Index nq : {nk, nk - 11, nk + 6}) {  // bottom-right alignment in both directions
    const auto fq = this->positive(nq, m, 10 + nq), fk = this->positive(nk, m, 11);
    const auto v = random_matrix<T>(nk, dv, 12);
    AttentionOptions opt;
    opt.causal = true;
    opt.key_padding = test::random_mask(nk, 0.25, 13);
    const ref::LinearSpec spec{true, opt.key_padding};
    const auto expected = ref::linear_attention(this->d(fq), this->d(fk), this->d(v), spec);
    const auto map = this->identity(m);
    for (Index chunk : {1, 3, 7, 64, 1000}) {
      RowMatrix<T> out(nq, dv);
      linear_attention<T>(map, map, fq, fk, v, out, opt, LinearOptions{chunk, 0});
      EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>)) << "Nq " << nq << " chunk " << chunk;
    }
  }
}

TYPED_TEST(LinearTest, RecurrentStepEqualsCausalForward) {
  using T = TypeParam;
  const Index n = 50, d = 8, m = 32, dv = 6;
  const auto q = random_matrix<T>(n, d, 1, 0.5), k = random_matrix<T>(n, d, 2, 0.5);
  auto v = random_matrix<T>(n, dv, 3);
  FeatureMapOptions fo;
  fo.input_scale = std::pow(double(d), -0.25);
  const FeatureMap<T> map(FeatureKind::Positive, orthogonal_projection<T>(m, d, 4), fo);
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = test::random_mask(n, 0.2, 5);
  RowMatrix<T> expected(n, dv);
  linear_attention<T>(map, map, q, k, v, expected, opt, LinearOptions{16, 0});
  for (Index j = 0; j < n; ++j)  // garbage in padded values must not matter
    if (opt.key_padding[j]) v(j, 0) = std::numeric_limits<T>::quiet_NaN();
  LinearState<T> state(map.feature_dim(), dv);
  RowMatrix<T> out(n, dv);
  for (Index t = 0; t < n; ++t)
    state.step(map, map, q.row(t), k.row(t), v.row(t), out.row(t), opt.key_padding[t]);
  ASSERT_TRUE(test::all_finite(out));
  // float: the recurrence and the chunked GEMMs round differently (spec: ~5e-7 relative).
  EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>));
  EXPECT_EQ(state.tokens(), n);
}

TYPED_TEST(LinearTest, GatedChunkedEqualsGatedRecurrenceAndNaive) {
  using T = TypeParam;
  const Index n = 37, m = 10, dv = 3;
  const auto fq = this->positive(n, m, 1), fk = this->positive(n, m, 2);
  const auto v = random_matrix<T>(n, dv, 3);
  test::DataRng rng(4);
  Vector<T> log_gates(n);
  for (Index j = 0; j < n; ++j) log_gates[j] = T(std::log(0.05 + 0.95 * rng.uniform()));
  log_gates[5] = log_gates[6] = 0;  // g = 1: these tokens are ignored
  AttentionOptions opt;
  opt.key_padding = test::random_mask(n, 0.2, 5);
  ref::LinearSpec spec{true, opt.key_padding};
  spec.log_gates.assign(log_gates.data(), log_gates.data() + n);
  for (auto& g : spec.log_gates) g = double(T(g));
  const auto expected = ref::linear_attention(this->d(fq), this->d(fk), this->d(v), spec);
  const auto map = this->identity(m);
  for (Index chunk : {1, 4, 7, 64}) {
    RowMatrix<T> out(n, dv);
    gated_linear_attention<T>(map, map, fq, fk, v, log_gates, out, opt, LinearOptions{chunk, 0});
    EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>)) << "chunk " << chunk;
  }
  LinearState<T> state(m, dv);
  RowMatrix<T> out(n, dv);
  for (Index t = 0; t < n; ++t)
    state.gated_step(map, map, fq.row(t), fk.row(t), v.row(t), log_gates[t], out.row(t),
                     opt.key_padding[t]);
  EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>)) << "recurrent";
}

TYPED_TEST(LinearTest, GateThatKeepsOnlyTheFirstTokenGivesItsValueEverywhere) {
  using T = TypeParam;
  // docs/spec/rfa.md §9: g_0 < 1 and g_t = 1 for t >= 1 -> every output equals v_0.
  const Index n = 20, m = 6, dv = 3;
  const auto fq = this->positive(n, m, 1), fk = this->positive(n, m, 2);
  const auto v = random_matrix<T>(n, dv, 3);
  Vector<T> log_gates = Vector<T>::Zero(n);
  log_gates[0] = std::log(T(0.3));
  RowMatrix<T> out(n, dv);
  const auto map = this->identity(m);
  gated_linear_attention<T>(map, map, fq, fk, v, log_gates, out, {}, LinearOptions{8, 0});
  for (Index t = 0; t < n; ++t) EXPECT_TRUE(near(out.row(t), v.row(0), kRel<T>, kAbs<T>)) << t;
}

TYPED_TEST(LinearTest, LogDomainStabilizationCancelsExactly) {
  using T = TypeParam;
  // Log-features of +-60 (float) / +-300 (double): exp overflows or underflows unless the shifts
  // are applied; the reference works with log-sum-exps throughout.
  const double spread = std::is_same_v<T, float> ? 60 : 300;
  const Index nq = 30, nk = 45, m = 8, dv = 4;
  const auto lq = random_matrix<T>(nq, m, 1, spread), lk = random_matrix<T>(nk, m, 2, spread);
  const auto v = random_matrix<T>(nk, dv, 3);
  const auto map = this->exponential(m);
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    opt.key_padding = test::random_mask(nk, 0.2, 4);
    const ref::LinearSpec spec{bool(causal), opt.key_padding};
    const auto expected = ref::log_linear_attention(this->d(lq), this->d(lk), this->d(v), spec);
    for (Index chunk : {1, 5, 64}) {
      RowMatrix<T> out(nq, dv);
      linear_attention<T>(map, map, lq, lk, v, out, opt, LinearOptions{chunk, 0});
      ASSERT_TRUE(test::all_finite(out));
      EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>))
          << "causal " << causal << " chunk " << chunk;
    }
    // Shifting every key's log-features (and one query's) by a constant changes nothing.
    RowMatrix<T> base(nq, dv), shifted(nq, dv);
    RowMatrix<T> lk2 = lk.array() + T(25), lq2 = lq;
    lq2.row(3).array() -= T(40);
    linear_attention<T>(map, map, lq, lk, v, base, opt);
    linear_attention<T>(map, map, lq2, lk2, v, shifted, opt);
    EXPECT_TRUE(near(shifted, base, kRel<T>, kAbs<T>));
  }
}

TYPED_TEST(LinearTest, RecurrentLogDomainMatchesReference) {
  using T = TypeParam;
  const Index n = 40, m = 8, dv = 3;
  const double spread = std::is_same_v<T, float> ? 60 : 300;
  const auto lq = random_matrix<T>(n, m, 1, spread), lk = random_matrix<T>(n, m, 2, spread);
  const auto v = random_matrix<T>(n, dv, 3);
  ref::LinearSpec spec;
  spec.causal = true;
  const auto expected = ref::log_linear_attention(this->d(lq), this->d(lk), this->d(v), spec);
  const auto map = this->exponential(m);
  LinearState<T> state(m, dv);
  RowMatrix<T> out(n, dv);
  for (Index t = 0; t < n; ++t) state.step(map, map, lq.row(t), lk.row(t), v.row(t), out.row(t));
  EXPECT_TRUE(near(out, expected, kRel<T>, kAbs<T>));
}

// ---- invariants of positive features (docs/spec/favor.md §10)
// ------------------------------------

template <class T>
FeatureMap<T> favor_map(Index d, Index m, std::uint64_t seed) {
  FeatureMapOptions fo;
  fo.input_scale = std::pow(double(d), -0.25);
  return FeatureMap<T>(FeatureKind::Positive, orthogonal_projection<T>(m, d, seed), fo);
}

TYPED_TEST(LinearTest, IdenticalKeysGiveTheMeanOfValues) {
  using T = TypeParam;
  const Index n = 30, d = 8, dv = 4;
  const auto q = random_matrix<T>(n, d, 1);
  const RowMatrix<T> k = random_matrix<T>(1, d, 2).replicate(n, 1);
  const auto v = random_matrix<T>(n, dv, 3);
  const auto map = favor_map<T>(d, 64, 4);
  RowMatrix<T> out(n, dv);
  linear_attention<T>(map, map, q, k, v, out);
  const RowMatrix<T> mean = v.colwise().mean().replicate(n, 1);
  EXPECT_TRUE(near(out, mean, kRel<T>, kAbs<T>));
  AttentionOptions causal;
  causal.causal = true;
  linear_attention<T>(map, map, q, k, v, out, causal, LinearOptions{7, 0});
  for (Index t = 0; t < n; ++t)
    EXPECT_TRUE(near(out.row(t), v.topRows(t + 1).colwise().mean(), kRel<T>, kAbs<T>)) << t;
}

TYPED_TEST(LinearTest, PositiveFeaturesGiveConvexCombinationsAndRespectInvariances) {
  using T = TypeParam;
  const Index nq = 17, nk = 29, d = 8, dv = 5;
  const auto q = random_matrix<T>(nq, d, 1), k = random_matrix<T>(nk, d, 2);
  const auto v = random_matrix<T>(nk, dv, 3);
  const auto map = favor_map<T>(d, 48, 4);
  RowMatrix<T> out(nq, dv);
  linear_attention<T>(map, map, q, k, v, out);
  for (Index c = 0; c < dv; ++c) {  // convex combination of the values, per column
    EXPECT_GE(out.col(c).minCoeff(), v.col(c).minCoeff() - 1e-5);
    EXPECT_LE(out.col(c).maxCoeff(), v.col(c).maxCoeff() + 1e-5);
  }
  // V + c -> out + c.
  RowMatrix<T> shifted(nq, dv);
  linear_attention<T>(map, map, q, k, RowMatrix<T>(v.array() + T(3)), shifted);
  EXPECT_TRUE(near(shifted, RowMatrix<T>(out.array() + T(3)), kRel<T>, kAbs<T>));
  // Permuting keys and values together leaves the non-causal output unchanged.
  Eigen::PermutationMatrix<Eigen::Dynamic> perm(nk);
  perm.setIdentity();
  std::reverse(perm.indices().data(), perm.indices().data() + nk);
  RowMatrix<T> permuted(nq, dv);
  linear_attention<T>(map, map, q, RowMatrix<T>(perm * k), RowMatrix<T>(perm * v), permuted);
  EXPECT_TRUE(near(permuted, out, kRel<T>, kAbs<T>));
}

TYPED_TEST(LinearTest, EmptyRowsAreZero) {
  using T = TypeParam;
  const Index d = 4, dv = 3, m = 16;
  const auto map = favor_map<T>(d, m, 1);
  // Every key padded.
  AttentionOptions all_padded;
  all_padded.key_padding = KeyMask::Constant(6, true);
  RowMatrix<T> out(5, dv);
  for (int causal = 0; causal < 2; ++causal) {
    all_padded.causal = causal;
    linear_attention<T>(map, map, random_matrix<T>(5, d, 1), random_matrix<T>(6, d, 2),
                        random_matrix<T>(6, dv, 3), out, all_padded);
    EXPECT_TRUE(out.isZero(0));
  }
  // Causal with Nq > Nk: the first Nq - Nk rows see no key.
  AttentionOptions causal;
  causal.causal = true;
  RowMatrix<T> out2(7, dv);
  linear_attention<T>(map, map, random_matrix<T>(7, d, 1), random_matrix<T>(3, d, 2),
                      random_matrix<T>(3, dv, 3), out2, causal, LinearOptions{2, 0});
  EXPECT_TRUE(out2.topRows(4).isZero(0));
  EXPECT_FALSE(out2.row(4).isZero(0));
  // Nk = 0.
  RowMatrix<T> out3(2, dv);
  linear_attention<T>(map, map, random_matrix<T>(2, d, 1), RowMatrix<T>(0, d), RowMatrix<T>(0, dv),
                      out3);
  EXPECT_TRUE(out3.isZero(0));
}

TYPED_TEST(LinearTest, LargeNormInputsGiveFiniteOutputs) {
  using T = TypeParam;
  // |q|, |k| up to 30: log-features reach hundreds; stabilization keeps everything finite.
  const Index n = 64, d = 16, dv = 4;
  const auto q = random_matrix<T>(n, d, 1, 7.5), k = random_matrix<T>(n, d, 2, 7.5);
  const auto v = random_matrix<T>(n, dv, 3);
  const auto map = favor_map<T>(d, 64, 4);
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    RowMatrix<T> out(n, dv);
    linear_attention<T>(map, map, q, k, v, out, opt);
    EXPECT_TRUE(test::all_finite(out)) << "causal " << causal;
  }
}

TYPED_TEST(LinearTest, SignedFeaturesDenominatorGuard) {
  using T = TypeParam;
  // Signed features can give a denominator <= 0: clamped to den_eps (or zeroed with den_eps = 0),
  // counted, never NaN; the reference applies the same rule.
  const Index nq = 40, nk = 25, m = 6, dv = 3;
  const auto fq = random_matrix<T>(nq, m, 1), fk = random_matrix<T>(nk, m, 2);
  const auto v = random_matrix<T>(nk, dv, 3);
  const auto map = this->identity(m);
  for (double eps : {0.0, 1e-3}) {
    ref::LinearSpec spec;
    spec.den_eps = eps;
    Index ref_guarded = 0;
    const auto expected =
        ref::linear_attention(this->d(fq), this->d(fk), this->d(v), spec, &ref_guarded);
    RowMatrix<T> out(nq, dv);
    const LinearStats stats =
        linear_attention<T>(map, map, fq, fk, v, out, AttentionOptions{}, LinearOptions{0, eps});
    ASSERT_TRUE(test::all_finite(out));
    EXPECT_GT(ref_guarded, 0) << "the data should produce non-positive denominators";
    EXPECT_EQ(stats.guarded_rows, ref_guarded);
    // Rows near the guard threshold are ill-conditioned; compare relative to the output scale.
    EXPECT_TRUE(near(out, expected, 1e3 * Tol<T>::rel, 1e3 * Tol<T>::abs)) << "eps " << eps;
  }
}

TYPED_TEST(LinearTest, ResultsDoNotDependOnTheThreadCount) {
  using T = TypeParam;
  // Same seed -> identical bits, however many OpenMP threads are available to Eigen (the core
  // keeps Eigen's GEMM serial).
  const Index n = 600, d = 32, dv = 32;
  const auto q = random_matrix<T>(n, d, 1, 0.5), k = random_matrix<T>(n, d, 2, 0.5);
  const auto v = random_matrix<T>(n, dv, 3);
  const auto map = favor_map<T>(d, 256, 4);
  RowMatrix<T> one(n, dv), two(n, dv);
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
#if defined(_OPENMP)
    omp_set_num_threads(1);
#endif
    linear_attention<T>(map, map, q, k, v, one, opt);
#if defined(_OPENMP)
    omp_set_num_threads(2);
#endif
    linear_attention<T>(map, map, q, k, v, two, opt);
    EXPECT_TRUE((one.array() == two.array()).all()) << "causal " << causal;
  }
}

TYPED_TEST(LinearTest, BadInputThrowsWithUsefulMessage) {
  using T = TypeParam;
  const auto q = random_matrix<T>(3, 4, 1), k = random_matrix<T>(5, 4, 2);
  const auto v = random_matrix<T>(5, 2, 3);
  RowMatrix<T> out(3, 2);
  const auto map4 = favor_map<T>(4, 8, 1), map4_wide = favor_map<T>(4, 16, 2);
  const auto map6 = favor_map<T>(6, 8, 3);
  auto msg =
      test::invalid_argument_message([&] { linear_attention<T>(map4, map4_wide, q, k, v, out); });
  EXPECT_NE(msg.find("same number of features"), std::string::npos) << msg;
  msg = test::invalid_argument_message([&] { linear_attention<T>(map6, map6, q, k, v, out); });
  EXPECT_NE(msg.find("feature maps take D = 6"), std::string::npos) << msg;
  AttentionOptions alibi;
  alibi.alibi_slope = 0.5;
  msg =
      test::invalid_argument_message([&] { linear_attention<T>(map4, map4, q, k, v, out, alibi); });
  EXPECT_NE(msg.find("ALiBi"), std::string::npos) << msg;
  msg = test::invalid_argument_message(
      [&] { gated_linear_attention<T>(map4, map4, q, k, v, Vector<T>::Zero(4), out); });
  EXPECT_NE(msg.find("log_gates has size 4"), std::string::npos) << msg;
  Vector<T> positive_log_gate = Vector<T>::Zero(5);
  positive_log_gate[2] = T(0.1);
  msg = test::invalid_argument_message(
      [&] { gated_linear_attention<T>(map4, map4, q, k, v, positive_log_gate, out); });
  EXPECT_NE(msg.find("<= 0"), std::string::npos) << msg;
  LinearState<T> state(map4.feature_dim(), 2);
  RowMatrix<T> out_t(1, 2);
  msg = test::invalid_argument_message(
      [&] { state.step(map4, map4, q.topRows(1), k.topRows(1), v.topRows(2), out_t); });
  EXPECT_NE(msg.find("must be one row each"), std::string::npos) << msg;
  EXPECT_THROW(LinearState<T>(0, 2), std::invalid_argument);
  // Checked before the buffers are sized (a negative size used to reach Eigen's allocator).
  msg = test::invalid_argument_message([&] { LinearState<T>(-3, 2); });
  EXPECT_NE(msg.find("feature_dim must be >= 1"), std::string::npos) << msg;
}

}  // namespace
}  // namespace fastattn
