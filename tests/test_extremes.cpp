// Numerical extremes for every method (typed over float and double): logits up to +-1e4, tiny
// (1e-20) and huge norms, denormal inputs, N = D = Dv = 1, all keys masked, a single visible key,
// identical keys; sequences of N = 2^17 tokens for the linear methods with peak-memory growth
// measured (O(N)); and regression tests for the bugs the fuzzer (tests/fuzz) found, one per bug.
//
// Which methods are exact in the special cases (by their math, not by luck):
//  * a single visible key -> its value: Exact; Favor (every kernel: the key's weight phi(q).phi(k)
//    is > 0, so N / den is v up to rounding); Eva Disjoint with one window (it is exact softmax).
//    Not Eva Reference, even for a single token: the sequence is padded to a multiple of the
//    window, and a chunk made only of padding slots still gets a positive mass estimate with
//    beta_c = 0 (docs/spec/eva.md §3.2), which pulls the output towards 0 as in the authors' code.
//    Not Rfa: trig features can give phi(q).phi(k) <= the guard (the output is then N / den_eps),
//    arc-cosine features can give 0.
//  * identical keys -> the mean of the visible values: Exact; Favor (every key has the same
//    feature vector, so the weights are equal); Eva Disjoint (aligned chunks: k~_c = k, the chunk
//    mass estimate n_c exp(s q.k) is exact and beta_c is the plain chunk mean); Rfa when q and k
//    point the same way (then phi(q).phi(k) = n_f > guard; in general the guard may fire). Not
//    Eva Reference (its chunk means divide by slot counts that include invalid slots, and chunks
//    inside the window are counted twice).

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/multihead.hpp"
#include "fastattn/rfa.hpp"
#include "reference/exact.hpp"
#include "support.hpp"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FASTATTN_TEST_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FASTATTN_TEST_SANITIZED 1
#endif
#endif
#ifndef FASTATTN_TEST_SANITIZED
#define FASTATTN_TEST_SANITIZED 0
#endif

namespace fastattn {
namespace {

using test::random_matrix;
using MatD = RowMatrix<double>;

/// One method under test, as a forward function plus the special cases its math makes exact.
template <class T>
struct Method {
  std::string name;
  std::function<void(ConstMatRef<T>, ConstMatRef<T>, ConstMatRef<T>, MatRef<T>,
                     const AttentionOptions&)>
      forward;
  bool self_attention = false;        // needs Nq = Nk (Eva)
  bool nonnegative_weights = false;   // output is a convex combination of visible values
  bool exact_single_key = false;      // a single visible key gives its value (any N)
  bool exact_identical_keys = false;  // identical keys give the mean of the visible values
  bool exact_softmax = false;         // equals exact attention
};

template <class M, class T>
Method<T> wrap(std::string name, M method) {
  Method<T> m;
  m.name = std::move(name);
  m.forward = [method](ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                       const AttentionOptions& opt) { method.forward(q, k, v, out, opt); };
  return m;
}

/// Every method with head dimension d; Eva geometries fit any n (window and chunks aligned).
template <class T>
std::vector<Method<T>> all_methods(Index d) {
  std::vector<Method<T>> ms;
  for (ExactKernel kernel : {ExactKernel::Blocked, ExactKernel::Reference}) {
    ExactOptions eo;
    eo.kernel = kernel;
    eo.block_q = 3;  // small tiles: several blocks even for small inputs
    eo.block_k = 5;
    Method<T> m = wrap<Exact<T>, T>(
        kernel == ExactKernel::Blocked ? "Exact(blocked)" : "Exact(reference)", Exact<T>(eo));
    m.nonnegative_weights = m.exact_single_key = m.exact_identical_keys = m.exact_softmax = true;
    ms.push_back(m);
  }
  for (FavorKernel kernel : {FavorKernel::Positive, FavorKernel::Hyperbolic, FavorKernel::Optimal,
                             FavorKernel::Relu, FavorKernel::Smreg}) {
    FavorOptions fo;
    fo.num_features = 16;
    fo.kernel = kernel;
    fo.chunk_size = 4;
    if (kernel == FavorKernel::Optimal) fo.optimal_a = -0.1;  // fixed A: causal works too
    Method<T> m =
        wrap<Favor<T>, T>("Favor(kernel " + std::to_string(int(kernel)) + ")", Favor<T>(d, fo));
    m.nonnegative_weights = m.exact_single_key = m.exact_identical_keys = true;
    ms.push_back(m);
  }
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    RfaOptions ro;
    ro.num_features = 16;
    ro.kernel = kernel;
    ro.chunk_size = 4;
    Method<T> m =
        wrap<Rfa<T>, T>(kernel == RfaKernel::Trig ? "Rfa(trig)" : "Rfa(arccos)", Rfa<T>(d, ro));
    m.nonnegative_weights = kernel == RfaKernel::Arccos;
    ms.push_back(m);
  }
  {
    EvaOptions eo;
    eo.window = 4;
    eo.chunk_size = 2;
    Method<T> m = wrap<Eva<T>, T>("Eva(reference)", Eva<T>(d, eo));
    m.self_attention = m.nonnegative_weights = true;
    ms.push_back(m);
    eo.semantics = EvaSemantics::Disjoint;
    Method<T> dj = wrap<Eva<T>, T>("Eva(disjoint)", Eva<T>(d, eo));
    dj.self_attention = dj.nonnegative_weights = dj.exact_identical_keys = true;
    ms.push_back(dj);
    eo.window = 64;  // one window covers every sequence used here: exact softmax
    Method<T> one = wrap<Eva<T>, T>("Eva(disjoint, one window)", Eva<T>(d, eo));
    one.self_attention = one.nonnegative_weights = one.exact_identical_keys = true;
    one.exact_single_key = one.exact_softmax = true;
    ms.push_back(one);
  }
  return ms;
}

/// Runs m on (q, k, v) and returns the output, failing the test on an exception.
template <class T>
RowMatrix<T> run(const Method<T>& m, const RowMatrix<T>& q, const RowMatrix<T>& k,
                 const RowMatrix<T>& v, const AttentionOptions& opt) {
  RowMatrix<T> out =
      RowMatrix<T>::Constant(q.rows(), v.cols(), std::numeric_limits<T>::quiet_NaN());
  try {
    m.forward(q, k, v, out, opt);
  } catch (const std::exception& e) {
    ADD_FAILURE() << m.name << " threw: " << e.what();
  }
  return out;
}

/// Every output row lies in the convex hull of the visible values (per column), up to rounding.
template <class T>
::testing::AssertionResult in_hull(const RowMatrix<T>& out, const RowMatrix<T>& v,
                                   const KeyMask& pad, bool allow_zero) {
  for (Index d = 0; d < out.cols(); ++d) {
    double lo = allow_zero ? 0 : std::numeric_limits<double>::infinity(), hi = -lo;
    if (!allow_zero) hi = -std::numeric_limits<double>::infinity();
    for (Index j = 0; j < v.rows(); ++j)
      if (pad.size() == 0 || !pad[j])
        lo = std::min(lo, double(v(j, d))), hi = std::max(hi, double(v(j, d)));
    const double slack = 1e-4 * std::max({1.0, std::abs(lo), std::abs(hi)});
    for (Index i = 0; i < out.rows(); ++i)
      if (!(out(i, d) >= lo - slack && out(i, d) <= hi + slack))
        return ::testing::AssertionFailure() << "out(" << i << ", " << d << ") = " << out(i, d)
                                             << " outside [" << lo << ", " << hi << "]";
  }
  return ::testing::AssertionSuccess();
}

template <class T>
class ExtremesTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ExtremesTest, Types);

/// Relative tolerance for exact attention whose logits reach magnitude L: each logit is off by
/// about eps * (D + 2) * L, which moves the weights by that relative amount.
template <class T>
double logit_tolerance(double magnitude, Index d) {
  return 8 * double(std::numeric_limits<T>::epsilon()) * double(d + 4) * (magnitude + 1);
}

TYPED_TEST(ExtremesTest, LogitsUpToTenThousandStayFiniteAndExactMatchesTheReference) {
  using T = TypeParam;
  const Index n = 24, d = 4, dv = 3;
  for (double sign : {1.0, -1.0}) {
    // |q| |k| ~ 200 * 200 / 2 per dimension: logits up to about +-1e4 with scale 1 / sqrt(D).
    RowMatrix<T> q = random_matrix<T>(n, d, 1, 100.0), k = random_matrix<T>(n, d, 2, 100.0);
    if (sign < 0) k = -k;
    const RowMatrix<T> v = random_matrix<T>(n, dv, 3);
    const double magnitude =
        (q.template cast<double>() * k.template cast<double>().transpose()).cwiseAbs().maxCoeff() /
        2;
    ASSERT_GT(magnitude, 3e3);
    for (bool causal : {false, true}) {
      AttentionOptions opt;
      opt.causal = causal;
      test::ref::ExactSpec spec;
      spec.causal = causal;
      const MatD expected = test::ref::exact_attention(
          q.template cast<double>(), k.template cast<double>(), v.template cast<double>(), spec);
      for (const Method<T>& m : all_methods<T>(d)) {
        const RowMatrix<T> out = run(m, q, k, v, opt);
        SCOPED_TRACE(m.name + (causal ? " causal" : ""));
        EXPECT_TRUE(test::all_finite(out));
        if (m.nonnegative_weights) {
          EXPECT_TRUE(in_hull(out, v, KeyMask(), true));
        }
        if (m.exact_softmax) {
          EXPECT_TRUE(test::near(out, expected, logit_tolerance<T>(magnitude, d), 1e-6));
        }
      }
    }
  }
}

TYPED_TEST(ExtremesTest, TinyNormsGiveTheMeanOfTheValuesAndRfaIsScaleInvariant) {
  using T = TypeParam;
  const Index n = 9, d = 5, dv = 3;
  const RowMatrix<T> q1 = random_matrix<T>(n, d, 4), k1 = random_matrix<T>(n, d, 5);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 6);
  const RowMatrix<T> q = q1 * T(1e-20), k = k1 * T(1e-20);
  // Logits ~ 1e-40 (0 in float): uniform attention, the mean of V.
  const RowMatrix<T> mean = v.colwise().mean().replicate(n, 1);
  for (const Method<T>& m : all_methods<T>(d)) {
    SCOPED_TRACE(m.name);
    const RowMatrix<T> out = run(m, q, k, v, {});
    EXPECT_TRUE(test::all_finite(out));
    // Favor: |x| -> 0 makes every feature exp(0) = 1, so the weights are uniform too.
    if (m.exact_softmax || m.name.rfind("Favor", 0) == 0) {
      EXPECT_TRUE(test::near(out, mean, 1e3 * test::Tol<T>::rel, test::Tol<T>::abs));
    }
    if (m.nonnegative_weights) {
      EXPECT_TRUE(in_hull(out, v, KeyMask(), true));
    }
  }
}

TYPED_TEST(ExtremesTest, HugeNormsSelectTheBestKeyAndStayFinite) {
  using T = TypeParam;
  const Index n = 7, d = 3, dv = 2;
  // |q|, |k| ~ 1e4: logits ~ 1e8, so exact attention is the value of the arg-max key.
  const RowMatrix<T> q = random_matrix<T>(n, d, 7, 1e4), k = random_matrix<T>(n, d, 8, 1e4);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 9);
  RowMatrix<T> best(n, dv);
  for (Index i = 0; i < n; ++i) {
    Index j;
    (k.template cast<double>() * q.row(i).template cast<double>().transpose()).maxCoeff(&j);
    best.row(i) = v.row(j);
  }
  for (const Method<T>& m : all_methods<T>(d)) {
    SCOPED_TRACE(m.name);
    const RowMatrix<T> out = run(m, q, k, v, {});
    EXPECT_TRUE(test::all_finite(out));
    if (m.nonnegative_weights) {
      EXPECT_TRUE(in_hull(out, v, KeyMask(), true));
    }
    if (m.exact_softmax) {
      EXPECT_TRUE(test::near(out, best, 1e-5, 1e-6));
    }
  }
}

TYPED_TEST(ExtremesTest, DenormalInputsGiveFiniteOutputs) {
  using T = TypeParam;
  const Index n = 6, d = 4, dv = 2;
  const T denormal = std::numeric_limits<T>::min() / T(1024);
  ASSERT_GT(denormal, T(0));
  const RowMatrix<T> q = random_matrix<T>(n, d, 10) * denormal;
  const RowMatrix<T> k = random_matrix<T>(n, d, 11) * denormal;
  const RowMatrix<T> vd = random_matrix<T>(n, dv, 12) * denormal;  // denormal values too
  const RowMatrix<T> v = random_matrix<T>(n, dv, 12);
  for (const Method<T>& m : all_methods<T>(d)) {
    SCOPED_TRACE(m.name);
    const RowMatrix<T> out = run(m, q, k, v, {});
    EXPECT_TRUE(test::all_finite(out));
    const RowMatrix<T> out_d = run(m, q, k, vd, {});
    EXPECT_TRUE(test::all_finite(out_d));
    if (m.exact_softmax) {  // logits are 0: the mean of the values
      EXPECT_TRUE(test::near(out, RowMatrix<T>(v.colwise().mean().replicate(n, 1)),
                             10 * test::Tol<T>::rel, test::Tol<T>::abs));
    }
  }
}

TYPED_TEST(ExtremesTest, OneTokenOneDimensionOneValue) {
  using T = TypeParam;
  const RowMatrix<T> q = random_matrix<T>(1, 1, 13), k = random_matrix<T>(1, 1, 14);
  const RowMatrix<T> v = random_matrix<T>(1, 1, 15);
  for (bool causal : {false, true})
    for (const Method<T>& m : all_methods<T>(1)) {
      SCOPED_TRACE(m.name + (causal ? " causal" : ""));
      AttentionOptions opt;
      opt.causal = causal;
      const RowMatrix<T> out = run(m, q, k, v, opt);
      EXPECT_TRUE(test::all_finite(out));
      // One token: every method whose weights cannot vanish returns its value (Eva Disjoint too:
      // its chunks hold no padding slots).
      if (m.exact_single_key || m.name == "Eva(disjoint)") {
        EXPECT_TRUE(test::near(out, v, 10 * test::Tol<T>::rel, test::Tol<T>::abs));
      }
    }
}

TYPED_TEST(ExtremesTest, AllKeysMaskedGiveZeros) {
  using T = TypeParam;
  const Index n = 10, d = 4, dv = 3;
  const RowMatrix<T> q = random_matrix<T>(n, d, 16), k = random_matrix<T>(n, d, 17);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 18);
  AttentionOptions opt;
  opt.key_padding = KeyMask::Constant(n, true);
  for (bool causal : {false, true})
    for (const Method<T>& m : all_methods<T>(d)) {
      SCOPED_TRACE(m.name + (causal ? " causal" : ""));
      opt.causal = causal;
      const RowMatrix<T> out = run(m, q, k, v, opt);
      EXPECT_TRUE(test::all_finite(out));
      // Eva Reference: every query position is padded too, and padded-query rows are unspecified
      // (spec/eva.md §5.2); they must only be finite.
      if (m.name != "Eva(reference)") {
        EXPECT_TRUE(out.isZero(0)) << out;
      }
    }
  // Causal with Nq > Nk: the first Nq - Nk rows see no key (cross-attention methods).
  const RowMatrix<T> k2 = k.topRows(3), v2 = v.topRows(3);
  AttentionOptions c;
  c.causal = true;
  for (const Method<T>& m : all_methods<T>(d)) {
    if (m.self_attention) continue;
    SCOPED_TRACE(m.name);
    const RowMatrix<T> out = run(m, q, k2, v2, c);
    EXPECT_TRUE(out.topRows(n - 3).isZero(0));
    EXPECT_TRUE(test::all_finite(out));
  }
}

TYPED_TEST(ExtremesTest, ASingleVisibleKeyGivesItsValue) {
  using T = TypeParam;
  const Index n = 9, d = 4, dv = 3;
  const RowMatrix<T> q = random_matrix<T>(n, d, 19, 3.0), k = random_matrix<T>(n, d, 20, 3.0);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 21);
  for (Index only : {Index(0), Index(4), n - 1}) {
    AttentionOptions opt;
    opt.key_padding = KeyMask::Constant(n, true);
    opt.key_padding[only] = false;
    const RowMatrix<T> expected = v.row(only).replicate(n, 1);
    for (const Method<T>& m : all_methods<T>(d)) {
      SCOPED_TRACE(m.name + " key " + std::to_string(only));
      const RowMatrix<T> out = run(m, q, k, v, opt);
      EXPECT_TRUE(test::all_finite(out));
      if (m.exact_single_key) {
        EXPECT_TRUE(test::near(out, expected, 100 * test::Tol<T>::rel, test::Tol<T>::abs));
      }
    }
  }
}

TYPED_TEST(ExtremesTest, IdenticalKeysGiveTheMeanOfTheValues) {
  using T = TypeParam;
  const Index n = 12, d = 4, dv = 3;
  const RowMatrix<T> q = random_matrix<T>(n, d, 22, 2.0);
  const RowMatrix<T> k = random_matrix<T>(1, d, 23, 2.0).replicate(n, 1);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 24);
  for (bool causal : {false, true}) {
    AttentionOptions opt;
    opt.causal = causal;
    RowMatrix<T> expected(n, dv);
    for (Index i = 0; i < n; ++i)
      expected.row(i) = causal ? RowMatrix<T>(v.topRows(i + 1).colwise().mean())
                               : RowMatrix<T>(v.colwise().mean());
    for (const Method<T>& m : all_methods<T>(d)) {
      SCOPED_TRACE(m.name + (causal ? " causal" : ""));
      const RowMatrix<T> out = run(m, q, k, v, opt);
      EXPECT_TRUE(test::all_finite(out));
      if (m.exact_identical_keys) {
        EXPECT_TRUE(test::near(out, expected, 100 * test::Tol<T>::rel, test::Tol<T>::abs));
      }
    }
    // Rfa with queries equal to the keys: phi(q).phi(k) = n_f, far above the guard.
    for (const Method<T>& m : all_methods<T>(d))
      if (m.name.rfind("Rfa", 0) == 0) {
        SCOPED_TRACE(m.name + " q = k" + (causal ? " causal" : ""));
        EXPECT_TRUE(
            test::near(run(m, k, k, v, opt), expected, 100 * test::Tol<T>::rel, test::Tol<T>::abs));
      }
  }
}

// ------------------------------------------------------------------------------------------------
// Long sequences: linear time and O(N) memory.

/// Current and peak resident set size of this process, in bytes (/proc/self/status).
struct Rss {
  long current = -1, peak = -1;
};
Rss read_rss() {
  Rss r;
  std::ifstream status("/proc/self/status");
  std::string key;
  long kb;
  std::string unit;
  while (status >> key) {
    if (key == "VmRSS:" && status >> kb >> unit)
      r.current = kb * 1024;
    else if (key == "VmHWM:" && status >> kb >> unit)
      r.peak = kb * 1024;
  }
  if (r.peak < 0) {  // no /proc: getrusage's peak (never reset)
    rusage u;
    getrusage(RUSAGE_SELF, &u);
    r.peak = u.ru_maxrss * 1024;
  }
  return r;
}
/// Resets the peak RSS to the current RSS (Linux >= 4.0); false when not supported.
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return false;
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

/// Peak RSS growth (bytes) while fn runs: peak after minus RSS before, with the peak reset first.
template <class Fn>
long peak_growth(Fn&& fn, bool* measured) {
  const bool reset = reset_peak_rss();
  const Rss before = read_rss();
  fn();
  const Rss after = read_rss();
  *measured = reset && before.current > 0 && after.peak > 0;
  return after.peak - (reset ? before.current : before.peak);
}

constexpr Index kLongN = FASTATTN_TEST_SANITIZED ? (Index(1) << 14) : (Index(1) << 17);

TEST(ExtremesLongSequence, LinearMethodsStayFiniteWithLinearMemory) {
  // float, D = Dv = 16, modest feature counts. Inputs and output are allocated (and touched)
  // before the measurement, so the growth is the methods' own working memory.
  const Index n = kLongN, d = 16, dv = 16;
  const RowMatrix<float> q = random_matrix<float>(n, d, 30, 0.5);
  const RowMatrix<float> k = random_matrix<float>(n, d, 31, 0.5);
  const RowMatrix<float> v = random_matrix<float>(n, dv, 32);
  RowMatrix<float> out = RowMatrix<float>::Zero(n, dv);
  // Bound: 16 MiB of fixed slack (allocator, small workspaces) + 64 bytes per token. Anything
  // that materializes per-token features ([N, M] with M = 64 floats is 256 bytes per token) or
  // an N x N tile exceeds it; the probe below checks that such a buffer would be detected.
  const long bound = 16L * 1024 * 1024 + 64L * long(n);
  FavorOptions fo;
  fo.num_features = 32;
  RfaOptions ro;
  ro.num_features = 32;
  EvaOptions eo;
  eo.window = 16;
  eo.num_chunks = 16;  // fixed chunk count: linear cost
  const Favor<float> favor(d, fo);
  const Rfa<float> rfa(d, ro);
  const Eva<float> eva(d, eo);
  struct Case {
    const char* name;
    std::function<void(const AttentionOptions&)> call;
  };
  const std::vector<Case> cases = {
      {"Favor", [&](const AttentionOptions& o) { favor.forward(q, k, v, out, o); }},
      {"Rfa", [&](const AttentionOptions& o) { rfa.forward(q, k, v, out, o); }},
      {"Eva(reference, C=16)", [&](const AttentionOptions& o) { eva.forward(q, k, v, out, o); }},
  };
  bool measured = false;
  const long probe = peak_growth(
      [&] {
        RowMatrix<float> features = RowMatrix<float>::Constant(n, 64, 1.0f);  // [N, 64] floats
        EXPECT_EQ(features(n - 1, 63), 1.0f);
      },
      &measured);
  if (measured && !FASTATTN_TEST_SANITIZED) {
    EXPECT_GT(probe, bound) << "the RSS probe cannot see a per-token buffer";
  }
  std::printf("[extremes] N = %ld, bound %.1f MiB (probe [N, 64] floats: %.1f MiB)\n", long(n),
              double(bound) / 1048576.0, double(probe) / 1048576.0);
  for (const Case& c : cases)
    for (bool causal : {false, true}) {
      AttentionOptions opt;
      opt.causal = causal;
      out.setConstant(std::numeric_limits<float>::quiet_NaN());
      const auto start = std::chrono::steady_clock::now();
      const long growth = peak_growth([&] { c.call(opt); }, &measured);
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("[extremes] %-22s %-10s peak RSS growth %8.2f MiB  %.3f s\n", c.name,
                  causal ? "causal" : "non-causal", double(growth) / 1048576.0, seconds);
      SCOPED_TRACE(std::string(c.name) + (causal ? " causal" : " non-causal"));
      EXPECT_TRUE(test::all_finite(out));
      // Under ASan/TSan the allocator's shadow memory and quarantine make RSS meaningless.
      if (measured && !FASTATTN_TEST_SANITIZED) {
        EXPECT_LT(growth, bound);
      }
    }
}

// ------------------------------------------------------------------------------------------------
// Regressions: one test per bug the fuzzer (tests/fuzz) found, each stating the expected behaviour
// (all fixed; the comment says what used to happen).

template <class T>
class ExactRegression : public ::testing::Test {};
TYPED_TEST_SUITE(ExactRegression, Types);
template <class T>
class FavorRegression : public ::testing::Test {};
TYPED_TEST_SUITE(FavorRegression, Types);
template <class T>
class ScaleRegression : public ::testing::Test {};
TYPED_TEST_SUITE(ScaleRegression, Types);
template <class T>
class RfaRegression : public ::testing::Test {};
TYPED_TEST_SUITE(RfaRegression, Types);
template <class T>
class TensorViewRegression : public ::testing::Test {};
TYPED_TEST_SUITE(TensorViewRegression, Types);
template <class T>
class MultiheadRegression : public ::testing::Test {};
TYPED_TEST_SUITE(MultiheadRegression, Types);

// Exact's blocked kernel used to compute q.k for padded keys and add -inf: a NaN or inf in a padded
// key made the logit NaN, and the whole row came out as 0 (silently). The Reference kernel is
// right; spec/exact.md §2: a padded key is ignored "exactly as if the key and its value did not
// exist".
TYPED_TEST(ExactRegression, NonFinitePaddedKeyZeroesBlockedRows) {
  using T = TypeParam;
  const RowMatrix<T> q = RowMatrix<T>::Ones(2, 2);
  RowMatrix<T> k = RowMatrix<T>::Ones(3, 2), v(3, 1);
  v << 1, 2, 3;
  AttentionOptions opt;
  opt.key_padding = KeyMask::Constant(3, false);
  opt.key_padding[0] = true;
  const RowMatrix<T> expected = RowMatrix<T>::Constant(2, 1, T(2.5));
  for (T bad : {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity()}) {
    k.row(0).setConstant(bad);
    EXPECT_TRUE(test::near(Exact<T>()(q, k, v, opt), expected, 1e-6, 0)) << "padded key " << bad;
    ExactOptions ro;
    ro.kernel = ExactKernel::Reference;
    EXPECT_TRUE(test::near(Exact<T>(ro)(q, k, v, opt), expected, 1e-6, 0));
  }
}

// Exact::step used to set the state's D from q_t before validating k_t: a rejected first call
// (q_t one column wider than k_t) left D wrong, and every later valid step was rejected.
TYPED_TEST(ExactRegression, RejectedFirstStepPoisonsState) {
  using T = TypeParam;
  const Exact<T> exact;
  auto state = exact.make_state(2);
  const RowMatrix<T> bad_q = RowMatrix<T>::Ones(1, 4), k = RowMatrix<T>::Ones(1, 3);
  const RowMatrix<T> v = RowMatrix<T>::Ones(1, 2);
  RowMatrix<T> out(1, 2);
  EXPECT_THROW(exact.step(state, bad_q, k, v, out), std::invalid_argument);
  const RowMatrix<T> q = RowMatrix<T>::Ones(1, 3);
  EXPECT_NO_THROW(exact.step(state, q, k, v, out)) << "a rejected call must not change the state";
}

// Favor's chunked core: a key chunk that is entirely padded and precedes every valid key used to
// leave its log-features at -inf (no shift yet); S += (-inf)^T 0 made the key sums NaN, and the
// guard then returned all-zero rows. Left padding of >= 32 keys (the default causal chunk) was
// enough. step() was right.
TYPED_TEST(FavorRegression, LeadingPaddedChunkZeroesOutput) {
  using T = TypeParam;
  const Index n = 64, d = 8, dv = 2;
  const RowMatrix<T> q = random_matrix<T>(n, d, 40, 0.5), k = random_matrix<T>(n, d, 41, 0.5);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 42);
  FavorOptions fo;
  fo.num_features = 32;
  const Favor<T> favor(d, fo);
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = KeyMask::Constant(n, false);
  opt.key_padding.head(32).setConstant(true);
  const RowMatrix<T> out = favor(q, k, v, opt);
  auto state = favor.make_state(dv);
  RowMatrix<T> stepped(n, dv), row(1, dv);
  for (Index t = 0; t < n; ++t) {
    favor.step(state, q.row(t), k.row(t), v.row(t), row, opt.key_padding[t]);
    stepped.row(t) = row;
  }
  EXPECT_FALSE(out.bottomRows(32).isZero(0)) << "rows that see valid keys came out as zeros";
  EXPECT_TRUE(test::near(out, stepped, 1e-4, 1e-6));
}

// Favor compat with no keys ran Eigen's colwise().sum() on an empty [0, m] matrix, which offsets
// a null pointer (reported by UBSan only; results were right).
TYPED_TEST(FavorRegression, CompatWithoutKeys) {
  using T = TypeParam;
  FavorOptions fo;
  fo.num_features = 4;
  fo.compat = FavorCompat::PerformerPytorch;
  const Favor<T> favor(3, fo);
  const RowMatrix<T> q = RowMatrix<T>::Ones(2, 3), k(0, 3), v(0, 2);
  EXPECT_TRUE(favor(q, k, v).isZero(0));
}

// A scale that is finite as a double but not representable in T (1e300 with float) used to be
// accepted, cast to T (inf), and yield NaN (Exact reference kernel, Exact::step, Eva) or zeros
// (Exact blocked, Favor). It is now rejected (docs/input_validation.md) when it overflows T; in
// double the same scale is valid and gives the value of the best key.
TYPED_TEST(ScaleRegression, FiniteScaleBeyondFloatRange) {
  using T = TypeParam;
  const double scale = 1e300;
  const Index n = 4, d = 2, dv = 1;
  RowMatrix<T> q(n, d), k(n, d), v(n, dv);
  q << 1, 0, 0, 1, 1, 1, -1, 0;
  k << 1, 0, 0, 1, -1, -1, 0, -1;
  v << 1, 2, 3, 4;
  AttentionOptions opt;
  opt.scale = scale;
  // Arg-max keys 0, 1, {0, 1} (a tie: logit 1e300 each, so their mean) and 2.
  RowMatrix<T> best(n, dv);
  best << 1, 2, 1.5, 3;
  for (const Method<T>& m : all_methods<T>(d)) {
    if (m.name.rfind("Rfa", 0) == 0) continue;  // Rfa ignores the scale
    SCOPED_TRACE(m.name);
    RowMatrix<T> out(n, dv);
    if (std::is_same_v<T, float>) {
      EXPECT_THROW(m.forward(q, k, v, out, opt), std::invalid_argument);
      continue;
    }
    m.forward(q, k, v, out, opt);
    EXPECT_TRUE(test::all_finite(out)) << out.transpose();
    if (m.exact_softmax) {
      EXPECT_TRUE(test::near(out, best, 1e-6, 0)) << out.transpose();
    }
  }
}

// FAVOR+ rescaling folds (c psi)^2 and (c / psi)^2 into T; with keys ~1e-20 times the queries
// (float) psi^2 ~ 1e20 and one square overflowed, giving NaN features and all-zero rows. psi is now
// kept where both squares are finite (any psi > 0 leaves the estimator unbiased).
TYPED_TEST(FavorRegression, RescaleWithExtremeScaleRatio) {
  using T = TypeParam;
  const Index n = 16, d = 4, dv = 2;
  const T ratio = std::is_same_v<T, float> ? T(1e-20) : T(1e-160);
  const RowMatrix<T> q = random_matrix<T>(n, d, 46), k = random_matrix<T>(n, d, 47) * ratio;
  const RowMatrix<T> v = random_matrix<T>(n, dv, 48);
  FavorOptions fo;
  fo.num_features = 32;
  fo.rescale = true;
  const RowMatrix<T> out = Favor<T>(d, fo)(q, k, v);
  // The logits are ~1e-20: exact attention is the mean of the values, and so is every positive
  // random-feature estimate (all keys have the same features up to rounding).
  const RowMatrix<T> mean = v.colwise().mean().replicate(n, 1);
  EXPECT_TRUE(test::near(out, mean, 1e-4, 1e-6)) << out;
}

// Rfa's l2 normalization used to square the row in T: for |x| ~ 1e-20 (float) |x|^2 is subnormal,
// so the normalized row was far from unit length (or 0), and for |x| ~ 1e20 it overflowed to a
// zero row.
// spec/rfa.md §1: scaling q or k by a positive constant does not change the output.
TYPED_TEST(RfaRegression, TinyInputsAreNotNormalized) {
  using T = TypeParam;
  const Index n = 6, d = 4, dv = 2;
  const RowMatrix<T> q = random_matrix<T>(n, d, 43), k = random_matrix<T>(n, d, 44);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 45);
  // Scales whose square leaves T's normal range (float: 1e-20, 1e20; double: 1e-160, 1e160).
  const T tiny = std::is_same_v<T, float> ? T(1e-20) : T(1e-160);
  const T huge = std::is_same_v<T, float> ? T(1e20) : T(1e160);
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    RfaOptions ro;
    ro.num_features = 16;
    ro.kernel = kernel;
    const Rfa<T> rfa(d, ro);
    const RowMatrix<T> ref = rfa(q, k, v);
    for (T s : {tiny, huge}) {
      SCOPED_TRACE("kernel " + std::to_string(int(kernel)) + " scale " + std::to_string(double(s)));
      const RowMatrix<T> q_s = q * s, k_s = k * s;
      EXPECT_TRUE(test::near(rfa(q_s, k_s, v), ref, 1e-4, 1e-6));
    }
  }
}

// TensorView::head() used to compute data + offsets; check_view allows data == nullptr for an
// empty view, so multihead() on an empty out (Dv = 0) with null data offset a null pointer (UB,
// reported by UBSan only).
TYPED_TEST(TensorViewRegression, HeadOfAnEmptyViewWithNullData) {
  using T = TypeParam;
  const Index b = 2, n = 3, h = 2, d = 4;
  std::vector<T> q(size_t(b * n * h * d), T(1)), k = q, v = q;
  TensorView<T> out = TensorView<T>::bnhd(nullptr, b, n, h, 0);
  EXPECT_NO_THROW(multihead(Exact<T>(), TensorView<T>::bnhd(q.data(), b, n, h, d),
                            TensorView<T>::bnhd(k.data(), b, n, h, d),
                            TensorView<T>::bnhd(v.data(), b, n, h, 0), out));
}

// multihead() used to reject an empty output built by TensorView::bnhd (Nq = 0 gives batch stride
// 0, which view_self_overlaps reported as overlapping rows although there are none). DESIGN §4:
// Nq = 0 is valid and gives an empty output.
TYPED_TEST(MultiheadRegression, EmptyOutputIsRejected) {
  using T = TypeParam;
  const Index b = 2, h = 2, d = 4, nk = 3;
  std::vector<T> q(1), out(1), k(size_t(b * nk * h * d), T(1)), v = k;
  EXPECT_NO_THROW(multihead(Exact<T>(), TensorView<T>::bnhd(q.data(), b, 0, h, d),
                            TensorView<T>::bnhd(k.data(), b, nk, h, d),
                            TensorView<T>::bnhd(v.data(), b, nk, h, d),
                            TensorView<T>::bnhd(out.data(), b, 0, h, d)));
}

// Eva's windows used to write their small output products straight into out; Eigen peels the
// unaligned leading columns of such products into scalar code (no FMA), so with AVX the result
// depended on the address of the caller's buffer (found by test_concurrency: multihead() on fresh
// buffers was not bitwise reproducible). Every method must give bitwise the same output wherever
// out lives.
TYPED_TEST(MultiheadRegression, OutputDoesNotDependOnTheOutputAddress) {
  using T = TypeParam;
  const Index n = 24, d = 8, dv = 6;
  const RowMatrix<T> q = random_matrix<T>(n, d, 49), k = random_matrix<T>(n, d, 50);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 51);
  for (bool causal : {false, true})
    for (const Method<T>& m : all_methods<T>(d)) {
      SCOPED_TRACE(m.name + (causal ? " causal" : ""));
      AttentionOptions opt;
      opt.causal = causal;
      std::vector<RowMatrix<T>> outs;
      std::vector<T> buffer(std::size_t(n * dv + 8));
      for (Index offset = 0; offset < 4; ++offset) {
        MatMap<T> out(buffer.data() + offset, n, dv, Eigen::OuterStride<>(dv));
        m.forward(q, k, v, out, opt);
        outs.emplace_back(out);
      }
      for (std::size_t i = 1; i < outs.size(); ++i)
        EXPECT_TRUE((outs[i].array() == outs[0].array()).all()) << "offset " << i;
    }
}

}  // namespace
}  // namespace fastattn
