// Fuzz scenario 2: a decoding step sequence (any method; Exact's chunked prefill, rollbacks and
// rejected steps included) against the causal expectation of the whole sequence, so that step()
// equals the causal forward.

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "expect.hpp"
#include "harness.hpp"

namespace fastattn::fuzz {

template <class T>
void step_case(Reader& r) {
  const Kind kind = decode_kind(r);
  const Index n = r.choose(kSizes) + 1, d = r.choose(kDims), dv = r.choose(kValueDims);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  const Spec spec = decode_spec(r, rng, kind, d, true);
  AttentionOptions opt;
  opt.scale = decode_scale(r);
  const DataSpec ds = decode_data<T>(r);
  const bool pad_some = r.flag();
  const bool gated = kind == Kind::Rfa && r.flag();
  const unsigned bad_step = r.pick(12);  // 0: a rejected step mid-sequence; 1: bad first q_t
  note("step(n=", n, " D=", d, " Dv=", dv, " scale=", opt.scale, " gated=", gated,
       " bad_step=", bad_step, ")");
  if (is_exact(kind) && r.one_in(4)) {
    constexpr double slopes[] = {0.25, 1, 8, -1};
    opt.alibi_slope = r.choose(slopes);
    note("alibi=", opt.alibi_slope);
  }
  const unsigned eva_len = r.pick(3);  // seq_len: 0 (unbounded), n, n + 3
  const unsigned capacity = r.pick(3);

  with_method<T>(spec, [&](const auto& method) {
    using M = std::decay_t<decltype(method)>;
    using State = typename M::State;
    Validity mk;
    if (!std::isfinite(opt.scale)) mk.invalid("scale");
    if (scale_overflows<T>(opt.scale)) mk.invalid("scale beyond T's range");
    std::optional<State> state;
    Result res;
    if constexpr (std::is_same_v<M, Exact<T>>) {
      if (!(opt.alibi_slope >= 0)) mk.invalid("alibi");
      res = attempt("Exact::make_state", [&] {
        state.emplace(method.make_state(dv, opt, capacity == 0 ? 0 : capacity == 1 ? 1 : n));
      });
    } else if constexpr (std::is_same_v<M, Favor<T>>) {
      const FavorOptions& o = method.options();
      if (o.compat != FavorCompat::None) mk.invalid("compat decoding");
      if (o.rescale || (o.kernel == FavorKernel::Optimal && !o.optimal_a))
        mk.invalid("data-dependent decoding");
      if (opt.scale < 0) mk.invalid("negative scale");
      if (std::abs(opt.scale) > 1e6) mk.unknown = true;
      res = attempt("Favor::make_state", [&] { state.emplace(method.make_state(dv, opt)); });
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      mk = Validity{};
      res = attempt("Rfa::make_state", [&] { state.emplace(method.make_state(dv)); });
    } else {
      mk.unknown = true;
      const Index seq_len = eva_len == 0 ? 0 : eva_len == 1 ? n : n + 3;
      if (seq_len == 0 && method.options().num_chunks > 0) mk.invalid("num_chunks unbounded");
      res = attempt("Eva::make_state", [&] {
        if (seq_len > 0)
          state.emplace(method.make_state(dv, opt, EvaSequenceLength{seq_len}));
        else
          state.emplace(method.make_state(dv, opt));
      });
    }
    judge("make_state", res, mk);
    if (res != Result::Ok) return;

    // The sequence (final positions), each position's query and output.
    RowMatrix<T> qa = make_rows<T>(rng, n + 8, d, ds.sq, ds.pq);
    RowMatrix<T> ka = make_rows<T>(rng, n + 8, d, ds.sk, ds.pk);
    RowMatrix<T> va = make_rows<T>(rng, n + 8, dv, ds.sv, ds.pv);
    RowMatrix<T> out = RowMatrix<T>::Constant(n + 8, dv, std::numeric_limits<T>::quiet_NaN());
    KeyMask pad = KeyMask::Constant(n + 8, false);
    std::vector<double> log_gates(std::size_t(n + 8), 0.0);
    Index size = 0, fed = 0;

    auto bad_call = [&](const char* what, auto&& f) {
      Validity must;
      must.invalid(what);
      judge(what, attempt(what, f), must);
    };
    // A rejected first step must leave the state usable. Not probed for Exact: its state takes D
    // from the first call before validating it (reported; ExactBugs.RejectedFirstStepPoisonsState
    // in test_extremes.cpp).
    if (bad_step == 1 && d >= 1 && !std::is_same_v<M, Exact<T>>) {
      // q_t one column wider than k_t (Exact takes D from the first step).
      RowMatrix<T> q_bad = RowMatrix<T>::Zero(1, d + 1), o_bad(1, dv);
      bad_call("step with a wrong-width first query",
               [&] { method.step(*state, q_bad, ka.topRows(1), va.topRows(1), o_bad, false); });
    }
    while (fed < n) {
      Index chunk = 1;
      if constexpr (std::is_same_v<M, Exact<T>>) {
        const unsigned op = r.pick(8);
        if (op == 6 && size > 0) {  // rollback
          const Index keep = rng.index(size + 1);
          state->truncate(keep);
          size = keep;
          const Index rest = qa.rows() - keep;  // new tokens after the rollback
          qa.bottomRows(rest) = make_rows<T>(rng, rest, d, ds.sq, ds.pq);
          ka.bottomRows(rest) = make_rows<T>(rng, rest, d, ds.sk, ds.pk);
          va.bottomRows(rest) = make_rows<T>(rng, rest, dv, ds.sv, ds.pv);
          note("truncate(", keep, ")");
          continue;
        }
        if (op == 7) {
          bad_call("Exact::State::truncate beyond size", [&] { state->truncate(size + 1); });
          bad_call("Exact::State::reserve(-1)", [&] { state->reserve(-1); });
        }
        constexpr Index chunks[] = {1, 1, 1, 1, 2, 3, 4, 1};
        chunk = std::min(chunks[op], n - fed);
      }
      const Index p = size;
      if (p + chunk > qa.rows()) break;
      const bool padded = pad_some && rng.index(3) == 0;
      T gate = T(1);
      if (gated) {
        constexpr double gvals[] = {1, 0.999, 0.9, 0.5, 0.1, 1e-3};
        gate = static_cast<T>(gvals[rng.index(6)]);
      }
      if (bad_step == 0 && fed == n / 2) {
        RowMatrix<T> v_bad = RowMatrix<T>::Zero(chunk, dv + 1), o_bad(chunk, dv);
        bad_call("step with a wrong-width value", [&] {
          method.step(*state, qa.middleRows(p, chunk), ka.middleRows(p, chunk), v_bad, o_bad,
                      false);
        });
        if constexpr (std::is_same_v<M, Rfa<T>>)
          bad_call("Rfa::step with gate 0", [&] {
            RowMatrix<T> o1(1, dv);
            method.step(*state, qa.row(p), ka.row(p), va.row(p), T(0), o1, false);
          });
      }
      auto o = out.middleRows(p, chunk);
      Result sr;
      if constexpr (std::is_same_v<M, Rfa<T>>) {
        sr = attempt("step", [&] {
          if (gated)
            method.step(*state, qa.middleRows(p, 1), ka.middleRows(p, 1), va.middleRows(p, 1), gate,
                        o, padded);
          else
            method.step(*state, qa.middleRows(p, 1), ka.middleRows(p, 1), va.middleRows(p, 1), o,
                        padded);
        });
      } else {
        sr = attempt("step", [&] {
          method.step(*state, qa.middleRows(p, chunk), ka.middleRows(p, chunk),
                      va.middleRows(p, chunk), o, padded);
        });
      }
      Validity sv;
      if constexpr (std::is_same_v<M, Eva<T>>) sv.unknown = true;  // seq_len exhausted
      if (!is_exact(kind) && spec.head_dim != d) sv.invalid("D != head_dim");
      judge("step", sr, sv);
      if (sr != Result::Ok) return;
      pad.segment(p, chunk).setConstant(padded);
      for (Index j = p; j < p + chunk; ++j)
        log_gates[std::size_t(j)] = gated ? std::log(double(gate)) : 0.0;
      size += chunk;
      fed += chunk;
    }
    if (size == 0) return;
    const MatD qd = qa.topRows(size).template cast<double>();
    const MatD kd = ka.topRows(size).template cast<double>();
    const MatD vd = va.topRows(size).template cast<double>();
    const KeyMask padding = pad.head(size);
    const RowMatrix<T> got = out.topRows(size);
    AttentionOptions copt = opt;
    copt.causal = true;
    copt.key_padding = padding;
    const double eps = eps_of<T>(), tiny = tiny_of<T>();
    if constexpr (std::is_same_v<M, Exact<T>>) {
      ref::ExactSpec c;
      c.scale = ref::resolved_scale(opt.scale, d);
      c.causal = true;
      c.padding = padding;
      c.alibi_slope = opt.alibi_slope;
      compare("Exact::step sequence vs causal reference", got,
              exact_expect(qd, kd, vd, c, eps, tiny));
    } else if constexpr (std::is_same_v<M, Favor<T>>) {
      compare("Favor::step sequence vs causal reference", got,
              favor_expect(method.options(), method.projection().template cast<double>(), qd, kd,
                           vd, copt, true, eps, tiny, double(std::numeric_limits<T>::max())));
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      std::vector<double> lg(log_gates.begin(), log_gates.begin() + size);
      compare("Rfa::step sequence vs causal reference", got,
              rfa_expect(method.options(), method.projection().template cast<double>(), qd, kd, vd,
                         padding, true, gated ? &lg : nullptr, eps, tiny));
    } else {
      ref::EvaSpec c;
      c.options = method.options();
      c.chunk_length = state->chunk_length();
      c.causal = true;
      c.scale = ref::resolved_scale(opt.scale, d);
      c.padding = padding;
      Expect x = eva_expect(qd, kd, vd, c, eps, tiny);
      for (Index i = 0; i < size; ++i)
        if (padding[i]) x.ignore[std::size_t(i)] = 1;  // a padded token's own output: unspecified
      compare("Eva::step sequence vs causal reference", got, x);
    }
  });
}

template void step_case<float>(Reader&);
template void step_case<double>(Reader&);

}  // namespace fastattn::fuzz
