// Tests of the packed exact-attention kernel (detail/exact/, detail/simd/; docs/exact_kernel.md):
// through Exact<T> (forward and decoding) against the independent double-precision reference
// (tests/reference/exact.hpp), plus its two internal pieces with their own contracts (the exp2
// polynomial and the packed layout).

// EIGEN_RUNTIME_NO_MALLOC lets a test assert that decoding steps do not allocate.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fastattn/detail/exact/packed_kernel.hpp"
#include "fastattn/detail/exact/packed_kv.hpp"
#include "fastattn/detail/simd/exp2.hpp"
#include "fastattn/exact.hpp"
#include "reference/exact.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::random_mask;
using test::random_matrix;
namespace ref = test::ref;

// Tolerances. float: unit roundoff u = 6e-8; a logit carries about (D + 3) u |s q||k| of rounding
// (the dot product, the scaling by s log2(e), the base-2 shift), the exp2 polynomial 2 ulp, and
// the row sum O(Nk) u; with the O(1)-to-O(10) logits of these inputs that stays below 2e-5 of
// max|out| (observed: under 1e-5). double: the same count with u = 1.1e-16.
template <class T>
struct Tolerance;
template <>
struct Tolerance<float> {
  static constexpr double rel = 2e-5, abs = 2e-6;
};
template <>
struct Tolerance<double> {
  static constexpr double rel = 2e-12, abs = 2e-13;
};

template <class T>
class ExactKernelTest : public ::testing::Test {
 protected:
  using Mat = RowMatrix<T>;

  /// Runs Exact<T> with the given tiling (and LSE when asked) and checks it against the
  /// reference: outputs within the tolerance of max|out|, lse within the tolerance of
  /// 1 + |lse|, -inf exactly where the reference row is empty, and nothing non-finite.
  void check(const Mat& q, const Mat& k, const Mat& v, const AttentionOptions& opt, const Mat& bias,
             ExactOptions tiling = {}, bool with_lse = true, double tol_scale = 1) {
    const ref::ExactSpec spec{opt.scale, opt.causal, opt.key_padding, bias.template cast<double>(),
                              opt.alibi_slope};
    Eigen::VectorXd ref_lse;
    const RowMatrix<double> ref =
        ref::exact_attention(q.template cast<double>(), k.template cast<double>(),
                             v.template cast<double>(), spec, &ref_lse);
    Mat out(q.rows(), v.cols());
    Vector<T> lse(with_lse ? q.rows() : 0);
    Exact<T>(tiling).forward(q, k, v, out, opt, bias, lse);
    ASSERT_TRUE(out.allFinite());
    const double scale = ref.size() ? ref.cwiseAbs().maxCoeff() : 0.0;
    const double bound = tol_scale * (Tolerance<T>::abs + Tolerance<T>::rel * scale);
    const double err = ref.size() ? (out.template cast<double>() - ref).cwiseAbs().maxCoeff() : 0;
    EXPECT_LE(err, bound);
    for (Index i = 0; i < lse.size(); ++i) {
      const double r = ref_lse[i];
      if (std::isinf(r)) {
        EXPECT_EQ(lse[i], -std::numeric_limits<T>::infinity()) << "row " << i;
        EXPECT_TRUE(out.row(i).isZero(0)) << "empty row " << i;
      } else {
        EXPECT_NEAR(lse[i], r, tol_scale * Tolerance<T>::rel * (1 + std::abs(r))) << "row " << i;
      }
    }
  }
};

using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ExactKernelTest, Types);

// Tilings: the default; query blocks of one row and key blocks of one panel (every rescale and
// block boundary exercised); blocks that divide nothing.
ExactOptions tilings[] = {{},
                          {ExactKernel::Blocked, 1, 1},
                          {ExactKernel::Blocked, 7, 45},
                          {ExactKernel::Blocked, 13, 100}};

TYPED_TEST(ExactKernelTest, EveryHeadDimensionFromOneTo256) {
  using T = TypeParam;
  // D around every packet width (4, 8, 16 floats; 2, 4, 8 doubles) and register-tile width.
  const Index dims[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  12,  15,  16,  17,  23,  24,  31,
                        32, 33, 40, 47, 48, 63, 64, 65, 96, 100, 127, 128, 129, 200, 255, 256};
  std::uint64_t seed = 1;
  for (Index d : dims) {
    SCOPED_TRACE(testing::Message() << "D = " << d);
    const Index dv = d % 7 + 1;  // Dv != D
    const auto q = random_matrix<T>(37, d, seed++), k = random_matrix<T>(75, d, seed++);
    const auto v = random_matrix<T>(75, dv, seed++);
    for (int causal = 0; causal < 2; ++causal) {
      AttentionOptions opt;
      opt.causal = causal;
      this->check(q, k, v, opt, RowMatrix<T>());
    }
  }
}

TYPED_TEST(ExactKernelTest, OddSizesAndCausalOffsets) {
  using T = TypeParam;
  // {Nq, Nk, D, Dv}: N = 1, sizes that are multiples of no block or panel, Nq < Nk and Nq > Nk
  // (bottom-right causal offsets both ways), value widths off the packet grid.
  const Index shapes[][4] = {{1, 1, 1, 1},       {1, 517, 64, 64},    {517, 1, 16, 3},
                             {2, 3, 5, 7},       {33, 97, 31, 33},    {97, 33, 33, 31},
                             {130, 300, 64, 48}, {300, 130, 128, 65}, {255, 257, 17, 100},
                             {64, 64, 64, 64}};
  std::uint64_t seed = 100;
  for (const auto& s : shapes) {
    const auto q = random_matrix<T>(s[0], s[2], seed++), k = random_matrix<T>(s[1], s[2], seed++);
    const auto v = random_matrix<T>(s[1], s[3], seed++);
    for (int causal = 0; causal < 2; ++causal)
      for (const ExactOptions& tiling : tilings) {
        SCOPED_TRACE(testing::Message() << s[0] << "x" << s[1] << " D" << s[2] << " Dv" << s[3]
                                        << (causal ? " causal" : "") << " tiles " << tiling.block_q
                                        << "x" << tiling.block_k);
        AttentionOptions opt;
        opt.causal = causal;
        this->check(q, k, v, opt, RowMatrix<T>(), tiling);
      }
  }
}

TYPED_TEST(ExactKernelTest, DefaultKeyBlockIsTheLargestThatFitsTheCaches) {
  // default_key_block: whole panels, 256 to 4096 keys, and otherwise the largest block whose
  // packed keys and values fit half of L2 and whose weight tile fits two thirds of L1; with
  // Eigen's cache sizes as detected, and set tiny and huge (then restored).
  using T = TypeParam;
  using Tile = detail::RegisterTile<T>;
  const std::ptrdiff_t l1 = Eigen::l1CacheSize(), l2 = Eigen::l2CacheSize(),
                       l3 = Eigen::l3CacheSize();
  const std::ptrdiff_t settings[][2] = {{l1, l2}, {4 << 10, 16 << 10}, {1 << 30, 1 << 30}};
  for (const auto& cache : settings) {
    Eigen::setCpuCacheSizes(cache[0], cache[1], l3);
    for (Index d : {1, 16, 64, 100, 128, 256, 1024}) {
      const Index stride = detail::packet_padded<T>(d);
      const Index bc = detail::default_key_block<T>(d, stride);
      SCOPED_TRACE(testing::Message()
                   << "L1 " << cache[0] << ", L2 " << cache[1] << ", D = " << d << ", Bc = " << bc);
      EXPECT_EQ(bc % Tile::kCols, 0);
      EXPECT_GE(bc, 256);
      EXPECT_LE(bc, 4096);
      const auto fits = [&](Index keys) {
        return keys * (d + stride) * Index(sizeof(T)) <= cache[1] / 2 &&
               keys * Tile::kRows * Index(sizeof(T)) <= cache[0] * 2 / 3;
      };
      if (bc > 256) {
        EXPECT_TRUE(fits(bc));
      }
      if (bc + Tile::kCols <= 4096) {
        EXPECT_FALSE(fits(bc + Tile::kCols));
      }
    }
  }
  Eigen::setCpuCacheSizes(l1, l2, l3);
}

TYPED_TEST(ExactKernelTest, DefaultTilingOverSeveralKeyBlocks) {
  // The default tiling on a problem of two and a half default key blocks (its size depends on
  // the caches) and one and a bit query blocks, with a per-key bias so the key row is added.
  using T = TypeParam;
  const Index d = 64, nk = 5 * detail::default_key_block<T>(d, d) / 2 + 13, nq = 200;
  const auto q = random_matrix<T>(nq, d, 71), k = random_matrix<T>(nk, d, 72);
  const auto v = random_matrix<T>(nk, d, 73);
  const RowMatrix<T> key_bias = random_matrix<T>(1, nk, 74);
  for (int causal = 0; causal < 2; ++causal) {
    SCOPED_TRACE(causal ? "causal" : "non-causal");
    AttentionOptions opt;
    opt.causal = causal;
    this->check(q, k, v, opt, RowMatrix<T>());
    this->check(q, k, v, opt, key_bias);
  }
}

TYPED_TEST(ExactKernelTest, EveryMaskBiasAlibiAndLseCombination) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const Index shapes[][4] = {{45, 70, 24, 9}, {70, 45, 64, 64}, {1, 80, 16, 5}};
  std::uint64_t seed = 200;
  for (const auto& s : shapes) {
    const Index nq = s[0], nk = s[1];
    const M q = random_matrix<T>(nq, s[2], seed++, 1.5),
            k = random_matrix<T>(nk, s[2], seed++, 1.5);
    const M v = random_matrix<T>(nk, s[3], seed++);
    M full_bias = random_matrix<T>(nq, nk, seed++);
    full_bias(nq / 2, nk / 3) = -std::numeric_limits<T>::infinity();  // -inf removes one entry
    full_bias.row(nq - 1).setConstant(-std::numeric_limits<T>::infinity());  // an empty row
    const M key_bias = random_matrix<T>(1, nk, seed++);
    // causal x padding x {no bias, per-key bias, full bias} x ALiBi x LSE.
    for (int combo = 0; combo < 48; ++combo) {
      AttentionOptions opt;
      opt.causal = combo & 1;
      if (combo & 2) opt.key_padding = random_mask(nk, 0.35, seed + combo);
      if (combo & 4) opt.alibi_slope = 0.3;
      const bool with_lse = combo & 8;
      const int bias_kind = combo / 16;  // 0, 1, 2
      const M& bias = bias_kind == 0 ? M() : bias_kind == 1 ? key_bias : full_bias;
      for (const ExactOptions& tiling : tilings) {
        SCOPED_TRACE(testing::Message() << nq << "x" << nk << " combo " << combo << " tiles "
                                        << tiling.block_q << "x" << tiling.block_k);
        this->check(q, k, v, opt, bias, tiling, with_lse);
      }
    }
  }
}

TYPED_TEST(ExactKernelTest, LogitRampsForceARescaleInEveryPanel) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // Key j has logit about 3 j (natural units) for every query: each key panel beats the running
  // reference by far more than the kernel's 2^8 headroom, so every panel rescales the weights
  // computed before it; the falling ramp never does. Logits reach ~1e3, so the tolerance scales
  // with the logit magnitude (an absolute error of u |logit| per logit).
  const Index nq = 20, nk = 300, d = 4;
  M q = M::Ones(nq, d), k(nk, d), v = random_matrix<T>(nk, 6, 1);
  for (int rising = 0; rising < 2; ++rising) {
    for (Index j = 0; j < nk; ++j) k.row(j).setConstant(T(1.5) * T(rising ? j : nk - j));
    for (int causal = 0; causal < 2; ++causal)
      for (const ExactOptions& tiling : tilings) {
        AttentionOptions opt;
        opt.causal = causal;
        opt.scale = 1.0 / d;
        SCOPED_TRACE(testing::Message() << (rising ? "rising" : "falling") << " causal " << causal
                                        << " tiles " << tiling.block_q << "x" << tiling.block_k);
        this->check(q, k, v, opt, M(), tiling, true, 1000);
      }
  }
}

TYPED_TEST(ExactKernelTest, LargeLogitsInBothDirections) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // Logits of magnitude ~1e3 overflow any unshifted exp; the tolerance scales with the logit
  // magnitude as above.
  const M q = random_matrix<T>(50, 8, 1, 30), k = random_matrix<T>(90, 8, 2, 30);
  const M v = random_matrix<T>(90, 5, 3);
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    this->check(q, k, v, opt, M(), {}, true, 1000);
  }
}

TYPED_TEST(ExactKernelTest, LogitsNearTheTopOfTheRange) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // Logits of ~1e30 (float) or ~1e300 (double): each row's weight is all on its arg-max key (the
  // gap to the runner-up is ~1e-2 of the logits, so e^-gap = 0), which needs e^(x - m) formed
  // without rounding m's exponent in base 2 (an ulp of 1e300 is 1e284). Decoding too.
  const double scale = std::is_same_v<T, float> ? 1e30 : 1e300;
  const Index nq = 30, nk = 70, d = 6, dv = 3;
  const M q = random_matrix<T>(nq, d, 1), k = random_matrix<T>(nk, d, 2);
  const M v = random_matrix<T>(nk, dv, 3);
  for (int causal = 0; causal < 2; ++causal) {
    AttentionOptions opt;
    opt.causal = causal;
    opt.scale = scale;
    for (const ExactOptions& tiling : tilings) this->check(q, k, v, opt, M(), tiling);
  }
  AttentionOptions state_opt;
  state_opt.scale = scale;
  const Exact<T> exact;
  auto state = exact.make_state(dv, state_opt);
  M out(nk, dv);
  for (Index t = 0; t < nk; ++t) exact.step(state, k.row(t), k.row(t), v.row(t), out.row(t));
  ASSERT_TRUE(out.allFinite());
  AttentionOptions causal;
  causal.scale = scale;
  causal.causal = true;
  EXPECT_LE((out - Exact<T>()(k, k, v, causal)).cwiseAbs().maxCoeff(), 4 * Tolerance<T>::rel);
}

TYPED_TEST(ExactKernelTest, PaddedKeysNonFiniteValuesNeverReachTheOutput) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const Index nq = 40, nk = 77;
  const M q = random_matrix<T>(nq, 16, 1);
  M k = random_matrix<T>(nk, 16, 2), v = random_matrix<T>(nk, 8, 3);
  AttentionOptions opt;
  opt.key_padding = random_mask(nk, 0.3, 4);
  opt.key_padding[0] = opt.key_padding[nk - 1] = true;
  const M clean = Exact<T>()(q, k, v, opt);
  for (Index j = 0; j < nk; ++j)
    if (opt.key_padding[j]) {
      k(j, j % 16) = std::numeric_limits<T>::quiet_NaN();
      v(j, j % 8) = std::numeric_limits<T>::infinity();
    }
  for (const ExactOptions& tiling : tilings) {
    const M dirty = Exact<T>(tiling)(q, k, v, opt);
    ASSERT_TRUE(dirty.allFinite());
    // Same arithmetic on the same visible keys (padded slots are packed as zeros): within rounding
    // of a different tiling, and bit-identical for the same one.
    EXPECT_LE((dirty - clean).cwiseAbs().maxCoeff(), 4 * Tolerance<T>::rel);
  }
  EXPECT_TRUE((Exact<T>()(q, k, v, opt).array() == clean.array()).all());
}

TYPED_TEST(ExactKernelTest, StridedViewsAndUnalignedPointersGiveIdenticalResults) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  using Map = Eigen::Map<const M, Eigen::Unaligned, Eigen::OuterStride<>>;
  using OutMap = Eigen::Map<M, Eigen::Unaligned, Eigen::OuterStride<>>;
  // The kernel copies q, k and v into its own layout, so the views they come from (heads of a
  // [B, N, H, D] tensor, a buffer offset by one element) cannot change the arithmetic: the result
  // must be bit-identical to the one from compact, aligned copies.
  const Index nq = 53, nk = 71, d = 24, dv = 20, heads = 3;
  const M q = random_matrix<T>(nq, d, 1), k = random_matrix<T>(nk, d, 2);
  const M v = random_matrix<T>(nk, dv, 3);
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = random_mask(nk, 0.2, 4);
  opt.alibi_slope = 0.1;
  const M bias = random_matrix<T>(nq, nk, 5);
  M expected(nq, dv);
  Vector<T> expected_lse(nq);
  const Exact<T> exact;
  exact.forward(q, k, v, expected, opt, bias, expected_lse);

  // [N, H, D] interleaved heads plus one leading element, so every row is misaligned.
  std::vector<T> qb(1 + size_t(nq * heads * d)), kb(1 + size_t(nk * heads * d)),
      vb(1 + size_t(nk * heads * dv)), ob(1 + size_t(nq * heads * dv), T(-7)),
      bb(1 + size_t(nq * (nk + 3)));
  const Index h = 1;  // the middle head
  for (Index i = 0; i < nq; ++i)
    for (Index c = 0; c < d; ++c) qb[size_t(1 + (i * heads + h) * d + c)] = q(i, c);
  for (Index j = 0; j < nk; ++j) {
    for (Index c = 0; c < d; ++c) kb[size_t(1 + (j * heads + h) * d + c)] = k(j, c);
    for (Index c = 0; c < dv; ++c) vb[size_t(1 + (j * heads + h) * dv + c)] = v(j, c);
  }
  for (Index i = 0; i < nq; ++i)
    for (Index j = 0; j < nk; ++j) bb[size_t(1 + i * (nk + 3) + j)] = bias(i, j);
  const Map qm(qb.data() + 1 + h * d, nq, d, Eigen::OuterStride<>(heads * d));
  const Map km(kb.data() + 1 + h * d, nk, d, Eigen::OuterStride<>(heads * d));
  const Map vm(vb.data() + 1 + h * dv, nk, dv, Eigen::OuterStride<>(heads * dv));
  const Map bm(bb.data() + 1, nq, nk, Eigen::OuterStride<>(nk + 3));
  OutMap om(ob.data() + 1 + h * dv, nq, dv, Eigen::OuterStride<>(heads * dv));
  Vector<T> lse(nq);
  exact.forward(qm, km, vm, om, opt, bm, lse);
  EXPECT_TRUE((M(om).array() == expected.array()).all());
  EXPECT_TRUE((lse.array() == expected_lse.array()).all());
  // Nothing written outside this head's output rows.
  for (Index i = 0; i < nq; ++i) {
    for (Index hh = 0; hh < heads; ++hh) {
      if (hh == h) continue;
      for (Index c = 0; c < dv; ++c) {
        ASSERT_EQ(ob[size_t(1 + (i * heads + hh) * dv + c)], T(-7));
      }
    }
  }
  EXPECT_EQ(ob[0], T(-7));
}

TYPED_TEST(ExactKernelTest, EmptyRowsAreZeroWithMinusInfinityLse) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const M q = random_matrix<T>(70, 8, 1), k = random_matrix<T>(40, 8, 2);
  const M v = random_matrix<T>(40, 3, 3);
  AttentionOptions opt;
  opt.causal = true;  // Nq > Nk: the first 30 rows see no key
  for (const ExactOptions& tiling : tilings) {
    this->check(q, k, v, opt, M(), tiling);
  }
  opt.causal = false;
  opt.key_padding = KeyMask::Constant(40, true);  // every key padded
  for (const ExactOptions& tiling : tilings) {
    this->check(q, k, v, opt, M(), tiling);
  }
}

// ---- decoding ----------------------------------------------------------------------------------

TYPED_TEST(ExactKernelTest, DecodingEqualsTheCausalReference) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // Token by token and in uneven prefill chunks, with padded tokens (their values non-finite),
  // ALiBi and a scale: the cache crosses several key panels and grows several times.
  for (Index d : {1, 7, 64}) {
    const Index n = 203, dv = d == 64 ? 64 : 9;
    const M q = random_matrix<T>(n, d, 1), k = random_matrix<T>(n, d, 2);
    M v = random_matrix<T>(n, dv, 3);
    AttentionOptions opt;
    opt.causal = true;
    opt.scale = 0.4;
    opt.alibi_slope = 0.05;
    opt.key_padding = random_mask(n, 0.15, 4);
    opt.key_padding[0] = true;  // the first query sees nothing
    const ref::ExactSpec spec{opt.scale, true, opt.key_padding, {}, opt.alibi_slope};
    const RowMatrix<double> ref = ref::exact_attention(
        q.template cast<double>(), k.template cast<double>(), v.template cast<double>(), spec);
    for (Index j = 0; j < n; ++j)
      if (opt.key_padding[j]) v(j, 0) = std::numeric_limits<T>::quiet_NaN();

    AttentionOptions state_opt;
    state_opt.scale = opt.scale;
    state_opt.alibi_slope = opt.alibi_slope;
    const Exact<T> exact;
    for (Index chunk : {1, 5, 64}) {
      SCOPED_TRACE(testing::Message() << "D " << d << " chunk " << chunk);
      auto state = exact.make_state(dv, state_opt);
      M out(n, dv);
      for (Index t = 0; t < n;) {
        // A prefill chunk shares one padding flag: cut it where the flag changes.
        Index len = 1;
        while (len < chunk && t + len < n && opt.key_padding[t + len] == opt.key_padding[t]) ++len;
        exact.step(state, q.middleRows(t, len), k.middleRows(t, len), v.middleRows(t, len),
                   out.middleRows(t, len), opt.key_padding[t]);
        t += len;
      }
      ASSERT_TRUE(out.allFinite());
      const double bound = Tolerance<T>::abs + Tolerance<T>::rel * ref.cwiseAbs().maxCoeff();
      EXPECT_LE((out.template cast<double>() - ref).cwiseAbs().maxCoeff(), bound);
      EXPECT_TRUE(out.row(0).isZero(0));
    }
  }
}

TYPED_TEST(ExactKernelTest, DecodingAfterTruncateMatchesAFreshCache) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // Rolling back into the middle of a key panel (and to a panel boundary) and stepping on must
  // give exactly what a cache that never held the dropped tokens gives.
  const Index n = 90, d = 12, dv = 5;
  const M q = random_matrix<T>(n, d, 1), k = random_matrix<T>(n, d, 2),
          v = random_matrix<T>(n, dv, 3);
  const M k2 = random_matrix<T>(n, d, 4), v2 = random_matrix<T>(n, dv, 5);
  const Exact<T> exact;
  for (Index keep : {Index(0), Index(1), Index(16), Index(37), Index(64)}) {
    auto fresh = exact.make_state(dv), rolled = exact.make_state(dv);
    M a(1, dv), b(1, dv);
    for (Index t = 0; t < n; ++t) exact.step(rolled, q.row(t), k2.row(t), v2.row(t), a);
    rolled.truncate(keep);
    for (Index t = 0; t < keep; ++t) {
      exact.step(fresh, q.row(t), k2.row(t), v2.row(t), a);
    }
    for (Index t = keep; t < n; ++t) {
      const bool padded = t % 5 == 0;
      exact.step(fresh, q.row(t), k.row(t), v.row(t), a, padded);
      exact.step(rolled, q.row(t), k.row(t), v.row(t), b, padded);
      ASSERT_TRUE((a.array() == b.array()).all()) << "keep " << keep << " t " << t;
    }
  }
}

TYPED_TEST(ExactKernelTest, DecodingStepsDoNotAllocateOnceReserved) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  const Index n = 300, d = 32, dv = 24;
  const M q = random_matrix<T>(n, d, 1), k = random_matrix<T>(n, d, 2),
          v = random_matrix<T>(n, dv, 3);
  const Exact<T> exact;
  auto state = exact.make_state(dv, AttentionOptions{}, n);
  M out(1, dv);
  exact.step(state, q.topRows(1), k.topRows(1), v.topRows(1), out);  // the first step learns D
  Eigen::internal::set_is_malloc_allowed(false);
  for (Index t = 1; t < n; ++t)
    exact.step(state, q.middleRows(t, 1), k.middleRows(t, 1), v.middleRows(t, 1), out, t % 7 == 0);
  Eigen::internal::set_is_malloc_allowed(true);
  EXPECT_EQ(state.size(), n);
}

// ---- the pieces --------------------------------------------------------------------------------

TYPED_TEST(ExactKernelTest, Exp2IsAccurateAndExactlyZeroBelowTheRange) {
  using T = TypeParam;
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr int lanes = packet_traits<T>::size;
  using C = detail::Exp2Constants<T>;
  // Relative error against exp2 in long double over the range the kernels use (weights up to
  // 2^8 above the reference, down to the underflow cut): the polynomial is within 7.5e-8 (float)
  // or 3e-18 (double) of 2^f and the evaluation adds a few roundings, so 4 ulp bounds it.
  const double ulp = std::numeric_limits<T>::epsilon();
  double worst = 0;
  const int steps = 20000;
  for (int s = 0; s <= steps; ++s) {
    const T x = static_cast<T>(double(C::kLowest) + 1 + (8 - double(C::kLowest) - 1) * s / steps);
    T in[lanes], res[lanes];
    for (int l = 0; l < lanes; ++l) in[l] = x;
    pstoreu(res, detail::pexp2<T>(ploadu<Packet>(in)));
    const long double want = std::exp2(static_cast<long double>(x));
    worst = std::max(worst, double(std::abs((static_cast<long double>(res[0]) - want) / want)));
  }
  EXPECT_LE(worst, 4 * ulp);
  // Below the range of normal results: 0 on the portable path, which flushes them, and 0 or a
  // denormal (never more) where AVX-512's vscalef underflows gradually; below half the smallest
  // denormal and at -inf exactly 0 on both (a masked key gets weight exactly 0).
  const T half_smallest_denormal_exponent =
      T(std::numeric_limits<T>::min_exponent - std::numeric_limits<T>::digits - 1);  // -150
  auto pexp2_of = [&](T x) {
    T in[lanes], res[lanes];
    for (int l = 0; l < lanes; ++l) in[l] = x;
    pstoreu(res, detail::pexp2<T>(ploadu<Packet>(in)));
    for (int l = 1; l < lanes; ++l) EXPECT_EQ(res[l], res[0]) << "x = " << x << " lane " << l;
    return res[0];
  };
  for (T x : {T(C::kLowest), T(C::kLowest) - T(0.25), half_smallest_denormal_exponent + T(2)}) {
    const T res = pexp2_of(x);
    if (detail::kExp2UnderflowsGradually<T>) {
      EXPECT_TRUE(res >= 0 && res < std::numeric_limits<T>::min()) << "x = " << x << ": " << res;
    } else {
      EXPECT_EQ(res, T(0)) << "x = " << x;
    }
  }
  for (T x : {half_smallest_denormal_exponent - T(1), T(-1e6), -std::numeric_limits<T>::infinity()})
    EXPECT_EQ(pexp2_of(x), T(0)) << "x = " << x;
}

TYPED_TEST(ExactKernelTest, PackedLayoutHoldsEveryKeyAndValue) {
  using T = TypeParam;
  using M = RowMatrix<T>;
  // Packing, packing in steps (start_pack, then panel ranges, as the kernel asks for them) and
  // appending store each key and value where the layout says (checked element by element through
  // the storage's unpacking accessors), padded keys and the slots past Nk as 0. Without padding,
  // whole panels take the transposing fast path: D off and on the packet grid, keys read through
  // a strided view, packed into storage that held other data before.
  for (bool padded : {true, false})
    for (Index d : {9, 64, 100})
      for (Index dv : {1, 5, 16, 33}) {
        SCOPED_TRACE(testing::Message() << "D " << d << " Dv " << dv << (padded ? " padded" : ""));
        const Index nk = 77;
        const M wide_k = random_matrix<T>(nk, 3 * d, 1), v = random_matrix<T>(nk, dv, 2);
        const ConstMatRef<T> k = wide_k.middleCols(d, d);
        const KeyMask pad = padded ? random_mask(nk, 0.3, 3) : KeyMask();
        detail::PackedKvStorage<T> packed, stepped, appended;
        const Index panels = detail::key_panels<T>(nk);
        for (auto* s : {&packed, &stepped}) {
          s->set_dims(d, dv);
          s->pack(random_matrix<T>(nk, d, 4), random_matrix<T>(nk, dv, 5), KeyMask(),
                  Vector<T>());  // stale content
          s->set_dims(d, dv);
        }
        packed.pack(k, v, pad, Vector<T>());
        stepped.start_pack(nk, pad, Vector<T>());
        for (Index first = 0, step = 1; first < panels; first += step, ++step)  // 1, 2, 3 panels
          stepped.pack_panels(k, ConstMatRef<T>(v), pad, Vector<T>(), first,
                              std::min(panels, first + step));
        appended.set_dims(d, dv);
        appended.reserve(nk);
        for (Index j = 0; j < nk; ++j)
          appended.append(k.row(j).data(), v.row(j).data(), padded && pad[j]);
        const Index slots = panels * detail::RegisterTile<T>::kCols;
        for (const auto* s : {&packed, &stepped, &appended}) {
          ASSERT_EQ(s->size(), nk);
          for (Index j = 0; j < slots; ++j) {
            const bool present = j < nk && !(padded && pad[j]);
            for (Index c = 0; c < d; ++c) ASSERT_EQ(s->key(j, c), present ? k(j, c) : T(0));
            for (Index c = 0; c < detail::packet_padded<T>(dv); ++c)
              ASSERT_EQ(s->value(j, c), present && c < dv ? v(j, c) : T(0)) << j << " " << c;
          }
          const auto view = s->view();
          if (!padded && s != &appended) {
            EXPECT_EQ(view.key_add, nullptr);  // nothing to mask: no key row
            continue;
          }
          ASSERT_NE(view.key_add, nullptr);
          for (Index j = 0; j < nk; ++j)
            EXPECT_EQ(view.key_add[j],
                      padded && pad[j] ? -std::numeric_limits<T>::infinity() : T(0));
        }
      }
}

}  // namespace
}  // namespace fastattn
