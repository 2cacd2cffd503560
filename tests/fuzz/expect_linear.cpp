// The random-feature expectations of the fuzz harness: Favor (non-compat kernels) and Rfa (trig,
// arc-cosine, gated), evaluated from the method's own projection W. The values are the references'
// (tests/reference/features.hpp, favor.hpp, linear.hpp); this file bounds the error of a T
// evaluation: every feature carries an absolute error bound, the numerator and the denominator of
// each row propagate them separately, and a row whose denominator is within its error of the guard
// threshold is only checked for finiteness (see fuzz_attention.cpp).

#include <algorithm>
#include <cmath>
#include <vector>

#include "../reference/favor.hpp"
#include "../reference/features.hpp"
#include "expect.hpp"

namespace fastattn::fuzz {
namespace {

/// Features in the library's units [n, M] and absolute error bounds of their T values.
struct Features {
  MatD f, e;
};

/// [n, m] sum_l |w_rl y_l| for the rows y of `inputs`.
MatD abs_projection(const MatD& inputs, const MatD& w) {
  MatD au(inputs.rows(), w.rows());
  for (Index i = 0; i < inputs.rows(); ++i)
    for (Index r = 0; r < w.rows(); ++r) {
      double s = 0;
      for (Index l = 0; l < w.cols(); ++l) s += std::abs(w(r, l) * inputs(i, l));
      au(i, r) = s;
    }
  return au;
}

/// FAVOR's log-features (docs/spec/favor.md §3-§4) of rows x under the per-dimension input scale
/// dim_scale (c psi or c / psi) and their error bounds dell: eps (D + 6) (B sum|w y| + h +
/// |A|w|^2|)
/// + 4 eps |ell|.
void favor_exponents(const MatD& x, const MatD& w, const VecD& dim_scale, FeatureKind kind,
                     double a, double eps, MatD& ell, MatD& dell) {
  const Index n = x.rows(), m = w.rows(), d = x.cols();
  ref::FeatureSpec spec;
  spec.dim_scale = dim_scale;
  spec.optimal_a = a;
  ell = ref::features(kind, w, x, spec);
  const MatD y = ref::feature_inputs(x, spec);
  const MatD au = abs_projection(y, w);
  const bool hyp = kind == FeatureKind::Hyperbolic, opt = kind == FeatureKind::Optimal;
  const double b = opt ? std::sqrt(1 - 4 * a) : 1.0;
  dell.resize(n, ell.cols());
  for (Index i = 0; i < n; ++i) {
    const double h = 0.5 * y.row(i).squaredNorm();
    for (Index r = 0; r < m; ++r) {
      const double off = opt ? a * w.row(r).squaredNorm() : 0.0;
      const double base = eps * (d + 6) * (b * au(i, r) + h + std::abs(off));
      dell(i, r) = base + 4 * eps * std::abs(ell(i, r));
      if (hyp) dell(i, m + r) = base + 4 * eps * std::abs(ell(i, m + r));
    }
  }
}

/// exp of the exponents with the library's shifts: per row (queries) or one shift over the rows
/// with use[j] (keys).
Features shifted_exp(const MatD& ell, const MatD& dell, const std::vector<char>* use, double eps,
                     double tiny) {
  Features f{MatD::Zero(ell.rows(), ell.cols()), MatD::Zero(ell.rows(), ell.cols())};
  double global = -kInf;
  if (use)
    for (Index j = 0; j < ell.rows(); ++j)
      if ((*use)[std::size_t(j)]) global = std::max(global, ell.row(j).maxCoeff());
  for (Index i = 0; i < ell.rows(); ++i) {
    if (use && !(*use)[std::size_t(i)]) continue;
    const double shift = use ? global : ell.row(i).maxCoeff();
    for (Index r = 0; r < ell.cols(); ++r) {
      const double v = std::exp(ell(i, r) - shift);
      f.f(i, r) = v;
      f.e(i, r) = v * (dell(i, r) + 8 * eps * std::abs(shift) + 8 * eps) + tiny;
    }
  }
  return f;
}

/// relu(c W x) + eps_relu (Favor Relu) or relu(W x_hat) (Rfa Arccos).
Features relu_features(const MatD& x, const MatD& w, double c, double relu_eps, bool normalize,
                       double eps, double tiny) {
  ref::FeatureSpec spec;
  spec.input_scale = c;
  spec.normalize = normalize;
  spec.relu_eps = relu_eps;
  Features f{ref::features(FeatureKind::Relu, w, x, spec), MatD()};
  const MatD au = abs_projection(ref::feature_inputs(x, spec), w);
  f.e = (eps * double(x.cols() + 8) * au.array() + 4 * eps * f.f.array() + tiny).matrix();
  return f;
}

/// Rfa's trig features [cos(W x_hat), sin(W x_hat)] (a zero row stays zero); the error grows with
/// the argument |u| of cos and sin.
Features trig_features(const MatD& x, const MatD& w, double eps, double tiny) {
  const Index n = x.rows(), m = w.rows(), d = x.cols();
  ref::FeatureSpec spec;
  spec.normalize = true;
  Features f{ref::features(FeatureKind::Trig, w, x, spec), MatD::Zero(n, 2 * m)};
  const MatD y = ref::feature_inputs(x, spec);
  const MatD au = abs_projection(y, w), u = y * w.transpose();
  for (Index i = 0; i < n; ++i)
    for (Index r = 0; r < m; ++r)
      f.e(i, r) = f.e(i, m + r) =
          eps * double(d + 8) * au(i, r) + 8 * eps * (std::abs(u(i, r)) + 4) + tiny;
  return f;
}

/// The linear attention of reference/linear.hpp with features fq, fk (and the gated decay), with
/// the tolerance of a T evaluation: rows where the library's guard branch (den <= den_eps * mass:
/// N / (den_eps * mass), or 0 when den_eps = 0) is decided by rounding are finiteness-only.
Expect linear_expect(const Features& fq, const Features& fk, const MatD& v,
                     const ref::LinearSpec& spec, bool nonneg, double eps, double tiny) {
  const Index nq = fq.f.rows(), nk = fk.f.rows(), dv = v.cols(), m = fq.f.cols();
  const Index delta = nk - nq;
  const bool gated = !spec.log_gates.empty();
  Expect x(nq, dv, nonneg);
  const MatD lw = ref::linear_log_weights(nq, nk, spec);
  const ref::KernelAverage avg = ref::kernel_average_rows(
      ref::feature_kernel(fq.f, fk.f), ref::linear_weights(nq, nk, spec), v, spec.den_eps);
  // Cumulative log gates over non-padded keys: the size of the decay's rounding error.
  std::vector<double> g(std::size_t(nk), 0.0);
  for (Index j = 0; j < nk; ++j) {
    const double lg =
        gated && !ref::is_padded(spec.padding, j) ? spec.log_gates[std::size_t(j)] : 0.0;
    g[std::size_t(j)] = (j > 0 ? g[std::size_t(j - 1)] : 0.0) + lg;
  }
  const double acc_err = double(nk + m + 16) * eps;
  VecD enum_(dv);
  for (Index i = 0; i < nq; ++i) {
    const Index last = spec.causal ? std::min(i + delta, nk - 1) : nk - 1;
    double eden = 0, vmax = 0;
    enum_.setZero();
    VecD lo = VecD::Constant(dv, 0.0), hi = VecD::Constant(dv, 0.0);  // hull incl. 0 (guards)
    Index seen = 0;
    for (Index j = 0; j <= last; ++j) {
      if (lw(i, j) == -kInf) continue;  // padded, or a gate of 1
      double fac = 1, dfac = 0;
      if (gated) {
        fac = std::exp(lw(i, j));
        dfac = eps * (8 * (std::abs(g[std::size_t(last)]) + std::abs(g[std::size_t(j)])) + nk + 16);
      }
      ++seen;
      double aw = 0, e = 0;
      for (Index r = 0; r < m; ++r) {
        const double a = fq.f(i, r), b = fk.f(j, r), ea = fq.e(i, r), eb = fk.e(j, r);
        aw += std::abs(a * b);
        e += std::abs(a) * eb + ea * std::abs(b) + ea * eb;
      }
      e += double(m + 4) * eps * aw + double(m) * tiny;
      aw *= fac;
      e = e * fac + aw * dfac;
      eden += e + acc_err * aw;
      for (Index d = 0; d < dv; ++d) {
        const double vd = v(j, d);
        enum_[d] += (e + acc_err * aw) * std::abs(vd) + double(m + 4) * tiny;
        vmax = std::max(vmax, std::abs(vd));
        lo[d] = std::min(lo[d], vd);
        hi[d] = std::max(hi[d], vd);
      }
    }
    if (nonneg) x.lo.row(i) = lo.transpose(), x.hi.row(i) = hi.transpose();
    if (seen == 0 || avg.empty[std::size_t(i)]) {  // no visible key: exactly 0
      x.out.row(i).setZero();
      if (nonneg) x.lo.row(i).setZero(), x.hi.row(i).setZero();
      continue;
    }
    const double den = avg.den[i], floor = avg.floor[i];
    const double band = eden + floor * eps * double(nk + 16);
    x.out.row(i) = avg.out.row(i);
    if (den > floor + band && eden < 0.5 * den) {
      for (Index d = 0; d < dv; ++d) {
        const double o = x.out(i, d);
        x.tol(i, d) = 2 * (enum_[d] + std::abs(o) * eden) / (den - eden) + 8 * eps * std::abs(o);
      }
    } else if (floor > 0 && den < floor - band) {
      for (Index d = 0; d < dv; ++d)
        x.tol(i, d) = 2 * enum_[d] / floor + eps * double(nk + 16) * std::abs(x.out(i, d));
    } else if (!(floor == 0 && den < -band)) {
      x.check[std::size_t(i)] = 0;  // the guard's branch is decided by rounding
    }
    if (nonneg) {
      // The hull holds for the library's rows too, up to rounding, whenever the row is resolved.
      if (!x.check[std::size_t(i)]) {
        x.lo.row(i).setConstant(-kInf);
        x.hi.row(i).setConstant(kInf);
      } else {
        for (Index d = 0; d < dv; ++d) {
          x.lo(i, d) -= x.tol(i, d) + 16 * eps * vmax;
          x.hi(i, d) += x.tol(i, d) + 16 * eps * vmax;
        }
      }
    }
  }
  return x;
}

ref::LinearSpec linear_spec(const KeyMask& pad, bool causal, const std::vector<double>* log_gates,
                            double den_eps) {
  ref::LinearSpec spec;
  spec.causal = causal;
  spec.padding = pad;
  if (log_gates) spec.log_gates = *log_gates;
  spec.den_eps = den_eps;
  return spec;
}

}  // namespace

Expect favor_expect(const FavorOptions& o, const MatD& w, const MatD& q, const MatD& k,
                    const MatD& v, const AttentionOptions& opt, bool causal, double eps,
                    double tiny, double t_max) {
  const Index d = q.cols();
  const double s = ref::resolved_scale(opt.scale, d), c = std::sqrt(s);
  const ref::LinearSpec spec = linear_spec(opt.key_padding, causal, nullptr, 0.0);
  if (o.kernel == FavorKernel::Relu) {
    const Features fq = relu_features(q, w, c, o.relu_eps, false, eps, tiny);
    const Features fk = relu_features(k, w, c, o.relu_eps, false, eps, tiny);
    return linear_expect(fq, fk, v, spec, true, eps, tiny);
  }
  VecD psi = VecD::Ones(d);
  double a = o.optimal_a.value_or(0.0);
  const bool auto_a = o.kernel == FavorKernel::Optimal && !o.optimal_a;
  if (o.rescale || auto_a) {
    // The library keeps s psi^2 and s / psi^2 within [1e4 tiny, t_max / 4].
    const double t_lo = 1e4 * tiny, t_hi = t_max / 4;
    const ref::FavorFit fit =
        ref::favor_fit(q, k, opt.key_padding, s, o.rescale, auto_a, std::max(s / t_hi, t_lo / s),
                       std::min(t_hi / s, s / t_lo));
    psi = fit.psi;
    if (auto_a) a = fit.a;
  }
  const FeatureKind kind = o.kernel == FavorKernel::Hyperbolic ? FeatureKind::Hyperbolic
                           : o.kernel == FavorKernel::Optimal  ? FeatureKind::Optimal
                                                               : FeatureKind::Positive;
  MatD lq, dq, lk, dk;
  favor_exponents(q, w, VecD(c * psi), kind, a, eps, lq, dq);
  favor_exponents(k, w, VecD(c * psi.cwiseInverse()), kind, a, eps, lk, dk);
  std::vector<char> use(std::size_t(k.rows()), 1);
  for (Index j = 0; j < k.rows(); ++j) use[std::size_t(j)] = !ref::is_padded(opt.key_padding, j);
  const Features fq = shifted_exp(lq, dq, nullptr, eps, tiny);
  const Features fk = shifted_exp(lk, dk, &use, eps, tiny);
  return linear_expect(fq, fk, v, spec, true, eps, tiny);
}

Expect rfa_expect(const RfaOptions& o, const MatD& w, const MatD& q, const MatD& k, const MatD& v,
                  const KeyMask& pad, bool causal, const std::vector<double>* log_gates, double eps,
                  double tiny) {
  const bool arccos = o.kernel == RfaKernel::Arccos;
  const Features fq =
      arccos ? relu_features(q, w, 1.0, 0.0, true, eps, tiny) : trig_features(q, w, eps, tiny);
  const Features fk =
      arccos ? relu_features(k, w, 1.0, 0.0, true, eps, tiny) : trig_features(k, w, eps, tiny);
  const double den_eps = o.den_eps * double(w.rows());  // in the units of these features
  return linear_expect(fq, fk, v, linear_spec(pad, causal, log_gates, den_eps), arccos, eps, tiny);
}

double instance_gamma(const MatD& q, const MatD& k, double s, double extra, double eps) {
  const double qa = q.size() ? q.cwiseAbs().maxCoeff() : 0.0;
  const double ka = k.size() ? k.cwiseAbs().maxCoeff() : 0.0;
  const double d = double(q.cols());
  return eps * (d + 16) * (std::abs(s) * d * (qa * ka + ka * ka + qa * qa) + extra) +
         eps * double(q.rows() + k.rows() + 16);
}

Expect from_double_instance(const MatD& ref, double gamma, double vmax, double tiny, Index count) {
  Expect x(ref.rows(), ref.cols(), false);
  x.out = ref;
  for (Index i = 0; i < ref.rows(); ++i) {
    if (gamma > 0.25) x.check[std::size_t(i)] = 0;
    for (Index d = 0; d < ref.cols(); ++d)
      x.tol(i, d) =
          4 * gamma * vmax + double(count + 8) * tiny * (1 + vmax) + 1e-6 * std::abs(ref(i, d));
  }
  return x;
}

}  // namespace fastattn::fuzz
