// Tests of multihead.hpp: layouts and strided views equal a per-head loop for every method, GQA/MQA
// equal explicit head repetition, key lengths equal per-batch masks, results are bitwise identical
// for any thread count (OpenMP and a caller-supplied parallel_for), batched decoding, bad views.

#include "fastattn/multihead.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/rfa.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::random_matrix;

/// A [B, N, H, D] tensor stored inside a bigger buffer (padding between rows, heads and batch
/// elements), so views have non-trivial strides.
template <class T>
struct Tensor {
  Index b, n, h, d;
  Index pad = 3;
  std::vector<T> buffer;
  Tensor(Index b_, Index n_, Index h_, Index d_, std::uint64_t seed)
      : b(b_), n(n_), h(h_), d(d_), buffer(size_t(b_ * n_ * h_ * (d_ + 3) + 7)) {
    test::DataRng rng(seed);
    for (auto& x : buffer) x = T(rng.normal());
  }
  // Strided view: head stride d + pad, seq stride h (d + pad), batch stride n h (d + pad) + 1.
  TensorView<T> view() {
    const Index sh = d + pad, sn = h * sh, sb = n * sn + 1;
    return TensorView<T>{buffer.data() + 2, b, n, h, d, sb, sn, sh, 1};
  }
};

/// Reference: a plain per-head loop calling method.forward with per-batch masks.
template <class Method, class T>
void per_head(const Method& method, TensorView<const T> q, TensorView<const T> k,
              TensorView<const T> v, std::vector<RowMatrix<T>>& outs, bool causal,
              const std::vector<Index>& lengths) {
  const Index group = q.heads / k.heads;
  outs.clear();
  for (Index b = 0; b < q.batch; ++b)
    for (Index h = 0; h < q.heads; ++h) {
      AttentionOptions o;
      o.causal = causal;
      if (!lengths.empty()) {
        o.key_padding = KeyMask::Constant(k.seq, false);
        o.key_padding.tail(k.seq - lengths[size_t(b)]).setConstant(true);
      }
      // Copies: the reference does not rely on strided views.
      const RowMatrix<T> qh = q.head(b, h), kh = k.head(b, h / group), vh = v.head(b, h / group);
      outs.push_back(method(qh, kh, vh, o));
    }
}

template <class T>
::testing::AssertionResult bitwise_equal(TensorView<const T> out,
                                         const std::vector<RowMatrix<T>>& expected) {
  for (Index b = 0; b < out.batch; ++b)
    for (Index h = 0; h < out.heads; ++h) {
      const RowMatrix<T>& e = expected[size_t(b * out.heads + h)];
      const RowMatrix<T> got = out.head(b, h);
      if (!(got.array() == e.array()).all())
        return ::testing::AssertionFailure()
               << "head (" << b << ", " << h << ") differs by " << (got - e).cwiseAbs().maxCoeff();
    }
  return ::testing::AssertionSuccess();
}

template <class T>
class MultiheadTest : public ::testing::Test {
 protected:
  // One object of each method with head dimension d.
  static Exact<T> exact() { return Exact<T>(); }
  static Favor<T> favor(Index d) {
    FavorOptions fo;
    fo.num_features = 32;
    fo.chunk_size = 8;
    return Favor<T>(d, fo);
  }
  static Rfa<T> rfa(Index d) {
    RfaOptions ro;
    ro.num_features = 16;
    return Rfa<T>(d, ro);
  }
  static Eva<T> eva(Index d) {
    EvaOptions eo;
    eo.window = 4;
    eo.chunk_size = 4;
    return Eva<T>(d, eo);
  }

  // Runs multihead and the per-head loop on the same strided tensors; both must agree bit for bit
  // (each head is computed by the same code; the strided map is read in place).
  template <class Method>
  void check_equals_per_head(const Method& method, Index hq, Index hkv, bool causal,
                             std::vector<Index> lengths, int threads) {
    const Index b = 2, n = 12, d = 8, dv = 6;
    Tensor<T> q(b, n, hq, d, 1), k(b, n, hkv, d, 2), v(b, n, hkv, dv, 3), out(b, n, hq, dv, 4);
    MultiheadOptions opt;
    opt.causal = causal;
    opt.key_lengths = lengths;
    opt.threads = threads;
    multihead(method, q.view(), k.view(), v.view(), out.view(), opt);
    std::vector<RowMatrix<T>> expected;
    per_head<Method, T>(method, q.view(), k.view(), v.view(), expected, causal, lengths);
    EXPECT_TRUE(bitwise_equal<T>(out.view(), expected))
        << "Hq " << hq << " Hkv " << hkv << " causal " << causal << " threads " << threads;
  }
};

using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(MultiheadTest, Types);

TYPED_TEST(MultiheadTest, StridedViewsEqualAPerHeadLoopForEveryMethod) {
  using T = TypeParam;
  for (int causal = 0; causal < 2; ++causal) {
    this->check_equals_per_head(this->exact(), 3, 3, causal, {}, 1);
    this->check_equals_per_head(this->favor(8), 3, 3, causal, {}, 1);
    this->check_equals_per_head(this->rfa(8), 3, 3, causal, {}, 1);
    this->check_equals_per_head(this->eva(8), 3, 3, causal, {}, 1);
  }
  (void)sizeof(T);
}

TYPED_TEST(MultiheadTest, BothLayoutsAgree) {
  using T = TypeParam;
  const Index b = 2, n = 10, h = 3, d = 8;
  std::vector<T> bnhd(size_t(b * n * h * d)), bhnd(bnhd.size()), out1(bnhd.size()),
      out2(bnhd.size());
  test::DataRng rng(5);
  for (auto& x : bnhd) x = T(rng.normal());
  for (Index bi = 0; bi < b; ++bi)  // the same tensor in [B, H, N, D] order
    for (Index ni = 0; ni < n; ++ni)
      for (Index hi = 0; hi < h; ++hi)
        for (Index di = 0; di < d; ++di)
          bhnd[size_t(((bi * h + hi) * n + ni) * d + di)] =
              bnhd[size_t(((bi * n + ni) * h + hi) * d + di)];
  const auto a = TensorView<T>::bnhd(bnhd.data(), b, n, h, d);
  const auto c = TensorView<T>::bhnd(bhnd.data(), b, h, n, d);
  MultiheadOptions opt;
  opt.causal = true;
  const Favor<T> favor = this->favor(d);
  multihead(favor, a, a, a, TensorView<T>::bnhd(out1.data(), b, n, h, d), opt);
  multihead(favor, c, c, c, TensorView<T>::bhnd(out2.data(), b, h, n, d), opt);
  for (Index bi = 0; bi < b; ++bi)
    for (Index hi = 0; hi < h; ++hi) {
      const RowMatrix<T> x = TensorView<T>::bnhd(out1.data(), b, n, h, d).head(bi, hi);
      const RowMatrix<T> y = TensorView<T>::bhnd(out2.data(), b, h, n, d).head(bi, hi);
      EXPECT_TRUE((x.array() == y.array()).all());
    }
}

TYPED_TEST(MultiheadTest, GroupedAndMultiQueryAttentionEqualHeadRepetition) {
  for (int causal = 0; causal < 2; ++causal)
    for (Index hkv : {2, 1}) {  // GQA (4 query heads on 2 kv heads) and MQA
      this->check_equals_per_head(this->exact(), 4, hkv, causal, {}, 1);
      this->check_equals_per_head(this->favor(8), 4, hkv, causal, {}, 1);
      this->check_equals_per_head(this->rfa(8), 4, hkv, causal, {}, 1);
      this->check_equals_per_head(this->eva(8), 4, hkv, causal, {}, 1);
    }
}

TYPED_TEST(MultiheadTest, KeyLengthsEqualPerBatchPaddingMasks) {
  for (int causal = 0; causal < 2; ++causal) {
    this->check_equals_per_head(this->exact(), 2, 2, causal, {12, 5}, 1);
    this->check_equals_per_head(this->favor(8), 4, 2, causal, {0, 9}, 1);
    this->check_equals_per_head(this->rfa(8), 2, 1, causal, {7, 12}, 1);
    this->check_equals_per_head(this->eva(8), 2, 2, causal, {3, 11}, 1);
  }
}

TYPED_TEST(MultiheadTest, ResultsAreBitwiseIdenticalForAnyThreadCount) {
  for (int threads : {1, 2, 4}) {
    this->check_equals_per_head(this->exact(), 4, 2, true, {10, 12}, threads);
    this->check_equals_per_head(this->favor(8), 4, 2, false, {}, threads);
    this->check_equals_per_head(this->rfa(8), 4, 4, true, {}, threads);
    this->check_equals_per_head(this->eva(8), 4, 4, false, {8, 12}, threads);
  }
}

TYPED_TEST(MultiheadTest, CallerSuppliedParallelForIsUsedAndDeterministic) {
  using T = TypeParam;
  const Index b = 2, n = 16, h = 4, d = 8;
  Tensor<T> q(b, n, h, d, 1), out1(b, n, h, d, 2), out2(b, n, h, d, 3);
  std::atomic<Index> calls{0};
  MultiheadOptions pooled;
  pooled.parallel_for = [&](Index count, const std::function<void(Index)>& task) {
    std::vector<std::thread> pool;  // one thread per task: crude, but concurrent
    for (Index i = 0; i < count; ++i) pool.emplace_back([&, i] { task(i), ++calls; });
    for (auto& t : pool) t.join();
  };
  const Exact<T> exact;
  multihead(exact, q.view(), q.view(), q.view(), out1.view(), pooled);
  EXPECT_EQ(calls.load(), b * h);
  MultiheadOptions serial;
  serial.threads = 1;
  multihead(exact, q.view(), q.view(), q.view(), out2.view(), serial);
  for (Index bi = 0; bi < b; ++bi)
    for (Index hi = 0; hi < h; ++hi) {
      const RowMatrix<T> x = out1.view().head(bi, hi), y = out2.view().head(bi, hi);
      EXPECT_TRUE((x.array() == y.array()).all());
    }
}

TYPED_TEST(MultiheadTest, PerHeadAlibiSlopes) {
  using T = TypeParam;
  const Index b = 1, n = 9, h = 4, d = 8;
  Tensor<T> q(b, n, h, d, 1), k(b, n, h, d, 2), out(b, n, h, d, 3);
  MultiheadOptions opt;
  opt.causal = true;
  opt.alibi_slopes = alibi_slopes(h);
  multihead(Exact<T>(), q.view(), k.view(), k.view(), out.view(), opt);
  for (Index hi = 0; hi < h; ++hi) {
    AttentionOptions o;
    o.causal = true;
    o.alibi_slope = opt.alibi_slopes[size_t(hi)];
    const RowMatrix<T> qh = q.view().head(0, hi), kh = k.view().head(0, hi);
    const RowMatrix<T> expected = Exact<T>()(qh, kh, kh, o), got = out.view().head(0, hi);
    EXPECT_TRUE((got.array() == expected.array()).all()) << "head " << hi;
  }
}

TYPED_TEST(MultiheadTest, BatchedDecodingEqualsTheCausalForward) {
  using T = TypeParam;
  const Index b = 2, n = 10, hq = 4, hkv = 2, d = 8;
  Tensor<T> q(b, n, hq, d, 1), k(b, n, hkv, d, 2), v(b, n, hkv, d, 3), out(b, n, hq, d, 4);
  const Favor<T> favor = this->favor(d);
  MultiheadOptions opt;
  opt.causal = true;
  multihead(favor, q.view(), k.view(), v.view(), out.view(), opt);
  BatchedDecoder<Favor<T>, T> decoder(favor, b, hq, hkv, d);
  std::vector<T> step_out(size_t(b * hq * d));
  for (Index t = 0; t < n; ++t) {
    auto slice = [t](TensorView<T> x) {  // token t of every batch element: seq = 1
      x.data += t * x.stride_seq;
      x.seq = 1;
      return x;
    };
    const auto out_t = TensorView<T>::bnhd(step_out.data(), b, 1, hq, d);
    MultiheadOptions threads;
    threads.threads = 2;
    decoder.step(slice(q.view()), slice(k.view()), slice(v.view()), out_t, {}, threads);
    for (Index bi = 0; bi < b; ++bi)
      for (Index hi = 0; hi < hq; ++hi) {
        const RowMatrix<T> got = out_t.head(bi, hi), expected = slice(out.view()).head(bi, hi);
        EXPECT_TRUE(test::near(got, expected, 1e-5, 1e-6)) << "t " << t;
      }
  }
  EXPECT_EQ(decoder.state(1, 3).tokens(), n);
}

TYPED_TEST(MultiheadTest, BadViewsThrowWithUsefulMessages) {
  using T = TypeParam;
  Tensor<T> q(1, 4, 3, 8, 1), k(1, 4, 2, 8, 2), out(1, 4, 3, 8, 3);
  const Exact<T> exact;
  auto message = [](auto&& fn) { return test::invalid_argument_message(fn); };
  std::string msg = message([&] { multihead(exact, q.view(), k.view(), k.view(), out.view()); });
  EXPECT_NE(msg.find("must be a multiple of the number of key/value heads"), std::string::npos)
      << msg;
  auto strided = q.view();
  strided.stride_dim = 2;
  msg = message([&] { multihead(exact, strided, strided, strided, out.view()); });
  EXPECT_NE(msg.find("stride_dim = 2"), std::string::npos) << msg;
  auto overlapping = out.view();
  overlapping.stride_head = 4;  // heads of 8 values 4 apart
  msg = message([&] { multihead(exact, q.view(), q.view(), q.view(), overlapping); });
  EXPECT_NE(msg.find("overlap"), std::string::npos) << msg;
  msg = message([&] { multihead(exact, q.view(), q.view(), q.view(), q.view()); });
  EXPECT_NE(msg.find("must not share memory"), std::string::npos) << msg;
  MultiheadOptions lengths;
  lengths.key_lengths = {9};
  msg = message([&] { multihead(exact, q.view(), q.view(), q.view(), out.view(), lengths); });
  EXPECT_NE(msg.find("outside [0, Nk = 4]"), std::string::npos) << msg;
  MultiheadOptions negative;
  negative.threads = -1;
  EXPECT_THROW(multihead(exact, q.view(), q.view(), q.view(), out.view(), negative),
               std::invalid_argument);
  // Errors raised inside a worker thread reach the caller.
  const Favor<T> favor(6);  // wrong head dimension
  MultiheadOptions two;
  two.threads = 2;
  EXPECT_THROW(multihead(favor, q.view(), q.view(), q.view(), out.view(), two),
               std::invalid_argument);
}

}  // namespace
}  // namespace fastattn
