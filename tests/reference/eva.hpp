#pragma once
/// @file eva.hpp
/// EVA in double, literally from docs/spec/eva.md §5.2 (Reference) and §5.3 (Disjoint), one query
/// at a time, 1-D and 2-D (an H x W token grid), with the adaptive projections, the local bias,
/// padding and the causal variant. The result keeps its parts (the chunks and every query's
/// softmax terms) so that a caller can also bound the rounding error of a T evaluation.

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "exact.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/types.hpp"
#include "softmax.hpp"

namespace fastattn::test::ref {

/// x -> LayerNorm?(W x + b) (LayerNorm eps 1e-5); the identity when absent.
struct EvaMap {
  bool present = false, layer_norm = false;
  RowMatrix<double> weight;
  Eigen::VectorXd bias, gamma, beta;

  Eigen::VectorXd operator()(const Eigen::VectorXd& x) const {
    if (!present) return x;
    Eigen::VectorXd y = weight * x + bias;
    if (!layer_norm) return y;
    const double mean = y.mean();
    double var = 0;
    for (Index j = 0; j < y.size(); ++j) var += (y[j] - mean) * (y[j] - mean);
    var /= static_cast<double>(y.size());
    for (Index j = 0; j < y.size(); ++j)
      y[j] = (y[j] - mean) / std::sqrt(var + 1e-5) * gamma[j] + beta[j];
    return y;
  }
};

/// The EvaMap of a library projection (absent = identity), in double.
template <class T>
EvaMap eva_map(const std::optional<EvaProjection<T>>& p) {
  EvaMap m;
  if (!p) return m;
  m.present = true;
  m.weight = p->weight.template cast<double>();
  m.bias = p->bias.template cast<double>();
  if (p->ln_gamma.size() != 0) {
    m.layer_norm = true;
    m.gamma = p->ln_gamma.template cast<double>();
    m.beta = p->ln_beta.template cast<double>();
  }
  return m;
}

/// Everything the reference needs to know about one call.
struct EvaSpec {
  EvaOptions options;
  EvaMap mu_q, mu_k;
  RowMatrix<double> local_bias;  // [W, S_w] (1-D) or [W^2, (W + 2e)^2] (2-D); empty = none
  bool causal = false;
  KeyMask padding{};       // true = padded; empty = none
  double scale = 0;        // 0: 1/sqrt(D)
  Index chunk_length = 0;  // L; 0: from the options and n (a decoding state may fix it)
};

/// One chunk: its slots (Reference, spec §5.2) or tile (Disjoint, §5.3) and its statistics.
struct EvaChunk {
  std::vector<std::pair<Index, Index>> slots;  // (grid row, column), possibly outside the grid
  std::vector<Index> members;                  // the valid tokens among them
  std::vector<double> proposal_logits;         // a_t = s (mu . k_t - |k_t|^2 / 2) per member
  Eigen::VectorXd kt, mu;                      // [D] chunk key and proposal mean
  double offset = 0;                           // ln n_c (Disjoint)
  bool used = true;                            // false: a Disjoint chunk with no valid token
};

/// The reference's result and its parts.
struct EvaResult {
  double scale = 0, mu_scale = 0;        // resolved: s and the proposal's mu scale
  Index chunk_length = 0;                // L (the chunk side in 2-D)
  std::vector<EvaChunk> chunks;          // in chunk order
  RowMatrix<double> values;              // [n + chunks, Dv]: v, then each chunk's beta
  std::vector<std::vector<Term>> terms;  // per query: its local keys, then its chunks
  RowMatrix<double> out;                 // [n, Dv]
};

/// EVA for q, k [n, D], v [n, Dv] (an empty sequence gives an empty result).
inline EvaResult eva_attention(const RowMatrix<double>& q, const RowMatrix<double>& k,
                               const RowMatrix<double>& v, const EvaSpec& c) {
  const Index n = q.rows(), d = q.cols(), dv = v.cols();
  EvaResult res;
  res.out = RowMatrix<double>::Zero(n, dv);
  res.values = v;
  if (n == 0) return res;
  const EvaOptions& o = c.options;
  const double s = resolved_scale(c.scale, d);
  const bool disjoint = o.semantics == EvaSemantics::Disjoint, two_d = o.grid_height > 0;
  const double mu_scale = o.mu_scale < 0 ? (c.causal ? 1.0 : 0.5) : o.mu_scale;
  const Index W = o.window, e = o.ext;
  const Index n_p = two_d ? n : (n + W - 1) / W * W;
  const Index R = two_d ? o.grid_height : 1, Cn = two_d ? o.grid_width : n_p;
  Index L = c.chunk_length > 0 ? c.chunk_length : o.chunk_size;
  if (L == 0) {
    L = two_d ? static_cast<Index>(std::floor(std::sqrt(double(n / o.num_chunks))))
              : n_p / o.num_chunks;
  }
  res.chunk_length = L;
  res.scale = s;
  res.mu_scale = mu_scale;
  auto token_of = [&](Index r, Index col) -> Index {  // -1: out of range or internal padding
    if (r < 0 || r >= R || col < 0 || col >= Cn) return -1;
    const Index t = r * Cn + col;
    return t < n ? t : -1;
  };
  auto valid = [&](Index t) { return t >= 0 && !is_padded(c.padding, t); };

  // Chunks: their slots (Reference) or tiles (Disjoint), as grid positions.
  if (!disjoint) {
    const Index ce = c.causal ? 0 : e;
    for (Index ca = 0; ca < (two_d ? R / L : 1); ++ca)
      for (Index cb = 0; cb < Cn / L; ++cb) {
        EvaChunk ch;
        const Index r0 = two_d ? ca * L - ce : 0, r1 = two_d ? ca * L + L + ce : 1;
        for (Index r = r0; r < r1; ++r)
          for (Index col = cb * L - ce; col < cb * L + L + ce; ++col) ch.slots.push_back({r, col});
        res.chunks.push_back(ch);
      }
  } else {
    for (Index ca = 0; ca < (two_d ? (R + L - 1) / L : 1); ++ca)
      for (Index cb = 0; cb < (Cn + L - 1) / L; ++cb) {
        EvaChunk ch;
        const Index r0 = two_d ? ca * L : 0, r1 = two_d ? std::min(R, ca * L + L) : 1;
        for (Index r = r0; r < r1; ++r)
          for (Index col = cb * L; col < std::min(Cn, cb * L + L); ++col)
            ch.slots.push_back({r, col});
        res.chunks.push_back(ch);
      }
  }
  const Index nc = static_cast<Index>(res.chunks.size());
  res.values.conservativeResize(n + nc, dv);
  res.values.bottomRows(nc).setZero();  // beta = 0 for a chunk without valid token
  for (Index ci = 0; ci < nc; ++ci) {
    EvaChunk& ch = res.chunks[std::size_t(ci)];
    Eigen::VectorXd qsum = Eigen::VectorXd::Zero(d), ksum = Eigen::VectorXd::Zero(d);
    for (const auto& p : ch.slots) {
      const Index t = token_of(p.first, p.second);
      if (!valid(t)) continue;
      ch.members.push_back(t);
      qsum += q.row(t).transpose();
      ksum += k.row(t).transpose();
    }
    if (disjoint && ch.members.empty()) {
      ch.used = false;
      continue;
    }
    const double div = disjoint ? double(ch.members.size()) : double(ch.slots.size());
    ch.kt = c.mu_k(ksum / div);
    ch.mu = mu_scale * (c.mu_q(qsum / div) + ch.kt);
    ch.offset = disjoint ? std::log(double(ch.members.size())) : 0.0;
    std::vector<Term> proposal;
    for (Index t : ch.members) {
      ch.proposal_logits.push_back(
          s * (ch.mu.dot(k.row(t).transpose()) - 0.5 * k.row(t).squaredNorm()));
      proposal.push_back({ch.proposal_logits.back(), t});
    }
    if (!ch.members.empty()) res.values.row(n + ci) = softmax_average(proposal, v);
  }

  res.terms.resize(std::size_t(n));
  for (Index i = 0; i < n; ++i) {
    std::vector<Term>& terms = res.terms[std::size_t(i)];
    const Index r = two_d ? i / Cn : 0, col = two_d ? i % Cn : i;
    const Index a0 = two_d ? r / W * W : 0, b0 = col / W * W;
    const Index r_lo = two_d ? a0 - e : 0, r_hi = two_d ? a0 + W + e : 1;
    const Index c_lo = b0 - e, c_hi = b0 + W + (c.causal ? 0 : e);
    const Index qrow = two_d ? (r - a0) * W + (col - b0) : col - b0;
    std::set<std::pair<Index, Index>> span;  // the window's slot positions inside the grid
    Index slot = 0;
    for (Index rr = r_lo; rr < r_hi; ++rr)
      for (Index cc = c_lo; cc < c_hi; ++cc, ++slot) {
        if (rr >= 0 && rr < R && cc >= 0 && cc < Cn) span.insert({rr, cc});
        const Index t = token_of(rr, cc);
        bool masked = !valid(t);
        if (c.causal && !masked) masked = t > i || (!disjoint && is_padded(c.padding, i));
        if (masked) continue;
        double l = s * q.row(i).dot(k.row(t));
        if (c.local_bias.size() != 0) l += c.local_bias(qrow, slot);
        terms.push_back({l, t});
      }
    for (Index ci = 0; ci < nc; ++ci) {
      const EvaChunk& ch = res.chunks[std::size_t(ci)];
      if (!ch.used || (c.causal && !(ci < i / L))) continue;
      if (disjoint) {  // a tile that overlaps the window is already counted exactly
        bool inside = false;
        for (const auto& p : ch.slots) inside = inside || span.count(p);
        if (inside) continue;
      }
      terms.push_back({s * q.row(i).dot(ch.kt) + ch.offset, n + ci});
    }
    res.out.row(i) = softmax_average(terms, res.values);
  }
  return res;
}

}  // namespace fastattn::test::ref
