#pragma once
/// @file detail/clustered_eva/summaries.hpp
/// The value summary of a cluster (docs/spec/eva.md §10.5): beta_c = sum_m softmax_m(a_m) v_m with
/// a_m = s (mu_c.k_m - |k_m|^2 / 2), EVA's control-variate coefficient with one sample at the
/// proposal centre mu_c (the positive log-features of the keys at w = mu_c), or a_m =
/// s qhat_c.k_m, the per-query optimum at a representative query qhat_c.

#include "fastattn/clustered_eva_options.hpp"
#include "fastattn/detail/clustered_eva/partition.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/features.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// keys [m, D], values [m, Dv] (m >= 1), mu [1, D] (mu_c or qhat_c, by `summary`) -> beta [1, Dv].
/// `logits` is scratch (resized when smaller than m).
template <class T, class MuRow, class BetaRow>
void summarize_values(const ConstMatRef<T>& keys, const ConstMatRef<T>& values, const MuRow& mu,
                      T scale, ClusterSummary summary, Vector<T>& logits, BetaRow&& beta) {
  const Index m = keys.rows();
  if (logits.size() < m) logits.resize(m);
  auto a = logits.head(m);
  if (summary == ClusterSummary::SingleSample) {
    positive_log_features<T>(keys, mu, a);
    a *= scale;
  } else {
    a.noalias() = keys * (scale * mu.transpose());
  }
  const SoftmaxRow<T> w = softmax_numerators(a);
  beta.noalias() = a.transpose() * values;
  beta /= w.sum;  // m >= 1 finite logits: sum >= 1
}

/// The summaries of every cluster with mu [C, D] (mu_c or qhat_c, by `summary`) -> beta [C, Dv].
template <class T>
void summarize_clusters(const KeyClusters<T>& cl, const RowMatrix<T>& mu, T scale,
                        ClusterSummary summary, Vector<T>& logits, RowMatrix<T>& beta) {
  beta.resize(cl.num_clusters, cl.values.cols());
  for (Index c = 0; c < cl.num_clusters; ++c)
    summarize_values<T>(cl.keys.middleRows(cl.first(c), cl.size(c)),
                        cl.values.middleRows(cl.first(c), cl.size(c)), mu.row(c), scale, summary,
                        logits, beta.row(c));
}

}  // namespace fastattn::detail
