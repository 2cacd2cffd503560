#pragma once
/// @file exact.hpp
/// Exact softmax attention in double (docs/spec/exact.md), one (query, key) logit at a time:
/// scale, bottom-right causal mask, key padding, additive bias, ALiBi and the log-sum-exp.

#include <cmath>
#include <limits>
#include <vector>

#include "fastattn/types.hpp"
#include "softmax.hpp"

namespace fastattn::test::ref {

/// Everything the exact reference needs to know about one call.
struct ExactSpec {
  double scale = 0;          // 0: 1/sqrt(D)
  bool causal = false;       // bottom-right: query i sees keys j <= i + Nk - Nq
  KeyMask padding{};         // true = padded (never seen); empty = none
  RowMatrix<double> bias{};  // [Nq, Nk], [1, Nk] or empty; -inf removes an entry
  double alibi_slope = 0;    // adds -slope * |i + Nk - Nq - j|
};

/// The logit scale: `scale`, or 1/sqrt(D) when it is 0.
inline double resolved_scale(double scale, Index d) {
  return scale != 0 ? scale : 1.0 / std::sqrt(double(d));
}

/// True when key j is padded in `padding` (empty = no padding).
inline bool is_padded(const KeyMask& padding, Index j) { return padding.size() != 0 && padding[j]; }

/// The bias of entry (i, j): 0 without bias, row 0 of a [1, Nk] bias.
inline double bias_at(const ExactSpec& spec, Index i, Index j) {
  if (spec.bias.size() == 0) return 0;
  return spec.bias(spec.bias.rows() == 1 ? 0 : i, j);
}

/// The keys query i sees, in key order, with their logits s q_i.k_j + bias_ij - slope |i + Nk -
/// Nq - j| (Term::row = j).
inline std::vector<Term> exact_terms(const RowMatrix<double>& q, const RowMatrix<double>& k,
                                     const ExactSpec& spec, Index i) {
  const Index nq = q.rows(), nk = k.rows(), d = q.cols();
  const double s = resolved_scale(spec.scale, d);
  std::vector<Term> terms;
  for (Index j = 0; j < nk; ++j) {
    if (is_padded(spec.padding, j) || (spec.causal && j > i + nk - nq)) continue;
    const double b = bias_at(spec, i, j);
    if (b == -std::numeric_limits<double>::infinity()) continue;
    double dot = 0;
    for (Index l = 0; l < d; ++l) dot += q(i, l) * k(j, l);
    terms.push_back({s * dot + b - spec.alibi_slope * std::abs(double(i + nk - nq - j)), j});
  }
  return terms;
}

/// [Nq, Dv] exact softmax attention; a query that sees no key gets 0 and lse -inf.
inline RowMatrix<double> exact_attention(const RowMatrix<double>& q, const RowMatrix<double>& k,
                                         const RowMatrix<double>& v, const ExactSpec& spec,
                                         Eigen::VectorXd* lse = nullptr) {
  RowMatrix<double> out(q.rows(), v.cols());
  if (lse) lse->resize(q.rows());
  for (Index i = 0; i < q.rows(); ++i) {
    double row_lse;
    out.row(i) = softmax_average(exact_terms(q, k, spec, i), v, &row_lse);
    if (lse) (*lse)[i] = row_lse;
  }
  return out;
}

}  // namespace fastattn::test::ref
