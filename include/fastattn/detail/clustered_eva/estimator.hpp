#pragma once
/// @file detail/clustered_eva/estimator.hpp
/// The ClusteredEva estimator over a given partition (docs/spec/eva.md §10.2-§10.5, §10.7): per
/// block of queries, the cluster scores (one GEMM, a second for the diagonal mass correction), the
/// top-r selection, the summary entries of the other clusters (one GEMM against beta), the local
/// window, and the selected clusters run as small GEMMs over the queries that selected each one,
/// all merged into one softmax per query (OnlineSoftmaxRows). No [Nq, Nk] buffer.

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
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The query side of one kv head: construct once per (kv head, call) over its clusters, then
/// run() once per query head. Workspaces are sized once and reused by every block.
template <class T>
class ClusteredEvaEstimator {
  static constexpr Index kQueryBlock = 2048;  // queries per block: [2048, C] scores
  static constexpr Index kRowTile = 512;      // query rows per logits tile
  static constexpr Index kKeyChunk = 256;     // keys per logits tile of a cluster or window

 public:
  /// cfg: the resolved configuration; cl: the partition of k's visible keys; k [Nk, D], v [Nk, Dv]
  /// and key_padding [Nk] or empty (read only by the window); scale: s.
  ClusteredEvaEstimator(const ClusteredEvaConfig& cfg, const KeyClusters<T>& cl,
                        const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                        const KeyMask& key_padding, T scale)
      : cfg_(cfg),
        cl_(cl),
        k_(k),
        v_(v),
        pad_(key_padding),
        scale_(scale),
        c_(cl.num_clusters),
        r_(cfg.exact_for(cl.num_clusters)),
        w_(cfg.window),
        d_(k.cols()),
        dv_(v.cols()) {
    block_ = w_ > 0 ? w_ * std::max<Index>(1, kQueryBlock / w_) : kQueryBlock;
    const Index touched_max = w_ > 0 ? std::min(w_, c_) : 0;
    const Index cols = std::max(kKeyChunk, c_ + touched_max);
    qs_.resize(block_, d_);
    scores_.resize(block_, c_);
    logits_.resize(std::min(block_, std::max(kRowTile, w_)), cols);
    partial_.resize(block_, dv_);
    parts_.resize(size_t(block_));
    selected_.resize(size_t(block_ * std::max<Index>(r_, 1)));
    top_scores_.resize(std::max<Index>(r_, 1));
    group_begin_.resize(size_t(c_ + 1));
    group_rows_.resize(size_t(block_ * std::max<Index>(r_, 1)));
    qg_.resize(block_, d_);
    if (cfg_.correction == ClusterMassCorrection::Diagonal) {
      qsq_.resize(block_, d_);
      gap_.resize(block_, std::max(c_, touched_max));
    }
    if (w_ > 0) {
      in_window_.assign(size_t(c_), 0);
      slot_.assign(size_t(c_), -1);
      adjusted_.resize(touched_max, d_);
      adjusted_beta_.resize(touched_max, dv_);
      adjusted_scores_.resize(block_, touched_max);
      const Index largest = cl.largest();
      rest_keys_.resize(largest, d_);
      rest_values_.resize(largest, dv_);
      window_keys_.resize(std::min(kKeyChunk, w_), d_);
      window_values_.resize(std::min(kKeyChunk, w_), dv_);
    }
    if (cfg_.centre == ClusterCentre::AttendingQueries) attending_.resize(block_, c_);
    if (cfg_.centre == ClusterCentre::KeyMean) {  // query-independent: once for all query heads
      mu_ = cl.moments.mean;
      summarize_clusters<T>(cl_, mu_, scale_, beta_logits_, beta_);
    }
  }

  /// q [Nq, D] -> out [Nq, Dv]; adds sum over queries of |E_n| to *exact_keys (if given).
  void run(const ConstMatRef<T>& q, MatRef<T> out, double* exact_keys) {
    if (cfg_.centre == ClusterCentre::TokenMean) token_mean_centres(q);
    if (cfg_.centre == ClusterCentre::AttendingQueries) attending_query_centres(q);
    if (cfg_.centre != ClusterCentre::KeyMean)
      summarize_clusters<T>(cl_, mu_, scale_, beta_logits_, beta_);
    // With one block, the centres' pass left its scores and selection in place: reuse them.
    const bool scored = cfg_.centre == ClusterCentre::AttendingQueries && q.rows() <= block_;
    double exact = 0;
    for (Index i0 = 0; i0 < q.rows(); i0 += block_)
      run_block(q, i0, std::min(block_, q.rows() - i0), out, exact, scored);
    if (exact_keys != nullptr) *exact_keys += exact;
  }

 private:
  // ---- centres (docs/spec/eva.md §10.5) ----

  /// mu_c = (qbar_c + kbar_c) / 2, qbar_c the mean query of the cluster's tokens (Nq = Nk).
  void token_mean_centres(const ConstMatRef<T>& q) {
    mu_.setZero(c_, d_);
    for (Index c = 0; c < c_; ++c) {
      for (Index j = cl_.first(c); j < cl_.first(c + 1); ++j)
        mu_.row(c) += q.row(cl_.token[size_t(j)]);
      mu_.row(c) = T(0.5) * (mu_.row(c) / static_cast<T>(cl_.size(c)) + cl_.moments.mean.row(c));
    }
  }

  /// mu_c = qtilde_c + kbar_c with qtilde_c = sum_n a_nc q_n / sum_n a_nc, a_nc the estimated
  /// attention share of cluster c for query n, 0 where c is selected (one pass of scores).
  void attending_query_centres(const ConstMatRef<T>& q) {
    RowMatrix<T> num = RowMatrix<T>::Zero(c_, d_);
    Vector<T> den = Vector<T>::Zero(c_);
    for (Index i0 = 0; i0 < q.rows(); i0 += block_) {
      const Index b = std::min(block_, q.rows() - i0);
      score_and_select(q, i0, b);
      auto a = attending_.topRows(b);
      a = scores_.topRows(b);
      for (Index i = 0; i < b; ++i) {
        const SoftmaxRow<T> row = softmax_numerators(a.row(i));
        a.row(i) *= row.inverse_sum();
        for (Index t = 0; t < r_; ++t) a(i, selected(i, t)) = 0;
      }
      den += a.colwise().sum().transpose();
      num.noalias() += a.transpose() * q.middleRows(i0, b);
    }
    mu_ = cl_.moments.mean;
    for (Index c = 0; c < c_; ++c)
      if (den[c] > 0) mu_.row(c) += num.row(c) / den[c];
  }

  // ---- scores and selection (§10.3, §10.4) ----

  /// qs [b, D] (scaled queries) -> out [b, m]: the estimated log-masses of the clusters whose
  /// moments are rows [0, m) of `mo`.
  template <class Queries, class Out>
  void score(const Queries& qs, const ClusterMoments<T>& mo, Index m, Out&& out) {
    const Index b = qs.rows();
    out.noalias() = qs * mo.mean.topRows(m).transpose();
    out.rowwise() += mo.log_count.head(m).transpose();
    if (cfg_.correction == ClusterMassCorrection::None) return;
    // The Gaussian gap, capped by the Cauchy-Schwarz bound s|q| rho_c (spec §10.3).
    const auto radius = mo.radius.head(m).transpose().array();
    if (cfg_.correction == ClusterMassCorrection::Isotropic) {
      const auto mean_var = mo.mean_var.head(m).transpose().array();
      for (Index i = 0; i < b; ++i) {
        const T q2 = qs.row(i).squaredNorm();
        out.row(i).array() += (T(0.5) * q2 * mean_var).min(std::sqrt(q2) * radius);
      }
      return;
    }
    auto qsq = qsq_.topRows(b);
    qsq = qs.array().square().matrix();
    auto gap = gap_.topLeftCorner(b, m);
    gap.noalias() = qsq * mo.var.topRows(m).transpose();
    for (Index i = 0; i < b; ++i)
      out.row(i).array() +=
          (T(0.5) * gap.row(i).array()).min(std::sqrt(qsq.row(i).sum()) * radius);
  }

  /// Scores of queries [i0, i0 + b) into scores_ (qs_ holds s q) and the top-r clusters of each
  /// row into selected_ (ties: the lower index; NaN ranks last).
  void score_and_select(const ConstMatRef<T>& q, Index i0, Index b) {
    qs_.topRows(b) = scale_ * q.middleRows(i0, b);
    score(qs_.topRows(b), cl_.moments, c_, scores_.topRows(b));
    if (r_ == 0) return;
    // Top r by insertion into a sorted list of r (r is small; one compare per cluster typically).
    // Order: larger score first, ties to the lower index; NaN ranks below everything.
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    for (Index i = 0; i < b; ++i) {
      Index* top = &selected_[size_t(i * r_)];
      T* top_score = top_scores_.data();
      Index filled = 0;
      for (Index c = 0; c < c_; ++c) {
        T x = scores_(i, c);
        if (std::isnan(x)) x = neg_inf;
        if (filled == r_ && !(x > top_score[r_ - 1])) continue;  // (equal: the lower index stays)
        Index pos = filled == r_ ? r_ - 1 : filled++;
        for (; pos > 0 && x > top_score[pos - 1]; --pos) {
          top[pos] = top[pos - 1];
          top_score[pos] = top_score[pos - 1];
        }
        top[pos] = c;
        top_score[pos] = x;
      }
    }
  }

  Index selected(Index i, Index t) const { return selected_[size_t(i * r_ + t)]; }

  // ---- one block of queries ----

  void run_block(const ConstMatRef<T>& q, Index i0, Index b, MatRef<T>& out, double& exact,
                 bool scored) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    if (!scored) score_and_select(q, i0, b);
    state_.reset(b, dv_);
    if (w_ == 0) {
      auto logits = scores_.topRows(b);  // the summary entries: every cluster not selected
      for (Index i = 0; i < b; ++i) {
        for (Index t = 0; t < r_; ++t) {
          logits(i, selected(i, t)) = neg_inf;
          exact += double(cl_.size(selected(i, t)));
        }
        parts_[size_t(i)] = softmax_numerators(logits.row(i));
      }
      partial_.topRows(b).noalias() = logits * beta_;
      for (Index i = 0; i < b; ++i) state_.merge(i, parts_[size_t(i)], partial_.row(i));
    } else {
      for (Index w0 = 0; w0 < b; w0 += w_)
        run_window(i0 + w0, std::min(w_, b - w0), w0, exact);
    }
    run_exact_clusters(i0, b);
    for (Index i = 0; i < b; ++i) state_.finish(i, out.row(i0 + i));
  }

  /// The summaries and the window of the queries [t0, t0 + m) (block rows [r0, r0 + m)), whose
  /// window is the keys [t0, t0 + W) ∩ [0, Nk): clusters meeting the window are summarized over
  /// their keys outside it (spec §10.4).
  void run_window(Index t0, Index m, Index r0, double& exact) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const Index nk = k_.rows();
    const Index a = std::min(t0, nk), e = std::min(t0 + w_, nk);
    // 1. The clusters meeting the window, in index order, and their keys inside it.
    touched_.clear();
    Index visible = 0;
    for (Index j = a; j < e; ++j) {
      const Index c = cl_.cluster_of[size_t(j)];
      if (c < 0) continue;
      ++visible;
      if (in_window_[size_t(c)]++ == 0) touched_.push_back(c);
    }
    std::sort(touched_.begin(), touched_.end());
    const Index nt = Index(touched_.size());
    // 2. Their moments and summaries over the keys outside the window.
    for (Index t = 0; t < nt; ++t) {
      const Index c = touched_[size_t(t)];
      slot_[size_t(c)] = t;
      Index rest = 0;
      for (Index j = cl_.first(c); j < cl_.first(c + 1); ++j) {
        const Index token = cl_.token[size_t(j)];
        if (token >= a && token < e) continue;
        rest_keys_.row(rest) = cl_.keys.row(j);
        rest_values_.row(rest) = cl_.values.row(j);
        ++rest;
      }
      if (rest == 0) {  // entirely inside the window: no summary entry
        adjusted_.log_count[t] = neg_inf;
        adjusted_.mean.row(t).setZero();
        adjusted_.var.row(t).setZero();
        adjusted_.mean_var[t] = 0;
        adjusted_.radius[t] = 0;
        adjusted_beta_.row(t).setZero();
        continue;
      }
      compute_moments<T>(rest_keys_.topRows(rest), adjusted_, t);
      summarize_values<T>(rest_keys_.topRows(rest), rest_values_.topRows(rest), mu_.row(c), scale_,
                          beta_logits_, adjusted_beta_.row(t));
    }
    // 3. Summary logits [m, C + nt]: whole clusters, then the adjusted ones; the selected and the
    // replaced entries masked.
    auto logits = logits_.topLeftCorner(m, c_ + nt);
    if (nt > 0) {
      score(qs_.middleRows(r0, m), adjusted_, nt, adjusted_scores_.topLeftCorner(m, nt));
      logits.rightCols(nt) = adjusted_scores_.topLeftCorner(m, nt);
      for (Index t = 0; t < nt; ++t)
        if (adjusted_.log_count[t] == neg_inf) logits.col(c_ + t).setConstant(neg_inf);
    }
    logits.leftCols(c_) = scores_.middleRows(r0, m);
    for (Index c : touched_) logits.col(c).setConstant(neg_inf);
    for (Index i = 0; i < m; ++i) {
      Index exact_row = visible;
      for (Index t = 0; t < r_; ++t) {
        const Index c = selected(r0 + i, t);
        logits(i, c) = neg_inf;
        exact_row += cl_.size(c);
        if (slot_[size_t(c)] >= 0) {
          logits(i, c_ + slot_[size_t(c)]) = neg_inf;
          exact_row -= in_window_[size_t(c)];
        }
      }
      exact += double(exact_row);
      parts_[size_t(i)] = softmax_numerators(logits.row(i));
    }
    auto partial = partial_.topRows(m);
    partial.noalias() = logits.leftCols(c_) * beta_;
    if (nt > 0) partial.noalias() += logits.rightCols(nt) * adjusted_beta_.topRows(nt);
    for (Index i = 0; i < m; ++i) state_.merge(r0 + i, parts_[size_t(i)], partial.row(i));
    for (Index c : touched_) {
      in_window_[size_t(c)] = 0;
      slot_[size_t(c)] = -1;
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
            window_keys_.row(j).setZero();
            window_values_.row(j).setZero();
          } else {
            window_keys_.row(j) = k_.row(j0 + j);
            window_values_.row(j) = v_.row(j0 + j);
          }
        }
      }
      const ConstMatRef<T> keys = any_padded ? ConstMatRef<T>(window_keys_.topRows(len))
                                             : ConstMatRef<T>(k_.middleRows(j0, len));
      const ConstMatRef<T> values = any_padded ? ConstMatRef<T>(window_values_.topRows(len))
                                               : ConstMatRef<T>(v_.middleRows(j0, len));
      auto tile = logits_.topLeftCorner(m, len);
      tile.noalias() = qs_.middleRows(r0, m) * keys.transpose();
      if (any_padded)
        for (Index j = 0; j < len; ++j)
          if (is_padded(j0 + j)) tile.col(j).setConstant(neg_inf);
      for (Index i = 0; i < m; ++i) parts_[size_t(i)] = softmax_numerators(tile.row(i));
      partial.noalias() = tile * values;
      for (Index i = 0; i < m; ++i) state_.merge(r0 + i, parts_[size_t(i)], partial.row(i));
    }
  }

  /// The selected clusters: per cluster, the block's queries that selected it, gathered, against
  /// the cluster's keys as small GEMMs (keys of a query's window masked: they are in its window
  /// part already).
  void run_exact_clusters(Index i0, Index b) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    if (r_ == 0) return;
    std::fill(group_begin_.begin(), group_begin_.end(), 0);
    for (Index i = 0; i < b; ++i)
      for (Index t = 0; t < r_; ++t) ++group_begin_[size_t(selected(i, t) + 1)];
    for (Index c = 0; c < c_; ++c) group_begin_[size_t(c + 1)] += group_begin_[size_t(c)];
    next_.assign(group_begin_.begin(), group_begin_.end() - 1);
    for (Index i = 0; i < b; ++i)
      for (Index t = 0; t < r_; ++t) group_rows_[size_t(next_[size_t(selected(i, t))]++)] = i;
    for (Index c = 0; c < c_; ++c) {
      const Index g0 = group_begin_[size_t(c)], g = group_begin_[size_t(c + 1)] - g0;
      if (g == 0) continue;
      auto qg = qg_.topRows(g);
      for (Index i = 0; i < g; ++i) qg.row(i) = qs_.row(group_rows_[size_t(g0 + i)]);
      for (Index j0 = 0; j0 < cl_.size(c); j0 += kKeyChunk) {
        const Index len = std::min(kKeyChunk, cl_.size(c) - j0), first = cl_.first(c) + j0;
        const auto keys = cl_.keys.middleRows(first, len);
        const auto values = cl_.values.middleRows(first, len);
        for (Index t0 = 0; t0 < g; t0 += kRowTile) {  // row tiles bound the logits buffer
          const Index rows = std::min(kRowTile, g - t0);
          const Index* row_of = &group_rows_[size_t(g0 + t0)];
          auto tile = logits_.topLeftCorner(rows, len);
          tile.noalias() = qg.middleRows(t0, rows) * keys.transpose();
          if (w_ > 0) {
            for (Index i = 0; i < rows; ++i) {
              const Index a = (i0 + row_of[i]) / w_ * w_, e = a + w_;
              for (Index j = 0; j < len; ++j) {
                const Index key = cl_.token[size_t(first + j)];
                if (key >= a && key < e) tile(i, j) = neg_inf;
              }
            }
          }
          for (Index i = 0; i < rows; ++i) parts_[size_t(i)] = softmax_numerators(tile.row(i));
          auto partial = partial_.topRows(rows);
          partial.noalias() = tile * values;
          for (Index i = 0; i < rows; ++i) state_.merge(row_of[i], parts_[size_t(i)], partial.row(i));
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
  Index c_, r_, w_, d_, dv_, block_ = 0;
  RowMatrix<T> mu_, beta_;
  Vector<T> beta_logits_;
  RowMatrix<T> qs_, qsq_, gap_, scores_, logits_, partial_, qg_, attending_;
  std::vector<SoftmaxRow<T>> parts_;
  Vector<T> top_scores_;
  std::vector<Index> selected_, group_begin_, group_rows_, next_;
  OnlineSoftmaxRows<T> state_;
  // window
  std::vector<Index> in_window_, slot_, touched_;
  ClusterMoments<T> adjusted_;
  RowMatrix<T> adjusted_beta_, adjusted_scores_, rest_keys_, rest_values_, window_keys_,
      window_values_;
};

}  // namespace fastattn::detail
