#pragma once
/// @file detail/clustered_eva/config.hpp
/// ClusteredEva's configuration: the options validated at construction and the defaults that
/// depend on the number of visible keys resolved per call (docs/spec/eva.md §10.7-§10.8).

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "fastattn/clustered_eva_options.hpp"
#include "fastattn/config.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// ClusteredEvaOptions after validation. Counts of 0 keep meaning "default" until resolve().
struct ClusteredEvaConfig {
  Index num_clusters = 0;    // C requested (0 = default for the call's n)
  Index exact_clusters = 0;  // r requested (0 = default for the call's C); see exact_clusters_zero
  Index window = 0;
  int iterations = 3;
  std::uint64_t seed = 0;
  ClusterCentre centre = ClusterCentre::KeyMean;
  ClusterSummary summary = ClusterSummary::RepresentativeQuery;
  ClusterMassCorrection correction = ClusterMassCorrection::Isotropic;
  /// r = 0 exactly (no cluster computed exactly). Not reachable from the options (0 is the
  /// default there); the estimator's tests and docs/spec/eva.md §10.6's EVA-Disjoint reduction use
  /// it through the detail entry points.
  bool exact_clusters_zero = false;

  /// The default C for n visible keys: ceil(sqrt(n)).
  static Index default_num_clusters(Index n) {
    Index c = static_cast<Index>(std::ceil(std::sqrt(static_cast<double>(n))));
    while (c * c < n) ++c;  // guard the floating-point square root
    while (c > 1 && (c - 1) * (c - 1) >= n) --c;
    return std::max<Index>(c, 1);
  }
  /// The default r for C clusters: max(2, ceil(C / 16)), at most C.
  static Index default_exact_clusters(Index c) { return std::min(c, std::max<Index>(2, (c + 15) / 16)); }

  /// C for a call with n >= 1 visible keys (before k-means caps it at the distinct keys).
  Index clusters_for(Index n) const {
    return std::min(n, num_clusters > 0 ? num_clusters : default_num_clusters(n));
  }
  /// r for a call whose partition has c clusters.
  Index exact_for(Index c) const {
    if (exact_clusters_zero) return 0;
    return std::min(c, exact_clusters > 0 ? exact_clusters : default_exact_clusters(c));
  }
};

/// Validates the options; throws std::invalid_argument naming the option.
inline ClusteredEvaConfig make_clustered_eva_config(const ClusteredEvaOptions& o) {
  FASTATTN_CHECK(o.num_clusters >= 0,
                 "ClusteredEva: options.num_clusters must be >= 0 (0 = default ceil(sqrt(n))), got "
                     << o.num_clusters);
  FASTATTN_CHECK(o.exact_clusters >= 0,
                 "ClusteredEva: options.exact_clusters must be >= 0 (0 = default max(2, ceil(C / 16))), got "
                     << o.exact_clusters);
  FASTATTN_CHECK(o.num_clusters == 0 || o.exact_clusters <= o.num_clusters,
                 "ClusteredEva: options.exact_clusters = "
                     << o.exact_clusters << " exceeds options.num_clusters = " << o.num_clusters);
  FASTATTN_CHECK(o.window >= 0,
                 "ClusteredEva: options.window must be >= 0 (0 = no window), got " << o.window);
  FASTATTN_CHECK(o.iterations >= 0,
                 "ClusteredEva: options.iterations must be >= 0 (0 = default 3), got "
                     << o.iterations);
  const auto centre = static_cast<int>(o.centre);
  FASTATTN_CHECK(centre >= 0 && centre <= static_cast<int>(ClusterCentre::AttendingQueries),
                 "ClusteredEva: options.centre has the invalid value " << centre);
  const auto summary = static_cast<int>(o.summary);
  FASTATTN_CHECK(summary >= 0 && summary <= static_cast<int>(ClusterSummary::RepresentativeQuery),
                 "ClusteredEva: options.summary has the invalid value " << summary);
  const auto correction = static_cast<int>(o.mass_correction);
  FASTATTN_CHECK(
      correction >= 0 && correction <= static_cast<int>(ClusterMassCorrection::Diagonal),
      "ClusteredEva: options.mass_correction has the invalid value " << correction);
  ClusteredEvaConfig c;
  c.num_clusters = o.num_clusters;
  c.exact_clusters = o.exact_clusters;
  c.window = o.window;
  if (o.iterations > 0) c.iterations = o.iterations;
  c.seed = o.seed;
  c.centre = o.centre;
  c.summary = o.summary;
  c.correction = o.mass_correction;
  return c;
}

}  // namespace fastattn::detail
