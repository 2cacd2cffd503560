#pragma once
/// @file clustered_eva.hpp
/// ClusteredEva: EVA's control-variate estimator over a content-chosen partition. The visible keys
/// are clustered by k-means; each query computes exactly the clusters it attends to most (by their
/// estimated mass) and summarizes every other cluster by one softmax entry (logit
/// s q.kbar_c + ln n_c, optionally with a second-order mass correction; value beta_c).
///
/// Builds on: Lin Zheng, Jianbo Yuan, Chong Wang, Lingpeng Kong, "Efficient Attention via Control
/// Variates", ICLR 2023 (arXiv:2302.04542), whose estimator (★) allows any partition and exact set.
/// The clustered partition, the per-query exact set and the mass correction are this library's
/// (docs/spec/eva.md §10, with the measurements behind the defaults).

#include <cmath>
#include <type_traits>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/clustered_eva_options.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/clustered_eva/config.hpp"
#include "fastattn/detail/clustered_eva/estimator.hpp"
#include "fastattn/detail/clustered_eva/partition.hpp"
#include "fastattn/detail/clustered_eva/workspace.hpp"
#include "fastattn/detail/clustering/kmeans.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/common/widen_inputs.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

namespace detail {

/// The checks every ClusteredEva entry point makes beyond check_qkv (shapes): head_dim, no causal
/// mask, no ALiBi, and Nq = Nk where the window or the TokenMean centre read q row m as token m.
template <class T>
void check_clustered_eva_call(const char* fn, const ClusteredEvaConfig& cfg, Index head_dim,
                              const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                              const AttentionOptions& opt) {
  FASTATTN_CHECK(q.cols() == head_dim,
                 fn << ": q " << shape(q) << " has D = " << q.cols()
                    << " but this ClusteredEva was built for head_dim = " << head_dim);
  FASTATTN_CHECK(!opt.causal,
                 fn << ": causal = true is not supported: the clusters mix past and future keys "
                       "(docs/spec/eva.md §10.9 sketches a causal form)");
  FASTATTN_CHECK(opt.alibi_slope == 0,
                 fn << ": alibi_slope = " << opt.alibi_slope
                    << " is not supported: a cluster summary cannot carry a per-pair bias");
  FASTATTN_CHECK(cfg.window == 0 || q.rows() == k.rows(),
                 fn << ": options.window = " << cfg.window
                    << " needs self-attention (Nq = Nk), got q " << shape(q) << " and k "
                    << shape(k));
  FASTATTN_CHECK(cfg.centre != ClusterCentre::TokenMean || q.rows() == k.rows(),
                 fn << ": options.centre = TokenMean reads query row m as the query of key m and "
                       "needs self-attention (Nq = Nk), got q "
                    << shape(q) << " and k " << shape(k)
                    << "; use KeyMean or AttendingQueries for cross-attention");
}

/// Runs the estimator of one kv head (partition `cl`, labels over k) for every query head.
/// QueryList/OutList: vectors of ConstMatRef-compatible and MatRef-compatible views.
template <class T, class QueryList, class OutList>
double run_clustered_eva(const ClusteredEvaConfig& cfg, const KeyClusters<T>& cl,
                         const QueryList& qs, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                         OutList& outs, const AttentionOptions& opt, T scale,
                         ClusteredEvaBuffers<T>& buffers) {
  double exact_keys = 0;
  if (cl.num_clusters == 0) {  // no visible key: zero rows
    for (auto& out : outs) out.setZero();
    return 0;
  }
  ClusteredEvaEstimator<T> estimator(cfg, cl, k, v, opt.key_padding, scale, buffers);
  for (size_t h = 0; h < qs.size(); ++h) estimator.run(qs[h], outs[h], &exact_keys);
  return exact_keys;
}

/// The estimator with a caller-given partition (labels [Nk]: a cluster label in
/// [0, num_labels) for each visible key, -1 for padded keys; empty labels are dropped): what
/// ClusteredEva::forward computes after its k-means. For the tests of the estimator and the
/// reductions of docs/spec/eva.md §10.6 (cfg.exact_clusters_zero gives r = 0).
template <class T>
void clustered_eva_with_partition(const ClusteredEvaConfig& cfg, const ConstMatRef<T>& q,
                                  const ConstMatRef<T>& k, const ConstMatRef<T>& v, MatRef<T> out,
                                  const AttentionOptions& opt, const std::vector<Index>& labels,
                                  Index num_labels, ClusteredEvaStats* stats = nullptr) {
  const char* fn = "clustered_eva_with_partition";
  check_qkv<T>(fn, q, k, v, out, opt);
  check_clustered_eva_call<T>(fn, cfg, q.cols(), q, k, opt);
  for (Index j = 0; j < k.rows(); ++j)
    FASTATTN_CHECK((labels[size_t(j)] < 0) == is_padded(opt.key_padding, j),
                   fn << ": key " << j << " has label " << labels[size_t(j)] << " but is "
                      << (is_padded(opt.key_padding, j) ? "" : "not ") << "padded");
  SerialEigenScope serial_eigen;
  KeyClusters<T> cl;
  build_key_clusters<T>(k, v, labels, num_labels, cl);
  const T scale = static_cast<T>(resolve_scale(opt, q.cols()));
  std::vector<ConstMatRef<T>> qs{q};
  std::vector<MatRef<T>> outs{out};
  ClusteredEvaBuffers<T> buffers;
  const double exact = run_clustered_eva<T>(cfg, cl, qs, k, v, outs, opt, scale, buffers);
  if (stats != nullptr) {
    stats->num_clusters = cl.num_clusters;
    stats->exact_fraction =
        cl.visible() > 0 && q.rows() > 0 ? exact / (double(q.rows()) * double(cl.visible())) : 0;
  }
}

}  // namespace detail

/// ClusteredEva attention over one head: q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv],
/// non-causal, Nq and Nk independent (docs/spec/eva.md §10).
///
/// Cost per head, n visible keys, C clusters, r exact clusters, I iterations: O((I + 1) n C D)
/// for k-means, O(Nq C D) for the scores, O(Nq (r n / C + W)(D + Dv)) exact. Thread safety: const
/// member functions may be called concurrently on one object.
template <class T>
class ClusteredEva {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "fastattn::ClusteredEva<T>: T must be float or double");

 public:
  /// Validates the options (std::invalid_argument naming the option).
  explicit ClusteredEva(Index head_dim, ClusteredEvaOptions options = {})
      : head_dim_(head_dim),
        options_(options),
        config_(detail::make_clustered_eva_config(options)) {
    FASTATTN_CHECK(head_dim >= 1, "ClusteredEva: head_dim must be at least 1, got " << head_dim);
  }

  /// D, the head dimension of q and k.
  Index head_dim() const { return head_dim_; }
  /// The options given to the constructor.
  const ClusteredEvaOptions& options() const { return options_; }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> float out [Nq, Dv] (ClusteredEva<float> only;
  /// docs/bfloat16.md): the inputs are widened to float once; features and sums in float.
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void forward(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k, ConstMatRef<bfloat16> v,
               MatRef<float> out, const AttentionOptions& opt = {}) const {
    detail::forward_widened(*this, "ClusteredEva::forward", q, k, v, out, opt);
  }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new float [Nq, Dv] matrix (T = float).
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  RowMatrix<float> operator()(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k,
                              ConstMatRef<bfloat16> v, const AttentionOptions& opt = {}) const {
    RowMatrix<float> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv]. opt supplies the scale and key_padding;
  /// causal and alibi_slope are rejected.
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt = {}) const {
    ClusteredEvaStats stats;
    forward(q, k, v, out, opt, stats);
  }

  /// As above, and `stats` receives what the call did (exact fraction, clusters used).
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt, ClusteredEvaStats& stats) const;

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new [Nq, Dv] matrix.
  RowMatrix<T> operator()(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                          const AttentionOptions& opt = {}) const {
    RowMatrix<T> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

  /// The query heads q[h] [Nq, D] of one kv head k [Nk, D], v [Nk, Dv] -> out[h] [Nq, Dv]
  /// (grouped-query attention, used by multihead()): the keys are clustered once and the
  /// partition (and, for ClusterCentre::KeyMean, the value summaries) shared by the query heads.
  /// Each out[h] equals forward(q[h], k, v, out[h], opt).
  void forward_group(const std::vector<ConstMatMap<T>>& q, ConstMatRef<T> k, ConstMatRef<T> v,
                     std::vector<MatMap<T>>& out, const AttentionOptions& opt) const;

 private:
  T scale(const AttentionOptions& opt) const {
    return static_cast<T>(detail::resolve_scale(opt, head_dim_));
  }

  /// k-means over the visible keys -> the sorted clusters (in ws.clusters).
  const detail::KeyClusters<T>& cluster_keys(const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                                             const KeyMask& padding,
                                             detail::ClusteredEvaWorkspace<T>& ws) const;

  Index head_dim_;
  ClusteredEvaOptions options_;
  detail::ClusteredEvaConfig config_;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
void ClusteredEva<T>::forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                              const AttentionOptions& opt, ClusteredEvaStats& stats) const {
  const char* fn = "ClusteredEva::forward";
  detail::check_qkv<T>(fn, q, k, v, out, opt);
  detail::check_clustered_eva_call<T>(fn, config_, head_dim_, q, k, opt);
  stats = ClusteredEvaStats{};
  if (q.rows() == 0) return;
  detail::SerialEigenScope serial_eigen;
  detail::ClusteredEvaWorkspace<T>& ws = detail::clustered_eva_workspace<T>();
  const detail::KeyClusters<T>& cl = cluster_keys(k, v, opt.key_padding, ws);
  std::vector<ConstMatRef<T>> qs{q};
  std::vector<MatRef<T>> outs{out};
  const double exact =
      detail::run_clustered_eva<T>(config_, cl, qs, k, v, outs, opt, scale(opt), ws.buffers);
  stats.num_clusters = cl.num_clusters;
  if (cl.visible() > 0) stats.exact_fraction = exact / (double(q.rows()) * double(cl.visible()));
}

template <class T>
void ClusteredEva<T>::forward_group(const std::vector<ConstMatMap<T>>& q, ConstMatRef<T> k,
                                    ConstMatRef<T> v, std::vector<MatMap<T>>& out,
                                    const AttentionOptions& opt) const {
  const char* fn = "ClusteredEva::forward_group";
  FASTATTN_CHECK(q.size() == out.size(),
                 fn << ": " << q.size() << " query heads but " << out.size() << " outputs");
  for (size_t h = 0; h < q.size(); ++h) {
    detail::check_qkv<T>(fn, q[h], k, v, out[h], opt);
    detail::check_clustered_eva_call<T>(fn, config_, head_dim_, q[h], k, opt);
  }
  if (q.empty() || q[0].rows() == 0) return;
  detail::SerialEigenScope serial_eigen;
  detail::ClusteredEvaWorkspace<T>& ws = detail::clustered_eva_workspace<T>();
  const detail::KeyClusters<T>& cl = cluster_keys(k, v, opt.key_padding, ws);
  detail::run_clustered_eva<T>(config_, cl, q, k, v, out, opt, scale(opt), ws.buffers);
}

template <class T>
auto ClusteredEva<T>::cluster_keys(const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                                   const KeyMask& padding,
                                   detail::ClusteredEvaWorkspace<T>& ws) const
    -> const detail::KeyClusters<T>& {
  const Index nk = k.rows();
  ws.visible.clear();
  for (Index j = 0; j < nk; ++j)
    if (!detail::is_padded(padding, j)) ws.visible.push_back(j);
  const Index n = Index(ws.visible.size());
  ws.labels.assign(size_t(nk), -1);
  Index clusters = 0;
  if (n > 0) {
    const bool all_visible = n == nk;  // then cluster k in place
    if (!all_visible) {
      ws.visible_keys.resize(n, k.cols());
      for (Index i = 0; i < n; ++i) ws.visible_keys.row(i) = k.row(ws.visible[size_t(i)]);
    }
    const ConstMatRef<T> x = all_visible ? k : ConstMatRef<T>(ws.visible_keys);
    detail::kmeans<T>(x, config_.clusters_for(n), config_.iterations, config_.seed, ws.kmeans,
                      ws.kmeans_result);
    for (Index i = 0; i < n; ++i)
      ws.labels[size_t(ws.visible[size_t(i)])] = ws.kmeans_result.assignment[size_t(i)];
    clusters = ws.kmeans_result.num_clusters;
  }
  detail::build_key_clusters<T>(k, v, ws.labels, clusters, ws.clusters);
  return ws.clusters;
}

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class ClusteredEva<float>;
extern template class ClusteredEva<double>;
#endif

}  // namespace fastattn
