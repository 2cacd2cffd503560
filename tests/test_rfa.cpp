// Tests of rfa.hpp (Random Feature Attention, docs/spec/rfa.md): the forward pass against the
// independent double-precision evaluation with the same projection (tests/reference/rfa.hpp:
// features recomputed with std::cos/std::sin, every (query, key) weight evaluated explicitly),
// decoding, grouped-query attention, the invariants, the denominator guard (§8), determinism and
// argument validation. Gated RFA: test_rfa_gated.cpp; the statistics of the estimate and its
// convergence to exact attention: test_rfa_statistics.cpp.

#include "fastattn/rfa.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "fastattn/random.hpp"
#include "reference/linear.hpp"
#include "rfa_test_support.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

namespace ref = test::ref;
using test::dbl;
using test::kRfaAbs;
using test::kRfaRel;
using test::near;
using test::random_mask;
using test::random_matrix;
using test::RfaTest;
using test::Tol;
using MatD = RowMatrix<double>;

TYPED_TEST_SUITE(RfaTest, test::RfaTypes);

using test::kNaN;

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
      test::poison_padded_values(v, opt.key_padding);
      for (Index chunk : {0, 5}) {
        RfaOptions o;
        o.num_features = 256;
        o.sigma = 1.0;
        o.kernel = kernel;
        o.seed = 11;
        o.chunk_size = chunk;
        const Rfa<T> rfa(d, o);
        ASSERT_EQ(rfa.feature_dim(), kernel == RfaKernel::Trig ? 512 : 256);
        const MatD weights = test::visibility(c.nq, c.nk, c.causal, opt.key_padding);
        Index ref_guarded = 0;
        const MatD expected = ref::kernel_average(test::rfa_kernel(rfa, dbl(q), dbl(k)), weights,
                                                  vd, o.den_eps, &ref_guarded);
        RowMatrix<T> out(c.nq, dv);
        LinearStats stats;
        stats.guarded_rows = -1;
        rfa.forward(q, k, v, out, opt, &stats);
        const std::string where = "kernel " + std::to_string(int(kernel)) + " Nq " +
                                  std::to_string(c.nq) + " Nk " + std::to_string(c.nk) +
                                  " causal " + std::to_string(c.causal) + " chunk " +
                                  std::to_string(chunk);
        ASSERT_TRUE(test::all_finite(out)) << where;
        EXPECT_TRUE(near(out, expected, kRfaRel<T>, kRfaAbs<T>)) << where;
        // Only the Arccos zero query (all features 0, so den = 0) may be guarded here.
        EXPECT_EQ(stats.guarded_rows, ref_guarded) << where;
        EXPECT_LE(ref_guarded, kernel == RfaKernel::Arccos ? 1 : 0) << where;
        for (Index i = 0; i < c.nq; ++i)
          if (test::empty_row(weights, i)) {
            EXPECT_TRUE(out.row(i).isZero(0)) << where << " row " << i;
          }
        // operator() is forward().
        const RowMatrix<T> again = rfa(q, k, v, opt);
        EXPECT_TRUE((again.array() == out.array()).all()) << where;
      }
    }
  }
}

TYPED_TEST(RfaTest, NonCausalValuesReadInPlaceOrCopied) {
  // The non-causal key sums read V in place when its rows start on packet boundaries and the key
  // chunk has no padded key; otherwise from an aligned copy with padded rows zeroed. Dv = 32 is
  // whole packets on every ISA, so: contiguous V (in place), the same V as a view one column
  // into a wider matrix (copied: misaligned rows), and padding in some chunks of 16 keys but not
  // in others (both paths in one call; padded values are NaN). Each against the double
  // evaluation; in place and copied agree bit for bit (the same products of the same values).
  using T = TypeParam;
  const Index nq = 29, nk = 70, d = 8, dv = 32;
  const RowMatrix<T> q = random_matrix<T>(nq, d, 501), k = random_matrix<T>(nk, d, 502);
  const RowMatrix<T> v = random_matrix<T>(nk, dv, 503);
  RowMatrix<T> wide = RowMatrix<T>::Constant(nk, dv + 1, T(kNaN));
  wide.rightCols(dv) = v;
  RfaOptions o;
  o.num_features = 64;
  o.seed = 7;
  o.chunk_size = 16;
  const Rfa<T> rfa(d, o);
  for (bool padded : {false, true}) {
    SCOPED_TRACE(padded ? "padding in some chunks" : "no padding");
    AttentionOptions opt;
    if (padded) {
      opt.key_padding = KeyMask::Constant(nk, false);
      opt.key_padding.segment(18, 3).setConstant(true);  // chunk [16, 32)
      opt.key_padding[69] = true;                        // the last chunk, [64, 70)
    }
    const MatD weights = test::visibility(nq, nk, false, opt.key_padding);
    const MatD expected =
        ref::kernel_average(test::rfa_kernel(rfa, dbl(q), dbl(k)), weights, dbl(v), o.den_eps);
    RowMatrix<T> v_poisoned = v;
    test::poison_padded_values(v_poisoned, opt.key_padding);
    RowMatrix<T> wide_poisoned = wide;
    wide_poisoned.rightCols(dv) = v_poisoned;
    RowMatrix<T> in_place(nq, dv), copied(nq, dv);
    rfa.forward(q, k, v_poisoned, in_place, opt);
    rfa.forward(q, k, wide_poisoned.rightCols(dv), copied, opt);
    ASSERT_TRUE(test::all_finite(in_place) && test::all_finite(copied));
    EXPECT_TRUE(near(in_place, expected, kRfaRel<T>, kRfaAbs<T>));
    EXPECT_TRUE((in_place.array() == copied.array()).all());
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
  test::poison_padded_values(v, opt.key_padding);
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
    EXPECT_TRUE(near(out, expected, kRfaRel<T>, kRfaAbs<T>)) << "kernel " << int(kernel);

    RowMatrix<T> expected_gated(n, dv), out_gated(n, dv);
    rfa.forward_gated(q, k, v, gates, expected_gated, opt);
    auto gated_state = rfa.make_state(dv);
    for (Index t = 0; t < n; ++t)
      rfa.step(gated_state, q.row(t), k.row(t), v.row(t), gates[t], out_gated.row(t),
               opt.key_padding[t]);
    EXPECT_EQ(gated_state.tokens(), n);
    ASSERT_TRUE(test::all_finite(out_gated));
    EXPECT_TRUE(near(out_gated, expected_gated, kRfaRel<T>, kRfaAbs<T>))
        << "kernel " << int(kernel);
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
  EXPECT_TRUE(near(out, expected, kRfaRel<T>, kRfaAbs<T>));
  // A state made after the redraw uses the new projection.
  rfa.forward(q, k, v, redrawn, causal);
  auto fresh = rfa.make_state(dv);
  RowMatrix<T> out_fresh(n, dv);
  for (Index t = 0; t < n; ++t) rfa.step(fresh, q.row(t), k.row(t), v.row(t), out_fresh.row(t));
  EXPECT_TRUE(near(out_fresh, redrawn, kRfaRel<T>, kRfaAbs<T>));
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
      EXPECT_TRUE(near(other, base, kRfaRel<T>, kRfaAbs<T>)) << where;

      // V + c -> out + c (no row is clamped here).
      const T c = T(2.5);
      rfa.forward(q, k, RowMatrix<T>(v.array() + c), other, opt);
      EXPECT_TRUE(near(other, RowMatrix<T>(base.array() + c), kRfaRel<T>, kRfaAbs<T>)) << where;

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
      EXPECT_TRUE(near(other, base, kRfaRel<T>, kRfaAbs<T>)) << where;
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
    const MatD weights = test::visibility(q.rows(), k.rows(), opt.causal, opt.key_padding);
    Index ref_guarded = 0;
    const MatD expected = ref::kernel_average(test::rfa_kernel(rfa, dbl(q), dbl(k)), weights,
                                              dbl(v), o.den_eps, &ref_guarded);
    EXPECT_EQ(ref_guarded, expected_guarded) << what;  // the construction does what it says
    RowMatrix<T> out(q.rows(), 2);
    LinearStats stats;
    stats.guarded_rows = -1;
    rfa.forward(q, k, v, out, opt, &stats);
    EXPECT_TRUE(test::all_finite(out)) << what;
    EXPECT_EQ(stats.guarded_rows, expected_guarded) << what;
    EXPECT_TRUE(near(out, expected, 1e-5, 0)) << what;  // values up to ~2e3: plain rounding
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
    const MatD weights = test::visibility(nq, nk, causal, opt.key_padding);
    Index ref_guarded = 0;
    const MatD expected = ref::kernel_average(test::rfa_kernel(rfa, dbl(q), dbl(k)), weights,
                                              dbl(v), o.den_eps, &ref_guarded);
    EXPECT_GT(ref_guarded, 3) << "the data must produce non-positive denominators";
    RowMatrix<T> out(nq, dv);
    LinearStats stats;
    rfa.forward(q, k, v, out, opt, &stats);
    ASSERT_TRUE(test::all_finite(out));
    EXPECT_EQ(stats.guarded_rows, ref_guarded) << "causal " << causal;
    // Rows near the threshold are ill-conditioned; compare relative to the output scale.
    EXPECT_TRUE(near(out, expected, 10 * kRfaRel<T>, kRfaAbs<T>)) << "causal " << causal;
    for (Index i = 0; i < nq; ++i)
      if (test::empty_row(weights, i)) {
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
