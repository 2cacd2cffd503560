// Tests of gated RFA (docs/spec/rfa.md §6): forward_gated / forward_gated_log against the unrolled
// form of the recurrence evaluated in double (tests/reference/linear.hpp), for every chunk size,
// gates close to 1, and the special gates (one token kept, constant, all 1, tiny).

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "fastattn/rfa.hpp"
#include "reference/linear.hpp"
#include "rfa_test_support.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using MatD = RowMatrix<double>;
using test::RfaTest;
using test::kRfaRel;
using test::kRfaAbs;
using test::dbl;
using test::near;
using test::random_matrix;
namespace ref = test::ref;

TYPED_TEST_SUITE(RfaTest, test::RfaTypes);

// ---- 4. gated RFA ---------------------------------------------------------------------------

TYPED_TEST(RfaTest, GatedMatchesUnrolledRecurrenceForEveryChunkSize) {
  using T = TypeParam;
  const Index d = 8, dv = 4, nk = 37;
  test::DataRng rng(31);
  Vector<T> gates(nk);
  for (Index j = 0; j < nk; ++j) gates[j] = static_cast<T>(0.3 + 0.7 * rng.uniform());
  gates[5] = gates[6] = gates[20] = 1;                       // ignored tokens: no weight, no decay
  const Vector<T> log_gates = gates.array().log().matrix();  // as forward_gated computes them
  std::vector<double> ref_log_gates = test::log_of(gates.template cast<double>());
  for (RfaKernel kernel : {RfaKernel::Trig, RfaKernel::Arccos}) {
    for (Index nq : {nk, nk - 9, nk + 5}) {
      const RowMatrix<T> q = random_matrix<T>(nq, d, 32 + nq), k = random_matrix<T>(nk, d, 33);
      RowMatrix<T> v = random_matrix<T>(nk, dv, 34);
      AttentionOptions opt;  // causal is implied (opt.causal stays false here on purpose)
      opt.key_padding = test::random_mask(nk, 0.2, 35);
      opt.key_padding[5] = false;
      const MatD vd = dbl(v);
      test::poison_padded_values(v, opt.key_padding);
      RowMatrix<T> first(nq, dv);
      for (Index chunk : {1, 4, 7, 64}) {
        RfaOptions o;
        o.num_features = 256;
        o.kernel = kernel;
        o.seed = 36;
        o.chunk_size = chunk;
        const Rfa<T> rfa(d, o);
        const MatD weights = test::gated_weights(nq, nk, ref_log_gates, opt.key_padding);
        Index ref_guarded = 0;
        const MatD expected = ref::kernel_average(test::rfa_kernel(rfa, dbl(q), dbl(k)), weights,
                                                  vd, o.den_eps, &ref_guarded);
        const std::string where = "kernel " + std::to_string(int(kernel)) + " Nq " +
                                  std::to_string(nq) + " chunk " + std::to_string(chunk);
        RowMatrix<T> out(nq, dv), out_log(nq, dv);
        LinearStats stats;
        stats.guarded_rows = -1;
        rfa.forward_gated(q, k, v, gates, out, opt, &stats);
        ASSERT_TRUE(test::all_finite(out)) << where;
        EXPECT_TRUE(near(out, expected, kRfaRel<T>, kRfaAbs<T>)) << where;
        EXPECT_EQ(stats.guarded_rows, ref_guarded) << where;
        EXPECT_EQ(ref_guarded, 0) << where;
        for (Index i = 0; i < nq; ++i)
          if (test::empty_row(weights, i)) {
            EXPECT_TRUE(out.row(i).isZero(0)) << where << " row " << i;
          }
        // The log-gate overload with the same log g is the same computation.
        rfa.forward_gated_log(q, k, v, log_gates, out_log, opt);
        EXPECT_TRUE(near(out_log, out, test::Tol<T>::rel, test::Tol<T>::abs)) << where;
        // causal = true changes nothing (it is implied).
        AttentionOptions causal_opt = opt;
        causal_opt.causal = true;
        RowMatrix<T> out_causal(nq, dv);
        rfa.forward_gated(q, k, v, gates, out_causal, causal_opt);
        EXPECT_TRUE((out_causal.array() == out.array()).all()) << where;
        // Every chunk size agrees with C = 1 (the recurrence, one token per chunk).
        if (chunk == 1)
          first = out;
        else
          EXPECT_TRUE(near(out, first, kRfaRel<T>, kRfaAbs<T>)) << where;
      }
    }
  }
}

TYPED_TEST(RfaTest, GatedLogOverloadKeepsGatesCloseToOnePrecise) {
  using T = TypeParam;
  // log g in [-2e-6, -1e-6]: in float, g = exp(log g) itself carries a relative error of ~3% in
  // 1 - g; the log overload computes 1 - g = -expm1(log g) and must match the reference.
  const Index n = 30, d = 8, dv = 3;
  test::DataRng rng(41);
  Vector<T> log_gates(n);
  for (Index j = 0; j < n; ++j) log_gates[j] = static_cast<T>(-1e-6 * (1 + rng.uniform()));
  const RowMatrix<T> q = random_matrix<T>(n, d, 42), k = random_matrix<T>(n, d, 43);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 44);
  RfaOptions o;
  o.num_features = 256;
  o.seed = 45;
  const Rfa<T> rfa(d, o);
  std::vector<double> lg(static_cast<size_t>(n));
  for (Index j = 0; j < n; ++j) lg[size_t(j)] = double(log_gates[j]);
  const MatD expected = ref::kernel_average(test::rfa_kernel(rfa, dbl(q), dbl(k)),
                                            test::gated_weights(n, n, lg, {}), dbl(v), o.den_eps);
  RowMatrix<T> out(n, dv);
  LinearStats stats;
  rfa.forward_gated_log(q, k, v, log_gates, out, {}, &stats);
  EXPECT_EQ(stats.guarded_rows, 0);
  EXPECT_TRUE(near(out, expected, kRfaRel<T>, kRfaAbs<T>));
}

TYPED_TEST(RfaTest, GatedSpecialCases) {
  using T = TypeParam;
  const Index n = 20, d = 6, dv = 3;
  const RowMatrix<T> q = random_matrix<T>(n, d, 51), k = random_matrix<T>(n, d, 52);
  const RowMatrix<T> v = random_matrix<T>(n, dv, 53);
  for (Index chunk : {1, 3, 64}) {
    RfaOptions o;
    o.num_features = 256;
    o.seed = 54;
    o.chunk_size = chunk;
    const Rfa<T> rfa(d, o);
    RowMatrix<T> out(n, dv);

    // g_0 < 1, g_t = 1 after: only token 0 has weight, so every output equals v_0 (the
    // denominators (1 - g_0) K_t0 are comfortably positive with 256 projections).
    Vector<T> gates = Vector<T>::Ones(n);
    gates[0] = T(0.4);
    rfa.forward_gated(q, k, v, gates, out);
    for (Index t = 0; t < n; ++t)
      EXPECT_TRUE(near(out.row(t), v.row(0), 10 * test::Tol<T>::rel, 10 * test::Tol<T>::abs))
          << "chunk " << chunk << " t " << t;

    // Constant gate g0: out_t = sum_j (1 - g0) g0^(t - j) K_tj v_j / sum_j (1 - g0) g0^(t - j)
    // K_tj.
    const double g0 = 0.8;
    gates.setConstant(static_cast<T>(g0));
    const double g0t = double(static_cast<T>(g0));
    MatD weights = MatD::Zero(n, n);
    for (Index t = 0; t < n; ++t)
      for (Index j = 0; j <= t; ++j) weights(t, j) = (1 - g0t) * std::pow(g0t, double(t - j));
    const MatD expected =
        ref::kernel_average(test::rfa_kernel(rfa, dbl(q), dbl(k)), weights, dbl(v), o.den_eps);
    rfa.forward_gated(q, k, v, gates, out);
    EXPECT_TRUE(near(out, expected, kRfaRel<T>, kRfaAbs<T>)) << "chunk " << chunk;

    // All gates 1: no key has weight; every row is empty (0) and none is counted as guarded.
    gates.setOnes();
    LinearStats stats;
    stats.guarded_rows = -1;
    rfa.forward_gated(q, k, v, gates, out, {}, &stats);
    EXPECT_TRUE(out.isZero(0)) << "chunk " << chunk;
    EXPECT_EQ(stats.guarded_rows, 0);

    // Tiny gates reset the memory: out_t = v_t (k = q, so K_tt = n_f > 0). The total decay of a
    // chunk reaches e^-2500: only differences may be exponentiated.
    gates.setConstant(static_cast<T>(1e-30));
    rfa.forward_gated(q, q, v, gates, out);
    ASSERT_TRUE(test::all_finite(out)) << "chunk " << chunk;
    EXPECT_TRUE(near(out, v, 10 * test::Tol<T>::rel, 10 * test::Tol<T>::abs)) << "chunk " << chunk;
  }
}

}  // namespace
}  // namespace fastattn
