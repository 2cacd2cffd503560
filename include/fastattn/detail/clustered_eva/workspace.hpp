#pragma once
/// @file detail/clustered_eva/workspace.hpp
/// Everything one ClusteredEva call needs besides its inputs, kept per thread between calls:
/// fresh pages cost ~2.4 us per 4 KiB on the machines measured (docs/spec/eva.md §10.7), about a
/// tenth of a call at N = 4096, and calls of the same shapes then allocate nothing.

#include <vector>

#include "fastattn/detail/clustered_eva/estimator.hpp"
#include "fastattn/detail/clustered_eva/partition.hpp"
#include "fastattn/detail/clustering/kmeans.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The storage of one ClusteredEva call (k-means, the partition, the estimator's buffers).
template <class T>
struct ClusteredEvaWorkspace {
  KMeansWorkspace<T> kmeans;
  KMeansResult<T> kmeans_result;
  RowMatrix<T> visible_keys;  // [n, D] the visible keys, when some key is padded
  std::vector<Index> visible, labels;
  KeyClusters<T> clusters;
  ClusteredEvaBuffers<T> buffers;
};

/// This thread's workspace. It keeps the storage of its largest call: O(n (D + Dv)) for the
/// partition plus O(block (C + D + Dv)) for the estimator.
template <class T>
ClusteredEvaWorkspace<T>& clustered_eva_workspace() {
  thread_local ClusteredEvaWorkspace<T> workspace;
  return workspace;
}

}  // namespace fastattn::detail
