// Tests of eva.hpp against the independent double reference (tests/reference/eva.hpp, spec §5.2
// and §5.3 literally, one query at a time) on random configurations of both semantics (1-D and
// 2-D, causal, padded, ragged, with projections and local bias), the explicit scale, and the
// Disjoint single window against exact attention.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "eva_test_support.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/metrics.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::Config;
using test::DataRng;
using test::EvaTest;
using test::kParityTol;
using test::random_matrix;
using test::unpadded_rows;

TYPED_TEST_SUITE(EvaTest, test::EvaTypes);

// ---- 1. Both semantics against the independent reference ----------------------------------------

/// Eva for configuration c on instance x with logit scale `scale` (0: the default) against the
/// reference: the largest |difference| over the rows in keep (every row when keep is empty). Every
/// output row must be finite, don't-care rows included.
template <class T>
double reference_error(const Config& c, const test::Instance<T>& x, const std::vector<bool>& keep,
                       double scale = 0) {
  AttentionOptions opt = test::attention_options(c);
  opt.scale = scale;
  const RowMatrix<T> out = Eva<T>(c.d, c.o, x.params)(x.q, x.k, x.v, opt);
  EXPECT_TRUE(test::all_finite(out));
  return test::max_abs_rows(out, test::reference_of(c, x, scale), keep);
}

TYPED_TEST(EvaTest, DisjointMatchesIndependentReferenceOnRandomConfigurations) {
  using T = TypeParam;
  DataRng rng(2024);
  int two_d = 0, causal = 0, padded = 0, ragged = 0;
  for (int trial = 0; trial < 160; ++trial) {
    Config c = test::random_disjoint(rng);
    const test::Instance<T> x = test::random_instance<T>(rng, c, 1000 + 17 * trial, true);
    SCOPED_TRACE(c.describe());
    EXPECT_LE(reference_error(c, x, {}), kParityTol<T>);
    two_d += c.o.grid_height > 0;
    causal += c.causal;
    padded += c.pad.size() != 0 && c.pad.any();
    ragged += c.o.grid_height == 0 && c.n % c.o.window != 0;
  }
  // The generator must have covered each kind of configuration.
  EXPECT_GT(two_d, 10);
  EXPECT_GT(causal, 30);
  EXPECT_GT(padded, 50);
  EXPECT_GT(ragged, 30);
}

TYPED_TEST(EvaTest, ReferenceMatchesIndependentReferenceOnRandomConfigurations) {
  // Beyond the five official cases: 2-D, num_chunks in causal mode (L > W), mu_scale, Dv != D,
  // local bias, ragged n. Padded-query rows are don't-care (§5.2) and skipped.
  using T = TypeParam;
  DataRng rng(77);
  for (int trial = 0; trial < 160; ++trial) {
    Config c = test::random_reference(rng);
    const test::Instance<T> x = test::random_instance<T>(rng, c, 5000 + 13 * trial, true);
    SCOPED_TRACE(c.describe());
    EXPECT_LE(reference_error(c, x, unpadded_rows(c.pad, c.n)), kParityTol<T>);
  }
}

TYPED_TEST(EvaTest, ExplicitScaleIsUsedInAllThreePlaces) {
  // s enters the local logits, the chunk logits and the proposal log-weights (§3.1).
  using T = TypeParam;
  DataRng rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    Config c = trial % 2 ? test::random_reference(rng) : test::random_disjoint(rng);
    const test::Instance<T> x = test::random_instance<T>(rng, c, 300 + trial, false);
    SCOPED_TRACE(c.describe());
    EXPECT_LE(reference_error(c, x, unpadded_rows(c.pad, c.n), 0.37), kParityTol<T>);
  }
}

// ---- 2. Disjoint with one window is exact attention
// ----------------------------------------------

TYPED_TEST(EvaTest, DisjointWithOneWindowEqualsExactAttention) {
  using T = TypeParam;
  DataRng rng(9);
  const Exact<T> exact;
  for (int trial = 0; trial < 40; ++trial) {
    EvaOptions o;
    o.semantics = EvaSemantics::Disjoint;
    AttentionOptions opt;
    Index n;
    if (trial % 4 == 3) {  // 2-D: W = H_g = W_g
      o.window = o.grid_height = o.grid_width = 1 + rng.index(7);
      n = o.window * o.window;
      o.num_chunks = 1 + rng.index(n);
    } else {  // 1-D: W >= n, chunk settings that would not be aligned with several windows
      n = 1 + rng.index(60);
      o.window = n + rng.index(5);
      opt.causal = trial % 2 == 1;
      o.chunk_size = 1 + rng.index(n + 3);
    }
    o.ext = rng.index(4);
    const Index d = 1 + rng.index(8), dv = 1 + rng.index(6);
    opt.key_padding = test::random_padding(rng, n);
    if (trial % 5 == 0) opt.scale = 0.8;
    const RowMatrix<T> q = random_matrix<T>(n, d, 10 * trial + 1, 1.5);
    const RowMatrix<T> k = random_matrix<T>(n, d, 10 * trial + 2, 1.5);
    const RowMatrix<T> v = random_matrix<T>(n, dv, 10 * trial + 3);
    EvaParams<T> params;
    params.mu_k =
        test::random_projection<T>(d, true, 10 * trial + 4);  // irrelevant: no chunk is used
    const Eva<T> eva(d, o, params);
    SCOPED_TRACE(testing::Message() << "n " << n << " W " << o.window << " 2-D "
                                    << (o.grid_height > 0) << " causal " << opt.causal);
    const RowMatrix<T> out = eva(q, k, v, opt);
    EXPECT_TRUE(test::near(out, exact(q, k, v, opt), test::Tol<T>::rel, test::Tol<T>::abs));
  }
}

TYPED_TEST(EvaTest, ReferenceWithOneWindowIsNotExactAttention) {
  // The contrast to the test above (§5.3 property 2): Reference double-counts every chunk.
  using T = TypeParam;
  EvaOptions o;
  o.window = 64;
  o.num_chunks = 4;
  const RowMatrix<T> q = random_matrix<T>(64, 8, 1), k = random_matrix<T>(64, 8, 2);
  const RowMatrix<T> v = random_matrix<T>(64, 8, 3);
  const double err = relative_error<T>(Eva<T>(8, o)(q, k, v), Exact<T>()(q, k, v));
  EXPECT_GT(err, 1e-3);
}

}  // namespace
}  // namespace fastattn
