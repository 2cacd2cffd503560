#pragma once
/// @file detail/clustered_eva/partition.hpp
/// The keys of one head partitioned into clusters (docs/spec/eva.md §10.1, §10.7): the visible keys
/// and values copied sorted by cluster (each cluster a contiguous block, token order inside), and
/// each cluster's moments (count, mean, diagonal variance, radius). Query-independent: shared by
/// the query heads of a kv head.

#include <algorithm>
#include <cmath>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Moments of a set of keys: the quantities the mass estimate of §10.3 needs, one row each.
template <class T>
struct ClusterMoments {
  RowMatrix<T> mean;    ///< [C, D] kbar_c
  RowMatrix<T> var;     ///< [C, D] sigma^2_cd (biased, 1/n_c)
  Vector<T> mean_var;   ///< [C] sigmabar^2_c = mean_d sigma^2_cd
  Vector<T> radius;     ///< [C] rho_c = max_m |k_m - kbar_c|
  Vector<T> log_count;  ///< [C] ln n_c

  void resize(Index c, Index d) {
    mean.resize(c, d);
    var.resize(c, d);
    mean_var.resize(c);
    radius.resize(c);
    log_count.resize(c);
  }
};

/// rows [m, D], m >= 1 -> row `c` of `out` (two passes: the mean, then the deviations).
template <class T>
void compute_moments(const ConstMatRef<T>& rows, ClusterMoments<T>& out, Index c) {
  const Index m = rows.rows();
  out.mean.row(c) = rows.colwise().sum() / static_cast<T>(m);
  out.var.row(c).setZero();
  T radius2 = 0;
  for (Index i = 0; i < m; ++i) {
    const auto dev = (rows.row(i) - out.mean.row(c)).array();
    out.var.row(c).array() += dev.square();
    radius2 = std::max(radius2, dev.square().sum());
  }
  out.var.row(c) /= static_cast<T>(m);
  out.mean_var[c] = out.var.row(c).mean();
  out.radius[c] = std::sqrt(radius2);
  out.log_count[c] = static_cast<T>(std::log(static_cast<double>(m)));
}

/// The visible keys of one head in clusters.
template <class T>
struct KeyClusters {
  Index num_clusters = 0;
  std::vector<Index> begin;       ///< [C + 1] cluster c is sorted rows [begin[c], begin[c + 1])
  std::vector<Index> token;       ///< [n] sorted row -> key index
  std::vector<Index> cluster_of;  ///< [Nk] key index -> cluster, -1 for a padded key
  RowMatrix<T> keys;              ///< [n, D] sorted by cluster
  RowMatrix<T> values;            ///< [n, Dv] sorted by cluster
  ClusterMoments<T> moments;

  Index visible() const { return Index(token.size()); }
  Index size(Index c) const { return begin[size_t(c + 1)] - begin[size_t(c)]; }
  Index first(Index c) const { return begin[size_t(c)]; }
  Index largest() const {
    Index m = 0;
    for (Index c = 0; c < num_clusters; ++c) m = std::max(m, size(c));
    return m;
  }
};

/// k [Nk, D], v [Nk, Dv], labels [Nk] (label in [0, num_labels) for a visible key, -1 for a
/// padded one) -> the clusters, in label order with empty labels dropped. Does not read the keys
/// or values of padded positions.
template <class T>
void build_key_clusters(const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                        const std::vector<Index>& labels, Index num_labels, KeyClusters<T>& out) {
  const Index nk = k.rows();
  FASTATTN_CHECK(Index(labels.size()) == nk,
                 "ClusteredEva: the partition has " << labels.size() << " labels for Nk = " << nk
                                                    << " keys");
  std::vector<Index> count(size_t(num_labels), 0);
  for (Index j = 0; j < nk; ++j) {
    const Index a = labels[size_t(j)];
    FASTATTN_CHECK(a >= -1 && a < num_labels, "ClusteredEva: partition label " << a << " of key "
                                                                               << j
                                                                               << " is outside [-1, "
                                                                               << num_labels << ")");
    if (a >= 0) ++count[size_t(a)];
  }
  // Relabel: non-empty labels in order.
  std::vector<Index> relabel(size_t(num_labels), -1);
  Index c = 0;
  for (Index a = 0; a < num_labels; ++a)
    if (count[size_t(a)] > 0) relabel[size_t(a)] = c++;
  out.num_clusters = c;
  out.begin.assign(size_t(c + 1), 0);
  for (Index a = 0; a < num_labels; ++a)
    if (relabel[size_t(a)] >= 0) out.begin[size_t(relabel[size_t(a)] + 1)] = count[size_t(a)];
  for (Index i = 0; i < c; ++i) out.begin[size_t(i + 1)] += out.begin[size_t(i)];
  const Index n = out.begin[size_t(c)];
  out.token.resize(size_t(n));
  out.cluster_of.assign(size_t(nk), -1);
  out.keys.resize(n, k.cols());
  out.values.resize(n, v.cols());
  std::vector<Index> next(out.begin.begin(), out.begin.end() - 1);
  for (Index j = 0; j < nk; ++j) {  // a stable counting sort: token order within a cluster
    const Index a = labels[size_t(j)];
    if (a < 0) continue;
    const Index cl = relabel[size_t(a)];
    const Index row = next[size_t(cl)]++;
    out.token[size_t(row)] = j;
    out.cluster_of[size_t(j)] = cl;
    out.keys.row(row) = k.row(j);
    out.values.row(row) = v.row(j);
  }
  out.moments.resize(c, k.cols());
  for (Index i = 0; i < c; ++i)
    compute_moments<T>(out.keys.middleRows(out.first(i), out.size(i)), out.moments, i);
}

}  // namespace fastattn::detail
