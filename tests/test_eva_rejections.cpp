// Tests of eva.hpp's argument checks: every rejection of the constructor (options, params), of
// forward (shapes, options, geometries outside the reference domain, non-aligned Disjoint
// geometries, a local bias of the wrong variant) and of decoding, each with its message.

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

#include "eva_test_support.hpp"
#include "fastattn/eva.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::EvaTest;
using test::random_matrix;
using test::random_projection;

TYPED_TEST_SUITE(EvaTest, test::EvaTypes);

// Expects `fn` to throw std::invalid_argument whose message contains every fragment.
template <class Fn>
void expect_rejected(Fn&& fn, std::initializer_list<const char*> fragments) {
  const std::string msg = test::invalid_argument_message(fn);
  ASSERT_FALSE(msg.empty()) << "did not throw; expected: " << *fragments.begin();
  for (const char* f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
}

EvaOptions basic_options() {
  EvaOptions o;
  o.window = 4;
  o.chunk_size = 2;
  return o;
}

TYPED_TEST(EvaTest, ConstructorRejectsBadOptions) {
  using T = TypeParam;
  auto make = [](EvaOptions o, Index d = 4) { return [o, d] { Eva<T>(d, o); }; };
  EvaOptions o = basic_options();
  expect_rejected(make(o, 0), {"head_dim must be at least 1"});
  o.window = 0;
  expect_rejected(make(o), {"options.window must be at least 1, got 0"});
  o = basic_options();
  o.ext = -1;
  expect_rejected(make(o), {"options.ext must be >= 0, got -1"});
  o = basic_options();
  o.num_chunks = 3;
  expect_rejected(make(o), {"exactly one of options.num_chunks and options.chunk_size",
                            "num_chunks = 3, chunk_size = 2"});
  o.num_chunks = o.chunk_size = 0;
  expect_rejected(make(o), {"exactly one of", "num_chunks = 0, chunk_size = 0"});
  o = basic_options();
  o.chunk_size = -2;
  expect_rejected(make(o), {"must be >= 0"});
  o = basic_options();
  o.mu_scale = std::nan("");
  expect_rejected(make(o), {"options.mu_scale must be finite"});
  o = basic_options();
  o.grid_height = 8;
  expect_rejected(make(o), {"grid_height and options.grid_width must both be > 0", "8 x 0"});
  o.grid_width = 6;
  expect_rejected(make(o), {"8 x 6", "divisible by options.window = 4"});
  o.grid_width = -4;
  expect_rejected(make(o), {"must be >= 0"});
}

TYPED_TEST(EvaTest, ConstructorRejectsBadParams) {
  using T = TypeParam;
  const EvaOptions o = basic_options();  // W = 4, e = 0
  auto with = [&](EvaParams<T> p) { return [o, p] { Eva<T>(4, o, p); }; };
  EvaParams<T> p;
  p.mu_q = random_projection<T>(4, false, 1);
  p.mu_q->weight = RowMatrix<T>::Zero(4, 3);
  expect_rejected(with(p), {"params.mu_q.weight [4, 3] must be [D, D] = [4, 4]"});
  p = {};
  p.mu_k = random_projection<T>(4, false, 1);
  p.mu_k->bias = Vector<T>::Zero(5);
  expect_rejected(with(p), {"params.mu_k.bias has size 5", "D = 4"});
  p = {};
  p.mu_k = random_projection<T>(4, true, 1);
  p.mu_k->ln_beta = Vector<T>();
  expect_rejected(with(p), {"params.mu_k.ln_gamma (size 4)", "ln_beta (size 0)"});
  p = {};
  p.local_bias = RowMatrix<T>::Zero(4, 5);
  expect_rejected(with(p), {"params.local_bias [4, 5] must be [W, S_w] = [4, 4]"});
  EvaOptions o2 = o;
  o2.grid_height = o2.grid_width = 8;
  o2.ext = 1;
  p.local_bias = RowMatrix<T>::Zero(16, 25);
  expect_rejected([&] { Eva<T>(4, o2, p); }, {"[16, 25] must be [W^2, (W + 2e)^2] = [16, 36]"});
}

template <class T>
std::string forward_message(const Eva<T>& eva, Index n, const AttentionOptions& opt = {},
                            Index nk = -1, Index d = -1) {
  const Index dd = d < 0 ? eva.head_dim() : d;
  const RowMatrix<T> q = random_matrix<T>(n, dd, 1), k = random_matrix<T>(nk < 0 ? n : nk, dd, 2);
  const RowMatrix<T> v = random_matrix<T>(k.rows(), 3, 3);
  RowMatrix<T> out(n, 3);
  return test::invalid_argument_message([&] { eva.forward(q, k, v, out, opt); });
}

#define EXPECT_MESSAGE(msg, fragment) \
  EXPECT_NE((msg).find(fragment), std::string::npos) << "message: " << (msg)

TYPED_TEST(EvaTest, ForwardRejectsBadCalls) {
  using T = TypeParam;
  const Eva<T> eva(4, basic_options());
  {  // v with the wrong number of rows
    const RowMatrix<T> q = random_matrix<T>(8, 4, 1), v = random_matrix<T>(9, 3, 3);
    RowMatrix<T> out(8, 3);
    EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.forward(q, q, v, out); }),
                   "Eva::forward: v [9, 3] must have Nk = 8");
  }
  EXPECT_MESSAGE(forward_message(eva, 8, {}, -1, 5),
                 "has D = 5 but this Eva was built for head_dim = 4");
  {  // Nq != Nk with consistent k, v
    const RowMatrix<T> q = random_matrix<T>(8, 4, 1), k = random_matrix<T>(10, 4, 2);
    const RowMatrix<T> v = random_matrix<T>(10, 3, 3);
    RowMatrix<T> out(8, 3);
    EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.forward(q, k, v, out); }),
                   "EVA is self-attention: q [8, 4] and k [10, 4] must have Nq = Nk");
  }
  AttentionOptions alibi;
  alibi.alibi_slope = 0.5;
  EXPECT_MESSAGE(forward_message(eva, 8, alibi), "alibi_slope = 0.5 is not supported");
  AttentionOptions bad_mask;
  bad_mask.key_padding = KeyMask::Constant(7, false);
  EXPECT_MESSAGE(forward_message(eva, 8, bad_mask), "key_padding has length 7");
}

TYPED_TEST(EvaTest, ForwardRejectsConfigurationsOutsideTheReferenceDomain) {
  using T = TypeParam;
  AttentionOptions causal;
  causal.causal = true;
  EvaOptions o;
  o.window = 8;
  o.num_chunks = 5;  // n = 64: L = 12, 64 % 12 != 0 (the official code drops the tail)
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64),
                 "n_p = 64 to be a multiple of the chunk length L = 12");
  o.num_chunks = 100;  // L = 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64),
                 "num_chunks = 100 exceeds the padded length n_p = 64");
  o.num_chunks = 1;  // causal, L = n_p
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64, causal),
                 "L = 64 below the padded length n_p = 64");
  o.num_chunks = 0;
  o.chunk_size = 16;  // causal chunk_size > W
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64, causal),
                 "chunk_size <= window and window % chunk_size == 0");
  o.chunk_size = 3;  // causal W % L != 0 (n_p = 24 is a multiple of 3)
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 24, causal), "options.chunk_size = 3 needs");
  o.chunk_size = 3;  // non-causal n_p % L != 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 60),
                 "n_p = 64 to be a multiple of the chunk length L = 3");
  EvaOptions g;  // 2-D
  g.window = 2;
  g.grid_height = 6;
  g.grid_width = 4;
  g.chunk_size = 4;
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 24),
                 "grid 6 x 4 divisible by the chunk side L2 = 4");
  g.chunk_size = 0;
  g.num_chunks = 3;  // isqrt(24 / 3) = 2: fine; grid has 24 tokens, input 20
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 20),
                 "grid 6 x 4 holds 24 tokens but the input has n = 20");
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 24, causal), "the 2-D mode");
  g.num_chunks = 30;  // floor(24 / 30) = 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 24), "chunk side floor(sqrt(floor(n / C))) = 0");
}

TYPED_TEST(EvaTest, ForwardRejectsNonAlignedDisjointGeometries) {
  using T = TypeParam;
  AttentionOptions causal;
  causal.causal = true;
  EvaOptions o;
  o.semantics = EvaSemantics::Disjoint;
  o.window = 6;
  o.chunk_size = 4;  // window 1 spans [0, 12) non-causal with e = 0... [6, 12): 6 % 4 != 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 24),
                 "Disjoint semantics needs every window's key range to start and end on chunk "
                 "boundaries, but window 0 spans [0, 6) and the chunk length is 4");
  o.window = 4;
  o.ext = 2;  // L | W but not L | e
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 24, causal), "window 1 spans [2, 8)");
  EvaOptions g = o;
  g.ext = 1;
  g.grid_height = g.grid_width = 8;
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 64), "(grid rows)");
  // The same settings are fine when one window covers the sequence.
  EXPECT_EQ(forward_message(Eva<T>(4, o), 4, causal), "");
}

TYPED_TEST(EvaTest, ForwardRejectsLocalBiasOfTheWrongVariant) {
  using T = TypeParam;
  EvaOptions o = basic_options();
  o.ext = 2;
  EvaParams<T> p;
  p.local_bias = RowMatrix<T>::Zero(4, 8);  // [W, W + 2e]: non-causal only
  const Eva<T> eva(4, o, p);
  AttentionOptions causal;
  causal.causal = true;
  EXPECT_EQ(forward_message(eva, 16), "");
  EXPECT_MESSAGE(forward_message(eva, 16, causal),
                 "params.local_bias [4, 8] must be [4, 6] for a causal call");
}

TYPED_TEST(EvaTest, DecodingRejectsBadUse) {
  using T = TypeParam;
  EvaOptions nc = basic_options();
  nc.chunk_size = 0;
  nc.num_chunks = 4;
  const Eva<T> by_count(4, nc);
  EXPECT_MESSAGE(
      test::invalid_argument_message([&] { by_count.make_state(3); }),
      "options.num_chunks = 4 derives the chunk length from the sequence length; pass "
      "EvaSequenceLength{n}");
  AttentionOptions opt;
  auto state = by_count.make_state(3, opt, EvaSequenceLength{16});  // L = 4
  const RowMatrix<T> x = random_matrix<T>(1, 4, 1), y = random_matrix<T>(1, 3, 2);
  RowMatrix<T> out(1, 3);
  for (int t = 0; t < 16; ++t) by_count.step(state, x, x, y, out);
  EXPECT_MESSAGE(test::invalid_argument_message([&] { by_count.step(state, x, x, y, out); }),
                 "made for a sequence of 16 tokens");
  EvaOptions one = nc;
  one.num_chunks = 1;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { Eva<T>(4, one).make_state(3, opt, EvaSequenceLength{3}); }),
                 "Eva::make_state: causal Reference needs the chunk length L = 4 below the padded "
                 "length n_p = 4");

  const Eva<T> eva(4, basic_options());
  auto s = eva.make_state(3);
  RowMatrix<T> wide(1, 5);
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.step(s, x, x, y, wide); }),
                 "v_t [1, 3] and out_t [1, 5] must be [1, Dv] = [1, 3]");
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.step(s, y, x, y, out); }),
                 "q_t [1, 3] and k_t [1, 4] must be [1, D] = [1, 4]");
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.step(state, x, x, y, out); }),
                 "the state was not made by an Eva with these options");
  AttentionOptions padded;
  padded.key_padding = KeyMask::Constant(3, false);
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.make_state(3, padded); }),
                 "opt.key_padding must be empty");
  AttentionOptions alibi;
  alibi.alibi_slope = 1;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.make_state(3, alibi); }),
                 "alibi_slope = 1 is not supported");
  EvaOptions g = basic_options();
  g.grid_height = g.grid_width = 8;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { Eva<T>(4, g).make_state(3); }),
                 "the 2-D mode");
  EvaOptions dj = basic_options();
  dj.semantics = EvaSemantics::Disjoint;
  dj.ext = 3;
  EXPECT_MESSAGE(
      test::invalid_argument_message([&] { Eva<T>(4, dj).make_state(3); }),
      "unbounded Disjoint decoding needs options.chunk_size = 2 to divide window (4) and ext (3)");
  EvaOptions big = basic_options();
  big.chunk_size = 8;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { Eva<T>(4, big).make_state(3); }),
                 "chunk_size <= window");
}

}  // namespace
}  // namespace fastattn
