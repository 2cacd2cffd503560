// Tests of exact.hpp: semantics of exact softmax attention (docs/spec/exact.md) for every kernel.

// EIGEN_RUNTIME_NO_MALLOC lets a test assert that decoding steps do not allocate.
#define EIGEN_RUNTIME_NO_MALLOC
#include "fastattn/exact.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "reference/exact.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::near;
using test::random_matrix;
namespace ref = test::ref;
using test::Tol;

// Every semantic test runs for each kernel; TinyBlocks makes small problems span many tiles, so
// the online-softmax rescaling, block skipping and diagonal masking are exercised everywhere.
enum class Config { Blocked, TinyBlocks, Reference };

template <class Scalar, Config C>
struct Case {
  using T = Scalar;
  static ExactOptions options() {
    ExactOptions o;
    if (C == Config::Reference) o.kernel = ExactKernel::Reference;
    if (C == Config::TinyBlocks) o.block_q = 3, o.block_k = 4;
    return o;
  }
};

template <class P>
class ExactTest : public ::testing::Test {
 protected:
  using Scalar = typename P::T;
  using Mat = RowMatrix<Scalar>;
  Exact<Scalar> method{P::options()};

  // Runs the method and the double reference on the same inputs and compares them.
  void expect_matches_reference(const Mat& q, const Mat& k, const Mat& v,
                                const AttentionOptions& opt, const Mat& bias = Mat()) {
    Mat out(q.rows(), v.cols());
    Vector<Scalar> lse(q.rows());
    method.forward(q, k, v, out, opt, bias, lse);
    const ref::ExactSpec spec{opt.scale, opt.causal, opt.key_padding, bias.template cast<double>(),
                              opt.alibi_slope};
    Eigen::VectorXd ref_lse;
    const RowMatrix<double> expected =
        ref::exact_attention(q.template cast<double>(), k.template cast<double>(),
                             v.template cast<double>(), spec, &ref_lse);
    EXPECT_TRUE(near(out, expected, Tol<Scalar>::rel, Tol<Scalar>::abs));
    for (Index i = 0; i < q.rows(); ++i) {
      if (std::isinf(ref_lse[i])) {
        EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << "row " << i << " lse " << lse[i];
      } else {
        EXPECT_NEAR(lse[i], ref_lse[i], Tol<Scalar>::rel * (1 + std::abs(ref_lse[i])))
            << "row " << i;
      }
    }
  }

  // With q = 0 every visible key has the same logit, so with V = I (one column per key) row i of
  // the output is the indicator of query i's visible set divided by its size: a direct picture of
  // the mask.
  Mat visible_sets(Index nq, Index nk, const AttentionOptions& opt) {
    const Mat q = Mat::Zero(nq, 4), k = random_matrix<Scalar>(nk, 4, 7);
    const Mat v = Mat::Identity(nk, nk);
    return method(q, k, v, opt);
  }

  // Expects out (from visible_sets) to be 1/|S_i| on the keys j in query i's set S_i = {j :
  // seen(i, j)} and 0 elsewhere, for the rows i >= first.
  template <class Seen>
  static void expect_visible_sets(const Mat& out, Seen seen, Index first = 0) {
    for (Index i = first; i < out.rows(); ++i) {
      Index size = 0;
      for (Index j = 0; j < out.cols(); ++j) size += seen(i, j);
      for (Index j = 0; j < out.cols(); ++j)
        EXPECT_NEAR(out(i, j), seen(i, j) ? 1.0 / double(size) : 0.0, 1e-6) << i << "," << j;
    }
  }
};

using Cases = ::testing::Types<Case<float, Config::Blocked>, Case<double, Config::Blocked>,
                               Case<float, Config::TinyBlocks>, Case<double, Config::TinyBlocks>,
                               Case<float, Config::Reference>, Case<double, Config::Reference>>;
TYPED_TEST_SUITE(ExactTest, Cases);

TYPED_TEST(ExactTest, OutputShapeIsNqByDv) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(5, 8, 1), k = random_matrix<T>(7, 8, 2);
  const M v = random_matrix<T>(7, 3, 3);
  const M out = this->method(q, k, v);
  EXPECT_EQ(out.rows(), 5);
  EXPECT_EQ(out.cols(), 3);
}

TYPED_TEST(ExactTest, HandComputedSmallExample) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  M q(2, 1), k(3, 1), v(3, 2);
  q << 1, 2;
  k << 1, 0, -1;
  v << 1, 0, 0, 1, 1, 1;
  AttentionOptions opt;
  opt.scale = 1;
  const M out = this->method(q, k, v, opt);
  for (int i = 0; i < 2; ++i) {
    const double x = q(i, 0);  // logits x, 0, -x
    const double z = std::exp(x) + 1 + std::exp(-x);
    EXPECT_NEAR(out(i, 0), (std::exp(x) + std::exp(-x)) / z, 1e-6);
    EXPECT_NEAR(out(i, 1), (1 + std::exp(-x)) / z, 1e-6);
  }
}

TYPED_TEST(ExactTest, DefaultScaleIsInverseSqrtOfKeyDim) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  // D = 4, so the default scale is 1/2: q.k0 = 2 -> logit 1, q.k1 = 0 -> logit 0.
  M q(1, 4), k(2, 4), v(2, 1);
  q << 1, 1, 1, 1;
  k << 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0;
  v << 1, 0;
  const M out = this->method(q, k, v);
  EXPECT_NEAR(out(0, 0), std::exp(1.0) / (std::exp(1.0) + 1), 1e-6);
  AttentionOptions opt;
  opt.scale = 1;  // explicit scale: logits 2 and 0
  EXPECT_NEAR(this->method(q, k, v, opt)(0, 0), std::exp(2.0) / (std::exp(2.0) + 1), 1e-6);
}

TYPED_TEST(ExactTest, KeyPaddingRemovesKeysForEveryQuery) {
  AttentionOptions opt;
  opt.key_padding = KeyMask(4);
  opt.key_padding << false, true, false, true;
  const auto out = this->visible_sets(3, 4, opt);
  for (Index i = 0; i < 3; ++i) {
    EXPECT_NEAR(out(i, 0), 0.5, 1e-6);
    EXPECT_EQ(out(i, 1), 0);
    EXPECT_NEAR(out(i, 2), 0.5, 1e-6);
    EXPECT_EQ(out(i, 3), 0);
  }
}

TYPED_TEST(ExactTest, PaddedKeysValuesNeverReachTheOutput) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  // A padded key behaves as if it and its value did not exist, even when its value is garbage.
  const M q = random_matrix<T>(5, 8, 1), k = random_matrix<T>(6, 8, 2);
  M v = random_matrix<T>(6, 3, 3);
  AttentionOptions opt;
  opt.key_padding = KeyMask::Constant(6, false);
  opt.key_padding[2] = opt.key_padding[4] = true;
  const M clean = this->method(q, k, v, opt);
  v(2, 0) = std::numeric_limits<T>::quiet_NaN();
  v(4, 1) = std::numeric_limits<T>::infinity();
  const M dirty = this->method(q, k, v, opt);
  ASSERT_TRUE(test::all_finite(dirty));
  EXPECT_TRUE(near(dirty, clean, 0, 0));
}

TYPED_TEST(ExactTest, CausalSquareIsLowerTriangular) {
  AttentionOptions opt;
  opt.causal = true;
  this->expect_visible_sets(this->visible_sets(4, 4, opt), [](Index i, Index j) { return j <= i; });
}

TYPED_TEST(ExactTest, CausalFewerQueriesIsBottomRightAligned) {
  // Nq = 3, Nk = 5: query i sees keys j <= i + 2 (docs/spec/exact.md §3).
  AttentionOptions opt;
  opt.causal = true;
  this->expect_visible_sets(this->visible_sets(3, 5, opt),
                            [](Index i, Index j) { return j <= i + 2; });
}

TYPED_TEST(ExactTest, CausalMoreQueriesGivesEmptyLeadingRows) {
  // Nq = 5, Nk = 3: rows 0 and 1 see no key and are zero; row i >= 2 sees keys j <= i - 2.
  AttentionOptions opt;
  opt.causal = true;
  this->expect_visible_sets(this->visible_sets(5, 3, opt),
                            [](Index i, Index j) { return j <= i - 2; });
}

TYPED_TEST(ExactTest, CausalAndPaddingCombine) {
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = KeyMask(4);
  opt.key_padding << true, false, false, true;
  const auto out = this->visible_sets(4, 4, opt);
  // Row 0 sees only key 0, which is padded: empty row.
  EXPECT_EQ(out.row(0).cwiseAbs().sum(), 0);
  // Row i >= 1 sees keys 1..min(i, 2).
  this->expect_visible_sets(
      out, [](Index i, Index j) { return j >= 1 && j <= std::min<Index>(i, 2); }, 1);
}

TYPED_TEST(ExactTest, AllKeysPaddedGivesZerosAndMinusInfinityLse) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(3, 4, 1), k = random_matrix<T>(5, 4, 2);
  const M v = random_matrix<T>(5, 2, 3);
  AttentionOptions opt;
  opt.key_padding = KeyMask::Constant(5, true);
  M out(3, 2);
  Vector<T> lse(3);
  this->method.forward(q, k, v, out, opt, M(), lse);
  EXPECT_TRUE(out.isZero(0));
  EXPECT_TRUE((lse.array() == -std::numeric_limits<T>::infinity()).all());
}

TYPED_TEST(ExactTest, ZeroSizes) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  // Nq = 0: empty output.
  const M none = this->method(M(0, 4), random_matrix<T>(3, 4, 1), random_matrix<T>(3, 2, 2));
  EXPECT_EQ(none.rows(), 0);
  EXPECT_EQ(none.cols(), 2);
  // Nk = 0: every row is empty, so all zeros.
  const M zeros = this->method(random_matrix<T>(3, 4, 1), M(0, 4), M(0, 2));
  EXPECT_EQ(zeros.rows(), 3);
  EXPECT_TRUE(zeros.isZero(0));
  // Dv = 0 is a valid (if useless) shape.
  EXPECT_EQ(this->method(random_matrix<T>(3, 4, 1), random_matrix<T>(2, 4, 2), M(2, 0)).cols(), 0);
}

TYPED_TEST(ExactTest, HugeLogitsStayFiniteAndCorrect) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  // Logits of +-1e4 overflow exp in both precisions unless the row max is subtracted.
  M q(2, 1), k(3, 1), v(3, 2);
  q << 100, -100;
  k << 100, -100, 99.99;
  v << 1, 2, 3, 4, 5, 6;
  AttentionOptions opt;
  opt.scale = 1;
  M out(2, 2);
  Vector<T> lse(2);
  this->method.forward(q, k, v, out, opt, M(), lse);
  ASSERT_TRUE(test::all_finite(out));
  // Row 0: logits 1e4, -1e4, 9999; weights 1/(1+e^-1) and e^-1/(1+e^-1).
  const double w = 1 / (1 + std::exp(-1.0));
  EXPECT_NEAR(out(0, 0), w * 1 + (1 - w) * 5, 1e-4);
  EXPECT_NEAR(out(0, 1), w * 2 + (1 - w) * 6, 1e-4);
  // Row 1: logits -1e4, 1e4, -9999: all weight on key 1.
  EXPECT_NEAR(out(1, 0), 3, 1e-5);
  EXPECT_NEAR(out(1, 1), 4, 1e-5);
  EXPECT_NEAR(lse[1], 1e4, 1e4 * Tol<T>::rel);
}

TYPED_TEST(ExactTest, RandomShapesMatchReference) {
  using T = typename TestFixture::Scalar;
  const Index shapes[][4] = {{1, 1, 1, 1}, {7, 7, 3, 5}, {13, 29, 16, 8}, {40, 17, 8, 24}};
  std::uint64_t seed = 100;
  for (const auto& s : shapes) {
    const Index nq = s[0], nk = s[1], d = s[2], dv = s[3];
    for (int causal = 0; causal < 2; ++causal) {
      SCOPED_TRACE(testing::Message()
                   << nq << "x" << nk << " D" << d << " Dv" << dv << (causal ? " causal" : ""));
      AttentionOptions opt;
      opt.causal = causal;
      opt.key_padding = test::random_mask(nk, 0.3, seed);
      this->expect_matches_reference(random_matrix<T>(nq, d, seed + 1),
                                     random_matrix<T>(nk, d, seed + 2),
                                     random_matrix<T>(nk, dv, seed + 3), opt);
      seed += 10;
    }
  }
}

TYPED_TEST(ExactTest, BiasAndAlibiMatchReference) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const Index nq = 9, nk = 14, d = 8;
  const M q = random_matrix<T>(nq, d, 1), k = random_matrix<T>(nk, d, 2);
  const M v = random_matrix<T>(nk, 5, 3);
  M full = random_matrix<T>(nq, nk, 4);
  full(2, 3) = -std::numeric_limits<T>::infinity();  // -inf bias removes one entry
  const M per_key = random_matrix<T>(1, nk, 5);
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    this->expect_matches_reference(q, k, v, opt, full);
    this->expect_matches_reference(q, k, v, opt, per_key);
    opt.alibi_slope = 0.25;
    this->expect_matches_reference(q, k, v, opt);
    this->expect_matches_reference(q, k, v, opt, full);
  }
}

TYPED_TEST(ExactTest, MinusInfinityBiasOnEveryKeyGivesEmptyRow) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(2, 4, 1), k = random_matrix<T>(3, 4, 2);
  const M v = random_matrix<T>(3, 2, 3);
  M bias = M::Zero(2, 3);
  bias.row(1).setConstant(-std::numeric_limits<T>::infinity());
  M out(2, 2);
  this->method.forward(q, k, v, out, AttentionOptions{}, bias);
  EXPECT_FALSE(out.row(0).isZero(0));
  EXPECT_TRUE(out.row(1).isZero(0));
}

TYPED_TEST(ExactTest, RowConstantBiasChangesLseNotOutput) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(4, 8, 1), k = random_matrix<T>(6, 8, 2);
  const M v = random_matrix<T>(6, 3, 3);
  M bias(4, 6);
  for (Index i = 0; i < 4; ++i) bias.row(i).setConstant(T(i) - 1);
  M out0(4, 3), out1(4, 3);
  Vector<T> lse0(4), lse1(4);
  this->method.forward(q, k, v, out0, AttentionOptions{}, M(), lse0);
  this->method.forward(q, k, v, out1, AttentionOptions{}, bias, lse1);
  EXPECT_TRUE(near(out1, out0, Tol<T>::rel, Tol<T>::abs));
  for (Index i = 0; i < 4; ++i) EXPECT_NEAR(lse1[i] - lse0[i], double(i) - 1, 1e-5);
}

TYPED_TEST(ExactTest, ShiftOfValuesShiftsOutput) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(6, 8, 1), k = random_matrix<T>(9, 8, 2);
  const M v = random_matrix<T>(9, 3, 3);
  AttentionOptions opt;
  opt.causal = true;
  const M shifted = v.array() + T(2.5);
  const M expected = this->method(q, k, v, opt).array() + T(2.5);
  EXPECT_TRUE(near(this->method(q, k, shifted, opt), expected, Tol<T>::rel, Tol<T>::abs));
}

TYPED_TEST(ExactTest, KeyPermutationLeavesNonCausalOutputUnchanged) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(5, 8, 1), k = random_matrix<T>(11, 8, 2);
  const M v = random_matrix<T>(11, 4, 3);
  Eigen::PermutationMatrix<Eigen::Dynamic> perm(11);
  perm.setIdentity();
  std::reverse(perm.indices().data(), perm.indices().data() + 11);
  std::swap(perm.indices()[0], perm.indices()[5]);
  const M kp = perm * k, vp = perm * v;
  EXPECT_TRUE(near(this->method(q, kp, vp), this->method(q, k, v), Tol<T>::rel, Tol<T>::abs));
}

TYPED_TEST(ExactTest, InputsFromBlocksAndMapsBindWithoutCopies) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M big = random_matrix<T>(20, 30, 1);
  // q, k, v as blocks of one bigger matrix (outer stride 30), out as a block of another.
  const auto q = big.block(0, 0, 5, 8), k = big.block(5, 8, 9, 8), v = big.block(2, 20, 9, 4);
  M out_big = M::Zero(10, 10);
  this->method.forward(q, k, v, out_big.block(3, 2, 5, 4));
  const M expected = this->method(M(q), M(k), M(v));
  EXPECT_TRUE(near(out_big.block(3, 2, 5, 4), expected, 0, 0));
  EXPECT_TRUE(out_big.block(0, 0, 3, 10).isZero(0));  // nothing written outside the block
}

// ---- bad input ---------------------------------------------------------------------------------

template <class T>
std::string message_of(const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
                       RowMatrix<T>& out, const AttentionOptions& opt = {}) {
  return test::invalid_argument_message([&] { Exact<T>().forward(q, k, v, out, opt); });
}

TYPED_TEST(ExactTest, BadInputThrowsWithUsefulMessage) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(3, 4, 1), k = random_matrix<T>(5, 4, 2);
  const M v = random_matrix<T>(5, 2, 3);
  M out(3, 2);

  M k_bad_d = random_matrix<T>(5, 6, 4);
  EXPECT_NE(message_of(q, k_bad_d, v, out).find("k [5, 6] must have D = 4"), std::string::npos)
      << message_of(q, k_bad_d, v, out);

  M v_bad_n = random_matrix<T>(4, 2, 5);
  EXPECT_NE(message_of(q, k, v_bad_n, out).find("v [4, 2] must have Nk = 5"), std::string::npos);

  M out_bad(3, 3);
  EXPECT_NE(message_of(q, k, v, out_bad).find("out [3, 3] must be [Nq, Dv] = [3, 2]"),
            std::string::npos);

  AttentionOptions bad_mask;
  bad_mask.key_padding = KeyMask::Constant(4, false);
  EXPECT_NE(message_of(q, k, v, out, bad_mask).find("key_padding has length 4"), std::string::npos);

  M q_d0(3, 0), k_d0(5, 0);
  EXPECT_NE(message_of(q_d0, k_d0, v, out).find("head dimension D"), std::string::npos);

  for (double s : {std::numeric_limits<double>::infinity(), std::nan("")}) {
    AttentionOptions bad_scale;
    bad_scale.scale = s;
    EXPECT_NE(message_of(q, k, v, out, bad_scale).find("scale must be finite"), std::string::npos);
  }

  AttentionOptions bad_alibi;
  bad_alibi.alibi_slope = -1;
  EXPECT_NE(message_of(q, k, v, out, bad_alibi).find("alibi_slope"), std::string::npos);

  const std::string bias_msg = test::invalid_argument_message([&] {
    Exact<T>(TypeParam::options()).forward(q, k, v, out, AttentionOptions{}, M::Zero(2, 5));
  });
  EXPECT_NE(bias_msg.find("bias [2, 5] must be [Nq, Nk] = [3, 5]"), std::string::npos) << bias_msg;

  Vector<T> lse_bad(2);
  const std::string lse_msg = test::invalid_argument_message([&] {
    Exact<T>(TypeParam::options()).forward(q, k, v, out, AttentionOptions{}, M(), lse_bad);
  });
  EXPECT_NE(lse_msg.find("lse has size 2"), std::string::npos) << lse_msg;
}

TYPED_TEST(ExactTest, OutputAliasingAnInputIsRejected) {
  using T = typename TestFixture::Scalar;
  using M = RowMatrix<T>;
  M buf = random_matrix<T>(4, 4, 1);
  const M q = random_matrix<T>(4, 4, 2);
  // out and v are the same memory: the kernel would overwrite values it still has to read.
  const std::string msg = test::invalid_argument_message(
      [&] { Exact<T>(TypeParam::options()).forward(q, q, buf, buf); });
  EXPECT_NE(msg.find("must not share memory"), std::string::npos) << msg;
}

TEST(AlibiSlopes, MatchPressEtAl) {
  const auto eight = alibi_slopes(8);
  ASSERT_EQ(eight.size(), 8u);
  for (int h = 0; h < 8; ++h) EXPECT_DOUBLE_EQ(eight[size_t(h)], std::pow(2.0, -(h + 1)));
  // 6 heads: P = 4 -> 2^-2, 2^-4, 2^-6, 2^-8, then the odd-indexed slopes of 8 heads: 2^-1, 2^-3.
  const auto six = alibi_slopes(6);
  const double expected[] = {0.25, 1.0 / 16, 1.0 / 64, 1.0 / 256, 0.5, 0.125};
  ASSERT_EQ(six.size(), 6u);
  for (int h = 0; h < 6; ++h) EXPECT_DOUBLE_EQ(six[size_t(h)], expected[h]);
  EXPECT_THROW(alibi_slopes(0), std::invalid_argument);
}

// ---- blocked kernel against the reference path ----------------------------------------------

template <class T>
class ExactBlockedTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ExactBlockedTest, Types);

TYPED_TEST(ExactBlockedTest, MatchesReferenceOnRandomShapesMasksAndBiases) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // {Nq, Nk, D, Dv}: single rows, D in {1, 3, 64, 128}, Dv != D, sizes that are not multiples of
  // any block size, Nq < Nk and Nq > Nk (causal offsets in both directions).
  const Index shapes[][4] = {{1, 1, 1, 1},       {1, 300, 64, 64},   {300, 1, 3, 5},
                             {67, 131, 64, 64},  {131, 67, 128, 32}, {70, 333, 3, 7},
                             {257, 257, 64, 65}, {5, 600, 1, 2}};
  const ExactOptions blockings[] = {
      {}, {ExactKernel::Blocked, 16, 32}, {ExactKernel::Blocked, 7, 5}};
  const Exact<T> reference(ExactOptions{ExactKernel::Reference});
  std::uint64_t seed = 1000;
  for (const auto& sh : shapes) {
    const Index nq = sh[0], nk = sh[1], d = sh[2], dv = sh[3];
    const M q = random_matrix<T>(nq, d, seed++, 1.5), k = random_matrix<T>(nk, d, seed++, 1.5);
    const M v = random_matrix<T>(nk, dv, seed++);
    const M full_bias = random_matrix<T>(nq, nk, seed++),
            key_bias = random_matrix<T>(1, nk, seed++);
    for (int combo = 0; combo < 16; ++combo) {
      AttentionOptions opt;
      opt.causal = combo & 1;
      if (combo & 2) opt.key_padding = test::random_mask(nk, 0.4, seed++);
      if (combo & 4) opt.alibi_slope = 0.125;
      const M& bias = (combo & 8) ? (combo & 4 ? key_bias : full_bias) : M();
      M expected(nq, dv);
      Vector<T> expected_lse(nq);
      reference.forward(q, k, v, expected, opt, bias, expected_lse);
      for (const ExactOptions& b : blockings) {
        SCOPED_TRACE(testing::Message() << nq << "x" << nk << " D" << d << " Dv" << dv << " combo "
                                        << combo << " blocks " << b.block_q << "x" << b.block_k);
        M out(nq, dv);
        Vector<T> lse(nq);
        Exact<T>(b).forward(q, k, v, out, opt, bias, lse);
        // Same math, different summation order: a few units of rounding of a softmax average.
        EXPECT_TRUE(near(out, expected, 4 * Tol<T>::rel, 4 * Tol<T>::abs));
        for (Index i = 0; i < nq; ++i) {
          if (std::isinf(expected_lse[i])) {
            EXPECT_EQ(lse[i], expected_lse[i]) << "row " << i;
          } else {
            EXPECT_NEAR(lse[i], expected_lse[i], 4 * Tol<T>::rel * (1 + std::abs(expected_lse[i])));
          }
        }
      }
    }
  }
}

TYPED_TEST(ExactBlockedTest, LseMergesTwoKeyHalvesIntoTheFullResult) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // docs/spec/exact.md §6: results on disjoint key sets merge with their log-sum-exps.
  const Index nq = 20, nk = 90, split = 37;
  const M q = random_matrix<T>(nq, 16, 1), k = random_matrix<T>(nk, 16, 2);
  const M v = random_matrix<T>(nk, 8, 3);
  AttentionOptions opt;
  opt.key_padding = test::random_mask(nk, 0.2, 4);
  opt.key_padding.head(split).setConstant(true);  // the first half is entirely padded for row 0..
  opt.key_padding.head(split - 5).setConstant(false);
  AttentionOptions opt_a, opt_b;
  opt_a.key_padding = opt.key_padding.head(split);
  opt_b.key_padding = opt.key_padding.tail(nk - split);
  const Exact<T> exact(ExactOptions{ExactKernel::Blocked, 8, 16});
  M full(nq, 8), a(nq, 8), b(nq, 8);
  Vector<T> lse(nq), lse_a(nq), lse_b(nq);
  exact.forward(q, k, v, full, opt, M(), lse);
  exact.forward(q, k.topRows(split), v.topRows(split), a, opt_a, M(), lse_a);
  exact.forward(q, k.bottomRows(nk - split), v.bottomRows(nk - split), b, opt_b, M(), lse_b);
  for (Index i = 0; i < nq; ++i) {
    const double mx = std::max(lse_a[i], lse_b[i]);
    const double merged = mx + std::log(std::exp(lse_a[i] - mx) + std::exp(lse_b[i] - mx));
    EXPECT_NEAR(merged, lse[i], 1e-5 * (1 + std::abs(merged)));
    const RowMatrix<double> o = std::exp(lse_a[i] - merged) * a.row(i).template cast<double>() +
                                std::exp(lse_b[i] - merged) * b.row(i).template cast<double>();
    EXPECT_TRUE(near(full.row(i), o, 10 * Tol<T>::rel, 10 * Tol<T>::abs)) << "row " << i;
  }
}

TYPED_TEST(ExactBlockedTest, DecodingTokenByTokenEqualsCausalForward) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const Index n = 150, d = 24, dv = 10;
  const M q = random_matrix<T>(n, d, 1), k = random_matrix<T>(n, d, 2);
  M v = random_matrix<T>(n, dv, 3);
  AttentionOptions opt;
  opt.causal = true;
  opt.scale = 0.3;
  opt.alibi_slope = 0.05;
  opt.key_padding = test::random_mask(n, 0.15, 4);
  opt.key_padding[0] = true;  // the first query sees nothing
  const Exact<T> exact;
  const M expected = exact(q, k, v, opt);
  for (Index j = 0; j < n; ++j)  // garbage in padded values must not leak through the cache
    if (opt.key_padding[j]) v(j, 0) = std::numeric_limits<T>::quiet_NaN();

  AttentionOptions state_opt;
  state_opt.scale = opt.scale;
  state_opt.alibi_slope = opt.alibi_slope;
  // One token at a time, and as chunked prefill of uneven pieces: both equal the causal forward.
  for (Index piece : {1, 7}) {
    auto state = exact.make_state(dv, state_opt);
    M out(n, dv);
    for (Index t = 0; t < n;) {
      const Index len = std::min(piece, n - t);
      const bool padded = opt.key_padding[t];
      const Index run = piece == 1 ? 1 : [&] {  // prefill pieces share one padding flag
        Index r = 1;
        while (r < len && opt.key_padding[t + r] == padded) ++r;
        return r;
      }();
      exact.step(state, q.middleRows(t, run), k.middleRows(t, run), v.middleRows(t, run),
                 out.middleRows(t, run), padded);
      t += run;
    }
    EXPECT_EQ(state.size(), n);
    ASSERT_TRUE(test::all_finite(out));
    EXPECT_TRUE(near(out, expected, 4 * Tol<T>::rel, 4 * Tol<T>::abs)) << "piece " << piece;
  }
}

TYPED_TEST(ExactBlockedTest, TruncateRollsTheCacheBack) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const Index n = 30, d = 8, dv = 4;
  const M q = random_matrix<T>(n, d, 1), k = random_matrix<T>(n, d, 2),
          v = random_matrix<T>(n, dv, 3);
  const Exact<T> exact;
  auto state = exact.make_state(dv);
  M out(n, dv), again(1, dv);
  for (Index t = 0; t < n; ++t) exact.step(state, q.row(t), k.row(t), v.row(t), out.row(t));
  // Roll back to 20 tokens and step token 20 with other values, then with the original ones.
  state.truncate(20);
  EXPECT_EQ(state.size(), 20);
  exact.step(state, q.row(20), k.row(21), v.row(21), again);
  state.truncate(20);
  exact.step(state, q.row(20), k.row(20), v.row(20), again);
  EXPECT_TRUE((again.array() == out.row(20).array()).all());
  EXPECT_THROW(state.truncate(22), std::invalid_argument);
  EXPECT_THROW(state.truncate(-1), std::invalid_argument);
}

TYPED_TEST(ExactBlockedTest, DecodingStepDoesNotAllocateOnceReserved) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const Index n = 100, d = 16, dv = 8;
  const M q = random_matrix<T>(n, d, 1), k = random_matrix<T>(n, d, 2);
  const M v = random_matrix<T>(n, dv, 3);
  const Exact<T> exact;
  auto state = exact.make_state(dv, AttentionOptions{}, n);
  M out(1, dv);
  exact.step(state, q.topRows(1), k.topRows(1), v.topRows(1), out);  // first step learns D
  EXPECT_GE(state.capacity(), n);
  Eigen::internal::set_is_malloc_allowed(false);  // any Eigen allocation now asserts
  for (Index t = 1; t < n; ++t)
    exact.step(state, q.middleRows(t, 1), k.middleRows(t, 1), v.middleRows(t, 1), out);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_EQ(state.size(), n);
}

TYPED_TEST(ExactBlockedTest, DecodingRejectsBadShapes) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const Exact<T> exact;
  auto state = exact.make_state(4);
  M out(1, 4);
  exact.step(state, M::Ones(1, 8), M::Ones(1, 8), M::Ones(1, 4), out);
  const std::string d_msg = test::invalid_argument_message(
      [&] { exact.step(state, M::Ones(1, 6), M::Ones(1, 6), M::Ones(1, 4), out); });
  EXPECT_NE(d_msg.find("with D = 8"), std::string::npos) << d_msg;
  const std::string v_msg = test::invalid_argument_message(
      [&] { exact.step(state, M::Ones(1, 8), M::Ones(1, 8), M::Ones(1, 3), out); });
  EXPECT_NE(v_msg.find("value_dim of the state"), std::string::npos) << v_msg;
  AttentionOptions padded;
  padded.key_padding = KeyMask::Constant(3, false);
  EXPECT_THROW(exact.make_state(4, padded), std::invalid_argument);
  // A prefill whose output aliases its queries is rejected before the tokens enter the cache.
  M qkv = M::Ones(2, 8);
  Eigen::Map<M> aliased_out(qkv.data(), 2, 4);
  const std::string alias_msg = test::invalid_argument_message(
      [&] { exact.step(state, qkv, M::Ones(2, 8), M::Ones(2, 4), aliased_out); });
  EXPECT_NE(alias_msg.find("must not share memory"), std::string::npos) << alias_msg;
  EXPECT_EQ(state.size(), 1);  // failed steps leave the cache unchanged
}

}  // namespace
}  // namespace fastattn
