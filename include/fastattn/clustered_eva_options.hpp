#pragma once
/// @file clustered_eva_options.hpp
/// Configuration and diagnostics of ClusteredEva<T> (clustered_eva.hpp): docs/spec/eva.md §10.

#include <cstdint>

#include "fastattn/types.hpp"

namespace fastattn {

/// The centre of a cluster's value summary beta_c (docs/spec/eva.md §10.5): the proposal centre
/// mu_c (ClusterSummary::SingleSample) and the representative query qhat_c
/// (ClusterSummary::RepresentativeQuery).
enum class ClusterCentre {
  /// mu_c = kbar_c, the cluster's mean key; qhat_c = 0 (beta_c is the mean of the values). Needs
  /// no query, so with GQA beta_c is shared by the query heads of a kv head.
  KeyMean,
  /// mu_c = (qbar_c + kbar_c) / 2 (EVA's non-causal centre), qhat_c = qbar_c, with qbar_c the mean
  /// query of the cluster's tokens. Self-attention only: needs Nq = Nk.
  TokenMean,
  /// mu_c = qtilde_c + kbar_c, qhat_c = qtilde_c, with qtilde_c the mean of the queries that
  /// summarize the cluster, weighted by the attention mass they are estimated to put on it. Works
  /// for cross-attention; costs one more pass of cluster scores.
  AttendingQueries,
};

/// How a cluster's value summary beta_c = sum_m softmax_m(a_m) v_m weighs its values
/// (docs/spec/eva.md §10.5).
enum class ClusterSummary {
  /// EVA's coefficient with one sample at the proposal centre (omega_c = mu_c, EVA's eval mode):
  /// a_m = s (mu_c.k_m - |k_m|^2 / 2), the positive log-features of the keys at mu_c.
  SingleSample,
  /// The per-query optimal coefficient at the representative query qhat_c: a_m = s qhat_c.k_m
  /// (EVA's coefficient in its many-sample limit, with the query kept).
  RepresentativeQuery,
};

/// The estimate of a summarized cluster's log-mass ln sum_m exp(s q.k_m) (docs/spec/eva.md §10.3).
enum class ClusterMassCorrection {
  /// s q.kbar_c + ln n_c (Jensen: a lower bound).
  None,
  /// + min(s^2 |q|^2 sigmabar_c^2 / 2, s |q| rho_c), sigmabar_c^2 the mean key variance of the
  /// cluster: O(1) per (query, cluster).
  Isotropic,
  /// + min(s^2 sum_d q_d^2 sigma_cd^2 / 2, s |q| rho_c), the Gaussian (second-cumulant) gap with
  /// the cluster's diagonal key covariance: one more dot product per (query, cluster).
  Diagonal,
};

/// Configuration of ClusteredEva<T>. 0 in a count selects its documented default.
struct ClusteredEvaOptions {
  /// C, the number of k-means clusters of the visible keys; 0 = ceil(sqrt(n)) for n visible keys.
  /// At most n clusters are used (fewer if the keys have fewer distinct values).
  Index num_clusters = 0;
  /// r, the clusters computed exactly per query (those with the largest estimated mass);
  /// 0 = max(2, ceil(C / 16)). r >= C is exact softmax attention.
  Index exact_clusters = 0;
  /// W > 0 adds each query's local window (keys [floor(i/W) W, floor(i/W) W + W)) to its exact
  /// set; needs Nq = Nk. 0 = no window.
  Index window = 0;
  /// Lloyd iterations after the k-means++ initialization; 0 = 3.
  int iterations = 0;
  /// Seed of the k-means++ initialization.
  std::uint64_t seed = 0;
  /// The centre of the value summaries.
  ClusterCentre centre = ClusterCentre::KeyMean;
  /// The weights of the value summaries.
  ClusterSummary summary = ClusterSummary::RepresentativeQuery;
  /// The mass estimate of the summarized clusters (also their selection score).
  ClusterMassCorrection mass_correction = ClusterMassCorrection::Isotropic;
};

/// What one ClusteredEva::forward call did.
struct ClusteredEvaStats {
  /// The mean over queries of the fraction of visible keys computed exactly (0 when no key is
  /// visible).
  double exact_fraction = 0;
  /// The number of clusters used (C after the caps; 0 when no key is visible).
  Index num_clusters = 0;
};

}  // namespace fastattn
