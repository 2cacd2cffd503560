// Fuzz scenarios 3 and 4: multihead() against a per-head loop of forward() on the same head views
// (random layouts and strides, GQA, key lengths, ALiBi slopes, threads or a caller's parallel_for),
// and BatchedDecoder against one state per (batch, head); both bitwise.

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastattn/multihead.hpp"
#include "harness.hpp"

namespace fastattn::fuzz {
namespace {

/// A 4-D tensor in its own exactly-sized buffer (so ASan sees any access outside the view).
template <class T>
struct Tensor {
  std::vector<T> mem;
  TensorView<T> view;
};

template <class T>
Tensor<T> make_tensor(Rng& rng, Index b, Index n, Index h, Index d, unsigned layout,
                      double stddev) {
  Tensor<T> t;
  Index sb, sn, sh;
  switch (layout) {
    case 1:  // [B, H, N, D]
      sh = n * d, sn = d, sb = h * n * d;
      break;
    case 2:  // padded everywhere
      sh = d + 3, sn = h * (d + 3) + 1, sb = n * (h * (d + 3) + 1) + 5;
      break;
    case 3:  // [N, B, H, D]
      sh = d, sb = h * d, sn = b * h * d;
      break;
    case 4:  // heads and batch reversed (negative strides)
      sh = -d, sn = h * d, sb = -(n * h * d);
      break;
    default:  // [B, N, H, D]
      sh = d, sn = h * d, sb = n * h * d;
  }
  Index lo = 0, hi = 0;
  const Index ext[3] = {b, n, h}, str[3] = {sb, sn, sh};
  for (int i = 0; i < 3; ++i)
    if (ext[i] > 1) (str[i] < 0 ? lo : hi) += str[i] * (ext[i] - 1);
  const Index total = b * n * h * d == 0 ? 0 : hi - lo + d;
  // Empty views get a valid (never dereferenced) pointer rather than the nullptr check_view
  // allows: TensorView::head() does pointer arithmetic on it, which is UB on nullptr (reported;
  // reproduced by TensorViewBugs.HeadOfAnEmptyViewWithNullData in test_extremes.cpp).
  t.mem.resize(std::size_t(std::max<Index>(total, 1)));
  for (auto& x : t.mem) x = static_cast<T>(stddev * rng.normal());
  t.view = TensorView<T>{t.mem.data() - lo, b, n, h, d, sb, sn, sh, 1};
  return t;
}

void two_threads(Index count, const std::function<void(Index)>& task) {
  std::atomic<Index> next{0};
  std::exception_ptr error;
  std::mutex mu;
  auto worker = [&] {
    for (Index i; (i = next++) < count;) {
      try {
        task(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::thread helper(worker);
  worker();
  helper.join();
  if (error) std::rethrow_exception(error);
}

template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) {
      const auto x = a(i, j), y = b(i, j);
      if (std::memcmp(&x, &y, sizeof(x)) != 0) return false;
    }
  return true;
}

}  // namespace

template <class T>
void multihead_case(Reader& r) {
  const Kind kind = decode_kind(r);
  constexpr Index batches[] = {1, 1, 2, 3, 0};
  const Index b = r.choose(batches), hkv = 1 + r.pick(3), group = 1 + r.pick(3);
  Index hq = hkv * group;
  Index nq = r.choose(kSmallSizes) + r.pick(6), nk = r.choose(kSmallSizes) + r.pick(6);
  const Index d = r.choose(kDims), dv = r.choose(kValueDims);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  Spec spec = decode_spec(r, rng, kind, d, false);
  fit_eva_sizes(spec, nq, nk);
  MultiheadOptions opt;
  opt.scale = decode_scale(r);
  opt.causal = r.flag();
  const DataSpec ds = decode_data<T>(r);
  Validity views;  // rules of multihead() itself
  if (r.one_in(16)) {
    hq += 1;
    if (hq % hkv != 0) views.invalid("Hq % Hkv");
  }
  unsigned lq = r.pick(5), lk = r.pick(5), lv = r.pick(5), lo = r.pick(5);
  const bool fused = r.one_in(6) && nq == nk && hq == hkv && d == dv;
  if (r.flag()) {
    opt.key_lengths.resize(std::size_t(r.one_in(16) ? b + 1 : b));
    for (auto& len : opt.key_lengths) len = rng.index(nk + 1);
    if (Index(opt.key_lengths.size()) != b) views.invalid("key_lengths size");
    if (r.one_in(16) && !opt.key_lengths.empty()) {
      opt.key_lengths[0] = nk + 1;
      views.invalid("key_lengths entry");
    }
  }
  opt.key_padding = make_padding(r, rng, nk);
  if (is_exact(kind) && r.one_in(3)) opt.alibi_slopes = alibi_slopes(std::max<Index>(hq, 1));
  if (hq == 0) opt.alibi_slopes.clear();
  if (!opt.alibi_slopes.empty() && Index(opt.alibi_slopes.size()) != hq)
    views.invalid("alibi_slopes size");
  constexpr int threads[] = {1, 1, 2, 0};
  opt.threads = r.choose(threads);
  const bool hook = r.flag();
  if (hook) opt.parallel_for = two_threads;
#if !FASTATTN_HAS_OPENMP
  if (opt.threads > 1 && !hook) views.invalid("threads without OpenMP or hook");
#endif
  const bool alias_out = r.one_in(20) && lq == lo && nq >= 1 && dv == d && b * hq * d > 0;
  if (alias_out) views.invalid("out aliases q");
  note("multihead(B=", b, " Hq=", hq, " Hkv=", hkv, " Nq=", nq, " Nk=", nk, " D=", d, " Dv=", dv,
       " layouts=", lq, lk, lv, lo, " fused=", fused, " threads=", opt.threads, " hook=", hook,
       " lengths=", opt.key_lengths.size(), " alibi_heads=", opt.alibi_slopes.size(),
       " scale=", opt.scale, " causal=", opt.causal, ")");

  Tensor<T> qt, kt, vt, ot;
  if (fused) {  // q, k, v interleaved in one [B, N, 3, H, D] buffer (a fused QKV projection)
    const Index row = 3 * hq * d;
    qt.mem.resize(std::size_t(std::max<Index>(b * nq * row, 3 * hq * d + 1)));
    for (auto& x : qt.mem) x = static_cast<T>(ds.sq * rng.normal());
    T* base = qt.mem.data();
    qt.view = TensorView<T>{base, b, nq, hq, d, nq * row, row, d, 1};
    kt.view = TensorView<T>{base + hq * d, b, nk, hkv, d, nq * row, row, d, 1};
    vt.view = TensorView<T>{base + 2 * hq * d, b, nk, hkv, dv, nq * row, row, d, 1};
  } else {
    qt = make_tensor<T>(rng, b, nq, hq, d, lq, ds.sq);
    kt = make_tensor<T>(rng, b, nk, hkv, d, lk, ds.sk);
    vt = make_tensor<T>(rng, b, nk, hkv, dv, lv, ds.sv);
  }
  ot = make_tensor<T>(rng, b, nq, hq, dv, lo, 0.0);
  // Empty views have degenerate strides (a zero extent makes e.g. bnhd's batch stride 0), which
  // multihead() rejects (reported; MultiheadBugs.EmptyOutputIsRejected in test_extremes.cpp).
  for (const auto* t : {&qt.view, &kt.view, &vt.view, &ot.view})
    if (t->batch * t->seq * t->heads * t->dim == 0) views.unknown = true;
  for (auto& x : ot.mem) x = std::numeric_limits<T>::quiet_NaN();
  TensorView<T> out_view = ot.view;
  if (alias_out) out_view.data = qt.view.data;  // same layout and size as q

  with_method<T>(spec, [&](const auto& method) {
    const TensorView<const T> q = qt.view, k = kt.view, v = vt.view;
    const Result res = attempt("multihead", [&] { multihead(method, q, k, v, out_view, opt); });
    if (alias_out) {
      judge("multihead (aliased out)", res, views);
      return;
    }
    if (views.must_throw) {
      judge("multihead", res, views);
      return;
    }
    // The per-head loop on the same head views.
    const Index grp = hkv > 0 ? hq / hkv : 1;
    bool loop_ok = true;
    std::string loop_rejection;
    std::vector<RowMatrix<T>> expected;
    for (Index bb = 0; bb < b; ++bb)
      for (Index h = 0; h < hq; ++h) {
        AttentionOptions o = static_cast<const AttentionOptions&>(opt);
        if (!opt.key_lengths.empty()) {
          if (o.key_padding.size() == 0) o.key_padding = KeyMask::Constant(nk, false);
          o.key_padding.tail(nk - opt.key_lengths[std::size_t(bb)]).setConstant(true);
        }
        if (!opt.alibi_slopes.empty()) o.alibi_slope = opt.alibi_slopes[std::size_t(h)];
        RowMatrix<T> e = RowMatrix<T>::Constant(nq, dv, std::numeric_limits<T>::quiet_NaN());
        const Result hr = attempt("forward (per-head loop)", [&] {
          method.forward(q.head(bb, h), k.head(bb, h / grp), v.head(bb, h / grp), e, o);
        });
        if (hr != Result::Ok) {
          loop_ok = false;
          loop_rejection = g_last_rejection;
        }
        expected.push_back(std::move(e));
      }
    if (res == Result::Ok) {
      FUZZ_REQUIRE(loop_ok, "multihead accepted a call that forward() rejects on some head: "
                                << loop_rejection);
      for (Index bb = 0; bb < b; ++bb)
        for (Index h = 0; h < hq; ++h) {
          const RowMatrix<T> got = out_view.head(bb, h);
          FUZZ_REQUIRE(got.allFinite(),
                       "multihead wrote non-finite output to head (" << bb << ", " << h << ")");
          FUZZ_REQUIRE(bitwise_equal(got, expected[std::size_t(bb * hq + h)]),
                       "multihead head ("
                           << bb << ", " << h << ") differs from forward() on the same views by "
                           << (got - expected[std::size_t(bb * hq + h)]).cwiseAbs().maxCoeff());
        }
    } else {
      FUZZ_REQUIRE(
          !loop_ok || views.unknown,
          "multihead rejected a call that forward() accepts on every head: " << g_last_rejection);
    }
  });
}

template void multihead_case<float>(Reader&);
template void multihead_case<double>(Reader&);

// ---- BatchedDecoder against one state per (batch, head), bitwise --------------------------------

template <class T>
void decoder_case(Reader& r) {
  const Kind kind = decode_kind(r);
  const Index b = r.pick(3), hkv = 1 + r.pick(2), group = 1 + r.pick(3), hq = hkv * group;
  const Index d = r.choose(kDims), dv = r.choose(kValueDims), steps = 1 + r.pick(10);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  Spec spec = decode_spec(r, rng, kind, d, true);
  const DataSpec ds = decode_data<T>(r);
  MultiheadOptions mopt;
  constexpr int threads[] = {1, 2, 0};
  mopt.threads = r.choose(threads);
  if (r.flag()) mopt.parallel_for = two_threads;
  const bool use_pad = r.flag();
  note("decoder(B=", b, " Hq=", hq, " Hkv=", hkv, " D=", d, " Dv=", dv, " steps=", steps,
       " threads=", mopt.threads, ")");
  with_method<T>(spec, [&](const auto& method) {
    using M = std::decay_t<decltype(method)>;
    std::optional<BatchedDecoder<M, T>> dec;
    const Result res = attempt("BatchedDecoder", [&] { dec.emplace(method, b, hq, hkv, dv); });
    std::vector<typename M::State> states;
    const Result res2 = attempt("make_state", [&] {
      for (Index i = 0; i < b * hq; ++i) states.push_back(method.make_state(dv));
    });
    FUZZ_REQUIRE(
        (res == Result::Ok) == (res2 == Result::Ok || b * hq == 0),
        "BatchedDecoder and make_state disagree on the configuration: " << g_last_rejection);
    if (res != Result::Ok) return;
    for (Index t = 0; t < steps; ++t) {
      Tensor<T> q = make_tensor<T>(rng, b, 1, hq, d, 0, ds.sq);
      Tensor<T> k = make_tensor<T>(rng, b, 1, hkv, d, 0, ds.sk);
      Tensor<T> v = make_tensor<T>(rng, b, 1, hkv, dv, 0, ds.sv);
      Tensor<T> o = make_tensor<T>(rng, b, 1, hq, dv, 0, 0.0);
      std::vector<bool> padded;
      if (use_pad)
        for (Index bb = 0; bb < b; ++bb) padded.push_back(rng.index(3) == 0);
      Validity sv;
#if !FASTATTN_HAS_OPENMP
      if (mopt.threads > 1 && !mopt.parallel_for) sv.invalid("threads without OpenMP or hook");
#endif
      if constexpr (std::is_same_v<M, Eva<T>>) sv.unknown = true;
      if (!is_exact(kind) && spec.head_dim != d && b * hq > 0) sv.invalid("D != head_dim");
      const Result sr = attempt("BatchedDecoder::step",
                                [&] { dec->step(q.view, k.view, v.view, o.view, padded, mopt); });
      judge("BatchedDecoder::step", sr, sv);
      if (sr != Result::Ok) return;
      for (Index bb = 0; bb < b; ++bb)
        for (Index h = 0; h < hq; ++h) {
          RowMatrix<T> e(1, dv);
          const bool pad = use_pad && padded[std::size_t(bb)];
          const Result er = attempt("step (per-state loop)", [&] {
            method.step(states[std::size_t(bb * hq + h)], q.view.head(bb, h),
                        k.view.head(bb, h / group), v.view.head(bb, h / group), e, pad);
          });
          FUZZ_REQUIRE(er == Result::Ok,
                       "step rejected what BatchedDecoder accepted: " << g_last_rejection);
          const RowMatrix<T> got = o.view.head(bb, h);
          FUZZ_REQUIRE(got.allFinite(), "BatchedDecoder produced non-finite output");
          FUZZ_REQUIRE(bitwise_equal(got, e), "BatchedDecoder (" << bb << ", " << h << ") step "
                                                                 << t << " differs from step()");
        }
    }
  });
}

template void decoder_case<float>(Reader&);
template void decoder_case<double>(Reader&);

}  // namespace fastattn::fuzz
