#pragma once
/// @file linear.hpp
/// The linear-attention core shared by every random-feature method (docs/spec/favor.md §6-§7,
/// docs/spec/rfa.md §5-§6): given feature maps for queries and keys,
///
///   out_i = sum_j phi(q_i).phi(k_j) w_ij v_j / sum_j phi(q_i).phi(k_j) w_ij
///
/// over the keys visible to query i (key padding, bottom-right causal alignment), with w_ij = 1,
/// or the gated decay w_ij = (1 - g_j) prod_{j < l <= i} g_l of RFA-Gate. Three algorithms over
/// one chunk representation (detail/linear/): non-causal (noncausal.hpp), causal chunked and
/// gated (causal.hpp); the recurrent decoding state is in linear_state.hpp.
///
/// Log-domain features are stabilized exactly: queries by their row max, keys by a running max
/// over the keys seen so far, with the key sums rescaled when it grows (online softmax applied to
/// the key sums). The shifts cancel between numerator and denominator; no eps is added anywhere.

#include <cmath>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/linear/causal.hpp"
#include "fastattn/detail/linear/noncausal.hpp"
#include "fastattn/detail/linear/rows.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear_options.hpp"
#include "fastattn/linear_state.hpp"  // the decoding states (kept reachable from this header)
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

namespace detail {

/// Validation shared by the public entry points and the methods built on the core (Favor, Rfa):
/// shapes, maps, and what linear attention cannot represent.
template <class T>
void check_linear_call(const char* fn, const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                       const ConstMatRef<T>& q, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                       const MatRef<T>& out, const AttentionOptions& opt,
                       const LinearOptions& lopt) {
  check_qkv<T>(fn, q, k, v, out, opt);
  check_linear_maps(fn, query_map, key_map, q.cols());
  FASTATTN_CHECK(opt.alibi_slope == 0, fn << ": ALiBi (alibi_slope = " << opt.alibi_slope
                                          << ") cannot be represented by linear attention");
  FASTATTN_CHECK(lopt.chunk_size >= 0, fn << ": chunk_size must be >= 0, got " << lopt.chunk_size);
  FASTATTN_CHECK(std::isfinite(lopt.den_eps) && lopt.den_eps >= 0,
                 fn << ": den_eps must be finite and >= 0, got " << lopt.den_eps);
}

/// Log-gates: finite and <= 0 (gates in (0, 1]), one per key.
template <class T>
void check_log_gates(const char* fn, const ConstVecRef<T>& log_gates, Index nk) {
  FASTATTN_CHECK(log_gates.size() == nk,
                 fn << ": log_gates has size " << log_gates.size() << " but k has Nk = " << nk);
  FASTATTN_CHECK((log_gates.array() <= T(0)).all() && log_gates.allFinite(),
                 fn << ": log_gates must be finite and <= 0 (gates in (0, 1])");
}

/// Validated arguments -> the non-causal or the (ungated) causal algorithm.
template <class T>
LinearStats linear_attention_heads(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                                   const QueryHeads<T>& heads, const ConstMatRef<T>& k,
                                   const ConstMatRef<T>& v, const AttentionOptions& opt,
                                   const LinearOptions& lopt, T input_factor = T(1)) {
  if (!opt.causal)
    return linear_noncausal(query_map, key_map, heads, k, v, opt.key_padding, lopt, input_factor);
  LinearCarry<T> carry(key_map.feature_dim(), v.cols());
  return linear_causal(query_map, key_map, heads, k, v, opt.key_padding, Ungated{}, lopt, carry,
                       input_factor);
}

/// One head as a QueryHeads view (no allocation).
template <class T>
struct SingleHead {
  ConstMatMap<T> q;
  MatMap<T> out;
  explicit SingleHead(const ConstMatRef<T>& q_in, MatRef<T>& out_in)
      : q(q_in.data(), q_in.rows(), q_in.cols(), Eigen::OuterStride<>(q_in.outerStride())),
        out(out_in.data(), out_in.rows(), out_in.cols(),
            Eigen::OuterStride<>(out_in.outerStride())) {}
  QueryHeads<T> heads() { return {&q, &out, 1}; }
};

}  // namespace detail

/// Linear attention with the given feature maps: q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv].
/// The scale in `opt` is ignored (it belongs to the feature maps); causal and key_padding apply;
/// a non-zero alibi_slope is rejected.
template <class T>
LinearStats linear_attention(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                             ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                             const AttentionOptions& opt = {}, const LinearOptions& lopt = {}) {
  detail::check_linear_call<T>("linear_attention", query_map, key_map, q, k, v, out, opt, lopt);
  detail::SingleHead<T> head(q, out);
  return detail::linear_attention_heads<T>(query_map, key_map, head.heads(), k, v, opt, lopt);
}

/// Gated causal linear attention (RFA-Gate): as linear_attention() with causal = true and the
/// decay S_t = g_t S_{t-1} + (1 - g_t) phi(k_t) [v_t, 1]^T, given log_gates [Nk] = log g_t, each
/// finite and <= 0 (g_t in (0, 1]; g_t = 1 ignores token t). Padded keys act as g = 1.
template <class T>
LinearStats gated_linear_attention(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                                   ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                                   ConstVecRef<T> log_gates, MatRef<T> out,
                                   AttentionOptions opt = {}, const LinearOptions& lopt = {}) {
  opt.causal = true;
  const char* fn = "gated_linear_attention";
  detail::check_linear_call<T>(fn, query_map, key_map, q, k, v, out, opt, lopt);
  detail::check_log_gates<T>(fn, log_gates, k.rows());
  detail::SingleHead<T> head(q, out);
  detail::LinearCarry<T> carry(key_map.feature_dim(), v.cols());
  return detail::linear_causal<T>(query_map, key_map, head.heads(), k, v, opt.key_padding,
                                  detail::Gated<T>{log_gates.data()}, lopt, carry);
}

/// Grouped-query linear attention (GQA/MQA): query heads queries[g] [Nq, D] that share one
/// key/value head k [Nk, D], v [Nk, Dv] -> outs[g] [Nq, Dv]. The key features and key sums are
/// computed once for the whole group; each group's result equals linear_attention() on it.
template <class T>
LinearStats grouped_linear_attention(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                                     const std::vector<ConstMatMap<T>>& queries, ConstMatRef<T> k,
                                     ConstMatRef<T> v, std::vector<MatMap<T>>& outs,
                                     const AttentionOptions& opt = {},
                                     const LinearOptions& lopt = {}) {
  FASTATTN_CHECK(queries.size() == outs.size(),
                 "grouped_linear_attention: " << queries.size() << " query heads but "
                                              << outs.size() << " outputs");
  for (std::size_t g = 0; g < queries.size(); ++g) {
    FASTATTN_CHECK(queries[g].rows() == queries[0].rows(),
                   "grouped_linear_attention: every query head must have the same Nq, got "
                       << queries[g].rows() << " and " << queries[0].rows());
    detail::check_linear_call<T>("grouped_linear_attention", query_map, key_map, queries[g], k, v,
                                 outs[g], opt, lopt);
  }
  const detail::QueryHeads<T> heads{queries.data(), outs.data(), Index(queries.size())};
  return detail::linear_attention_heads<T>(query_map, key_map, heads, k, v, opt, lopt);
}

}  // namespace fastattn
