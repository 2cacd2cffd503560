#pragma once
/// @file baselines.hpp
/// Reference lines of the accuracy sweep (bench/accuracy.cpp): what a method's error is read
/// against besides exact attention.
///
///   uniform_attention      ignore the keys: each query gets the mean of its visible values
///   oracle_topk_attention  selection alone: exact softmax over each query's k largest logits
///   window_only_attention  EVA's exact local window without its chunk terms
///
/// None of them is a fast method (the oracle needs every logit to know which are largest); they
/// say how much of a method's error a perfect choice of k keys, or EVA's window alone, would
/// already remove. "Visible" keys are those exact attention uses: not padded (opt.key_padding)
/// and, causal, j <= i + (Nk - Nq) (bottom-right aligned, as AttentionOptions defines it). A
/// query with no visible key gets a zero row, as in exact attention. Everything is accumulated in
/// double whatever T is; the output is rounded to T once.

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::bench {

namespace detail {

/// Checks what every baseline needs: D > 0, Nk == rows of v, a key mask of length Nk (or none),
/// a finite non-negative scale. `fn` names the caller in the message.
template <class T>
void check_baseline_inputs(const char* fn, const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                           const ConstMatRef<T>& v, const AttentionOptions& opt) {
  FASTATTN_CHECK(q.cols() > 0 && q.cols() == k.cols(),
                 fn << ": q [" << q.rows() << ", " << q.cols() << "] and k [" << k.rows() << ", "
                    << k.cols() << "] need the same head dimension D > 0");
  FASTATTN_CHECK(v.rows() == k.rows(), fn << ": v [" << v.rows() << ", " << v.cols()
                                          << "] needs one row per key (k has " << k.rows() << ")");
  FASTATTN_CHECK(opt.key_padding.size() == 0 || opt.key_padding.size() == k.rows(),
                 fn << ": opt.key_padding has length " << opt.key_padding.size()
                    << " but there are " << k.rows() << " keys");
  FASTATTN_CHECK(std::isfinite(opt.scale) && opt.scale >= 0,
                 fn << ": opt.scale = " << opt.scale << " must be finite and >= 0 (0: 1/sqrt(D))");
}

/// The end (exclusive) of the keys query i may see before padding: Nk, or causal i + Nk - Nq + 1.
inline Index visible_end(Index i, Index nq, Index nk, bool causal) {
  return causal ? std::clamp<Index>(i + nk - nq + 1, 0, nk) : nk;
}

inline bool padded(const AttentionOptions& opt, Index j) {
  return opt.key_padding.size() > 0 && opt.key_padding[j];
}

/// out_i = sum_j softmax(logits)_j v_j over the keys `keys` (logit per key), in double.
template <class T>
void softmax_row(const std::vector<std::pair<double, Index>>& keys, const ConstMatRef<T>& v,
                 Eigen::Ref<Vector<double>> out) {
  out.setZero();
  if (keys.empty()) return;
  double max_logit = keys.front().first;
  for (const auto& key : keys) max_logit = std::max(max_logit, key.first);
  double sum = 0;
  for (const auto& [logit, j] : keys) {
    const double w = std::exp(logit - max_logit);
    sum += w;
    out += w * v.row(j).transpose().template cast<double>();
  }
  out /= sum;
}

}  // namespace detail

/// v [Nk, Dv] -> [Nq, Dv]: row i is the mean of the values query i may see (key padding, causal
/// with Nq queries); zero if it sees none. Ignores q and k: the "ignore the keys" baseline.
template <class T>
RowMatrix<T> uniform_attention(Index nq, ConstMatRef<T> v, const AttentionOptions& opt = {}) {
  FASTATTN_CHECK(nq >= 0, "uniform_attention: nq = " << nq << " must be >= 0");
  FASTATTN_CHECK(opt.key_padding.size() == 0 || opt.key_padding.size() == v.rows(),
                 "uniform_attention: opt.key_padding has length "
                     << opt.key_padding.size() << " but v [" << v.rows() << ", " << v.cols()
                     << "] has " << v.rows() << " keys");
  const Index nk = v.rows();
  RowMatrix<T> out(nq, v.cols());
  Vector<double> sum = Vector<double>::Zero(v.cols());
  Index count = 0, next = 0;  // keys [0, next) are in sum (causal: the prefix grows with i)
  for (Index i = 0; i < nq; ++i) {
    for (const Index end = detail::visible_end(i, nq, nk, opt.causal); next < end; ++next)
      if (!detail::padded(opt, next)) {
        sum += v.row(next).transpose().template cast<double>();
        ++count;
      }
    if (count > 0)
      out.row(i) = (sum / double(count)).transpose().template cast<T>();
    else
      out.row(i).setZero();
  }
  return out;
}

/// q [Nq, D], k [Nk, D], v [Nk, Dv] -> [Nq, Dv]: for each query, exact softmax attention over
/// its `top_k` largest logits scale q_i.k_j among its visible keys (renormalized over those),
/// i.e. what selecting the right keys alone gives. Ties at the k-th logit keep the lower key
/// index. top_k >= the number of visible keys gives exact attention.
template <class T>
RowMatrix<T> oracle_topk_attention(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                                   Index top_k, const AttentionOptions& opt = {}) {
  detail::check_baseline_inputs<T>("oracle_topk_attention", q, k, v, opt);
  FASTATTN_CHECK(top_k >= 1, "oracle_topk_attention: top_k = " << top_k << " must be >= 1");
  const Index nq = q.rows(), nk = k.rows();
  const double scale = opt.scale > 0 ? opt.scale : 1.0 / std::sqrt(double(q.cols()));
  const RowMatrix<double> kd = k.template cast<double>();
  RowMatrix<T> out(nq, v.cols());
  Vector<double> row(v.cols());
  std::vector<std::pair<double, Index>> keys;
  // Larger logit first; equal logits: lower index first (a strict weak order, so nth_element
  // picks the same set on every platform).
  const auto before = [](const std::pair<double, Index>& a, const std::pair<double, Index>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  constexpr Index kBlock = 64;  // query rows per logit GEMM: [64, Nk] doubles stay in cache
  for (Index i0 = 0; i0 < nq; i0 += kBlock) {
    const Index rows = std::min(kBlock, nq - i0);
    const RowMatrix<double> logits =
        (q.middleRows(i0, rows).template cast<double>() * scale) * kd.transpose();
    for (Index r = 0; r < rows; ++r) {
      const Index i = i0 + r;
      keys.clear();
      for (Index j = 0, end = detail::visible_end(i, nq, nk, opt.causal); j < end; ++j)
        if (!detail::padded(opt, j)) keys.emplace_back(logits(r, j), j);
      if (Index(keys.size()) > top_k) {
        std::nth_element(keys.begin(), keys.begin() + top_k, keys.end(), before);
        keys.resize(size_t(top_k));
      }
      detail::softmax_row<T>(keys, v, row);
      out.row(i) = row.transpose().template cast<T>();
    }
  }
  return out;
}

/// q [N, D], k [N, D], v [N, Dv] -> [N, Dv] (self-attention, as EVA): exact softmax attention
/// restricted to EVA's local window of each query, without the chunk terms. Query i is in window
/// w = floor(i / window), whose keys are [w W - ext, w W + W + ext) (causal: [w W - ext, i]),
/// clipped to the sequence, minus padded keys (docs/spec/eva.md §5.3, the key range of the exact
/// entries E_i).
template <class T>
RowMatrix<T> window_only_attention(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                                   Index window, Index ext = 0,
                                   const AttentionOptions& opt = {}) {
  detail::check_baseline_inputs<T>("window_only_attention", q, k, v, opt);
  FASTATTN_CHECK(q.rows() == k.rows(), "window_only_attention: q [" << q.rows() << ", " << q.cols()
                                           << "] and k [" << k.rows() << ", " << k.cols()
                                           << "]: EVA's windows need Nq == Nk");
  FASTATTN_CHECK(window >= 1 && ext >= 0, "window_only_attention: window = "
                                              << window << " must be >= 1 and ext = " << ext
                                              << " >= 0");
  const Index n = q.rows();
  const double scale = opt.scale > 0 ? opt.scale : 1.0 / std::sqrt(double(q.cols()));
  RowMatrix<T> out(n, v.cols());
  Vector<double> row(v.cols());
  std::vector<std::pair<double, Index>> keys;
  for (Index i = 0; i < n; ++i) {
    const Index start = (i / window) * window;
    const Index lo = std::max<Index>(0, start - ext);
    const Index hi = opt.causal ? i + 1 : std::min(n, start + window + ext);
    const Vector<double> qi = q.row(i).transpose().template cast<double>() * scale;
    keys.clear();
    for (Index j = lo; j < hi; ++j)
      if (!detail::padded(opt, j))
        keys.emplace_back(k.row(j).transpose().template cast<double>().dot(qi), j);
    detail::softmax_row<T>(keys, v, row);
    out.row(i) = row.transpose().template cast<T>();
  }
  return out;
}

}  // namespace fastattn::bench
