// Tests of bench/baselines.hpp, the accuracy sweep's reference lines (uniform, oracle top-k,
// window only), against brute force written here: every logit in double, the keys chosen by a
// full sort (oracle) or by the window's index range (window only), then the exact softmax of
// tests/support.hpp over the chosen keys; uniform as a plain loop over the visible values.

#include "bench/baselines.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "support.hpp"

namespace fastattn {
namespace {

using test::random_mask;
using test::random_matrix;
using Mat = RowMatrix<double>;

// The baselines accumulate in double and round the output to T once, as the brute force below
// does from the same T inputs: they differ by that one rounding (2^-24 relative in float) plus
// double rounding of a few hundred operations (< 1e-13 relative).
template <class T>
struct BaselineTol;
template <>
struct BaselineTol<float> {
  static constexpr double rel = 0x1.0p-23, abs = 1e-13;
};
template <>
struct BaselineTol<double> {
  static constexpr double rel = 1e-13, abs = 1e-14;
};

template <class T, class A, class B>
::testing::AssertionResult close(const A& actual, const B& expected) {
  return test::near(actual, expected, BaselineTol<T>::rel, BaselineTol<T>::abs);
}

/// May query i (of nq) see key j (of nk)? Not padded, and causal bottom-right: j <= i + nk - nq.
bool visible(Index i, Index j, Index nq, Index nk, const AttentionOptions& opt) {
  if (opt.key_padding.size() && opt.key_padding[j]) return false;
  return !opt.causal || j <= i + nk - nq;
}

/// Exact softmax attention of query row i over the keys in `chosen` only (support.hpp's
/// reference on one row with every other key padded).
Mat attend_to(const Mat& q, Index i, const Mat& k, const Mat& v, const std::vector<Index>& chosen,
              double scale) {
  KeyMask mask = KeyMask::Constant(k.rows(), true);
  for (Index j : chosen) mask[j] = false;
  test::RefSpec spec;
  spec.scale = scale;
  spec.padding = mask;
  return test::reference_attention(q.row(i), k, v, spec);
}

/// Brute-force oracle top-k: all logits in double, a full sort by (logit descending, index
/// ascending), the first k visible keys.
Mat brute_topk(const Mat& q, const Mat& k, const Mat& v, Index top_k, const AttentionOptions& opt) {
  const double scale = opt.scale > 0 ? opt.scale : 1 / std::sqrt(double(q.cols()));
  Mat out = Mat::Zero(q.rows(), v.cols());
  for (Index i = 0; i < q.rows(); ++i) {
    std::vector<std::pair<double, Index>> all;
    for (Index j = 0; j < k.rows(); ++j)
      if (visible(i, j, q.rows(), k.rows(), opt)) {
        double logit = 0;
        for (Index t = 0; t < q.cols(); ++t) logit += q(i, t) * k(j, t);
        all.emplace_back(-logit * scale, j);  // ascending sort: largest logit, then lowest index
      }
    std::sort(all.begin(), all.end());
    std::vector<Index> chosen;
    for (std::size_t r = 0; r < all.size() && Index(r) < top_k; ++r)
      chosen.push_back(all[r].second);
    out.row(i) = attend_to(q, i, k, v, chosen, scale);
  }
  return out;
}

/// Brute-force window only: query i's keys are the window w = i / W's range
/// [wW - ext, wW + W + ext) clipped to [0, n), visible (padding; causal: j <= i).
Mat brute_window(const Mat& q, const Mat& k, const Mat& v, Index window, Index ext,
                 const AttentionOptions& opt) {
  const double scale = opt.scale > 0 ? opt.scale : 1 / std::sqrt(double(q.cols()));
  const Index n = q.rows();
  Mat out = Mat::Zero(n, v.cols());
  for (Index i = 0; i < n; ++i) {
    const Index w = i / window;
    std::vector<Index> chosen;
    for (Index j = 0; j < n; ++j)
      if (j >= w * window - ext && j < w * window + window + ext && visible(i, j, n, n, opt))
        chosen.push_back(j);
    out.row(i) = attend_to(q, i, k, v, chosen, scale);
  }
  return out;
}

/// Brute-force uniform: the mean of the visible values of each query.
Mat brute_uniform(Index nq, const Mat& v, const AttentionOptions& opt) {
  Mat out = Mat::Zero(nq, v.cols());
  for (Index i = 0; i < nq; ++i) {
    Index count = 0;
    for (Index j = 0; j < v.rows(); ++j)
      if (visible(i, j, nq, v.rows(), opt)) {
        out.row(i) += v.row(j);
        ++count;
      }
    if (count) out.row(i) /= double(count);
  }
  return out;
}

template <class T>
class BaselinesTest : public ::testing::Test {
 protected:
  struct Inputs {
    RowMatrix<T> q, k, v;
  };
  static Inputs inputs(Index nq, Index nk, Index d, Index dv, std::uint64_t seed) {
    return {random_matrix<T>(nq, d, seed), random_matrix<T>(nk, d, seed + 1),
            random_matrix<T>(nk, dv, seed + 2)};
  }
  static Mat dbl(const RowMatrix<T>& m) { return m.template cast<double>(); }
  /// Exact attention of `x` under the masks of `opt`, from the independent double reference.
  static Mat exact(const Inputs& x, const AttentionOptions& opt) {
    test::RefSpec spec;
    spec.causal = opt.causal;
    spec.padding = opt.key_padding;
    return test::reference_attention(dbl(x.q), dbl(x.k), dbl(x.v), spec);
  }
};

using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(BaselinesTest, Types);

// Every mask combination the sweep uses and more: none, random padding, causal, both.
std::vector<AttentionOptions> option_grid(Index nk, std::uint64_t seed) {
  std::vector<AttentionOptions> grid;
  for (int causal = 0; causal < 2; ++causal)
    for (int pad = 0; pad < 2; ++pad) {
      AttentionOptions opt;
      opt.causal = causal;
      if (pad) opt.key_padding = random_mask(nk, 0.3, seed + Index(causal));
      grid.push_back(opt);
    }
  return grid;
}

TYPED_TEST(BaselinesTest, TopKMatchesBruteForce) {
  using T = TypeParam;
  // Nq != Nk (causal is bottom-right aligned), Dv != D, an explicit scale.
  const auto x = this->inputs(13, 29, 8, 5, 11);
  for (AttentionOptions opt : option_grid(29, 3))
    for (double scale : {0.0, 0.7})
      for (Index top_k : {1, 3, 8, 20}) {
        opt.scale = scale;
        const RowMatrix<T> got = bench::oracle_topk_attention<T>(x.q, x.k, x.v, top_k, opt);
        EXPECT_TRUE(
            close<T>(got, brute_topk(this->dbl(x.q), this->dbl(x.k), this->dbl(x.v), top_k, opt)))
            << "k = " << top_k << ", causal " << opt.causal << ", padded " << opt.key_padding.size()
            << ", scale " << scale;
      }
}

TYPED_TEST(BaselinesTest, TopKWithKAtLeastTheVisibleKeysIsExact) {
  using T = TypeParam;
  const Index n = 40;
  const auto x = this->inputs(n, n, 16, 16, 21);
  for (const AttentionOptions& opt : option_grid(n, 7)) {
    const Mat exact = this->exact(x, opt);
    // k = Nk keeps every visible key of every row; so does anything larger.
    for (Index top_k : {n, n + 1, Index(1000)})
      EXPECT_TRUE(close<T>(bench::oracle_topk_attention<T>(x.q, x.k, x.v, top_k, opt), exact))
          << "k = " << top_k;
  }
  // Per row, k = exactly that row's number of visible keys (causal: i + 1) is exact for it.
  AttentionOptions causal;
  causal.causal = true;
  const Mat exact = this->exact(x, causal);
  for (Index i : {0, 5, 17, 39}) {
    const RowMatrix<T> got = bench::oracle_topk_attention<T>(x.q, x.k, x.v, i + 1, causal);
    EXPECT_TRUE(close<T>(RowMatrix<T>(got.row(i)), Mat(exact.row(i)))) << "row " << i;
  }
}

TYPED_TEST(BaselinesTest, TopKTiesKeepTheLowerIndex) {
  using T = TypeParam;
  // Integer inputs and scale 1: every logit is an exact small integer in any summation order, so
  // ties are exact. q = (1, 1, 1): the logit of key j is the sum of its row.
  RowMatrix<T> q = RowMatrix<T>::Ones(2, 3);
  RowMatrix<T> k(8, 3);
  k << 1, 0, 0,  // 1
      0, 1, 1,   // 2
      1, 1, 0,   // 2
      0, 0, 0,   // 0
      1, 0, 1,   // 2
      2, 0, 0,   // 2
      0, 0, 1,   // 1
      1, 1, 1;   // 3
  RowMatrix<T> v = random_matrix<T>(8, 4, 31);
  AttentionOptions opt;
  opt.scale = 1;
  for (Index top_k = 1; top_k <= 8; ++top_k) {
    const RowMatrix<T> got = bench::oracle_topk_attention<T>(q, k, v, top_k, opt);
    EXPECT_TRUE(close<T>(got, brute_topk(this->dbl(q), this->dbl(k), this->dbl(v), top_k, opt)))
        << "k = " << top_k;
  }
  // By hand: k = 3 keeps key 7 (logit 3) and the first two of the four keys with logit 2 (keys
  // 1 and 2): weights e^3, e^2, e^2.
  const double e = std::exp(1.0);
  const Mat expected =
      (e * this->dbl(v).row(7) + this->dbl(v).row(1) + this->dbl(v).row(2)) / (e + 2);
  const RowMatrix<T> got = bench::oracle_topk_attention<T>(q, k, v, 3, opt);
  EXPECT_TRUE(close<T>(RowMatrix<T>(got.row(0)), expected));
  // All logits equal (q = 0): top-k is the mean of the first k visible values, skipping padded.
  opt.key_padding = KeyMask::Constant(8, false);
  opt.key_padding[1] = true;
  const RowMatrix<T> flat = bench::oracle_topk_attention<T>(RowMatrix<T>::Zero(1, 3), k, v, 3, opt);
  const Mat mean3 = (this->dbl(v).row(0) + this->dbl(v).row(2) + this->dbl(v).row(3)) / 3.0;
  EXPECT_TRUE(close<T>(flat, mean3));
}

TYPED_TEST(BaselinesTest, PaddedKeysAreNeverChosen) {
  using T = TypeParam;
  auto x = this->inputs(6, 10, 4, 3, 41);
  // Key 4 is aligned with every query and huge: the largest logit by far, but padded.
  for (Index t = 0; t < 4; ++t) x.k(4, t) = T(50);
  x.q = x.q.cwiseAbs();
  AttentionOptions opt;
  opt.key_padding = KeyMask::Constant(10, false);
  opt.key_padding[4] = true;
  const RowMatrix<T> a = bench::oracle_topk_attention<T>(x.q, x.k, x.v, 2, opt);
  x.v.row(4).setConstant(T(1e6));  // its value must not matter either
  const RowMatrix<T> b = bench::oracle_topk_attention<T>(x.q, x.k, x.v, 2, opt);
  EXPECT_TRUE(close<T>(a, b));
  EXPECT_TRUE(close<T>(a, brute_topk(this->dbl(x.q), this->dbl(x.k), this->dbl(x.v), 2, opt)));
  // Same for window only and uniform.
  const RowMatrix<T> xk10 = random_matrix<T>(10, 4, 43);
  auto w1 = bench::window_only_attention<T>(xk10, x.k, x.v, 4, 1, opt);
  x.v.row(4).setConstant(T(-1e6));
  auto w2 = bench::window_only_attention<T>(xk10, x.k, x.v, 4, 1, opt);
  EXPECT_TRUE(close<T>(w1, w2));
  EXPECT_TRUE(
      close<T>(bench::uniform_attention<T>(6, x.v, opt), brute_uniform(6, this->dbl(x.v), opt)));
}

TYPED_TEST(BaselinesTest, EmptyRowsAreZero) {
  using T = TypeParam;
  const auto x = this->inputs(7, 7, 4, 3, 51);
  // Every key padded: all rows empty.
  AttentionOptions all_padded;
  all_padded.key_padding = KeyMask::Constant(7, true);
  const Mat zero = Mat::Zero(7, 3);
  EXPECT_TRUE(close<T>(bench::oracle_topk_attention<T>(x.q, x.k, x.v, 3, all_padded), zero));
  EXPECT_TRUE(close<T>(bench::window_only_attention<T>(x.q, x.k, x.v, 4, 0, all_padded), zero));
  EXPECT_TRUE(close<T>(bench::uniform_attention<T>(7, x.v, all_padded), zero));
  // Causal with Nq > Nk: query i sees keys j <= i + Nk - Nq, so the first Nq - Nk rows see none.
  const auto y = this->inputs(9, 4, 4, 3, 53);
  AttentionOptions causal;
  causal.causal = true;
  const RowMatrix<T> top = bench::oracle_topk_attention<T>(y.q, y.k, y.v, 2, causal);
  const RowMatrix<T> uni = bench::uniform_attention<T>(9, y.v, causal);
  EXPECT_TRUE(close<T>(RowMatrix<T>(top.topRows(5)), Mat::Zero(5, 3)));
  EXPECT_TRUE(close<T>(RowMatrix<T>(uni.topRows(5)), Mat::Zero(5, 3)));
  EXPECT_TRUE(close<T>(top, brute_topk(this->dbl(y.q), this->dbl(y.k), this->dbl(y.v), 2, causal)));
  EXPECT_TRUE(close<T>(uni, brute_uniform(9, this->dbl(y.v), causal)));
  // Window only: a window whose keys are all padded gives zero rows, the others do not.
  AttentionOptions first_window_padded;
  first_window_padded.key_padding = KeyMask::Constant(7, false);
  first_window_padded.key_padding.head(3).setConstant(true);
  const RowMatrix<T> win =
      bench::window_only_attention<T>(x.q, x.k, x.v, 3, 0, first_window_padded);
  EXPECT_TRUE(close<T>(RowMatrix<T>(win.topRows(3)), Mat::Zero(3, 3)));
  EXPECT_GT(win.bottomRows(4).cwiseAbs().maxCoeff(), T(0));
  // No keys at all (Nk = 0): zero rows; no queries: an empty output.
  const RowMatrix<T> none_k(0, 4), none_v(0, 3);
  EXPECT_TRUE(close<T>(bench::oracle_topk_attention<T>(x.q, none_k, none_v, 2), zero));
  EXPECT_TRUE(close<T>(bench::uniform_attention<T>(7, none_v), zero));
  EXPECT_EQ(bench::oracle_topk_attention<T>(RowMatrix<T>(0, 4), x.k, x.v, 2).rows(), 0);
  EXPECT_EQ(bench::uniform_attention<T>(0, x.v).rows(), 0);
}

TYPED_TEST(BaselinesTest, WindowOnlyMatchesBruteForce) {
  using T = TypeParam;
  const Index n = 37;  // not a multiple of any window: the last window is partial
  const auto x = this->inputs(n, n, 8, 6, 61);
  for (const AttentionOptions& opt : option_grid(n, 9))
    for (Index window : {1, 4, 8, 16})
      for (Index ext : {0, 2, 8}) {
        const RowMatrix<T> got = bench::window_only_attention<T>(x.q, x.k, x.v, window, ext, opt);
        EXPECT_TRUE(close<T>(
            got, brute_window(this->dbl(x.q), this->dbl(x.k), this->dbl(x.v), window, ext, opt)))
            << "W = " << window << ", ext = " << ext << ", causal " << opt.causal << ", padded "
            << opt.key_padding.size();
      }
}

TYPED_TEST(BaselinesTest, WindowCoveringTheSequenceIsExact) {
  using T = TypeParam;
  const Index n = 24;
  const auto x = this->inputs(n, n, 8, 8, 71);
  for (const AttentionOptions& opt : option_grid(n, 13)) {
    const Mat exact = this->exact(x, opt);
    for (Index window : {n, n + 5, Index(100)})
      EXPECT_TRUE(close<T>(bench::window_only_attention<T>(x.q, x.k, x.v, window, 0, opt), exact))
          << "W = " << window << ", causal " << opt.causal;
    // A smaller window with an ext reaching both ends covers the sequence too.
    EXPECT_TRUE(close<T>(bench::window_only_attention<T>(x.q, x.k, x.v, 8, n, opt), exact));
  }
}

TYPED_TEST(BaselinesTest, UniformIsTheMeanOfTheVisibleValues) {
  using T = TypeParam;
  const auto x = this->inputs(11, 17, 4, 5, 81);
  for (const AttentionOptions& opt : option_grid(17, 17))
    EXPECT_TRUE(
        close<T>(bench::uniform_attention<T>(11, x.v, opt), brute_uniform(11, this->dbl(x.v), opt)))
        << "causal " << opt.causal << ", padded " << opt.key_padding.size();
}

TYPED_TEST(BaselinesTest, BadInputThrowsNamingTheArgument) {
  using T = TypeParam;
  const auto x = this->inputs(5, 5, 4, 3, 91);
  const RowMatrix<T> k3 = random_matrix<T>(5, 3, 92), v4 = random_matrix<T>(4, 3, 93);
  AttentionOptions short_mask;
  short_mask.key_padding = KeyMask::Constant(3, false);
  AttentionOptions nan_scale;
  nan_scale.scale = std::nan("");
  auto message = [](auto fn) { return test::invalid_argument_message(fn); };
  EXPECT_NE(message([&] { bench::oracle_topk_attention<T>(x.q, x.k, x.v, 0); }).find("top_k = 0"),
            std::string::npos);
  EXPECT_NE(message([&] { bench::oracle_topk_attention<T>(x.q, k3, x.v, 2); }).find("k [5, 3]"),
            std::string::npos);
  EXPECT_NE(message([&] { bench::oracle_topk_attention<T>(x.q, x.k, v4, 2); }).find("v [4, 3]"),
            std::string::npos);
  EXPECT_NE(message([&] {
              bench::oracle_topk_attention<T>(x.q, x.k, x.v, 2, short_mask);
            }).find("key_padding has length 3"),
            std::string::npos);
  EXPECT_NE(message([&] {
              bench::oracle_topk_attention<T>(x.q, x.k, x.v, 2, nan_scale);
            }).find("opt.scale"),
            std::string::npos);
  EXPECT_NE(message([&] { bench::window_only_attention<T>(x.q, x.k, x.v, 0); }).find("window = 0"),
            std::string::npos);
  EXPECT_NE(
      message([&] { bench::window_only_attention<T>(x.q, x.k, x.v, 2, -1); }).find("ext = -1"),
      std::string::npos);
  EXPECT_NE(message([&] {
              bench::window_only_attention<T>(RowMatrix<T>(x.q.topRows(3)), x.k, x.v, 2);
            }).find("Nq == Nk"),
            std::string::npos);
  EXPECT_NE(message([&] {
              bench::uniform_attention<T>(5, x.v, short_mask);
            }).find("key_padding has length 3"),
            std::string::npos);
  EXPECT_NE(message([&] { bench::uniform_attention<T>(-1, x.v); }).find("nq = -1"),
            std::string::npos);
}

}  // namespace
}  // namespace fastattn
