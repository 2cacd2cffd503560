// Fuzz scenario 1: one forward call (any method, shapes, options, data regime, strided views,
// injected invalid arguments) against the method's expectation (tests/fuzz/expect.hpp).

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "expect.hpp"
#include "fastattn/bfloat16.hpp"
#include "harness.hpp"

namespace fastattn::fuzz {
namespace {

/// q [Nq, D] etc. as views: either the matrices themselves or blocks of bigger ones (outer
/// strides), so that strided inputs are exercised too.
template <class T>
struct Strided {
  RowMatrix<T> storage;
  Index r0 = 0, c0 = 0, rows = 0, cols = 0;
  Strided(const RowMatrix<T>& m, bool strided, Rng& rng)
      : r0(strided ? 1 : 0), c0(strided ? 2 : 0), rows(m.rows()), cols(m.cols()) {
    storage = RowMatrix<T>(rows + (strided ? 2 : 0), cols + (strided ? 3 : 0));
    for (Index i = 0; i < storage.rows(); ++i)
      for (Index j = 0; j < storage.cols(); ++j) storage(i, j) = static_cast<T>(rng.normal());
    storage.block(r0, c0, rows, cols) = m;
  }
  auto view() { return storage.block(r0, c0, rows, cols); }
  auto view() const { return storage.block(r0, c0, rows, cols); }
};

/// Bounds only, for methods whose every output row is a convex combination of the visible values
/// (or 0): [min, max] over the visible values and 0, with the slack of a T evaluation of nk + 8
/// operations per entry. *vmax receives max |visible value|.
Expect value_hull(const MatD& vd, const KeyMask& padding, Index nq, double eps, double tiny,
                  double* vmax_out = nullptr) {
  const Index nk = vd.rows();
  Expect x(nq, vd.cols(), true);
  double lo = 0, hi = 0;
  for (Index j = 0; j < nk; ++j)
    if (!ref::is_padded(padding, j) && vd.cols() > 0)
      lo = std::min(lo, vd.row(j).minCoeff()), hi = std::max(hi, vd.row(j).maxCoeff());
  const double vmax = std::max(-lo, hi);
  const double slack = 64 * eps * (vmax + 1) * double(nk + 8) + double(nk + 8) * tiny;
  x.lo.setConstant(lo - slack);
  x.hi.setConstant(hi + slack);
  for (auto& c : x.check) c = 0;
  if (vmax_out) *vmax_out = vmax;
  return x;
}

/// The bfloat16 overload of Exact<float>::forward on the same call with q, k, v rounded to
/// bfloat16 (docs/bfloat16.md), against the reference on the rounded inputs: the float error model
/// of exact_expect, plus, on the vdpbf16ps path, the rounding of the weights to bfloat16 for the
/// second product (at most u_b = 2^-8 times max |visible value|, tests/test_bfloat16.cpp). Skipped
/// when a present input is not finite or could round to infinity (beyond bfloat16's range).
void bfloat16_exact_case(const Exact<float>& method, const RowMatrix<float>& q,
                         const RowMatrix<float>& k, const RowMatrix<float>& v,
                         const AttentionOptions& opt, const RowMatrix<float>* bias, bool want_lse,
                         const ref::ExactSpec& spec, double tiny) {
  constexpr double kRoundLimit = 3e38;  // below float's max: rounding up stays finite
  auto fits = [&](const RowMatrix<float>& m, bool keys) {
    for (Index i = 0; i < m.rows(); ++i) {
      if (keys && ref::is_padded(opt.key_padding, i)) continue;  // never read
      for (Index j = 0; j < m.cols(); ++j)
        if (!(std::abs(m(i, j)) < kRoundLimit)) return false;
    }
    return true;
  };
  if (!fits(q, false) || !fits(k, true) || !fits(v, true)) return;
  note("bfloat16 overload");
  const RowMatrix<bfloat16> qb = to_bfloat16(q), kb = to_bfloat16(k), vb = to_bfloat16(v);
  RowMatrix<float> out = RowMatrix<float>::Constant(q.rows(), v.cols(), kNaN);
  Vector<float> lse = Vector<float>::Constant(want_lse ? q.rows() : 0, kNaN);
  const RowMatrix<float> no_bias;
  const Result res = attempt("Exact::forward (bfloat16)", [&] {
    method.forward(qb, kb, vb, out, opt, bias ? *bias : no_bias, lse);
  });
  FUZZ_REQUIRE(res == Result::Ok,
               "the bfloat16 forward rejected what the float one accepted: " << g_last_rejection);
  const MatD qd = to_float(qb).cast<double>();
  MatD kd = to_float(kb).cast<double>(), vd = to_float(vb).cast<double>();
  double vmax = 0;
  for (Index j = 0; j < kd.rows(); ++j) {
    if (ref::is_padded(opt.key_padding, j))
      kd.row(j).setZero(), vd.row(j).setZero();
    else if (vd.cols() > 0)
      vmax = std::max(vmax, vd.row(j).cwiseAbs().maxCoeff());
  }
  VecD lse_ref, lse_tol;
  Expect x = exact_expect(qd, kd, vd, spec, eps_of<float>(), tiny, &lse_ref, &lse_tol);
  const double rounding = bfloat16_dot_product() ? 1.0 / 256 : 0.0;
  x.tol.array() += rounding * vmax;
  if (x.lo.size() != 0) x.lo.array() -= rounding * vmax, x.hi.array() += rounding * vmax;
  compare("Exact::forward (bfloat16)", out, x);
  for (Index i = 0; i < lse.size(); ++i) {
    const double got = double(lse[i]);
    if (lse_ref[i] == -kInf) {
      FUZZ_REQUIRE(got == -kInf, "Exact bfloat16 lse of an empty row " << i << " is " << got);
    } else if (x.check[std::size_t(i)]) {
      FUZZ_REQUIRE(std::isfinite(got) && std::abs(got - lse_ref[i]) <= lse_tol[i],
                   "Exact bfloat16 lse row " << i << ": " << got << " vs " << lse_ref[i]);
    }
  }
}

}  // namespace

template <class T>
void forward_case(Reader& r) {
  const Kind kind = decode_kind(r, true);
  Index nq = r.choose(kSizes), nk = r.choose(kSizes), d = r.choose(kDims),
        dv = r.choose(kValueDims);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  Spec spec = decode_spec(r, rng, kind, d, false);
  fit_eva_sizes(spec, nq, nk);
  AttentionOptions opt;
  opt.scale = decode_scale(r);
  opt.causal = r.flag();
  const DataSpec ds = decode_data<T>(r);

  // Invalid-argument injections (one at a time).
  Validity call;
  const unsigned inject = r.pick(20);
  Index q_cols = d, k_cols = d, v_rows = nk, out_rows = nq, out_cols = dv, q_rows = nq;
  bool alias = false;
  switch (inject) {
    case 0:
      out_rows = nq + 1;
      call.invalid("out rows");
      break;
    case 1:
      k_cols = d + 1;
      call.invalid("k cols");
      break;
    case 2:
      v_rows = nk + 1;
      call.invalid("v rows");
      break;
    case 3:
      q_cols = k_cols = 0;
      call.invalid("D = 0");
      break;
    case 4:
      if (nq >= 1 && d >= 1) {
        alias = true;
        out_cols = dv = d;
        call.invalid("out aliases q");
      }
      break;
    case 5:
      out_cols = dv + 1;
      call.invalid("out cols");
      break;
    case 6:
      if (kind == Kind::Eva) {
        q_rows = nq + 1;
        out_rows = q_rows;
        call.invalid("Nq != Nk for Eva");
      }
      break;
    default:
      break;
  }
  if (!is_exact(kind) && spec.head_dim != q_cols && !call.must_throw) call.invalid("D != head_dim");
  note("forward(Nq=", q_rows, " Nk=", nk, " D=", q_cols, " Dv=", out_cols, " scale=", opt.scale,
       " causal=", opt.causal, " inject=", inject, ")");

  RowMatrix<T> q = make_rows<T>(rng, q_rows, q_cols, ds.sq, ds.pq);
  RowMatrix<T> k = make_rows<T>(rng, nk, k_cols, ds.sk, ds.pk);
  RowMatrix<T> v = make_rows<T>(rng, v_rows, dv, ds.sv, ds.pv);
  opt.key_padding = make_padding(r, rng, nk);
  if (inject == 7) {
    opt.key_padding = KeyMask::Constant(nk + 1, false);
    call.invalid("key_padding length");
  }
  const bool poison = r.one_in(4) && inject != 7;
  if (poison && opt.key_padding.size() == nk && v_rows == nk) {
    note("poisoned-padding");
    poison_padded(k, v, opt.key_padding, !is_exact(kind));
  }
  if (!std::isfinite(opt.scale)) call.invalid("scale not finite");
  if (scale_overflows<T>(opt.scale)) call.invalid("scale beyond T's range");
  // ALiBi: Exact only; a non-zero slope is rejected by the random-feature methods and Eva.
  if (r.one_in(4)) {
    constexpr double slopes[] = {0.25, 1, 8, 1e3, -1, kNaN, kInf};
    opt.alibi_slope = r.choose(slopes);
    note("alibi=", opt.alibi_slope);
    if (!(std::isfinite(opt.alibi_slope) && opt.alibi_slope >= 0)) call.invalid("alibi");
    if (!is_exact(kind) && opt.alibi_slope != 0) call.invalid("alibi for a non-exact method");
  }
  // Exact's bias and lse.
  const unsigned bias_mode = is_exact(kind) ? r.pick(6) : 0;
  const bool want_lse = is_exact(kind) && r.flag();
  RowMatrix<T> bias;
  if (bias_mode >= 3) {
    const Index rows = bias_mode == 3 ? nq : bias_mode == 4 ? 1 : nq + 2;
    constexpr double bscales[] = {1, 10, 1e4};
    const double bs = r.choose(bscales);
    bias = RowMatrix<T>(rows, nk);
    for (Index i = 0; i < rows; ++i)
      for (Index j = 0; j < nk; ++j)
        bias(i, j) = rng.index(5) == 0 ? -std::numeric_limits<T>::infinity()
                                       : static_cast<T>(bs * rng.normal());
    if (bias_mode == 5 && bias.size() != 0) call.invalid("bias shape");
    note("bias(rows=", rows, " scale=", bs, ")");
  }
  Vector<T> lse;
  if (want_lse) {
    lse =
        Vector<T>::Constant(r.one_in(8) ? q_rows + 1 : q_rows, std::numeric_limits<T>::quiet_NaN());
    if (lse.size() != q_rows) call.invalid("lse size");
  }
  // Rfa gating.
  const unsigned gate_mode = kind == Kind::Rfa ? r.pick(6) : 0;  // 4: gates, 5: log gates
  std::vector<double> log_gates;
  Vector<T> gates;
  if (gate_mode >= 4) {
    constexpr double gvals[] = {1, 0.999, 0.9, 0.5, 0.1, 1e-3, 1e-30, 0, 1.5, kNaN};
    constexpr double lvals[] = {0, -1e-7, -0.01, -0.7, -3, -50, -1e3, 0.5, kNaN, -kInf};
    const Index len = r.one_in(16) ? nk + 1 : nk;
    if (len != nk) call.invalid("gates size");
    gates = Vector<T>(len);
    log_gates.resize(std::size_t(len));
    const unsigned spread = r.pick(4);
    for (Index j = 0; j < len; ++j) {
      const unsigned idx = spread == 0 ? 0 : unsigned(rng.index(spread == 3 ? 10 : 7));
      if (gate_mode == 4) {
        gates[j] = static_cast<T>(gvals[idx]);
        if (!(gates[j] > 0 && gates[j] <= 1)) call.invalid("gate");
        log_gates[std::size_t(j)] = std::log(double(gates[j]));
      } else {
        gates[j] = static_cast<T>(lvals[idx]);
        if (!(std::isfinite(double(gates[j])) && gates[j] <= 0)) call.invalid("log gate");
        log_gates[std::size_t(j)] = double(gates[j]);
      }
    }
    note(gate_mode == 4 ? "gates" : "log_gates", "(spread=", spread, ")");
  }
  const bool strided = r.one_in(4);

  with_method<T, true>(spec, [&](const auto& method) {
    using M = std::decay_t<decltype(method)>;
    Validity v_call = call;
    if constexpr (std::is_same_v<M, Favor<T>>) {
      const FavorOptions& o = method.options();
      const bool data_dependent =
          o.rescale || (o.kernel == FavorKernel::Optimal && !o.optimal_a);
      if (o.compat != FavorCompat::None && opt.scale != 0) v_call.invalid("compat scale");
      if (o.compat == FavorCompat::None && opt.causal && data_dependent)
        v_call.invalid("causal with data-dependent features");
      if (o.compat == FavorCompat::None && opt.scale < 0) v_call.invalid("negative scale");
      // Extreme scales or data: A* or the folded input scale may leave T's range (allowed to
      // reject or not).
      if (std::abs(opt.scale) > 1e6 || ds.sq > 30 || ds.sk > 30) v_call.unknown = true;
    }
    if constexpr (std::is_same_v<M, Eva<T>>) v_call.unknown = true;  // geometry domain
    if constexpr (std::is_same_v<M, ClusteredEva<T>>) {
      const ClusteredEvaOptions& o = method.options();
      if (opt.causal) v_call.invalid("causal for ClusteredEva");
      if (o.window > 0 && q_rows != nk) v_call.invalid("ClusteredEva window with Nq != Nk");
      if (o.centre == ClusterCentre::TokenMean && q_rows != nk)
        v_call.invalid("ClusteredEva TokenMean with Nq != Nk");
    }

    Strided<T> qs(q, strided, rng), ks(k, strided, rng), vs(v, strided, rng);
    RowMatrix<T> out_store = RowMatrix<T>::Constant(alias ? 0 : out_rows + (strided ? 1 : 0),
                                                    alias ? 0 : out_cols + (strided ? 2 : 0),
                                                    std::numeric_limits<T>::quiet_NaN());
    RowMatrix<T> out;
    Result res;
    if (alias) {
      res = attempt("forward (aliased out)", [&] {
        MatRef<T> o(qs.storage.block(qs.r0, qs.c0, qs.rows, qs.cols));
        method.forward(qs.view(), ks.view(), vs.view(), o, opt);
      });
      judge("forward (aliased out)", res, v_call);
      return;
    }
    auto out_view = out_store.block(strided ? 1 : 0, 0, out_rows, out_cols);
    if constexpr (std::is_same_v<M, Exact<T>>) {
      res = attempt("Exact::forward", [&] {
        if (want_lse)
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt, bias, lse);
        else if (bias_mode >= 3)
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt, bias);
        else
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt);
      });
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      res = attempt("Rfa::forward", [&] {
        if (gate_mode == 4)
          method.forward_gated(qs.view(), ks.view(), vs.view(), gates, out_view, opt);
        else if (gate_mode == 5)
          method.forward_gated_log(qs.view(), ks.view(), vs.view(), gates, out_view, opt);
        else
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt);
      });
    } else {
      res = attempt("forward",
                    [&] { method.forward(qs.view(), ks.view(), vs.view(), out_view, opt); });
    }
    judge("forward", res, v_call);
    if (res != Result::Ok) return;
    out = out_view;

    // kd_raw/vd_raw may hold garbage at padded keys (the library must ignore it); the references
    // and the tolerance estimates use cleaned copies.
    const MatD qd = q.template cast<double>(), kd_raw = k.template cast<double>();
    const MatD vd_raw = v.template cast<double>();
    MatD kd = kd_raw, vd = vd_raw;
    for (Index j = 0; j < opt.key_padding.size(); ++j)
      if (opt.key_padding[j]) kd.row(j).setZero(), vd.row(j).setZero();
    const double eps = eps_of<T>(), tiny = tiny_of<T>();

    if constexpr (std::is_same_v<M, Exact<T>>) {
      ref::ExactSpec c;
      c.scale = ref::resolved_scale(opt.scale, d);
      c.causal = opt.causal;
      c.padding = opt.key_padding;
      c.alibi_slope = opt.alibi_slope;
      if (bias_mode >= 3) c.bias = bias.template cast<double>();
      VecD lse_ref, lse_tol;
      const Expect x =
          exact_expect(qd, kd, vd, c, eps, tiny, want_lse ? &lse_ref : nullptr, &lse_tol);
      compare("Exact::forward", out, x);
      if (want_lse)
        for (Index i = 0; i < nq; ++i) {
          const double got = double(lse[i]);
          if (lse_ref[i] == -kInf) {
            FUZZ_REQUIRE(got == -kInf, "Exact lse of an empty row " << i << " is " << got);
          } else if (x.check[std::size_t(i)]) {
            FUZZ_REQUIRE(std::isfinite(got) && std::abs(got - lse_ref[i]) <= lse_tol[i],
                         "Exact lse row " << i << ": " << got << " vs " << lse_ref[i]);
          }
        }
      // Blocked vs the Reference kernel.
      ExactOptions other = method.options();
      other.kernel =
          other.kernel == ExactKernel::Blocked ? ExactKernel::Reference : ExactKernel::Blocked;
      const Exact<T> twin(other);
      RowMatrix<T> out2 = RowMatrix<T>::Constant(nq, dv, std::numeric_limits<T>::quiet_NaN());
      const Result r2 = attempt("Exact::forward (other kernel)", [&] {
        if (bias_mode >= 3)
          twin.forward(q, k, v, out2, opt, bias);
        else
          twin.forward(q, k, v, out2, opt);
      });
      FUZZ_REQUIRE(r2 == Result::Ok,
                   "the other Exact kernel rejected what this one accepted: " << g_last_rejection);
      compare("Exact::forward (other kernel)", out2, x);
      compare_pair("Exact blocked vs reference kernel", out, out2, x);
      if constexpr (std::is_same_v<T, float>)
        bfloat16_exact_case(method, q, k, v, opt, bias_mode >= 3 ? &bias : nullptr, want_lse, c,
                            tiny);
    } else if constexpr (std::is_same_v<M, Favor<T>>) {
      const FavorOptions& o = method.options();
      if (o.compat == FavorCompat::None) {
        compare("Favor::forward", out,
                favor_expect(o, method.projection().template cast<double>(), qd, kd, vd, opt,
                             opt.causal, eps, tiny, double(std::numeric_limits<T>::max())));
      } else {
        // Sub-convexity: non-negative weights that sum to at most 1.
        Expect x(nq, dv, true);
        for (Index i = 0; i < nq; ++i) {
          x.check[std::size_t(i)] = 0;
          const Index last = opt.causal ? std::min(i + nk - nq, nk - 1) : nk - 1;
          double vmax = 0;
          for (Index dd = 0; dd < dv; ++dd) {
            double lo = 0, hi = 0;
            for (Index j = 0; j <= last; ++j)
              if (!ref::is_padded(opt.key_padding, j))
                lo = std::min(lo, vd(j, dd)), hi = std::max(hi, vd(j, dd)),
                vmax = std::max(vmax, std::abs(vd(j, dd)));
            x.lo(i, dd) = lo - 64 * eps * (vmax + 1) * double(nk + 8);
            x.hi(i, dd) = hi + 64 * eps * (vmax + 1) * double(nk + 8);
          }
        }
        compare("Favor::forward (compat bounds)", out, x);
        if constexpr (std::is_same_v<T, float>) {
          Spec sd = spec;
          with_method<double>(sd, [&](const auto& md) {
            if constexpr (std::is_same_v<std::decay_t<decltype(md)>, Favor<double>>) {
              MatD ref(nq, dv);
              const Result rd = attempt("Favor<double>::forward",
                                        [&] { md.forward(qd, kd_raw, vd_raw, ref, opt); });
              FUZZ_REQUIRE(rd == Result::Ok, "Favor<double> rejected what Favor<float> accepted");
              const double s = ref::resolved_scale(opt.scale, d);
              const double wa = md.projection().cwiseAbs().maxCoeff();
              const double gamma = instance_gamma(qd * wa, kd * wa, std::sqrt(s), 0, eps) * 4;
              const double vmax = vd.size() ? vd.cwiseAbs().maxCoeff() : 0.0;
              compare("Favor<float> compat vs Favor<double>", out,
                      from_double_instance(ref, gamma, vmax, tiny, nk));
            }
          });
        }
      }
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      const bool gated = gate_mode >= 4;
      compare("Rfa::forward", out,
              rfa_expect(method.options(), method.projection().template cast<double>(), qd, kd, vd,
                         opt.key_padding, opt.causal || gated, gated ? &log_gates : nullptr, eps,
                         tiny));
    } else if constexpr (std::is_same_v<M, ClusteredEva<T>>) {
      // Every output row is a convex combination of the visible values (exact keys and cluster
      // summaries, which are themselves convex combinations), 0 for a query that sees no key: the
      // convex hull bound with the slack of the Eva 2-D case. With r >= C every cluster is exact
      // (docs/spec/eva.md §10.6): exact attention, within the error model of a T evaluation.
      const ClusteredEvaOptions& o = method.options();
      if (o.num_clusters > 0 && o.exact_clusters >= o.num_clusters) {
        ref::ExactSpec c;
        c.scale = ref::resolved_scale(opt.scale, d);
        c.padding = opt.key_padding;
        compare("ClusteredEva r >= C vs exact", out, exact_expect(qd, kd, vd, c, eps, tiny));
      }
      compare("ClusteredEva bounds", out, value_hull(vd, opt.key_padding, nq, eps, tiny));
    } else if constexpr (std::is_same_v<M, Eva<T>>) {
      const EvaOptions& o = method.options();
      const bool single =
          o.semantics == EvaSemantics::Disjoint &&
          (o.grid_height > 0 ? (o.window == o.grid_height && o.window == o.grid_width)
                             : o.window >= nq);
      if (single) {
        ref::ExactSpec c;
        c.scale = ref::resolved_scale(opt.scale, d);
        c.causal = opt.causal;
        c.padding = opt.key_padding;
        compare("Eva Disjoint (one window) vs exact", out, exact_expect(qd, kd, vd, c, eps, tiny));
      }
      if (o.grid_height == 0) {
        ref::EvaSpec c;
        c.options = o;
        c.causal = opt.causal;
        c.padding = opt.key_padding;
        c.scale = ref::resolved_scale(opt.scale, d);
        compare("Eva::forward", out, eva_expect(qd, kd, vd, c, eps, tiny));
      } else if (!single) {
        double vmax = 0;
        const Expect x = value_hull(vd, opt.key_padding, nq, eps, tiny, &vmax);
        if constexpr (std::is_same_v<T, float>) {
          const Eva<double> twin(o.grid_height > 0 ? d : d, o);
          MatD ref(nq, dv);
          const Result rd =
              attempt("Eva<double>::forward", [&] { twin.forward(qd, kd_raw, vd_raw, ref, opt); });
          FUZZ_REQUIRE(rd == Result::Ok,
                       "Eva<double> rejected what Eva<float> accepted: " << g_last_rejection);
          const Index side = o.chunk_size > 0 ? o.chunk_size : 8;
          const double gamma =
              instance_gamma(qd, kd, ref::resolved_scale(opt.scale, d), double(side * side), eps) *
              4;
          Expect y = from_double_instance(ref, gamma, vmax, tiny, nk);
          y.lo = x.lo;
          y.hi = x.hi;
          compare("Eva<float> 2-D vs Eva<double>", out, y);
        } else {
          compare("Eva 2-D bounds", out, x);
        }
      }
    }
  });
}

template void forward_case<float>(Reader&);
template void forward_case<double>(Reader&);

}  // namespace fastattn::fuzz
