// Tests of bfloat16 storage (bfloat16.hpp, docs/bfloat16.md): the exact forward and decoding on
// bfloat16 inputs and caches against the independent double-precision reference
// (tests/reference/exact.hpp), the widening path against the float kernel, the other methods and
// multihead() on bfloat16, and the errors for what bfloat16 cannot do.
//
// This file is built twice (tests/CMakeLists.txt): test_bfloat16 with the project's flags (no
// -march: the widening path, FASTATTN_BF16_DOT = 0) and test_bfloat16_native with -march=native
// (on a machine with AVX512_BF16 the vdpbf16ps path). Both compare against the same reference
// with the same bounds, and each compares its path with the float kernel on the widened inputs,
// which the widening build proves to be the widening path bit for bit: so the vdpbf16ps path is
// checked against the widening path through that shared anchor.

// EIGEN_RUNTIME_NO_MALLOC lets a test assert that decoding steps do not allocate.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/clustered_eva.hpp"
#include "fastattn/detail/exact/packed_kv_bf16.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/multihead.hpp"
#include "fastattn/rfa.hpp"
#include "reference/exact.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::random_mask;
using test::random_matrix;
namespace ref = test::ref;
using M = RowMatrix<float>;
using B = RowMatrix<bfloat16>;

// Tolerances. bfloat16 has 8 significant bits (7 stored): rounding to nearest is within
// u_b = 2^-8 = 3.9e-3 relative.
//  - Against the reference on the same (rounded) inputs, the widening path only adds float
//    rounding: the float kernel's tolerance (2e-5 of max|out| + 2e-6; tests/test_exact_kernel.cpp
//    derives it). The vdpbf16ps path multiplies exact bfloat16 products in float, so its logits
//    are float-accurate too, but it rounds each weight p_j to p_j (1 + d_j), |d_j| <= u_b, for the
//    second product while the row sum l keeps the float weights; so the output moves by
//    sum_j (p_j / l) d_j v_j, at most u_b max_j |v_jc| in column c (a convex combination). The
//    bound is that worst case (all d_j of one sign); typical errors are ~sqrt(Nk) times smaller.
//  - The log-sum-exp comes from the float weights on both paths: float tolerance.
constexpr double kUb = 1.0 / 256;  // 2^-8
constexpr double kRel = 2e-5, kAbs = 2e-6;

/// The rounding of the weights the current build adds (0 on the widening path).
constexpr double weight_rounding() { return bfloat16_dot_product() ? kUb : 0.0; }

RowMatrix<double> widened(const B& x) { return to_float(x).cast<double>(); }

/// max|out - expected| <= kAbs + kRel max|expected| + extra max|v|, with nothing non-finite.
::testing::AssertionResult within(const M& out, const RowMatrix<double>& expected, double v_max,
                                  double extra) {
  if (!out.allFinite()) return ::testing::AssertionFailure() << "non-finite output";
  const double scale = expected.size() ? expected.cwiseAbs().maxCoeff() : 0.0;
  const double bound = kAbs + kRel * scale + extra * v_max;
  const double err = expected.size() ? (out.cast<double>() - expected).cwiseAbs().maxCoeff() : 0.0;
  if (err <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max error " << err << " > bound " << bound;
}

/// Runs the bfloat16 forward of Exact<float> (with `tiling`, a bias and LSE) on q, k, v and
/// checks it against the reference on the same inputs.
void check_forward(const B& q, const B& k, const B& v, const AttentionOptions& opt, const M& bias,
                   ExactOptions tiling = {}, bool with_lse = true) {
  const ref::ExactSpec spec{opt.scale, opt.causal, opt.key_padding, bias.cast<double>(),
                            opt.alibi_slope};
  Eigen::VectorXd ref_lse;
  const RowMatrix<double> expected =
      ref::exact_attention(widened(q), widened(k), widened(v), spec, &ref_lse);
  M out(q.rows(), v.cols());
  Vector<float> lse(with_lse ? q.rows() : 0);
  Exact<float>(tiling).forward(q, k, v, out, opt, bias, lse);
  const double v_max = v.size() ? widened(v).cwiseAbs().maxCoeff() : 0.0;
  EXPECT_TRUE(within(out, expected, v_max, weight_rounding()));
  for (Index i = 0; i < lse.size(); ++i) {
    if (std::isinf(ref_lse[i])) {
      EXPECT_EQ(lse[i], -std::numeric_limits<float>::infinity()) << "row " << i;
      EXPECT_TRUE(out.row(i).isZero(0)) << "empty row " << i;
    } else {
      EXPECT_NEAR(lse[i], ref_lse[i], kRel * (1 + std::abs(ref_lse[i]))) << "row " << i;
    }
  }
}

B random_bf16(Index rows, Index cols, std::uint64_t seed, double stddev = 1.0) {
  return to_bfloat16(random_matrix<float>(rows, cols, seed, stddev));
}

// Tilings as in test_exact_kernel.cpp: default, one row by one panel, blocks dividing nothing.
const ExactOptions tilings[] = {{},
                                {ExactKernel::Blocked, 1, 1},
                                {ExactKernel::Blocked, 7, 45},
                                {ExactKernel::Blocked, 13, 100}};

// ---- forward -----------------------------------------------------------------------------------

TEST(Bfloat16Exact, EveryHeadDimensionFromOneTo256) {
  // D around every float packet width and pair boundary (odd D has a pad dimension), Dv != D.
  const Index dims[] = {1,  2,  3,  4,  5,  7,  8,   9,   15,  16,  17,  31,  32, 33,
                        47, 48, 63, 64, 65, 96, 100, 127, 128, 129, 200, 255, 256};
  std::uint64_t seed = 1;
  for (Index d : dims) {
    SCOPED_TRACE(testing::Message() << "D = " << d);
    const Index dv = d % 37 + 1;
    const B q = random_bf16(37, d, seed++), k = random_bf16(75, d, seed++);
    const B v = random_bf16(75, dv, seed++);
    for (int causal = 0; causal < 2; ++causal) {
      AttentionOptions opt;
      opt.causal = causal;
      check_forward(q, k, v, opt, M());
    }
  }
}

TEST(Bfloat16Exact, OddSizesTilingsAndCausalOffsets) {
  // {Nq, Nk, D, Dv}: N = 1, sizes that are multiples of no block or panel, Nq < Nk and Nq > Nk.
  const Index shapes[][4] = {{1, 1, 1, 1},       {1, 517, 64, 64},    {517, 1, 16, 3},
                             {2, 3, 5, 7},       {33, 97, 31, 33},    {97, 33, 33, 31},
                             {130, 300, 64, 48}, {255, 257, 17, 100}, {64, 64, 64, 64}};
  std::uint64_t seed = 100;
  for (const auto& s : shapes) {
    const B q = random_bf16(s[0], s[2], seed++), k = random_bf16(s[1], s[2], seed++);
    const B v = random_bf16(s[1], s[3], seed++);
    for (int causal = 0; causal < 2; ++causal)
      for (const ExactOptions& tiling : tilings) {
        SCOPED_TRACE(testing::Message() << s[0] << "x" << s[1] << " D" << s[2] << " Dv" << s[3]
                                        << (causal ? " causal" : "") << " tiles " << tiling.block_q
                                        << "x" << tiling.block_k);
        AttentionOptions opt;
        opt.causal = causal;
        check_forward(q, k, v, opt, M(), tiling);
      }
  }
}

TEST(Bfloat16Exact, EveryMaskBiasAlibiAndLseCombination) {
  const Index shapes[][4] = {{45, 70, 24, 9}, {70, 45, 64, 64}, {1, 80, 17, 5}};
  std::uint64_t seed = 200;
  for (const auto& s : shapes) {
    const Index nq = s[0], nk = s[1];
    const B q = random_bf16(nq, s[2], seed++, 1.5), k = random_bf16(nk, s[2], seed++, 1.5);
    const B v = random_bf16(nk, s[3], seed++);
    M full_bias = random_matrix<float>(nq, nk, seed++);
    full_bias(nq / 2, nk / 3) = -std::numeric_limits<float>::infinity();
    full_bias.row(nq - 1).setConstant(-std::numeric_limits<float>::infinity());  // an empty row
    const M key_bias = random_matrix<float>(1, nk, seed++);
    // causal x padding x {no bias, per-key bias, full bias} x ALiBi x LSE.
    for (int combo = 0; combo < 48; ++combo) {
      AttentionOptions opt;
      opt.causal = combo & 1;
      if (combo & 2) opt.key_padding = random_mask(nk, 0.35, seed + combo);
      if (combo & 4) opt.alibi_slope = 0.3;
      const bool with_lse = combo & 8;
      const int bias_kind = combo / 16;
      const M& bias = bias_kind == 0 ? M() : bias_kind == 1 ? key_bias : full_bias;
      for (const ExactOptions& tiling : tilings) {
        SCOPED_TRACE(testing::Message() << nq << "x" << nk << " combo " << combo << " tiles "
                                        << tiling.block_q << "x" << tiling.block_k);
        check_forward(q, k, v, opt, bias, tiling, with_lse);
      }
    }
  }
}

TEST(Bfloat16Exact, LogitRampsForceARescaleInEveryPanel) {
  // Key j has logit about 3 j: every panel raises the running reference past the kernel's
  // headroom. Integers up to 256 are exact in bfloat16, so the ramp is the same as in float.
  const Index nq = 20, nk = 300, d = 4;
  M kf(nk, d);
  for (int rising = 0; rising < 2; ++rising) {
    for (Index j = 0; j < nk; ++j) kf.row(j).setConstant(1.5f * float(rising ? j : nk - j));
    const B q = to_bfloat16(M::Ones(nq, d)), k = to_bfloat16(kf), v = random_bf16(nk, 6, 1);
    for (int causal = 0; causal < 2; ++causal)
      for (const ExactOptions& tiling : tilings) {
        SCOPED_TRACE(testing::Message() << "rising " << rising << " causal " << causal);
        AttentionOptions opt;
        opt.causal = causal;
        opt.scale = 1.0 / d;
        // The logits reach ~1e3: float rounds them by u |logit| ~ 1e-4, so widen the float part.
        const ref::ExactSpec spec{opt.scale, opt.causal, {}, {}, 0};
        const RowMatrix<double> expected =
            ref::exact_attention(widened(q), widened(k), widened(v), spec);
        const M out = Exact<float>(tiling)(q, k, v, opt);
        const double v_max = widened(v).cwiseAbs().maxCoeff();
        EXPECT_TRUE(within(out, expected, v_max, weight_rounding() + 1e-3));
      }
  }
}

TEST(Bfloat16Exact, ThePathAgreesWithTheFloatKernelOnTheWidenedInputs) {
  // The widening path packs bfloat16 widened to float and runs the float kernel: it must equal the
  // float forward on to_float(inputs) bit for bit. The vdpbf16ps path differs from it by the
  // rounding of the weights only (u_b max|v|, see the tolerances above) plus float rounding.
  std::uint64_t seed = 300;
  for (const Index d : {16, 64, 65, 128}) {
    const B q = random_bf16(150, d, seed++), k = random_bf16(333, d, seed++);
    const B v = random_bf16(333, 40, seed++);
    for (int causal = 0; causal < 2; ++causal) {
      SCOPED_TRACE(testing::Message() << "D " << d << " causal " << causal);
      AttentionOptions opt;
      opt.causal = causal;
      const Exact<float> exact;
      const M path = exact(q, k, v, opt), wide = exact(to_float(q), to_float(k), to_float(v), opt);
      if (!bfloat16_dot_product()) {
        EXPECT_TRUE((path.array() == wide.array()).all());
      } else {
        const double v_max = widened(v).cwiseAbs().maxCoeff();
        EXPECT_TRUE(within(path, wide.cast<double>(), v_max, kUb));
        EXPECT_FALSE((path.array() == wide.array()).all()) << "the weights were not rounded?";
      }
    }
  }
}

TEST(Bfloat16Exact, RoundingTheInputsStaysWithinItsAnalyticBound) {
  // Against the reference on the float inputs before rounding: rounding q and k moves logit
  // (i, j) by at most e_i = s (2 u_b + u_b^2) sum_d |q_id| |k_jd| (max over j), which moves every
  // normalized weight by a factor within e^(+-2 e_i); rounding v moves each value by u_b |v|.
  // So |out_i - out'_i| <= (e^(2 e_i) - 1 + u_b + weight rounding) max|v| (+ float rounding).
  const Index nq = 64, nk = 200, d = 64;
  const M qf = random_matrix<float>(nq, d, 1), kf = random_matrix<float>(nk, d, 2),
          vf = random_matrix<float>(nk, d, 3);
  const ref::ExactSpec spec{};
  const RowMatrix<double> expected =
      ref::exact_attention(qf.cast<double>(), kf.cast<double>(), vf.cast<double>(), spec);
  const M out = Exact<float>()(to_bfloat16(qf), to_bfloat16(kf), to_bfloat16(vf));
  const double s = 1.0 / std::sqrt(double(d)), v_max = vf.cwiseAbs().maxCoeff();
  const Eigen::MatrixXd dots =
      qf.cwiseAbs().cast<double>() * kf.cwiseAbs().cast<double>().transpose();
  for (Index i = 0; i < nq; ++i) {
    const double e = s * (2 * kUb + kUb * kUb) * dots.row(i).maxCoeff();
    const double bound =
        kAbs + kRel * v_max + (std::expm1(2 * e) + kUb + weight_rounding()) * v_max;
    const double err = (out.row(i).cast<double>() - expected.row(i)).cwiseAbs().maxCoeff();
    EXPECT_LE(err, bound) << "row " << i;
  }
  // And the figure docs/bfloat16.md quotes for N(0, 1) inputs: a relative Frobenius error of a few
  // 1e-3 (the bound above is the worst case).
  EXPECT_LT((out.cast<double>() - expected).norm() / expected.norm(), 1e-2);
}

TEST(Bfloat16Exact, PaddedKeysNonFiniteValuesNeverReachTheOutput) {
  const Index nq = 30, nk = 90, d = 20;
  const B q = random_bf16(nq, d, 1), k0 = random_bf16(nk, d, 2);
  B v = random_bf16(nk, 7, 3), k = k0;
  AttentionOptions opt;
  opt.key_padding = random_mask(nk, 0.3, 4);
  opt.key_padding[5] = true;
  for (Index j = 0; j < nk; ++j)
    if (opt.key_padding[j]) {
      v(j, 0) = bfloat16(std::numeric_limits<float>::quiet_NaN());
      k(j, 1) = bfloat16(std::numeric_limits<float>::infinity());
    }
  B v_clean = v, k_clean = k0;
  for (Index j = 0; j < nk; ++j)
    if (opt.key_padding[j]) v_clean.row(j).setZero();
  const M out = Exact<float>()(q, k, v, opt), clean = Exact<float>()(q, k_clean, v_clean, opt);
  ASSERT_TRUE(out.allFinite());
  EXPECT_TRUE((out.array() == clean.array()).all());
}

TEST(Bfloat16Exact, StridedViewsGiveIdenticalResults) {
  // A head of a [N, H, D] buffer (rows H D apart) against the same head copied to a compact one.
  const Index n = 77, h = 3, d = 24;
  const B buffer = random_bf16(n, h * d, 5);
  const B compact = buffer.middleCols(d, d);
  using Map = Eigen::Map<const B, 0, Eigen::OuterStride<>>;
  const Map head(buffer.data() + d, n, d, Eigen::OuterStride<>(h * d));
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    const M a = Exact<float>()(head, head, head, opt),
            b = Exact<float>()(compact, compact, compact, opt);
    EXPECT_TRUE((a.array() == b.array()).all());
  }
}

TEST(Bfloat16Exact, TheReferenceKernelRunsOnTheWidenedInputs) {
  const B q = random_bf16(20, 9, 1), k = random_bf16(31, 9, 2), v = random_bf16(31, 4, 3);
  AttentionOptions opt;
  opt.causal = true;
  const M a = Exact<float>(ExactOptions{ExactKernel::Reference})(q, k, v, opt);
  const M b = Exact<float>(ExactOptions{ExactKernel::Reference})(to_float(q), to_float(k),
                                                                 to_float(v), opt);
  EXPECT_TRUE((a.array() == b.array()).all());
}

// ---- decoding ----------------------------------------------------------------------------------

ExactOptions bf16_cache() {
  ExactOptions o;
  o.cache = CacheStorage::BFloat16;
  return o;
}

TEST(Bfloat16Decode, Bfloat16CacheEqualsTheCausalReference) {
  // Token by token and in prefill chunks, fed float tokens (rounded as they are appended) or
  // bfloat16 tokens, with padded tokens (non-finite values), ALiBi and a scale. The reference is
  // the causal attention of the rounded keys and values; on the vdpbf16ps path the query is
  // rounded to bfloat16 too (the score kernel multiplies bfloat16 pairs), so the reference uses
  // the rounded query there and the float query on the widening path.
  for (Index d : {1, 7, 64, 65}) {
    const Index n = 203, dv = d == 64 ? 64 : 9;
    const M qf = random_matrix<float>(n, d, 1), kf = random_matrix<float>(n, d, 2);
    M vf = random_matrix<float>(n, dv, 3);
    const B qb = to_bfloat16(qf), kb = to_bfloat16(kf);
    B vb = to_bfloat16(vf);
    AttentionOptions opt;
    opt.causal = true;
    opt.scale = 0.4;
    opt.alibi_slope = 0.05;
    opt.key_padding = random_mask(n, 0.15, 4);
    opt.key_padding[0] = true;  // the first query sees nothing
    const ref::ExactSpec spec{opt.scale, true, opt.key_padding, {}, opt.alibi_slope};
    const double v_max = widened(vb).cwiseAbs().maxCoeff();
    for (Index j = 0; j < n; ++j)
      if (opt.key_padding[j]) {
        vf(j, 0) = std::numeric_limits<float>::quiet_NaN();
        vb(j, 0) = bfloat16(std::numeric_limits<float>::quiet_NaN());
      }
    AttentionOptions state_opt;
    state_opt.scale = opt.scale;
    state_opt.alibi_slope = opt.alibi_slope;
    const Exact<float> exact(bf16_cache());
    for (int bf16_tokens = 0; bf16_tokens < 2; ++bf16_tokens) {
      const bool rounded_q = bf16_tokens || bfloat16_dot_product();
      const RowMatrix<double> expected =
          ref::exact_attention(rounded_q ? widened(qb) : qf.cast<double>(), widened(kb),
                               to_float(vb).cast<double>(), spec);
      for (Index chunk : {1, 5, 64}) {
        SCOPED_TRACE(testing::Message()
                     << "D " << d << " chunk " << chunk << " bf16 tokens " << bf16_tokens);
        auto state = exact.make_state(dv, state_opt);
        EXPECT_EQ(state.storage(), CacheStorage::BFloat16);
        M out(n, dv);
        for (Index t = 0; t < n;) {
          Index len = 1;
          while (len < chunk && t + len < n && opt.key_padding[t + len] == opt.key_padding[t])
            ++len;
          if (bf16_tokens)
            exact.step(state, qb.middleRows(t, len), kb.middleRows(t, len), vb.middleRows(t, len),
                       out.middleRows(t, len), opt.key_padding[t]);
          else
            exact.step(state, qf.middleRows(t, len), kf.middleRows(t, len), vf.middleRows(t, len),
                       out.middleRows(t, len), opt.key_padding[t]);
          t += len;
        }
        EXPECT_TRUE(within(out, expected, v_max, weight_rounding()));
        EXPECT_TRUE(out.row(0).isZero(0));
        // The cache holds the rounded tokens (padded ones as zeros).
        M keys = to_float(kb);
        for (Index j = 0; j < n; ++j)
          if (opt.key_padding[j]) keys.row(j).setZero();
        EXPECT_TRUE((state.keys().array() == keys.array()).all());
      }
    }
  }
}

TEST(Bfloat16Decode, DecodingEqualsTheForwardOnTheSameInputs) {
  // decode == forward: a bfloat16 cache fed bfloat16 tokens against the bfloat16 causal forward.
  // Both paths round the same weights (or none), in different orders of summation.
  const Index n = 150, d = 32, dv = 20;
  const B q = random_bf16(n, d, 7), k = random_bf16(n, d, 8), v = random_bf16(n, dv, 9);
  AttentionOptions opt;
  opt.causal = true;
  const M forward = Exact<float>()(q, k, v, opt);
  const Exact<float> exact(bf16_cache());
  auto state = exact.make_state(dv);
  M out(n, dv);
  for (Index t = 0; t < n; ++t)
    exact.step(state, q.middleRows(t, 1), k.middleRows(t, 1), v.middleRows(t, 1),
               out.middleRows(t, 1));
  const double v_max = widened(v).cwiseAbs().maxCoeff();
  EXPECT_TRUE(within(out, forward.cast<double>(), v_max, 2 * weight_rounding()));
}

TEST(Bfloat16Decode, FloatCacheFedBfloat16TokensEqualsTheWidenedTokens) {
  const Index n = 70, d = 13, dv = 6;
  const B q = random_bf16(n, d, 1), k = random_bf16(n, d, 2), v = random_bf16(n, dv, 3);
  const M qf = to_float(q), kf = to_float(k), vf = to_float(v);
  const Exact<float> exact;
  auto a = exact.make_state(dv), b = exact.make_state(dv);
  EXPECT_EQ(a.storage(), CacheStorage::Element);
  M oa(n, dv), ob(n, dv);
  for (Index t = 0, len = 0; t < n; t += len) {  // prefill chunks of 7 and one-token steps
    len = t % 2 ? 1 : std::min<Index>(7, n - t);
    exact.step(a, q.middleRows(t, len), k.middleRows(t, len), v.middleRows(t, len),
               oa.middleRows(t, len));
    exact.step(b, qf.middleRows(t, len), kf.middleRows(t, len), vf.middleRows(t, len),
               ob.middleRows(t, len));
  }
  EXPECT_TRUE((oa.array() == ob.array()).all());
}

TEST(Bfloat16Decode, TruncateThenStepMatchesAFreshCache) {
  const Index n = 90, d = 12, dv = 5;
  const M q = random_matrix<float>(n, d, 1), k = random_matrix<float>(n, d, 2),
          v = random_matrix<float>(n, dv, 3);
  const M k2 = random_matrix<float>(n, d, 4), v2 = random_matrix<float>(n, dv, 5);
  const Exact<float> exact(bf16_cache());
  for (Index keep : {Index(0), Index(1), Index(16), Index(37), Index(64)}) {
    auto fresh = exact.make_state(dv), rolled = exact.make_state(dv);
    M a(1, dv), b(1, dv);
    for (Index t = 0; t < n; ++t) exact.step(rolled, q.row(t), k2.row(t), v2.row(t), a);
    rolled.truncate(keep);
    for (Index t = 0; t < keep; ++t) exact.step(fresh, q.row(t), k2.row(t), v2.row(t), a);
    for (Index t = keep; t < n; ++t) {
      const bool padded = t % 5 == 0;
      exact.step(fresh, q.row(t), k.row(t), v.row(t), a, padded);
      exact.step(rolled, q.row(t), k.row(t), v.row(t), b, padded);
      ASSERT_TRUE((a.array() == b.array()).all()) << "keep " << keep << " t " << t;
    }
  }
}

TEST(Bfloat16Decode, StepsDoNotAllocateOnceReserved) {
  const Index n = 300, d = 32, dv = 24;
  const B q = random_bf16(n, d, 1), k = random_bf16(n, d, 2), v = random_bf16(n, dv, 3);
  const Exact<float> exact(bf16_cache());
  auto state = exact.make_state(dv, AttentionOptions{}, n);
  M out(1, dv);
  exact.step(state, q.topRows(1), k.topRows(1), v.topRows(1), out);  // the first step learns D
  Eigen::internal::set_is_malloc_allowed(false);
  for (Index t = 1; t < n; ++t)
    exact.step(state, q.middleRows(t, 1), k.middleRows(t, 1), v.middleRows(t, 1), out, t % 7 == 0);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_EQ(state.size(), n);
}

TEST(Bfloat16Decode, PairLayoutHoldsEveryKeyAndValue) {
  // Odd D and Dv off the packet grid: every element lands where key() and value() read it, and
  // the pad dimension of an odd D is zero (it multiplies the query's zero pad).
  for (Index d : {1, 5, 64, 65}) {
    const Index nk = 77, dv = 19;
    const B k = random_bf16(nk, d, 1), v = random_bf16(nk, dv, 2);
    detail::PackedKvBf16Storage s;
    s.set_dims(d, dv);
    s.pack(k, v, KeyMask(), Vector<float>());
    for (Index j = 0; j < nk; ++j) {
      for (Index c = 0; c < d; ++c) ASSERT_EQ(s.key(j, c), detail::bf16_to_float(k(j, c)));
      for (Index c = 0; c < dv; ++c) ASSERT_EQ(s.value(j, c), detail::bf16_to_float(v(j, c)));
    }
    const auto view = s.view();
    if (d % 2) {
      for (Index j = 0; j < nk; ++j)
        ASSERT_EQ(detail::bf16_bits(view.keys[detail::pair_key_offset(j, d, d + 1)]), 0);
    }
  }
}

// ---- errors ------------------------------------------------------------------------------------

TEST(Bfloat16Errors, WhatBfloat16CannotDoIsRejected) {
  // A bfloat16 cache for Exact<double>.
  const std::string cache_msg =
      test::invalid_argument_message([] { Exact<double> e(bf16_cache()); });
  EXPECT_NE(cache_msg.find("CacheStorage::BFloat16"), std::string::npos) << cache_msg;
  // Shapes, named with the shapes.
  const B q = random_bf16(4, 8, 1), k = random_bf16(5, 8, 2), v = random_bf16(6, 3, 3);
  M out(4, 3);
  const std::string shape_msg =
      test::invalid_argument_message([&] { Exact<float>().forward(q, k, v, out); });
  EXPECT_NE(shape_msg.find("[6, 3]"), std::string::npos) << shape_msg;
  const B k_bad = random_bf16(6, 7, 2);
  EXPECT_THROW(Exact<float>().forward(q, k_bad, v, out), std::invalid_argument);
  // A scale beyond float's range.
  AttentionOptions huge;
  huge.scale = 1e300;
  const B v5 = random_bf16(5, 3, 3);
  EXPECT_THROW(Exact<float>().forward(q, k, v5, out, huge), std::invalid_argument);
  // A decoding step with the wrong width.
  const Exact<float> exact(bf16_cache());
  auto state = exact.make_state(3);
  M o1(1, 3);
  EXPECT_THROW(exact.step(state, q.topRows(1), k.topRows(1), random_bf16(1, 4, 9), o1),
               std::invalid_argument);
  EXPECT_EQ(state.size(), 0);
}

// ---- the other methods and multihead
// -------------------------------------------------------------

TEST(Bfloat16Methods, RandomFeatureAndEvaMethodsWidenOnce) {
  // Features and sums are computed in float on the widened inputs: the same bits as the float
  // forward on to_float(inputs).
  const Index n = 96, d = 16;
  const B q = random_bf16(n, d, 1, 0.5), k = random_bf16(n, d, 2, 0.5), v = random_bf16(n, d, 3);
  const M qf = to_float(q), kf = to_float(k), vf = to_float(v);
  auto same = [&](const auto& method, const AttentionOptions& opt) {
    M a(n, d), b(n, d);
    method.forward(q, k, v, a, opt);
    method.forward(qf, kf, vf, b, opt);
    EXPECT_TRUE((a.array() == b.array()).all());
    const M c = method(q, k, v, opt);
    EXPECT_TRUE((c.array() == b.array()).all());
  };
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    same(Favor<float>(d, FavorOptions{}), opt);
    same(Rfa<float>(d, RfaOptions{}), opt);
    EvaOptions eo;
    eo.window = 8;
    eo.chunk_size = 8;
    same(Eva<float>(d, eo), opt);
  }
  ClusteredEvaOptions co;
  co.num_clusters = 6;
  same(ClusteredEva<float>(d, co), AttentionOptions{});
}

TEST(Bfloat16Methods, MultiheadMatchesEveryHeadAlone) {
  // [B, N, H, D] bfloat16 with GQA (4 query heads, 2 kv heads) -> float [B, N, Hq, Dv].
  const Index b = 2, n = 40, hq = 4, hkv = 2, d = 16, dv = 8;
  const B qbuf = random_bf16(b * n, hq * d, 1), kbuf = random_bf16(b * n, hkv * d, 2),
          vbuf = random_bf16(b * n, hkv * dv, 3);
  M out(b * n, hq * dv);
  auto q = TensorView<const bfloat16>::bnhd(qbuf.data(), b, n, hq, d);
  auto k = TensorView<const bfloat16>::bnhd(kbuf.data(), b, n, hkv, d);
  auto v = TensorView<const bfloat16>::bnhd(vbuf.data(), b, n, hkv, dv);
  auto o = TensorView<float>::bnhd(out.data(), b, n, hq, dv);
  MultiheadOptions opt;
  opt.causal = true;
  opt.threads = 1;
  opt.key_lengths = {n, n - 9};
  const Exact<float> exact;
  multihead(exact, q, k, v, o, opt);
  const Favor<float> favor(d, FavorOptions{});
  M out_favor(b * n, hq * dv);
  multihead(favor, q, k, v, TensorView<float>::bnhd(out_favor.data(), b, n, hq, dv), opt);
  for (Index bi = 0; bi < b; ++bi)
    for (Index h = 0; h < hq; ++h) {
      AttentionOptions ho;
      ho.causal = true;
      ho.key_padding = KeyMask::Constant(n, false);
      ho.key_padding.tail(n - opt.key_lengths[size_t(bi)]).setConstant(true);
      const B qh = q.head(bi, h), kh = k.head(bi, h / 2), vh = v.head(bi, h / 2);
      const M expected = exact(qh, kh, vh, ho);
      const M got = o.head(bi, h);
      EXPECT_TRUE((got.array() == expected.array()).all()) << "b " << bi << " h " << h;
      const M expected_favor = favor(qh, kh, vh, ho);
      const M got_favor = TensorView<float>::bnhd(out_favor.data(), b, n, hq, dv).head(bi, h);
      EXPECT_TRUE((got_favor.array() == expected_favor.array()).all()) << "favor b " << bi;
    }
}

}  // namespace
}  // namespace fastattn
