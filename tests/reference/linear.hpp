#pragma once
/// @file linear.hpp
/// Linear attention with given features in double, one (query, key) weight at a time
/// (docs/spec/favor.md §1, docs/spec/rfa.md §6, §8): non-causal, causal (bottom-right), gated, with
/// the library's denominator guard; and the log-domain form for log-features.
///
///   out_i = sum_j w_ij K_ij v_j / sum_j w_ij K_ij,   K_ij = phi(q_i) . phi(k_j)
///
/// w_ij is the weight of key j for query i: 1 for a visible key (not padded; j <= i + Nk - Nq when
/// causal), 0 otherwise; gated, w_ij = (1 - g_j) prod_{j < l <= p} g_l with p = i + Nk - Nq
/// (causal) or Nk - 1, padded keys acting as g = 1 (no weight, no decay).

#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "fastattn/types.hpp"
#include "softmax.hpp"

namespace fastattn::test::ref {

/// The call: mask, log gates (empty = ungated) and the guard's den_eps.
struct LinearSpec {
  bool causal = false;
  KeyMask padding{};                // true = padded; empty = none
  std::vector<double> log_gates{};  // log g_j <= 0, size Nk; empty = ungated
  double den_eps = 0;               // guard floor, relative to the row's total weight
};

/// [Nq, Nk] log w_ij; -inf where query i gives key j no weight. 1 - g_j is -expm1(log g_j), so
/// gates close to 1 keep their precision.
inline RowMatrix<double> linear_log_weights(Index nq, Index nk, const LinearSpec& spec) {
  const double none = -std::numeric_limits<double>::infinity();
  auto padded = [&](Index j) { return spec.padding.size() != 0 && spec.padding[j]; };
  auto log_gate = [&](Index j) {
    return spec.log_gates.empty() || padded(j) ? 0.0 : spec.log_gates[std::size_t(j)];
  };
  RowMatrix<double> lw = RowMatrix<double>::Constant(nq, nk, none);
  for (Index i = 0; i < nq; ++i) {
    const Index last = spec.causal ? i + nk - nq : nk - 1;
    for (Index j = 0; j <= last && j < nk; ++j) {
      if (padded(j)) continue;
      double w = spec.log_gates.empty() ? 0.0 : std::log(-std::expm1(log_gate(j)));
      for (Index l = j + 1; l <= last; ++l) w += log_gate(l);
      lw(i, j) = w;
    }
  }
  return lw;
}

/// [Nq, Nk] w_ij = exp(log w_ij), with std::exp (exactly 0 for -inf, which Eigen's vectorized exp
/// does not promise).
inline RowMatrix<double> linear_weights(Index nq, Index nk, const LinearSpec& spec) {
  return linear_log_weights(nq, nk, spec).unaryExpr([](double x) { return std::exp(x); });
}

/// [Nq, Nk] K_ij = fq_i . fk_j.
inline RowMatrix<double> feature_kernel(const RowMatrix<double>& fq, const RowMatrix<double>& fk) {
  RowMatrix<double> kern(fq.rows(), fk.rows());
  for (Index i = 0; i < fq.rows(); ++i)
    for (Index j = 0; j < fk.rows(); ++j) {
      double s = 0;
      for (Index r = 0; r < fq.cols(); ++r) s += fq(i, r) * fk(j, r);
      kern(i, j) = s;
    }
  return kern;
}

/// A kernel-weighted average and what decided each row (kernel_average_rows).
struct KernelAverage {
  RowMatrix<double> out;  // [Nq, Dv]
  Eigen::VectorXd den;    // sum_j w_ij K_ij (0 for an empty row)
  Eigen::VectorXd floor;  // den_eps * sum_j w_ij
  std::vector<char> empty, guarded;
  Index guarded_rows = 0;
};

/// out_i = sum_j w_ij K_ij v_j / sum_j w_ij K_ij over the keys with w_ij > 0, with the library's
/// guard: den <= den_eps * sum_j w_ij counts the row as guarded and gives N / (den_eps * sum_j
/// w_ij), or 0 when that floor is 0. A row with no weighted key is 0 and not guarded; keys of zero
/// weight are never read (their values may be NaN).
inline KernelAverage kernel_average_rows(const RowMatrix<double>& kern,
                                         const RowMatrix<double>& weights,
                                         const RowMatrix<double>& v, double den_eps) {
  const Index nq = kern.rows(), nk = kern.cols(), dv = v.cols();
  KernelAverage r{RowMatrix<double>::Zero(nq, dv), Eigen::VectorXd::Zero(nq),
                  Eigen::VectorXd::Zero(nq), std::vector<char>(std::size_t(nq), 1),
                  std::vector<char>(std::size_t(nq), 0)};
  Eigen::RowVectorXd num(dv);
  for (Index i = 0; i < nq; ++i) {
    double den = 0, mass = 0;
    num.setZero();
    for (Index j = 0; j < nk; ++j) {
      if (!(weights(i, j) > 0)) continue;
      r.empty[std::size_t(i)] = 0;
      const double a = weights(i, j) * kern(i, j);
      den += a;
      mass += weights(i, j);
      for (Index c = 0; c < dv; ++c) num[c] += a * v(j, c);
    }
    if (r.empty[std::size_t(i)]) continue;
    const double floor = den_eps * mass;
    r.den[i] = den;
    r.floor[i] = floor;
    if (den > floor) {
      r.out.row(i) = num / den;
    } else {
      r.guarded[std::size_t(i)] = 1;
      ++r.guarded_rows;
      if (floor > 0) r.out.row(i) = num / floor;
    }
  }
  return r;
}

/// [Nq, Dv] the average of kernel_average_rows; *guarded counts the guarded rows.
inline RowMatrix<double> kernel_average(const RowMatrix<double>& kern,
                                        const RowMatrix<double>& weights,
                                        const RowMatrix<double>& v, double den_eps,
                                        Index* guarded = nullptr) {
  KernelAverage r = kernel_average_rows(kern, weights, v, den_eps);
  if (guarded) *guarded = r.guarded_rows;
  return std::move(r.out);
}

/// [Nq, Dv] linear attention with features fq [Nq, M], fk [Nk, M]; *guarded counts guarded rows.
inline RowMatrix<double> linear_attention(const RowMatrix<double>& fq, const RowMatrix<double>& fk,
                                          const RowMatrix<double>& v, const LinearSpec& spec,
                                          Index* guarded = nullptr) {
  return kernel_average(feature_kernel(fq, fk), linear_weights(fq.rows(), fk.rows(), spec), v,
                        spec.den_eps, guarded);
}

/// [Nq, Dv] linear attention with log-features lq, lk (phi = exp(l)): the weights w_ij K_ij =
/// exp(LSE_r(lq_ir + lk_jr) + log w_ij) are normalized as a softmax, so no feature is ever
/// exponentiated on its own (no overflow at any magnitude). The guard never applies (K_ij > 0).
inline RowMatrix<double> log_linear_attention(const RowMatrix<double>& lq,
                                              const RowMatrix<double>& lk,
                                              const RowMatrix<double>& v, const LinearSpec& spec) {
  const Index nq = lq.rows(), nk = lk.rows(), m = lq.cols();
  const RowMatrix<double> lw = linear_log_weights(nq, nk, spec);
  RowMatrix<double> out(nq, v.cols());
  std::vector<Term> terms;
  for (Index i = 0; i < nq; ++i) {
    terms.clear();
    for (Index j = 0; j < nk; ++j) {
      if (lw(i, j) == -std::numeric_limits<double>::infinity()) continue;
      double inner = -std::numeric_limits<double>::infinity();
      for (Index r = 0; r < m; ++r) inner = std::max(inner, lq(i, r) + lk(j, r));
      double sum = 0;
      for (Index r = 0; r < m; ++r) sum += std::exp(lq(i, r) + lk(j, r) - inner);
      terms.push_back({inner + std::log(sum) + lw(i, j), j});
    }
    out.row(i) = softmax_average(terms, v);
  }
  return out;
}

}  // namespace fastattn::test::ref
