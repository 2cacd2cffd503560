#pragma once
/// @file detail/clustered_eva/estimator.hpp
/// The ClusteredEva estimator over a given partition (docs/spec/eva.md §10.2-§10.5, §10.7): per
/// block of queries, the cluster scores (one GEMM, a second for the diagonal mass correction), the
/// top-r selection, the summary entries of the other clusters (one GEMM against beta), the local
/// window, and the selected clusters run through the packed exact kernel over the queries that
/// selected each one, all merged into one softmax per query (OnlineSoftmaxRows). No [Nq, Nk]
/// buffer.

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "fastattn/clustered_eva_options.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/clustered_eva/config.hpp"
#include "fastattn/detail/clustered_eva/online_softmax.hpp"
#include "fastattn/detail/clustered_eva/partition.hpp"
#include "fastattn/detail/clustered_eva/summaries.hpp"
#include "fastattn/detail/exact/packed_kernel.hpp"
#include "fastattn/detail/exact/packed_kv.hpp"
#include "fastattn/detail/simd/packet.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/detail/simd/tile_kernels.hpp"
#include "fastattn/detail/simd/top_r.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The buffers of ClusteredEvaEstimator (one set per thread, reused across calls: see
/// clustered_eva_workspace()). Sized by the estimator; a call with the same shapes as the previous
/// one allocates nothing.
template <class T>
struct ClusteredEvaBuffers {
  RowMatrix<T> mu, beta;  // [C, D] the summary weights' vector, [C, Dv] beta
  Vector<T> beta_logits;  // scratch of summarize_values
  RowMatrix<T> qs, qsq, logits, partial, attending;
  // Cluster scores transposed, [C, block] (the top-r selection and the summary softmax work on
  // packets of queries); the row stride is padded so that a column's entries do not all fall
  // in one cache set. gap: the same for the diagonal correction's (q∘q)·sigma^2.
  RowMatrix<T> scores, gap;
  Vector<T> query_norm2, query_norm;  // [block] |s q|^2 and |s q|
  TopRWorkspace<T> top;
  RowMatrix<T> centre_num;  // [C, D] AttendingQueries numerators
  Vector<T> centre_den;
  std::vector<SoftmaxRow<T>> parts;
  std::vector<Index> selected, group_begin, group_rows, next;
  OnlineSoftmaxRows<T> state;
  std::vector<Index> in_window, slot, touched;  // window
  ClusterMoments<T> adjusted;
  RowMatrix<T> adjusted_beta, adjusted_scores, rest_keys, rest_values, window_keys, window_values;
  // The exact clusters: each cluster's keys and values packed for the exact kernel (once per kv
  // head), the tiles of one query group against one cluster [panels][R][kCols], a zero query
  // (the absent rows of a group) and the window bias [block, largest].
  std::vector<PackedKvStorage<T>> packed;
  Vector<T> exact_tile, zero_query;
  RowMatrix<T> window_bias;
};

/// The query side of one kv head: construct once per (kv head, call) over its clusters, then
/// run() once per query head.
template <class T>
class ClusteredEvaEstimator {
  static constexpr Index kQueryBlock = 1024;    // queries per block: [C, 1024] scores
  static constexpr Index kScoreStridePad = 16;  // extra columns of the [C, block] score rows
  static constexpr Index kRowTile = 512;        // query rows per logits tile
  static constexpr Index kKeyChunk = 256;       // keys per logits tile of a cluster or window

 public:
  /// cfg: the resolved configuration; cl: the partition of k's visible keys; k [Nk, D], v [Nk, Dv]
  /// and key_padding [Nk] or empty (read only by the window); scale: s; buffers: reused storage.
  ClusteredEvaEstimator(const ClusteredEvaConfig& cfg, const KeyClusters<T>& cl,
                        const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                        const KeyMask& key_padding, T scale, ClusteredEvaBuffers<T>& buffers)
      : cfg_(cfg),
        cl_(cl),
        k_(k),
        v_(v),
        pad_(key_padding),
        scale_(scale),
        b_(buffers),
        c_(cl.num_clusters),
        r_(cfg.exact_for(cl.num_clusters)),
        w_(cfg.window),
        d_(k.cols()),
        dv_(v.cols()) {
    block_ = w_ > 0 ? w_ * std::max<Index>(1, kQueryBlock / w_) : kQueryBlock;
    const Index touched_max = w_ > 0 ? std::min(w_, c_) : 0;
    const Index cols = std::max(kKeyChunk, c_ + touched_max);
    const Index r1 = std::max<Index>(r_, 1);
    b_.qs.resize(block_, d_);
    b_.scores.resize(c_, block_ + kScoreStridePad);
    b_.query_norm2.resize(block_);
    b_.query_norm.resize(block_);
    b_.logits.resize(std::min(block_, std::max(kRowTile, w_)), cols);
    b_.partial.resize(block_, dv_);
    b_.parts.resize(size_t(block_));
    b_.selected.resize(size_t(block_ * r1));
    b_.group_begin.resize(size_t(c_ + 1));
    b_.group_rows.resize(size_t(block_ * r1));
    if (cfg_.correction == ClusterMassCorrection::Diagonal) {
      b_.qsq.resize(block_, d_);
      b_.gap.resize(c_, block_ + kScoreStridePad);  // touched_max <= C
    }
    if (w_ > 0) {
      b_.in_window.assign(size_t(c_), 0);
      b_.slot.assign(size_t(c_), -1);
      b_.adjusted.resize(touched_max, d_);
      b_.adjusted_beta.resize(touched_max, dv_);
      b_.adjusted_scores.resize(touched_max, block_ + kScoreStridePad);
      const Index largest = cl.largest();
      b_.rest_keys.resize(largest, d_);
      b_.rest_values.resize(largest, dv_);
      b_.window_keys.resize(std::min(kKeyChunk, w_), d_);
      b_.window_values.resize(std::min(kKeyChunk, w_), dv_);
    }
    if (r_ > 0) pack_clusters();
    if (cfg_.centre == ClusterCentre::AttendingQueries) b_.attending.resize(block_, c_);
    if (cfg_.centre == ClusterCentre::KeyMean) {  // query-independent: once for all query heads
      if (cfg_.summary == ClusterSummary::SingleSample)
        b_.mu = cl.moments.mean;
      else
        b_.mu.setZero(c_, d_);
      summarize();
    }
  }

  /// q [Nq, D] -> out [Nq, Dv]; adds sum over queries of |E_n| to *exact_keys (if given).
  void run(const ConstMatRef<T>& q, MatRef<T> out, double* exact_keys) {
    if (cfg_.centre == ClusterCentre::TokenMean) token_mean_centres(q);
    if (cfg_.centre == ClusterCentre::AttendingQueries) attending_query_centres(q);
    if (cfg_.centre != ClusterCentre::KeyMean) summarize();
    // With one block, the centres' pass left its scores and selection in place: reuse them.
    const bool scored = cfg_.centre == ClusterCentre::AttendingQueries && q.rows() <= block_;
    double exact = 0;
    for (Index i0 = 0; i0 < q.rows(); i0 += block_)
      run_block(q, i0, std::min(block_, q.rows() - i0), out, exact, scored);
    if (exact_keys != nullptr) *exact_keys += exact;
  }

 private:
  // ---- centres and summaries (docs/spec/eva.md §10.5) ----
  // b_.mu holds the vector the summary weights use: the proposal centre mu_c (SingleSample) or
  // the representative query qhat_c (RepresentativeQuery).

  void summarize() {
    summarize_clusters<T>(cl_, b_.mu, scale_, cfg_.summary, b_.beta_logits, b_.beta);
  }

  /// qbar_c, the mean query of the cluster's tokens (Nq = Nk); mu_c = (qbar_c + kbar_c) / 2.
  void token_mean_centres(const ConstMatRef<T>& q) {
    b_.mu.setZero(c_, d_);
    for (Index c = 0; c < c_; ++c) {
      for (Index j = cl_.first(c); j < cl_.first(c + 1); ++j)
        b_.mu.row(c) += q.row(cl_.token[size_t(j)]);
      b_.mu.row(c) /= static_cast<T>(cl_.size(c));
      if (cfg_.summary == ClusterSummary::SingleSample)
        b_.mu.row(c) = T(0.5) * (b_.mu.row(c) + cl_.moments.mean.row(c));
    }
  }

  /// qtilde_c = sum_n a_nc q_n / sum_n a_nc, a_nc the estimated attention share of cluster c for
  /// query n, 0 where c is selected (one pass of scores); mu_c = qtilde_c + kbar_c.
  void attending_query_centres(const ConstMatRef<T>& q) {
    b_.centre_num.setZero(c_, d_);
    b_.centre_den.setZero(c_);
    for (Index i0 = 0; i0 < q.rows(); i0 += block_) {
      const Index b = std::min(block_, q.rows() - i0);
      score_and_select(q, i0, b);
      auto a = b_.attending.topRows(b);
      a = b_.scores.topLeftCorner(c_, b).transpose();
      for (Index i = 0; i < b; ++i) {
        const SoftmaxRow<T> row = softmax_numerators(a.row(i));
        a.row(i) *= row.inverse_sum();
        for (Index t = 0; t < r_; ++t) a(i, selected(i, t)) = 0;
      }
      b_.centre_den += a.colwise().sum().transpose();
      b_.centre_num.noalias() += a.transpose() * q.middleRows(i0, b);
    }
    if (cfg_.summary == ClusterSummary::SingleSample)
      b_.mu = cl_.moments.mean;
    else
      b_.mu.setZero(c_, d_);
    for (Index c = 0; c < c_; ++c)
      if (b_.centre_den[c] > 0) b_.mu.row(c) += b_.centre_num.row(c) / b_.centre_den[c];
  }

  /// Packs every cluster's keys and values in the exact kernel's layout (buffers only grow).
  void pack_clusters() {
    if (b_.packed.size() < size_t(c_)) b_.packed.resize(size_t(c_));
    const KeyMask no_padding;
    const Vector<T> no_bias;
    for (Index c = 0; c < c_; ++c) {
      b_.packed[size_t(c)].set_dims(d_, dv_);
      b_.packed[size_t(c)].pack(cl_.keys.middleRows(cl_.first(c), cl_.size(c)),
                                cl_.values.middleRows(cl_.first(c), cl_.size(c)), no_padding,
                                no_bias);
    }
    const Index largest = cl_.largest();
    b_.exact_tile.resize(key_panels<T>(largest) * RegisterTile<T>::kRows * RegisterTile<T>::kCols);
    b_.zero_query.setZero(d_);
    if (w_ > 0) b_.window_bias.resize(block_, largest);
  }

  // ---- scores and selection (§10.3, §10.4) ----

  /// qs [b, D] (scaled queries) -> out [m, b] (transposed: row c holds cluster c's scores of the
  /// b queries): the estimated log-masses of the clusters whose moments are rows [0, m) of `mo`.
  template <class Queries, class Out>
  void score(const Queries& qs, const ClusterMoments<T>& mo, Index m, Out&& out) {
    const Index b = qs.rows();
    out.noalias() = mo.mean.topRows(m) * qs.transpose();
    out.colwise() += mo.log_count.head(m);
    if (cfg_.correction == ClusterMassCorrection::None) return;
    // The Gaussian gap, capped by the Cauchy-Schwarz bound s|q| rho_c (spec §10.3).
    auto q2 = b_.query_norm2.head(b);
    for (Index i = 0; i < b; ++i) q2[i] = qs.row(i).squaredNorm();
    auto qn = b_.query_norm.head(b);
    qn = q2.cwiseSqrt();
    const auto q2_row = q2.transpose().array();
    const auto q_row = qn.transpose().array();
    if (cfg_.correction == ClusterMassCorrection::Isotropic) {
      for (Index c = 0; c < m; ++c)
        out.row(c).array() += (T(0.5) * mo.mean_var[c] * q2_row).min(mo.radius[c] * q_row);
      return;
    }
    auto qsq = b_.qsq.topRows(b);
    qsq = qs.array().square().matrix();
    auto gap = b_.gap.topLeftCorner(m, b);
    gap.noalias() = mo.var.topRows(m) * qsq.transpose();
    for (Index c = 0; c < m; ++c)
      out.row(c).array() += (T(0.5) * gap.row(c).array()).min(mo.radius[c] * q_row);
  }

  /// Scores of queries [i0, i0 + b) into b_.scores [C, b] (b_.qs holds s q) and the top-r
  /// clusters of each query into b_.selected (ties: the lower index; NaN ranks last).
  void score_and_select(const ConstMatRef<T>& q, Index i0, Index b) {
    b_.qs.topRows(b) = scale_ * q.middleRows(i0, b);
    score(b_.qs.topRows(b), cl_.moments, c_, b_.scores.topLeftCorner(c_, b));
    if (r_ == 0) return;
    select_top_r(b_.scores.data(), b_.scores.outerStride(), b, c_, r_, b_.selected.data(), b_.top);
  }

  Index selected(Index i, Index t) const { return b_.selected[size_t(i * r_ + t)]; }

  // ---- one block of queries ----

  void run_block(const ConstMatRef<T>& q, Index i0, Index b, MatRef<T>& out, double& exact,
                 bool scored) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    if (!scored) score_and_select(q, i0, b);
    if (w_ == 0) {
      // The summary entries, [C, b]: every cluster not selected.
      auto logits = b_.scores.topLeftCorner(c_, b);
      for (Index i = 0; i < b; ++i)
        for (Index t = 0; t < r_; ++t) {
          logits(selected(i, t), i) = neg_inf;
          exact += double(cl_.size(selected(i, t)));
        }
      softmax_numerators_columns(logits.data(), logits.outerStride(), c_, b, b_.parts.data());
      b_.state.start(b, dv_, b_.parts.data());
      b_.state.accumulators(b).noalias() = logits.transpose() * b_.beta;
    } else {
      b_.state.reset(b, dv_);
      for (Index w0 = 0; w0 < b; w0 += w_) run_window(i0 + w0, std::min(w_, b - w0), w0, exact);
    }
    run_exact_clusters(i0, b);
    for (Index i = 0; i < b; ++i) b_.state.finish(i, out.row(i0 + i));
  }

  /// The summaries and the window of the queries [t0, t0 + m) (block rows [r0, r0 + m)), whose
  /// window is the keys [t0, t0 + W) ∩ [0, Nk): clusters meeting the window are summarized over
  /// their keys outside it (spec §10.4).
  void run_window(Index t0, Index m, Index r0, double& exact) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const Index nk = k_.rows();
    const Index a = std::min(t0, nk), e = std::min(t0 + w_, nk);
    // 1. The clusters meeting the window, in index order, and their keys inside it.
    b_.touched.clear();
    Index visible = 0;
    for (Index j = a; j < e; ++j) {
      const Index c = cl_.cluster_of[size_t(j)];
      if (c < 0) continue;
      ++visible;
      if (b_.in_window[size_t(c)]++ == 0) b_.touched.push_back(c);
    }
    std::sort(b_.touched.begin(), b_.touched.end());
    const Index nt = Index(b_.touched.size());
    // 2. Their moments and summaries over the keys outside the window.
    for (Index t = 0; t < nt; ++t) {
      const Index c = b_.touched[size_t(t)];
      b_.slot[size_t(c)] = t;
      Index rest = 0;
      for (Index j = cl_.first(c); j < cl_.first(c + 1); ++j) {
        const Index token = cl_.token[size_t(j)];
        if (token >= a && token < e) continue;
        b_.rest_keys.row(rest) = cl_.keys.row(j);
        b_.rest_values.row(rest) = cl_.values.row(j);
        ++rest;
      }
      if (rest == 0) {  // entirely inside the window: no summary entry
        b_.adjusted.log_count[t] = neg_inf;
        b_.adjusted.mean.row(t).setZero();
        b_.adjusted.var.row(t).setZero();
        b_.adjusted.mean_var[t] = 0;
        b_.adjusted.radius[t] = 0;
        b_.adjusted_beta.row(t).setZero();
        continue;
      }
      compute_moments<T>(b_.rest_keys.topRows(rest), b_.adjusted, t);
      summarize_values<T>(b_.rest_keys.topRows(rest), b_.rest_values.topRows(rest), b_.mu.row(c),
                          scale_, cfg_.summary, b_.beta_logits, b_.adjusted_beta.row(t));
    }
    // 3. Summary logits [m, C + nt]: whole clusters, then the adjusted ones; the selected and the
    // replaced entries masked.
    auto logits = b_.logits.topLeftCorner(m, c_ + nt);
    if (nt > 0) {
      score(b_.qs.middleRows(r0, m), b_.adjusted, nt, b_.adjusted_scores.topLeftCorner(nt, m));
      logits.rightCols(nt) = b_.adjusted_scores.topLeftCorner(nt, m).transpose();
      for (Index t = 0; t < nt; ++t)
        if (b_.adjusted.log_count[t] == neg_inf) logits.col(c_ + t).setConstant(neg_inf);
    }
    logits.leftCols(c_) = b_.scores.block(0, r0, c_, m).transpose();
    for (Index c : b_.touched) logits.col(c).setConstant(neg_inf);
    for (Index i = 0; i < m; ++i) {
      Index exact_row = visible;
      for (Index t = 0; t < r_; ++t) {
        const Index c = selected(r0 + i, t);
        logits(i, c) = neg_inf;
        exact_row += cl_.size(c);
        if (b_.slot[size_t(c)] >= 0) {
          logits(i, c_ + b_.slot[size_t(c)]) = neg_inf;
          exact_row -= b_.in_window[size_t(c)];
        }
      }
      exact += double(exact_row);
      b_.parts[size_t(i)] = softmax_numerators(logits.row(i));
    }
    auto partial = b_.partial.topRows(m);
    partial.noalias() = logits.leftCols(c_) * b_.beta;
    if (nt > 0) partial.noalias() += logits.rightCols(nt) * b_.adjusted_beta.topRows(nt);
    for (Index i = 0; i < m; ++i) b_.state.merge(r0 + i, b_.parts[size_t(i)], partial.row(i));
    for (Index c : b_.touched) {
      b_.in_window[size_t(c)] = 0;
      b_.slot[size_t(c)] = -1;
    }
    // 4. The window's keys, exactly (padded ones masked, and zeroed so that non-finite padded
    // values cannot leak through 0 * inf).
    for (Index j0 = a; j0 < e; j0 += kKeyChunk) {
      const Index len = std::min(kKeyChunk, e - j0);
      bool any_padded = false;
      for (Index j = j0; j < j0 + len; ++j) any_padded = any_padded || is_padded(j);
      if (any_padded) {
        for (Index j = 0; j < len; ++j) {
          if (is_padded(j0 + j)) {
            b_.window_keys.row(j).setZero();
            b_.window_values.row(j).setZero();
          } else {
            b_.window_keys.row(j) = k_.row(j0 + j);
            b_.window_values.row(j) = v_.row(j0 + j);
          }
        }
      }
      const ConstMatRef<T> keys = any_padded ? ConstMatRef<T>(b_.window_keys.topRows(len))
                                             : ConstMatRef<T>(k_.middleRows(j0, len));
      const ConstMatRef<T> values = any_padded ? ConstMatRef<T>(b_.window_values.topRows(len))
                                               : ConstMatRef<T>(v_.middleRows(j0, len));
      auto tile = b_.logits.topLeftCorner(m, len);
      tile.noalias() = b_.qs.middleRows(r0, m) * keys.transpose();
      if (any_padded)
        for (Index j = 0; j < len; ++j)
          if (is_padded(j0 + j)) tile.col(j).setConstant(neg_inf);
      for (Index i = 0; i < m; ++i) b_.parts[size_t(i)] = softmax_numerators(tile.row(i));
      partial.noalias() = tile * values;
      for (Index i = 0; i < m; ++i) b_.state.merge(r0 + i, b_.parts[size_t(i)], partial.row(i));
    }
  }

  /// The selected clusters: per cluster, the block's queries that selected it run through the
  /// exact kernel's tiles against the cluster's packed keys and values, in groups of R, reading
  /// the queries' rows of b_.qs and updating their softmax state (m, l, acc) in place (keys of a
  /// query's window masked by a bias: they are in its window part already).
  /// Why not exact_packed_attention per cluster: it packs the gathered queries, normalizes its
  /// output and returns a log-sum-exp that the merge turns back into weights; with ~64 queries
  /// against ~64 keys per call that overhead was about a fifth of the exact clusters' time.
  void run_exact_clusters(Index i0, Index b) {
    using Tile = RegisterTile<T>;
    constexpr int R = Tile::kRows, C = Tile::kCols, P = Tile::kPackets;
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    if (r_ == 0) return;
    std::fill(b_.group_begin.begin(), b_.group_begin.end(), 0);
    for (Index i = 0; i < b; ++i)
      for (Index t = 0; t < r_; ++t) ++b_.group_begin[size_t(selected(i, t) + 1)];
    for (Index c = 0; c < c_; ++c) b_.group_begin[size_t(c + 1)] += b_.group_begin[size_t(c)];
    b_.next.assign(b_.group_begin.begin(), b_.group_begin.end() - 1);
    for (Index i = 0; i < b; ++i)
      for (Index t = 0; t < r_; ++t) b_.group_rows[size_t(b_.next[size_t(selected(i, t))]++)] = i;
    const Index ldv = packet_padded<T>(dv_);
    const T* query_rows[R];
    T* out_rows[R];
    T m[R], l[R], alpha[R];
    GroupSoftmax<T> sm;
    packed_detail::GroupReference<T> gr;
    T* const tile = b_.exact_tile.data();
    for (Index c = 0; c < c_; ++c) {
      const Index g0 = b_.group_begin[size_t(c)], g = b_.group_begin[size_t(c + 1)] - g0;
      if (g == 0) continue;
      const Index* row_of = &b_.group_rows[size_t(g0)];
      const Index n = cl_.size(c), first = cl_.first(c);
      if (w_ > 0) {  // bias [g, n]: -inf on the keys in each query's window
        auto bias = b_.window_bias.topLeftCorner(g, n);
        for (Index i = 0; i < g; ++i) {
          const Index a = (i0 + row_of[i]) / w_ * w_, e = a + w_;
          for (Index j = 0; j < n; ++j) {
            const Index key = cl_.token[size_t(first + j)];
            bias(i, j) = key >= a && key < e ? neg_inf : T(0);
          }
        }
      }
      const ConstMatRef<T> bias = b_.window_bias.topLeftCorner(w_ > 0 ? g : 0, w_ > 0 ? n : 0);
      const PackedKv<T> kv = b_.packed[size_t(c)].view();
      const Index panels = key_panels<T>(n);
      // Panels [0, clean) hold keys only (no bias): scores and weights in one pass. The rest
      // (the last, partly filled panel, or every panel with the window's bias) are scored,
      // masked, then turned into weights. A last panel with at most kLanes keys is scored and
      // weighted on its first packet only (clusters are small: it saves ~5% of the exact part
      // at N = 4096).
      const Index clean = w_ > 0 ? 0 : n / C;
      const bool half_last = Tile::kPackets == 2 && n - (panels - 1) * C <= Tile::kLanes;
      for (Index q0 = 0; q0 < g; q0 += R) {
        const int rows = static_cast<int>(std::min<Index>(R, g - q0));
        for (int r = 0; r < R; ++r) {
          if (r < rows) {
            const Index i = row_of[q0 + r];
            query_rows[r] = b_.qs.row(i).data();
            out_rows[r] = b_.state.accumulator(i);
            m[r] = b_.state.reference(i);
            l[r] = b_.state.sum(i);
          } else {  // absent rows: zero queries, never written
            query_rows[r] = b_.zero_query.data();
            out_rows[r] = nullptr;
          }
        }
        const RowPointers<T> queries{query_rows};
        gr.start(m, rows, sm);
        for (Index done = 0; done < clean;) {
          done += score_tiles_of<T, false, true>(queries, kv.keys + done * d_ * C, d_, clean - done,
                                                 nullptr, tile + done * R * C, sm);
          if (done < clean) packed_detail::exp_panel<T>(tile, done++, sm, gr);  // rescale
        }
        const Index full = half_last ? panels - 1 : panels;  // panels scored whole
        if (clean < full)
          score_tiles_of<T, false, false>(queries, kv.keys + clean * d_ * C, d_, full - clean,
                                          nullptr, tile + clean * R * C, sm);
        if (half_last)
          score_half_panel_of<T>(queries, kv.keys + full * d_ * C, d_, tile + full * R * C);
        for (Index p = clean; p < panels; ++p) {
          packed_detail::finish_scores<T>(tile + p * R * C, rows, q0, p * C, n, 0, false,
                                          w_ > 0 ? &bias : nullptr, T(0));
          packed_detail::exp_panel<T>(tile, p, sm, gr);
        }
        for (int r = 0; r < rows; ++r) {  // alpha = e^(m_old - m_new) rescales what was there
          alpha[r] = m[r] == gr.ref[r] ? T(1) : std::exp(m[r] - gr.ref[r]);  // e^-inf = 0
          l[r] = alpha[r] * l[r] + Eigen::internal::predux(sm.sum[r]);
          m[r] = gr.ref[r];
        }
        using Out = GroupOutputRows<T>;
        for (Index cc = 0; cc < ldv; cc += C) {  // value column chunks: C wide, the last narrower
          const Out o{out_rows, cc};
          const T* v = kv.values + cc * C;
          const Index stride = C * ldv;
          if (cc + C <= ldv)
            half_last ? value_tile_of<T, P, Out, true>(tile, panels, v, stride, o, alpha, rows)
                      : value_tile_of<T, P, Out>(tile, panels, v, stride, o, alpha, rows);
          else
            half_last ? value_tile_of<T, 1, Out, true>(tile, panels, v, stride, o, alpha, rows)
                      : value_tile_of<T, 1, Out>(tile, panels, v, stride, o, alpha, rows);
        }
        for (int r = 0; r < rows; ++r) {
          const Index i = row_of[q0 + r];
          b_.state.reference(i) = m[r];
          b_.state.sum(i) = l[r];
        }
      }
    }
  }

  bool is_padded(Index j) const { return pad_.size() != 0 && pad_[j]; }

  const ClusteredEvaConfig& cfg_;
  const KeyClusters<T>& cl_;
  const ConstMatRef<T>& k_;
  const ConstMatRef<T>& v_;
  const KeyMask& pad_;
  T scale_;
  ClusteredEvaBuffers<T>& b_;
  Index c_, r_, w_, d_, dv_, block_ = 0;
};

}  // namespace fastattn::detail
