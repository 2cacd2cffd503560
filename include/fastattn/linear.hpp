#pragma once
/// @file linear.hpp
/// The linear-attention core shared by every random-feature method (docs/spec/favor.md §6-§7,
/// docs/spec/rfa.md §5-§6): given feature maps for queries and keys,
///
///   out_i = sum_j phi(q_i).phi(k_j) w_ij v_j / sum_j phi(q_i).phi(k_j) w_ij
///
/// over the keys visible to query i (key padding, bottom-right causal alignment), with w_ij = 1,
/// or the gated decay w_ij = (1 - g_j) prod_{j < l <= i} g_l of RFA-Gate.
///
/// * Non-causal: S = sum_j phi(k_j) [v_j, 1]^T accumulated over key chunks, then out = phi(Q) S;
///   the ones column carries the denominator.
/// * Causal, chunked: per chunk one masked intra-chunk GEMM phi(Q_c) phi(K_c)^T [V_c, 1] plus
///   phi(Q_c) S, then S += phi(K_c)^T [V_c, 1]; never per-token rank-1 updates.
/// * Recurrent: LinearState::step(), for decoding; equals the causal forward to rounding.
///
/// Log-domain features are stabilized exactly: queries by their row max, keys by a running max
/// over the keys seen so far, with the state rescaled when it grows (online softmax applied to the
/// key sums). The shifts cancel between numerator and denominator; no eps is added anywhere.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/detail/checks.hpp"
#include "fastattn/detail/eigen_threads.hpp"
#include "fastattn/detail/simd.hpp"
#include "fastattn/features.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// Options of the linear-attention core.
struct LinearOptions {
  /// Rows per chunk: keys per accumulation step (non-causal) or the causal chunk C. 0 = default
  /// (256 non-causal, 32 causal).
  Index chunk_size = 0;
  /// Denominator guard, relative to each row's total visible weight w (the number of visible keys,
  /// or 1 - prod g for gated attention): a row with w > 0 whose denominator is <= den_eps * w
  /// gives N / (den_eps * w) (clamped), or 0 when den_eps = 0 (signed features, or complete
  /// underflow of positive ones). Such rows are counted in LinearStats::guarded_rows. Relative, so
  /// the guard means the same for any sequence length and for gates close to 1.
  double den_eps = 0;
};

/// Diagnostics of one call.
struct LinearStats {
  /// Rows with a visible key whose denominator was <= den_eps (clamped, or zeroed when den_eps =
  /// 0).
  Index guarded_rows = 0;
};

namespace detail {

/// Default chunks, measured at N = 4096, M = 256, D = 64 (bench/bench_linear.cpp): causal C = 32
/// keeps the intra-chunk products (2 C M + 2 C Dv per row) small next to the state products;
/// non-causal chunks only set the depth of the key-sum GEMM.
inline Index linear_chunk(const LinearOptions& lopt, bool causal) {
  return lopt.chunk_size > 0 ? lopt.chunk_size : (causal ? 32 : 256);
}

template <class T>
void check_linear_maps(const char* fn, const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                       Index d) {
  FASTATTN_CHECK(query_map.num_features() == key_map.num_features() &&
                     query_map.log_domain() == key_map.log_domain(),
                 fn << ": query and key feature maps must have the same number of features and "
                       "domain, got M = "
                    << query_map.num_features() << " and " << key_map.num_features());
  FASTATTN_CHECK(query_map.input_dim() == d && key_map.input_dim() == d,
                 fn << ": feature maps take D = " << query_map.input_dim() << " and "
                    << key_map.input_dim() << " but q and k have D = " << d);
}

/// out row from the numerator/denominator row r [Dv + 1] of a row whose visible keys have total
/// weight `mass` (0 = no visible key); returns true when the row was guarded.
template <class T, class Row, class Out>
bool finish_row(const Row& r, Out out_row, T mass, T den_eps) {
  const Index dv = out_row.size();
  const T den = r[dv];
  if (!(mass > 0)) {
    out_row.setZero();
    return false;
  }
  const T floor = den_eps * mass;
  if (den > floor) {
    out_row = r.head(dv) / den;
    return false;
  }
  if (floor > 0)
    out_row = r.head(dv) / floor;
  else
    out_row.setZero();
  return true;
}

/// Workspace of one core call, sized once (no allocation per chunk).
template <class T>
struct LinearWorkspace {
  RowMatrix<T> fq, fk;        // [C, M] query / key (log-)features
  RowMatrix<T> v1;            // [C, Dv + 1] [V_c, 1]
  RowMatrix<T> scores;        // [C, C] intra-chunk phi(Q_c) phi(K_c)^T (causal)
  RowMatrix<T> r;             // [C, Dv + 1] numerator and denominator
  RowMatrix<T> s;             // [M, Dv + 1] key sums
  Vector<T> gam, key_weight;  // [C]
  LinearWorkspace(Index c, Index m, Index dv, bool causal)
      : fq(c, m),
        fk(c, m),
        v1(c, dv + 1),
        scores(causal ? c : 0, causal ? c : 0),
        r(c, dv + 1),
        s(RowMatrix<T>::Zero(m, dv + 1)),
        gam(c),
        key_weight(c) {}
};

/// Query (log-)features of rows [i0, i0 + n) into ws.fq, exponentiated with each row's max.
template <class T, class Queries>
void query_features(const FeatureMap<T>& map, const Queries& q, Index i0, Index n,
                    LinearWorkspace<T>& ws) {
  auto fq = ws.fq.topRows(n);
  map.apply(q.middleRows(i0, n), fq);
  if (map.log_domain())
    for (Index i = 0; i < n; ++i) {
      const T shift = fq.row(i).maxCoeff();
      fq.row(i) = fq.row(i).unaryExpr(ShiftedExp<T>{shift});
    }
}

/// Key (log-)features of rows [c0, c0 + n) into ws.fk and [V, 1] into ws.v1, padded rows zeroed.
/// Log domain: raises the running shift to cover this chunk (rescaling ws.s) and exponentiates.
template <class T>
void key_features(const FeatureMap<T>& map, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                  const KeyMask& padding, Index c0, Index n, T& shift, LinearWorkspace<T>& ws) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const Index dv = v.cols();
  auto fk = ws.fk.topRows(n);
  auto v1 = ws.v1.topRows(n);
  map.apply(k.middleRows(c0, n), fk);
  v1.leftCols(dv) = v.middleRows(c0, n);
  v1.col(dv).setOnes();
  for (Index j = 0; j < n; ++j)
    if (is_padded(padding, c0 + j)) {  // a padded key contributes nothing, whatever its value
      fk.row(j).setConstant(map.log_domain() ? neg_inf : T(0));
      v1.row(j).setZero();
    }
  if (!map.log_domain()) return;
  const T chunk_max = fk.maxCoeff();
  if (chunk_max > shift) {
    if (shift != neg_inf) ws.s *= std::exp(shift - chunk_max);
    shift = chunk_max;
  }
  if (shift == neg_inf) {  // no visible key yet (e.g. leading padding): weights exp(-inf) = 0
    fk.setZero();          // (left at -inf, (-inf) * 0 in the key sums would be NaN)
    return;
  }
  for (Index j = 0; j < n; ++j) fk.row(j) = fk.row(j).unaryExpr(ShiftedExp<T>{shift});
}

/// The core over query groups that share one key/value stream (one query head, or the query heads
/// of a GQA group): key features and key sums are computed once per chunk and serve every group.
/// queries[g] [Nq, D] -> outs[g] [Nq, Dv]; every group has the same Nq. log_gates: null, or [Nk]
/// values log g_j <= 0 (causal only).
template <class T>
LinearStats linear_attention_impl(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                                  const std::vector<ConstMatMap<T>>& queries,
                                  const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                                  std::vector<MatMap<T>>& outs, const AttentionOptions& opt,
                                  const LinearOptions& lopt, const T* log_gates) {
  SerialEigenScope serial_eigen;
  const Index groups = static_cast<Index>(queries.size());
  const Index nq = groups ? queries[0].rows() : 0, nk = k.rows(), dv = v.cols();
  const Index m = key_map.num_features();
  const Index c = linear_chunk(lopt, opt.causal);
  const T den_eps = static_cast<T>(lopt.den_eps);
  LinearStats stats;
  LinearWorkspace<T> ws(std::min(c, std::max(nq, nk)) + 1, m, dv, opt.causal);
  T shift = -std::numeric_limits<T>::infinity();

  if (!opt.causal) {
    Index visible = 0;  // keys that take part (the whole sequence is visible to every query)
    for (Index c0 = 0; c0 < nk; c0 += c) {
      const Index n = std::min(c, nk - c0);
      key_features(key_map, k, v, opt.key_padding, c0, n, shift, ws);
      ws.s.noalias() += ws.fk.topRows(n).transpose() * ws.v1.topRows(n);
      for (Index j = 0; j < n; ++j) visible += !is_padded(opt.key_padding, c0 + j);
    }
    for (Index g = 0; g < groups; ++g)
      for (Index i0 = 0; i0 < nq; i0 += c) {
        const Index n = std::min(c, nq - i0);
        query_features(query_map, queries[g], i0, n, ws);
        ws.r.topRows(n).noalias() = ws.fq.topRows(n) * ws.s;
        for (Index i = 0; i < n; ++i)
          stats.guarded_rows += finish_row(ws.r.row(i), outs[g].row(i0 + i), T(visible), den_eps);
      }
    return stats;
  }

  // Causal, bottom-right aligned: query i is at key position i + delta and sees keys j <= i +
  // delta.
  const Index delta = nk - nq;
  const Index first_aligned = std::clamp<Index>(-delta, 0, nq);
  for (Index g = 0; g < groups; ++g) {
    outs[g].topRows(first_aligned).setZero();  // queries before the first key see nothing
    if (nk == 0) outs[g].setZero();
  }
  Index contributing = 0;  // keys so far with non-zero weight (not padded, gate < 1)
  T log_gate_sum = 0;      // sum of log g over the keys so far: total gated weight 1 - exp(sum)
  for (Index c0 = 0; c0 < nk; c0 += c) {
    const Index n = std::min(c, nk - c0);
    key_features(key_map, k, v, opt.key_padding, c0, n, shift, ws);
    auto fk = ws.fk.topRows(n);
    auto v1 = ws.v1.topRows(n);

    // Gates of this chunk (padded keys act as g = 1: no weight and no decay).
    auto gam = ws.gam.head(n);            // gam_t = sum_{c0 <= l <= t} log g_l
    auto weight = ws.key_weight.head(n);  // 1 - g_j
    T running = 0;
    for (Index j = 0; j < n; ++j) {
      const T lg = (log_gates && !is_padded(opt.key_padding, c0 + j)) ? log_gates[c0 + j] : T(0);
      running += lg;
      gam[j] = running;
      weight[j] = log_gates ? -std::expm1(lg) : T(1);
    }

    // Queries aligned with this chunk: i + delta in [c0, c0 + n).
    const Index i0 = std::max<Index>(0, c0 - delta), i1 = std::min<Index>(nq, c0 + n - delta);
    for (Index g = 0; g < groups && i1 > i0; ++g) {
      const Index nqc = i1 - i0, t0 = i0 + delta - c0;  // query i0 sits at chunk offset t0
      query_features(query_map, queries[g], i0, nqc, ws);
      auto fq = ws.fq.topRows(nqc);
      auto r = ws.r.topRows(nqc);
      auto scores = ws.scores.topLeftCorner(nqc, n);
      r.noalias() = fq * ws.s;  // the carried-in state
      scores.noalias() = fq * fk.transpose();
      for (Index ii = 0; ii < nqc; ++ii) {
        const Index t = t0 + ii;  // keys j <= t of this chunk are visible
        if (t + 1 < n) scores.row(ii).tail(n - t - 1).setZero();
        if (log_gates) {
          r.row(ii) *= std::exp(gam[t]);
          for (Index j = 0; j <= t; ++j) scores(ii, j) *= weight[j] * std::exp(gam[t] - gam[j]);
        }
      }
      r.noalias() += scores * v1;
      Index seen = contributing;
      for (Index ii = 0, j = 0; ii < nqc; ++ii) {
        for (; j <= t0 + ii; ++j) seen += !is_padded(opt.key_padding, c0 + j) && weight[j] > 0;
        const T mass = log_gates ? -std::expm1(log_gate_sum + gam[t0 + ii]) : T(seen);
        stats.guarded_rows +=
            finish_row(r.row(ii), outs[g].row(i0 + ii), seen > 0 ? mass : T(0), den_eps);
      }
    }

    // Fold the chunk into the state: S <- prod(g) S + phi(K_c)^T diag(w) [V_c, 1].
    if (log_gates) {
      ws.s *= std::exp(gam[n - 1]);
      for (Index j = 0; j < n; ++j) v1.row(j) *= weight[j] * std::exp(gam[n - 1] - gam[j]);
    }
    ws.s.noalias() += fk.transpose() * v1;
    for (Index j = 0; j < n; ++j)
      contributing += !is_padded(opt.key_padding, c0 + j) && weight[j] > 0;
    log_gate_sum += gam[n - 1];
  }
  return stats;
}

/// Single-group convenience: q [Nq, D] -> out [Nq, Dv].
template <class T>
LinearStats linear_attention_single(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                                    const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                                    const ConstMatRef<T>& v, MatRef<T>& out,
                                    const AttentionOptions& opt, const LinearOptions& lopt,
                                    const T* log_gates) {
  std::vector<ConstMatMap<T>> queries{
      ConstMatMap<T>(q.data(), q.rows(), q.cols(), Eigen::OuterStride<>(q.outerStride()))};
  std::vector<MatMap<T>> outs{
      MatMap<T>(out.data(), out.rows(), out.cols(), Eigen::OuterStride<>(out.outerStride()))};
  return linear_attention_impl<T>(query_map, key_map, queries, k, v, outs, opt, lopt, log_gates);
}

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

}  // namespace detail

/// Linear attention with the given feature maps: q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv].
/// The scale in `opt` is ignored (it belongs to the feature maps); causal and key_padding apply;
/// a non-zero alibi_slope is rejected.
template <class T>
LinearStats linear_attention(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                             ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                             const AttentionOptions& opt = {}, const LinearOptions& lopt = {}) {
  detail::check_linear_call<T>("linear_attention", query_map, key_map, q, k, v, out, opt, lopt);
  return detail::linear_attention_single<T>(query_map, key_map, q, k, v, out, opt, lopt, nullptr);
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
  detail::check_linear_call<T>("gated_linear_attention", query_map, key_map, q, k, v, out, opt,
                               lopt);
  FASTATTN_CHECK(log_gates.size() == k.rows(), "gated_linear_attention: log_gates has size "
                                                   << log_gates.size()
                                                   << " but k has Nk = " << k.rows());
  FASTATTN_CHECK((log_gates.array() <= T(0)).all() && log_gates.allFinite(),
                 "gated_linear_attention: log_gates must be finite and <= 0 (gates in (0, 1])");
  return detail::linear_attention_single<T>(query_map, key_map, q, k, v, out, opt, lopt,
                                            log_gates.data());
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
  return detail::linear_attention_impl<T>(query_map, key_map, queries, k, v, outs, opt, lopt,
                                          nullptr);
}

/// Recurrent state of causal linear attention, for decoding: the key sums
/// S = sum_j w_j phi(k_j) [v_j, 1]^T [M, Dv + 1] (log domain: scaled by exp(-shift) with the
/// running key shift), O(M Dv) memory whatever the sequence length. step() does not allocate.
template <class T>
class LinearState {
 public:
  /// A state for `num_features` features and values of width `value_dim`.
  LinearState(Index num_features, Index value_dim, LinearOptions options = {})
      : options_(options),
        sums_(RowMatrix<T>::Zero(checked_features(num_features, value_dim),
                                 detail::packet_padded<T>(value_dim + 1))),
        fq_(1, num_features),
        fk_(1, num_features),
        v1_(RowMatrix<T>::Zero(1, sums_.cols())),
        r_(1, sums_.cols()),
        fqk_(2, num_features),
        value_dim_(value_dim) {
    FASTATTN_CHECK(std::isfinite(options.den_eps) && options.den_eps >= 0,
                   "LinearState: den_eps must be finite and >= 0, got " << options.den_eps);
  }

  /// M, the number of features.
  Index num_features() const { return sums_.rows(); }
  /// Dv, the width of the values.
  Index value_dim() const { return value_dim_; }
  /// Tokens stepped so far (padded ones included).
  Index tokens() const { return tokens_; }
  /// The key sums [M, Dv + 1] (last column: the denominator's sums).
  auto sums() const { return sums_.leftCols(value_dim_ + 1); }
  /// The running key shift (log domain; -inf before the first key).
  T key_shift() const { return shift_; }
  /// Rows clamped or zeroed by the denominator guard so far.
  Index guarded_rows() const { return guarded_; }

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]; `padded` = the token's key is
  /// padding (it gets no weight).
  void step(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map, ConstMatRef<T> q_t,
            ConstMatRef<T> k_t, ConstMatRef<T> v_t, MatRef<T> out_t, bool padded = false) {
    step_impl(query_map, key_map, q_t, k_t, v_t, out_t, false, T(0), padded);
  }

  /// One gated token (RFA-Gate): S <- g S + (1 - g) phi(k_t) [v_t, 1]^T with log_gate = log g <= 0
  /// (g = 1 ignores the token); `padded` = no weight and no decay.
  void gated_step(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map, ConstMatRef<T> q_t,
                  ConstMatRef<T> k_t, ConstMatRef<T> v_t, T log_gate, MatRef<T> out_t,
                  bool padded = false) {
    step_impl(query_map, key_map, q_t, k_t, v_t, out_t, true, log_gate, padded);
  }

 private:
  // Validates the sizes before the member initializers allocate with them.
  static Index checked_features(Index num_features, Index value_dim) {
    FASTATTN_CHECK(num_features >= 1 && value_dim >= 0,
                   "LinearState: num_features must be >= 1 and value_dim >= 0, got "
                       << num_features << " and " << value_dim);
    return num_features;
  }

  void step_impl(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                 const ConstMatRef<T>& q_t, const ConstMatRef<T>& k_t, const ConstMatRef<T>& v_t,
                 MatRef<T>& out_t, bool gated, T log_gate, bool padded) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const Index dv = value_dim();
    detail::check_linear_maps("LinearState::step", query_map, key_map, q_t.cols());
    FASTATTN_CHECK(query_map.num_features() == num_features(),
                   "LinearState::step: feature maps have M = "
                       << query_map.num_features() << " but the state has M = " << num_features());
    FASTATTN_CHECK(q_t.rows() == 1 && k_t.rows() == 1 && k_t.cols() == q_t.cols() &&
                       v_t.rows() == 1 && v_t.cols() == dv && out_t.rows() == 1 &&
                       out_t.cols() == dv,
                   "LinearState::step: q_t " << detail::shape(q_t) << ", k_t " << detail::shape(k_t)
                                             << ", v_t " << detail::shape(v_t) << ", out_t "
                                             << detail::shape(out_t)
                                             << " must be one row each with Dv = " << dv);
    FASTATTN_CHECK(std::isfinite(log_gate) && log_gate <= 0,
                   "LinearState::step: log_gate must be finite and <= 0, got " << log_gate);
    detail::SerialEigenScope serial_eigen;
    ++tokens_;
    // Features first (the readout is fused into the state update below). With one map for both,
    // the query and key rows are projected together: one pass over the weights.
    const bool shared = &query_map == &key_map && !padded;
    if (shared) {
      if (qk_.cols() != q_t.cols()) qk_.resize(2, q_t.cols());  // first step only
      qk_.row(0) = q_t;
      qk_.row(1) = k_t;
      query_map.apply(qk_, fqk_);
      fq_ = fqk_.row(0);
      fk_ = fqk_.row(1);
    } else {
      query_map.apply(q_t, fq_);
    }
    if (query_map.log_domain()) fq_ = fq_.unaryExpr(detail::ShiftedExp<T>{fq_.maxCoeff()});
    T decay = 1, weight = 0;  // S <- decay S + weight phi(k) [v, 1]^T
    if (!padded) {
      if (!shared) key_map.apply(k_t, fk_);
      if (key_map.log_domain()) {
        const T key_max = fk_.maxCoeff();
        if (key_max > shift_) {
          if (shift_ != neg_inf) decay = std::exp(shift_ - key_max);
          shift_ = key_max;
        }
        fk_ = fk_.unaryExpr(detail::ShiftedExp<T>{shift_});
      }
      weight = gated ? -std::expm1(log_gate) : T(1);  // 1 - g
      if (gated) decay *= std::exp(log_gate);
      v1_.leftCols(dv) = v_t;
      v1_(0, dv) = 1;
      contributing_ += weight > 0;
      mass_ = (gated ? std::exp(log_gate) : T(1)) * mass_ + weight;  // total weight of the keys
    } else {
      fk_.setZero();
    }
    // r = phi(q) S_new = decay phi(q) S_old + weight (phi(q).phi(k)) [v, 1], in one pass over S.
    // (sums_, v1_ and r_ are padded to whole packets; the padding columns stay 0.)
    detail::rank1_update_with_readout(sums_.data(), sums_.rows(), sums_.cols(), sums_.cols(),
                                      fq_.data(), fk_.data(), v1_.data(), decay, weight, r_.data());
    r_ = decay * r_ + (weight * fq_.row(0).dot(fk_.row(0))) * v1_;
    guarded_ += detail::finish_row(r_.row(0), out_t.row(0), contributing_ > 0 ? mass_ : T(0),
                                   static_cast<T>(options_.den_eps));
  }

  LinearOptions options_;
  RowMatrix<T> sums_;
  RowMatrix<T> fq_, fk_, v1_, r_;
  RowMatrix<T> qk_, fqk_;  // [2, D] and [2, M]: a step's query and key rows, projected together
  T shift_ = -std::numeric_limits<T>::infinity();
  T mass_ = 0;  // total weight of the keys so far (count, or 1 - prod g when gated)
  Index value_dim_;
  Index tokens_ = 0, contributing_ = 0, guarded_ = 0;
};

/// A decoding state that owns its feature map (the same map for queries and keys) and the
/// recurrent LinearState: what Favor::State and Rfa::State are. Owning the map means a later
/// redraw() of the method does not change a state that is mid-sequence.
template <class T>
class LinearDecodingState {
 public:
  /// A state for `map`'s features and values of width value_dim.
  LinearDecodingState(FeatureMap<T> map, Index value_dim, LinearOptions options = {})
      : map_(std::move(map)), linear_(map_.num_features(), value_dim, options) {}

  /// Tokens stepped so far (padded ones included).
  Index tokens() const { return linear_.tokens(); }
  /// The recurrent linear-attention state (key sums, shift, diagnostics).
  const LinearState<T>& linear() const { return linear_; }
  /// The feature map this state was made with.
  const FeatureMap<T>& feature_map() const { return map_; }

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]; see LinearState::step.
  void step(ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t, MatRef<T> out_t,
            bool padded = false) {
    linear_.step(map_, map_, q_t, k_t, v_t, out_t, padded);
  }
  /// One gated token (log_gate = log g <= 0); see LinearState::gated_step.
  void gated_step(ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t, T log_gate,
                  MatRef<T> out_t, bool padded = false) {
    linear_.gated_step(map_, map_, q_t, k_t, v_t, log_gate, out_t, padded);
  }

 private:
  FeatureMap<T> map_;  // one map for queries and keys: shared, a step streams its weights once
  LinearState<T> linear_;
};

}  // namespace fastattn
