// The softmax-based expectations of the fuzz harness: exact attention and EVA. The values are the
// references' (tests/reference/exact.hpp, eva.hpp); this file bounds the error of a T evaluation:
// each softmax term carries a bound on its logit error and on the error of the value row it
// weighs, and a row's tolerance follows from them (see fuzz_attention.cpp).

#include <algorithm>
#include <cmath>
#include <vector>

#include "expect.hpp"

namespace fastattn::fuzz {
namespace {

/// Row i of x: the reference's row `out` = softmax(terms) . values, with the tolerance of a T
/// evaluation given each term's logit error dlogit[t] and value error dvalue[t]; *lse_tol bounds
/// the error of the row's log-sum-exp `lse`.
void softmax_row(const std::vector<ref::Term>& terms, const std::vector<double>& dlogit,
                 const std::vector<double>& dvalue, const MatD& values,
                 const Eigen::RowVectorXd& out, double eps, double tiny, Expect& x, Index i,
                 double lse = 0, double* lse_tol = nullptr) {
  const Index dv = values.cols();
  if (terms.empty()) {
    x.out.row(i).setZero();
    x.tol.row(i).setZero();
    if (x.lo.size()) x.lo.row(i).setZero(), x.hi.row(i).setZero();
    if (lse_tol) *lse_tol = 0;
    return;
  }
  double dmax = 0, vmax = 0, dval = 0;
  for (std::size_t t = 0; t < terms.size(); ++t) {
    dmax = std::max(dmax, dlogit[t]);
    dval = std::max(dval, dvalue[t]);
    for (Index d = 0; d < dv; ++d) vmax = std::max(vmax, std::abs(values(terms[t].row, d)));
  }
  const double n = double(terms.size());
  const double gamma = 2 * dmax + (n + 16) * eps;    // relative error of each weight
  const double under = (n + 8) * tiny * (1 + vmax);  // weights and products below FLT/DBL_MIN
  if (gamma > 0.25) x.check[std::size_t(i)] = 0;
  for (Index d = 0; d < dv; ++d) {
    const double o = out[d];
    x.out(i, d) = o;
    x.tol(i, d) = 4 * gamma * vmax + 2 * dval + under + 4 * eps * std::abs(o);
    if (x.lo.size()) {
      double lo = kInf, hi = -kInf;
      for (const ref::Term& t : terms)
        lo = std::min(lo, values(t.row, d)), hi = std::max(hi, values(t.row, d));
      const double slack = (n + 16) * eps * vmax * 8 + 2 * dval + under;
      x.lo(i, d) = lo - slack;
      x.hi(i, d) = hi + slack;
    }
  }
  if (lse_tol) *lse_tol = 2 * gamma + 4 * eps * std::abs(lse) + (n + 8) * tiny;
}

/// sum_l |a_l b_l| of two rows.
double abs_dot(const MatD& a, Index i, const MatD& b, Index j) {
  double s = 0;
  for (Index l = 0; l < a.cols(); ++l) s += std::abs(a(i, l) * b(j, l));
  return s;
}

}  // namespace

Expect exact_expect(const MatD& q, const MatD& k, const MatD& v, const ref::ExactSpec& spec,
                    double eps, double tiny, VecD* lse, VecD* lse_tol) {
  const Index nq = q.rows(), nk = k.rows(), d = q.cols(), dv = v.cols(), delta = nk - nq;
  const double s = ref::resolved_scale(spec.scale, d);
  Expect x(nq, dv, true);
  if (lse) lse->resize(nq), lse_tol->resize(nq);
  std::vector<double> dlogit, dvalue;
  for (Index i = 0; i < nq; ++i) {
    const std::vector<ref::Term> terms = ref::exact_terms(q, k, spec, i);
    dlogit.clear();
    for (const ref::Term& t : terms) {
      const Index j = t.row;
      const double b = ref::bias_at(spec, i, j), dist = std::abs(double(i + delta - j));
      dlogit.push_back(eps * ((d + 4) * std::abs(s) * abs_dot(q, i, k, j) + 4 * std::abs(b) +
                              4 * spec.alibi_slope * dist + 4 * std::abs(t.logit)));
    }
    dvalue.assign(terms.size(), 0.0);
    double row_lse, row_lse_tol = 0;
    const Eigen::RowVectorXd out = ref::softmax_average(terms, v, &row_lse);
    softmax_row(terms, dlogit, dvalue, v, out, eps, tiny, x, i, row_lse, &row_lse_tol);
    if (lse) (*lse)[i] = row_lse, (*lse_tol)[i] = row_lse_tol;
  }
  return x;
}

Expect eva_expect(const MatD& q, const MatD& k, const MatD& v, const ref::EvaSpec& spec, double eps,
                  double tiny) {
  const Index n = q.rows(), d = q.cols(), dv = v.cols();
  if (n == 0) return Expect(0, dv, true);
  const ref::EvaResult res = ref::eva_attention(q, k, v, spec);
  const double s = res.scale;
  double kabs = 0, qabs = 0;
  for (Index t = 0; t < n; ++t)
    if (!ref::is_padded(spec.padding, t)) {
      kabs = std::max(kabs, k.row(t).cwiseAbs().maxCoeff());
      qabs = std::max(qabs, q.row(t).cwiseAbs().maxCoeff());
    }
  // Per chunk: the error of its key k~_c (ekt) and of its value beta_c (dbeta).
  const std::size_t nc = res.chunks.size();
  std::vector<double> ekt(nc, 0.0), dbeta(nc, 0.0);
  for (std::size_t ci = 0; ci < nc; ++ci) {
    const ref::EvaChunk& ch = res.chunks[ci];
    if (!ch.used) continue;
    const double span = double(ch.slots.size() + 8);
    ekt[ci] = eps * span * kabs;
    if (ch.members.empty()) continue;  // beta_c = 0 exactly
    const double dmu = eps * span * std::abs(res.mu_scale) * (qabs + kabs);
    double da = 0, vmax = 0;
    for (std::size_t m = 0; m < ch.members.size(); ++m) {
      const Index t = ch.members[m];
      double adot = 0;
      for (Index l = 0; l < d; ++l) adot += std::abs(ch.mu[l] * k(t, l)) + dmu * std::abs(k(t, l));
      const double sq = k.row(t).squaredNorm(), at = ch.proposal_logits[m];
      da = std::max(da, eps * (d + 6) * std::abs(s) * (adot + sq) + 4 * eps * std::abs(at));
      if (dv) vmax = std::max(vmax, v.row(t).cwiseAbs().maxCoeff());
    }
    const double count = double(ch.members.size());
    const double gamma = 2 * da + (count + 16) * eps;
    dbeta[ci] = gamma > 0.25 ? kInf : 4 * gamma * vmax + (count + 8) * tiny * (1 + vmax);
  }
  Expect x(n, dv, true);
  std::vector<double> dlogit, dvalue;
  for (Index i = 0; i < n; ++i) {
    const std::vector<ref::Term>& terms = res.terms[std::size_t(i)];
    dlogit.clear();
    dvalue.clear();
    for (const ref::Term& t : terms) {
      if (t.row < n) {  // a local key
        dlogit.push_back(eps * (d + 6) * std::abs(s) * abs_dot(q, i, k, t.row) +
                         4 * eps * std::abs(t.logit));
        dvalue.push_back(0);
        continue;
      }
      const std::size_t ci = std::size_t(t.row - n);  // a chunk
      const ref::EvaChunk& ch = res.chunks[ci];
      double adot = 0, aq = 0;
      for (Index l = 0; l < d; ++l) adot += std::abs(q(i, l) * ch.kt[l]), aq += std::abs(q(i, l));
      dlogit.push_back(eps * (d + 6) * std::abs(s) * adot + std::abs(s) * aq * ekt[ci] +
                       4 * eps * (std::abs(t.logit) + std::abs(ch.offset)));
      dvalue.push_back(dbeta[ci]);
    }
    softmax_row(terms, dlogit, dvalue, res.values, res.out.row(i), eps, tiny, x, i);
    const bool disjoint = spec.options.semantics == EvaSemantics::Disjoint;
    if (!disjoint && ref::is_padded(spec.padding, i)) x.ignore[std::size_t(i)] = 1;  // unspecified
    bool finite_values = true;
    for (double e : dvalue) finite_values = finite_values && std::isfinite(e);
    if (!finite_values) {
      x.check[std::size_t(i)] = 0;
      x.lo.row(i).setConstant(-kInf);
      x.hi.row(i).setConstant(kInf);
    }
  }
  return x;
}

}  // namespace fastattn::fuzz
