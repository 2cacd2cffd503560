// Tests of eva.hpp: EVA (docs/spec/eva.md). Reference parity with the official code's outputs
// (tests/data/eva_cases), the decoding state against the parallel forward, the training-free
// quality protocol (§8), masks, empty rows and views. Both semantics against the independent
// reference: test_eva_reference.cpp; every rejection: test_eva_rejections.cpp.

// Lets a test forbid Eigen heap allocations at run time (decoding must not allocate).
#define EIGEN_RUNTIME_NO_MALLOC

#include "fastattn/eva.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "eva_cases.hpp"
#include "eva_test_support.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/metrics.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::DataRng;
using test::EvaTest;
using test::kParityTol;
using test::max_abs_rows;
using test::near;
using test::random_matrix;
using test::random_projection;
using test::unpadded_rows;

TYPED_TEST_SUITE(EvaTest, test::EvaTypes);

// ---- 1. Reference parity with the official code -------------------------------------------------

// Runs every case, head by head, and returns the max error on the rows that are not don't-care.
template <class T>
double case_error(const test::EvaCase& cs, const EvaParams<T>& params) {
  const Eva<T> eva(cs.d(), cs.options(), params);
  double worst = 0;
  for (Index b = 0; b < cs.batch(); ++b)
    for (Index h = 0; h < cs.heads(); ++h) {
      AttentionOptions opt;
      opt.causal = cs.causal();
      opt.key_padding = cs.padding(b);
      const RowMatrix<T> out =
          eva(cs.head<T>("q", b, h), cs.head<T>("k", b, h), cs.head<T>("v", b, h), opt);
      EXPECT_TRUE(test::all_finite(out)) << cs.name();
      worst = std::max(worst, max_abs_rows(out, cs.head<double>("out_official", b, h),
                                           unpadded_rows(opt.key_padding, cs.n())));
    }
  return worst;
}

TYPED_TEST(EvaTest, ReferenceMatchesOfficialOutputOnEveryCase) {
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    const double err = case_error<T>(cs, cs.template params<T>());
    EXPECT_LE(err, kParityTol<T>) << name;
    std::cout << "[ eva ] " << (sizeof(T) == 4 ? "float " : "double") << " " << name
              << " max |out - out_official| = " << err << "\n";
  }
}

TYPED_TEST(EvaTest, IdentityCasesMatchWithDefaultParams) {
  // The noln-id cases store W = I, b = 0: the library default (absent projections) is the same.
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    if (cs.has("mu_q_ln_gamma")) continue;
    EXPECT_LE(case_error<T>(cs, EvaParams<T>{}), kParityTol<T>) << name;
  }
}

TYPED_TEST(EvaTest, ReferenceChunkIntermediatesMatchTheCases) {
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    const Eva<T> eva(cs.d(), cs.options(), cs.template params<T>());
    for (Index b = 0; b < cs.batch(); ++b)
      for (Index h = 0; h < cs.heads(); ++h) {
        SCOPED_TRACE(name + " b" + std::to_string(b) + " h" + std::to_string(h));
        AttentionOptions opt;
        opt.causal = cs.causal();
        opt.key_padding = cs.padding(b);
        const auto st = eva.chunk_stats(cs.head<T>("q", b, h), cs.head<T>("k", b, h),
                                        cs.head<T>("v", b, h), opt);
        ASSERT_EQ(st.kt.rows(), cs.num_chunks());
        EXPECT_LE(max_abs_rows(st.kt, cs.head<double>("np_kt", b, h)), kParityTol<T>);
        EXPECT_LE(max_abs_rows(st.mu, cs.head<double>("np_mu", b, h)), kParityTol<T>);
        EXPECT_LE(max_abs_rows(st.beta, cs.head<double>("np_beta", b, h)), kParityTol<T>);
        EXPECT_TRUE(st.offset.isZero(0));  // Reference has no ln n_c
      }
  }
}

TYPED_TEST(EvaTest, CausalCasesDecodedTokenByTokenMatchForwardAndOfficial) {
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    if (!cs.causal()) continue;
    const Eva<T> eva(cs.d(), cs.options(), cs.template params<T>());
    double vs_forward = 0, vs_official = 0;
    for (Index b = 0; b < cs.batch(); ++b)
      for (Index h = 0; h < cs.heads(); ++h) {
        const RowMatrix<T> q = cs.head<T>("q", b, h), k = cs.head<T>("k", b, h),
                           v = cs.head<T>("v", b, h);
        AttentionOptions opt;
        opt.causal = true;
        opt.key_padding = cs.padding(b);
        const RowMatrix<T> parallel = eva(q, k, v, opt);
        auto state = eva.make_state(v.cols());
        RowMatrix<T> decoded(cs.n(), v.cols());
        for (Index t = 0; t < cs.n(); ++t)
          eva.step(state, q.row(t), k.row(t), v.row(t), decoded.row(t), opt.key_padding[t]);
        vs_forward = std::max(vs_forward, max_abs_rows(decoded, parallel));
        vs_official =
            std::max(vs_official, max_abs_rows(decoded, cs.head<double>("out_official", b, h),
                                               unpadded_rows(opt.key_padding, cs.n())));
      }
    // Same arithmetic up to GEMV versus GEMM summation order.
    EXPECT_LE(vs_forward, test::Tol<T>::rel) << name;
    EXPECT_LE(vs_official, kParityTol<T>) << name;
    std::cout << "[ eva ] " << (sizeof(T) == 4 ? "float " : "double") << " " << name
              << " decode: max |step - forward| = " << vs_forward
              << ", max |step - official| = " << vs_official << "\n";
  }
}

// ---- 2. Decoding
// ----------------------------------------------------------------------------------

template <class T>
RowMatrix<T> decode_all(const Eva<T>& eva, typename Eva<T>::State& state, const RowMatrix<T>& q,
                        const RowMatrix<T>& k, const RowMatrix<T>& v, const KeyMask& pad) {
  RowMatrix<T> out(q.rows(), v.cols());
  for (Index t = 0; t < q.rows(); ++t)
    eva.step(state, q.row(t), k.row(t), v.row(t), out.row(t), pad.size() != 0 && pad[t]);
  return out;
}

TYPED_TEST(EvaTest, DecodingEqualsCausalForwardForBothSemantics) {
  using T = TypeParam;
  DataRng rng(31);
  struct Geo {
    Index window, ext_factor, chunk;  // ext = ext_factor * W; chunk: L, or -C for num_chunks
    bool disjoint;
  };
  const Geo geos[] = {
      {8, 0, 2, false},  {8, 1, 2, false},  {8, 0, 8, false}, {8, 1, 8, false},  // L < W, L = W
      {4, 0, -3, false}, {4, 1, -2, false},                                      // L > W
      {8, 0, 2, true},   {8, 1, 2, true},   {8, 0, 8, true},  {8, 1, 8, true},
      {6, 1, 3, true},   {5, 0, -1, true},
  };
  for (const Geo& geo : geos)
    for (int rep = 0; rep < 4; ++rep) {
      EvaOptions o;
      o.semantics = geo.disjoint ? EvaSemantics::Disjoint : EvaSemantics::Reference;
      o.window = geo.window;
      o.ext = geo.ext_factor * geo.window;
      Index n = 20 + rng.index(40);
      if (geo.chunk > 0) {
        o.chunk_size = geo.chunk;
      } else {
        o.num_chunks = -geo.chunk;
        if (!geo.disjoint) {  // Reference: n_p must be a multiple of L = floor(n_p / C)
          const Index n_p = (n + o.window - 1) / o.window * o.window;
          if (n_p % (n_p / o.num_chunks) != 0) n = o.window * o.num_chunks * 3;
        } else {
          n = std::min(n, o.window);  // one window: always aligned
        }
      }
      test::Config c;
      c.o = o;
      c.causal = true;
      c.n = n;
      const test::Instance<T> x =
          test::random_instance<T>(rng, c, 700 + 31 * rep + 7 * geo.window, true);
      SCOPED_TRACE(c.describe());
      const Eva<T> eva(c.d, c.o, x.params);
      const RowMatrix<T> parallel = eva(x.q, x.k, x.v, test::attention_options(c));
      AttentionOptions dopt;
      auto state = o.num_chunks > 0 ? eva.make_state(c.dv, dopt, EvaSequenceLength{n})
                                    : eva.make_state(c.dv);
      const RowMatrix<T> decoded = decode_all(eva, state, x.q, x.k, x.v, c.pad);
      ASSERT_TRUE(test::all_finite(decoded));
      // Every row, padded or not: both paths apply the same rules. GEMV vs GEMM rounding only.
      EXPECT_TRUE(near(decoded, parallel, test::Tol<T>::rel, test::Tol<T>::abs));
      EXPECT_EQ(state.tokens(), n);
    }
}

TYPED_TEST(EvaTest, DecodingHonoursTheScaleOfMakeState) {
  using T = TypeParam;
  EvaOptions o;
  o.window = 4;
  o.ext = 4;
  o.chunk_size = 2;
  const Eva<T> eva(6, o);
  const RowMatrix<T> q = random_matrix<T>(30, 6, 1), k = random_matrix<T>(30, 6, 2);
  const RowMatrix<T> v = random_matrix<T>(30, 3, 3);
  AttentionOptions opt;
  opt.causal = true;
  opt.scale = 0.6;
  auto state = eva.make_state(3, opt);
  EXPECT_TRUE(near(decode_all(eva, state, q, k, v, KeyMask()), eva(q, k, v, opt), test::Tol<T>::rel,
                   test::Tol<T>::abs));
}

TYPED_TEST(EvaTest, SteadyStateDecodingDoesNotAllocate) {
  using T = TypeParam;
  for (auto semantics : {EvaSemantics::Reference, EvaSemantics::Disjoint}) {
    EvaOptions o;
    o.window = 8;
    o.ext = 8;
    o.chunk_size = 4;
    o.semantics = semantics;
    EvaParams<T> params;
    params.mu_q = random_projection<T>(6, true, 1);
    params.mu_k = random_projection<T>(6, true, 2);
    params.local_bias = random_matrix<T>(8, 16, 3);
    const Eva<T> eva(6, o, params);
    const Index n = 300;
    const RowMatrix<T> q = random_matrix<T>(n, 6, 4), k = random_matrix<T>(n, 6, 5);
    const RowMatrix<T> v = random_matrix<T>(n, 5, 6);
    auto state = eva.make_state(5);
    state.reserve(n);
    const Index capacity = state.chunk_capacity();
    RowMatrix<T> out(1, 5);
    Eigen::internal::set_is_malloc_allowed(false);  // any Eigen heap allocation now aborts
    for (Index t = 0; t < n; ++t) eva.step(state, q.row(t), k.row(t), v.row(t), out, t % 7 == 3);
    Eigen::internal::set_is_malloc_allowed(true);
    EXPECT_EQ(state.chunk_capacity(), capacity);
    EXPECT_EQ(state.published_chunks(), (n - 1) / 4);
  }
}

TYPED_TEST(EvaTest, DecodingChunkStorageGrowsGeometrically) {
  using T = TypeParam;
  EvaOptions o;
  o.window = 2;
  o.chunk_size = 1;
  const Eva<T> eva(3, o);
  auto state = eva.make_state(2);
  const RowMatrix<T> x = random_matrix<T>(1, 3, 1), y = random_matrix<T>(1, 2, 2);
  RowMatrix<T> out(1, 2);
  std::set<Index> capacities;
  for (int t = 0; t < 2000; ++t) {
    eva.step(state, x, x, y, out);
    capacities.insert(state.chunk_capacity());
    ASSERT_GE(state.chunk_capacity(), state.published_chunks());
  }
  EXPECT_LE(capacities.size(), 12u);  // log2(2000 / 4) + 2 reallocations at most
}

// ---- 3. Quality without learned parameters (§8 protocol)
// ------------------------------------------

template <class T>
RowMatrix<T> ar1(Index n, Index d, std::uint64_t seed, double sigma) {
  DataRng rng(seed);
  const double rho = 0.98, innovation = std::sqrt(1 - rho * rho);
  RowMatrix<T> x(n, d);
  Eigen::VectorXd state(d);
  for (Index j = 0; j < d; ++j) state[j] = rng.normal();
  for (Index t = 0; t < n; ++t) {
    if (t > 0)
      for (Index j = 0; j < d; ++j) state[j] = rho * state[j] + innovation * rng.normal();
    x.row(t) = (sigma * state).transpose().template cast<T>();
  }
  return x;
}

TYPED_TEST(EvaTest, DisjointIsAGoodTrainingFreeApproximationOnSmoothData) {
  // spec §8: n = 1024, d = Dv = 64, W = 64, e = 0, C = 16, identity projections, AR(1) data,
  // mean relative error over 3 seeds. Measured: Disjoint 0.207, Reference 1.765.
  using T = TypeParam;
  double disjoint = 0, reference = 0;
  for (std::uint64_t seed : {1, 2, 3}) {
    const RowMatrix<T> q = ar1<T>(1024, 64, 100 * seed + 1, 1),
                       k = ar1<T>(1024, 64, 100 * seed + 2, 1);
    const RowMatrix<T> v = ar1<T>(1024, 64, 100 * seed + 3, 1);
    const RowMatrix<T> exact = Exact<T>()(q, k, v);
    EvaOptions o;
    o.window = 64;
    o.num_chunks = 16;
    reference += relative_error<T>(Eva<T>(64, o)(q, k, v), exact) / 3;
    o.semantics = EvaSemantics::Disjoint;
    disjoint += relative_error<T>(Eva<T>(64, o)(q, k, v), exact) / 3;
  }
  std::cout << "[ eva ] " << (sizeof(T) == 4 ? "float " : "double")
            << " §8 ar x1: Disjoint rel. error " << disjoint << ", Reference " << reference << "\n";
  EXPECT_LT(disjoint, 0.3);
  EXPECT_LT(disjoint, reference);
}

// ---- 4. Masks, empty rows, views --------------------------------------------------------------

TYPED_TEST(EvaTest, AllKeysPaddedGivesZeroRowsNeverNaN) {
  using T = TypeParam;
  const RowMatrix<T> q = random_matrix<T>(20, 4, 1), k = random_matrix<T>(20, 4, 2);
  const RowMatrix<T> v = random_matrix<T>(20, 3, 3);
  for (auto semantics : {EvaSemantics::Reference, EvaSemantics::Disjoint})
    for (bool causal : {false, true}) {
      EvaOptions o;
      o.window = 4;
      o.ext = 4;
      o.chunk_size = 4;
      o.semantics = semantics;
      AttentionOptions opt;
      opt.causal = causal;
      opt.key_padding = KeyMask::Constant(20, true);
      const RowMatrix<T> out = Eva<T>(4, o)(q, k, v, opt);
      EXPECT_TRUE(out.isZero(0)) << int(semantics) << causal;
    }
}

TYPED_TEST(EvaTest, PaddedTokensNeverReachValidOutputs) {
  // NaN / Inf stored at padded positions (in q, k and v) must not leak into any valid row, in the
  // forward (both semantics, causal or not, 1-D and 2-D) and in decoding.
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  for (auto semantics : {EvaSemantics::Reference, EvaSemantics::Disjoint})
    for (int mode = 0; mode < 3; ++mode) {
      EvaOptions o;
      o.semantics = semantics;
      o.window = 4;
      o.ext = 2;
      o.chunk_size = 2;
      const bool causal = mode == 1;
      if (mode == 2) o.grid_height = o.grid_width = 8;
      const Index n = mode == 2 ? 64 : 30;
      const RowMatrix<T> q = random_matrix<T>(n, 5, 1), k = random_matrix<T>(n, 5, 2);
      const RowMatrix<T> v = random_matrix<T>(n, 3, 3);
      AttentionOptions opt;
      opt.causal = causal;
      opt.key_padding = test::random_mask(n, 0.3, 4);
      const Eva<T> eva(5, o);
      const RowMatrix<T> clean = eva(q, k, v, opt);
      RowMatrix<T> qd = q, kd = k, vd = v;
      for (Index j = 0; j < n; ++j)
        if (opt.key_padding[j]) qd(j, 0) = nan, kd(j, 1) = inf, vd(j, 2) = nan, vd(j, 0) = inf;
      const RowMatrix<T> dirty = eva(qd, kd, vd, opt);
      const auto keep = unpadded_rows(opt.key_padding, n);
      EXPECT_EQ(max_abs_rows(dirty, clean, keep), 0) << int(semantics) << " mode " << mode;
      if (causal) {
        auto state = eva.make_state(3);
        const RowMatrix<T> decoded = decode_all(eva, state, qd, kd, vd, opt.key_padding);
        EXPECT_LE(max_abs_rows(decoded, clean, keep), test::Tol<T>::rel);
      }
    }
}

TYPED_TEST(EvaTest, ReferenceCausalPaddedQueryWithoutChunksGivesZeros) {
  // Spec §3.4: a padded query's local row is masked; before any chunk is visible the formula
  // has no unmasked entry, and the library returns zeros (not the official uniform weights).
  using T = TypeParam;
  EvaOptions o;
  o.window = 4;
  o.chunk_size = 4;
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = KeyMask::Constant(12, false);
  opt.key_padding[1] = opt.key_padding[9] = true;
  const RowMatrix<T> q = random_matrix<T>(12, 3, 1), k = random_matrix<T>(12, 3, 2);
  const RowMatrix<T> v = random_matrix<T>(12, 2, 3);
  const RowMatrix<T> out = Eva<T>(3, o)(q, k, v, opt);
  EXPECT_TRUE(out.row(1).isZero(0));
  EXPECT_FALSE(out.row(9).isZero(0));  // chunks 0 and 1 are visible: chunk-only attention
  EXPECT_TRUE(test::all_finite(out));
}

TYPED_TEST(EvaTest, BlocksAndMapsBindWithoutCopies) {
  using T = TypeParam;
  const RowMatrix<T> big = random_matrix<T>(40, 30, 1);
  const auto q = big.block(0, 0, 24, 6), k = big.block(5, 8, 24, 6), v = big.block(2, 20, 24, 4);
  for (int two_d = 0; two_d < 2; ++two_d) {
    EvaOptions o;
    o.window = 4;
    o.ext = 2;
    o.num_chunks = 6;
    if (two_d)
      o.window = 2, o.grid_height = 4, o.grid_width = 6, o.num_chunks = 0, o.chunk_size = 2;
    const Eva<T> eva(6, o);
    RowMatrix<T> out_big = RowMatrix<T>::Zero(30, 10);
    eva.forward(q, k, v, out_big.block(3, 2, 24, 4));
    EXPECT_TRUE(near(out_big.block(3, 2, 24, 4),
                     eva(RowMatrix<T>(q), RowMatrix<T>(k), RowMatrix<T>(v)), 0, 0));
    EXPECT_TRUE(out_big.topRows(3).isZero(0));
    EXPECT_TRUE(out_big.block(3, 0, 24, 2).isZero(0));
  }
}

TYPED_TEST(EvaTest, ZeroLengthSequenceGivesEmptyOutput) {
  using T = TypeParam;
  EvaOptions o;
  o.window = 4;
  o.num_chunks = 2;
  const RowMatrix<T> out = Eva<T>(3, o)(RowMatrix<T>(0, 3), RowMatrix<T>(0, 3), RowMatrix<T>(0, 2));
  EXPECT_EQ(out.rows(), 0);
  EXPECT_EQ(out.cols(), 2);
}

}  // namespace
}  // namespace fastattn
