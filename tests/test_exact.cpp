// Tests of exact.hpp: semantics of exact softmax attention (spec/exact.md) for every kernel.

#include "fastattn/exact.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "support.hpp"

namespace fastattn {
namespace {

using test::near;
using test::random_matrix;
using test::reference_attention;
using test::RefSpec;
using test::Tol;

template <class T>
class ExactTest : public ::testing::Test {
 protected:
  using Mat = RowMatrix<T>;
  Exact<T> method{};

  // Runs the method and the double reference on the same inputs and compares them.
  void expect_matches_reference(const Mat& q, const Mat& k, const Mat& v,
                                const AttentionOptions& opt, const Mat& bias = Mat()) {
    Mat out(q.rows(), v.cols());
    Vector<T> lse(q.rows());
    method.forward(q, k, v, out, opt, bias, lse);
    RefSpec spec{opt.scale, opt.causal, opt.key_padding, bias.template cast<double>(),
                 opt.alibi_slope};
    Eigen::VectorXd ref_lse;
    const RowMatrix<double> ref =
        reference_attention(q.template cast<double>(), k.template cast<double>(),
                            v.template cast<double>(), spec, &ref_lse);
    EXPECT_TRUE(near(out, ref, Tol<T>::rel, Tol<T>::abs));
    for (Index i = 0; i < q.rows(); ++i) {
      if (std::isinf(ref_lse[i])) {
        EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << "row " << i << " lse " << lse[i];
      } else {
        EXPECT_NEAR(lse[i], ref_lse[i], Tol<T>::rel * (1 + std::abs(ref_lse[i]))) << "row " << i;
      }
    }
  }

  // With q = 0 every visible key has the same logit, so with V = I (one column per key) row i of
  // the output is the indicator of query i's visible set divided by its size: a direct picture of
  // the mask.
  Mat visible_sets(Index nq, Index nk, const AttentionOptions& opt) {
    const Mat q = Mat::Zero(nq, 4), k = random_matrix<T>(nk, 4, 7);
    const Mat v = Mat::Identity(nk, nk);
    return method(q, k, v, opt);
  }
};

using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ExactTest, Types);

TYPED_TEST(ExactTest, OutputShapeIsNqByDv) {
  using M = RowMatrix<TypeParam>;
  const M q = random_matrix<TypeParam>(5, 8, 1), k = random_matrix<TypeParam>(7, 8, 2);
  const M v = random_matrix<TypeParam>(7, 3, 3);
  const M out = this->method(q, k, v);
  EXPECT_EQ(out.rows(), 5);
  EXPECT_EQ(out.cols(), 3);
}

TYPED_TEST(ExactTest, HandComputedSmallExample) {
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  const auto out = this->visible_sets(4, 4, opt);
  for (Index i = 0; i < 4; ++i)
    for (Index j = 0; j < 4; ++j)
      EXPECT_NEAR(out(i, j), j <= i ? 1.0 / double(i + 1) : 0.0, 1e-6) << i << "," << j;
}

TYPED_TEST(ExactTest, CausalFewerQueriesIsBottomRightAligned) {
  // Nq = 3, Nk = 5: query i sees keys j <= i + 2 (spec/exact.md §3).
  AttentionOptions opt;
  opt.causal = true;
  const auto out = this->visible_sets(3, 5, opt);
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 5; ++j)
      EXPECT_NEAR(out(i, j), j <= i + 2 ? 1.0 / double(i + 3) : 0.0, 1e-6) << i << "," << j;
}

TYPED_TEST(ExactTest, CausalMoreQueriesGivesEmptyLeadingRows) {
  // Nq = 5, Nk = 3: rows 0 and 1 see no key and are zero; row i >= 2 sees keys j <= i - 2.
  AttentionOptions opt;
  opt.causal = true;
  const auto out = this->visible_sets(5, 3, opt);
  for (Index i = 0; i < 5; ++i)
    for (Index j = 0; j < 3; ++j)
      EXPECT_NEAR(out(i, j), j <= i - 2 ? 1.0 / double(i - 1) : 0.0, 1e-6) << i << "," << j;
}

TYPED_TEST(ExactTest, CausalAndPaddingCombine) {
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = KeyMask(4);
  opt.key_padding << true, false, false, true;
  const auto out = this->visible_sets(4, 4, opt);
  // Row 0 sees only key 0, which is padded: empty row.
  EXPECT_EQ(out.row(0).cwiseAbs().sum(), 0);
  for (Index i = 1; i < 4; ++i) {
    const Index visible = std::min<Index>(i, 2);  // keys 1..min(i, 2)
    for (Index j = 0; j < 4; ++j) {
      const bool seen = j >= 1 && j <= std::min<Index>(i, 2);
      EXPECT_NEAR(out(i, j), seen ? 1.0 / double(visible) : 0.0, 1e-6) << i << "," << j;
    }
  }
}

TYPED_TEST(ExactTest, AllKeysPaddedGivesZerosAndMinusInfinityLse) {
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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
  using T = TypeParam;
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

  const std::string bias_msg = test::invalid_argument_message(
      [&] { Exact<T>().forward(q, k, v, out, AttentionOptions{}, M::Zero(2, 5)); });
  EXPECT_NE(bias_msg.find("bias [2, 5] must be [Nq, Nk] = [3, 5]"), std::string::npos) << bias_msg;

  Vector<T> lse_bad(2);
  const std::string lse_msg = test::invalid_argument_message(
      [&] { Exact<T>().forward(q, k, v, out, AttentionOptions{}, M(), lse_bad); });
  EXPECT_NE(lse_msg.find("lse has size 2"), std::string::npos) << lse_msg;
}

TYPED_TEST(ExactTest, OutputAliasingAnInputIsRejected) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  M buf = random_matrix<T>(4, 4, 1);
  const M q = random_matrix<T>(4, 4, 2);
  // out and v are the same memory: the kernel would overwrite values it still has to read.
  const std::string msg =
      test::invalid_argument_message([&] { Exact<T>().forward(q, q, buf, buf); });
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

}  // namespace
}  // namespace fastattn
