#pragma once
/// @file detail/clustering/kmeans.hpp
/// k-means of the rows of a matrix (docs/spec/eva.md §10.7): k-means++ seeding whose random
/// choices are keyed by row contents (so permuting the rows permutes nothing else), then a fixed
/// number of Lloyd iterations with distances by GEMM and empty clusters re-seeded. Deterministic
/// for a seed; single-threaded (callers parallelize over heads).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/detail/clustering/row_hash.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/tile_kernels.hpp"
#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// A partition of n rows into num_clusters non-empty clusters.
template <class T>
struct KMeansResult {
  Index num_clusters = 0;
  std::vector<Index> assignment;  ///< [n] cluster of each row
  std::vector<Index> counts;      ///< [C] rows per cluster (all >= 1)
  RowMatrix<T> centres;           ///< [C, D] the mean of each cluster's rows
};

/// Scratch space of kmeans(); reused across calls.
template <class T>
struct KMeansWorkspace {
  std::vector<std::uint64_t> hash;  // [n] row hashes
  Vector<T> sqnorm;                 // [n] |x_i|^2
  Vector<T> nearest;                // [n] squared distance to the assigned / nearest centre
  // seeding (over all rows or a sample of them)
  std::vector<std::pair<double, Index>> order;  // [n] (sampling key, row) to choose the sample
  std::vector<std::uint64_t> sample_hash;
  RowMatrix<T> sample;                          // [S, D]
  Vector<T> seed_sqnorm, seed_nearest, seed_dots;
  Eigen::VectorXd keys, weights;                // sampling keys and weights
  Vector<T> centre_sqnorm;                      // [groups * R] |c|^2 (+inf for absent rows)
  Vector<T> points;                             // [panels][D][kCols] the rows packed once per call
  Vector<T> centre_groups;          // [groups][D][R] the centres transposed per group of R
  Vector<T> tile;                   // [chunk panels][R][kCols] dot products of one group
  Vector<T> best, best_index;       // [chunk panels * kCols] running minimum and its centre
  RowMatrix<T> sums;                // [C, D]
};

namespace kmeans_impl {

constexpr Index kAssignPanels = 8;  // point panels per chunk: a [8][R][kCols] tile set in L1
// k-means++ runs on a uniform sample of max(8 C, 256) rows (all rows when there are no more).
// Its C rounds each pass over the sample and are sequential (bound by L2 bandwidth, not flops):
// at n = 4096, C = 64 a sample of 16 C rows took 0.35 ms, a twentieth of a ClusteredEva call, and
// 8 C rows gives the same errors on the synthetic regimes (docs/spec/eva.md §10.7); the floor
// keeps short sequences (n <= 256, the real-attention fixture) on every row.
constexpr Index kSeedRowsPerCluster = 8;
constexpr Index kMinSeedRows = 256;

/// The stream of round `round` of the seeding (distinct per seed and round).
inline std::uint64_t round_stream(std::uint64_t seed, Index round) {
  return derive_seed(seed, static_cast<std::uint64_t>(round));
}

/// |x_i|^2 of every row (a loop: Eigen 3.4 evaluates rowwise().squaredNorm() of a strided
/// row-major view with scalar code).
template <class T>
void row_squared_norms(const ConstMatRef<T>& x, Vector<T>& out) {
  out.resize(x.rows());
  for (Index i = 0; i < x.rows(); ++i) out[i] = x.row(i).squaredNorm();
}

/// k-means++ (D^2 sampling) over the rows x (hashes `hash`) with Efraimidis-Spirakis keys: round t
/// picks the row maximizing ln(u_i) / w_i, u_i = hashed_uniform(hash_i, stream_t), w_i its squared
/// distance to the nearest chosen centre, which picks row i with probability w_i / sum w. Rows are
/// compared by their keys only (an exact tie of two different rows' keys has probability ~2^-53
/// per pair; equal rows are interchangeable), so the choice does not depend on the row order.
/// Returns the number of centres chosen: fewer than `clusters` when every remaining row equals a
/// chosen centre.
template <class T>
Index seed_centres(const ConstMatRef<T>& x, const std::vector<std::uint64_t>& hash,
                   Index clusters, std::uint64_t seed, KMeansWorkspace<T>& ws,
                   RowMatrix<T>& centres) {
  const Index n = x.rows();
  row_squared_norms<T>(x, ws.seed_sqnorm);
  ws.seed_nearest.setConstant(n, std::numeric_limits<T>::infinity());
  ws.seed_dots.resize(n);
  ws.keys.resize(n);
  Index chosen = 0;
  for (; chosen < clusters; ++chosen) {
    const std::uint64_t stream = round_stream(seed, chosen);
    for (Index i = 0; i < n; ++i) ws.keys[i] = hashed_uniform(hash[size_t(i)], stream);
    Index best = 0;
    if (chosen == 0) {  // every weight is "infinite": the largest u
      ws.keys.maxCoeff(&best);
    } else {
      // ln(u) < 0, so a row with w = 0 (a centre or a duplicate of one) gets -inf. (Two steps:
      // Eigen 3.4 does not vectorize the float -> double cast, and would not the log with it.)
      ws.keys = ws.keys.array().log();
      ws.weights = ws.seed_nearest.template cast<double>();
      ws.keys.array() /= ws.weights.array();
      if (ws.keys.maxCoeff(&best) == -std::numeric_limits<double>::infinity()) break;
    }
    centres.row(chosen) = x.row(best);
    // |x|^2 - 2 x.c + |c|^2 with x.c as one GEMV; the rows equal to the centre (the chosen one
    // and its duplicates: same hash, same bits) get exactly 0 so that they are never drawn again.
    ws.seed_dots.noalias() = x * centres.row(chosen).transpose();
    const T cc = centres.row(chosen).squaredNorm();
    ws.seed_nearest = ws.seed_nearest.cwiseMin(
        (ws.seed_sqnorm - T(2) * ws.seed_dots + Vector<T>::Constant(n, cc)).cwiseMax(T(0)));
    const std::uint64_t h = hash[size_t(best)];
    for (Index i = 0; i < n; ++i)
      if (hash[size_t(i)] == h && x.row(i) == x.row(best)) ws.seed_nearest[i] = 0;
  }
  return chosen;
}

/// x [n, D] -> ws.points: panels of RegisterTile<T>::kCols rows, each [D][kCols] (row i of the
/// panel is column i), slots past n zero: the layout of the score kernel's key panels.
template <class T>
void pack_points(const ConstMatRef<T>& x, KMeansWorkspace<T>& ws) {
  constexpr Index C = RegisterTile<T>::kCols;
  const Index n = x.rows(), d = x.cols(), panels = (n + C - 1) / C;
  ws.points.setZero(panels * d * C);
  for (Index i = 0; i < n; ++i) {
    T* dst = ws.points.data() + (i / C) * d * C + i % C;
    for (Index t = 0; t < d; ++t) dst[t * C] = x(i, t);
  }
}

/// Assigns every row to its nearest centre (ties: the lower index); ws.nearest gets the squared
/// distances (clamped at 0). Distances |x|^2 - 2 x.c + |c|^2, with x.c by the attention score
/// kernel (score_tiles) over the rows packed by pack_points: R centres (broadcast) against a
/// panel of kCols rows (packets), so each row's minimum over the centres is taken across the
/// tile's rows, lane by lane, with no horizontal reduction.
/// Why not a GEMM and an argmin pass: Eigen's GEMM repacks both operands on every call (~75%
/// of the FMA peak here) and the row-wise argmin cost half as much again (docs/spec/eva.md §10.7).
template <class T>
void assign(const ConstMatRef<T>& x, const Vector<T>& sqnorm, const RowMatrix<T>& centres,
            KMeansWorkspace<T>& ws, std::vector<Index>& assignment) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int R = Tile::kRows, C = Tile::kCols, L = Tile::kLanes, P = Tile::kPackets;
  constexpr T inf = std::numeric_limits<T>::infinity();
  const Index n = x.rows(), d = x.cols(), c = centres.rows();
  const Index groups = (c + R - 1) / R, panels = (n + C - 1) / C;
  // Centres transposed per group of R, absent rows 0 with |c|^2 = +inf (never nearest).
  ws.centre_groups.setZero(groups * d * R);
  ws.centre_sqnorm.setConstant(groups * R, inf);
  for (Index j = 0; j < c; ++j) {
    T* dst = ws.centre_groups.data() + (j / R) * d * R + j % R;
    for (Index t = 0; t < d; ++t) dst[t * R] = centres(j, t);
    ws.centre_sqnorm[j] = centres.row(j).squaredNorm();
  }
  if (ws.tile.size() < kAssignPanels * R * C) ws.tile.resize(kAssignPanels * R * C);
  if (ws.best.size() < kAssignPanels * C) {
    ws.best.resize(kAssignPanels * C);
    ws.best_index.resize(kAssignPanels * C);
  }
  GroupSoftmax<T> unused;  // score_tiles without the exp does not touch it
  const Packet minus_two = pset1<Packet>(T(-2));
  for (Index p0 = 0; p0 < panels; p0 += kAssignPanels) {
    const Index chunk = std::min(kAssignPanels, panels - p0);
    T* best = ws.best.data();
    T* best_index = ws.best_index.data();
    for (Index i = 0; i < chunk * C; i += L) {
      pstore(best + i, pset1<Packet>(inf));
      pstore(best_index + i, pset1<Packet>(T(0)));
    }
    for (Index g = 0; g < groups; ++g) {
      score_tiles<T, false, false>(ws.centre_groups.data() + g * d * R,
                                   ws.points.data() + p0 * d * C, d, chunk, nullptr, ws.tile.data(),
                                   unused);
      // d_ij - |x_i|^2 = |c_j|^2 - 2 x_i.c_j; strictly smaller wins (ties: the lower index).
      for (Index p = 0; p < chunk; ++p)
        for (int k = 0; k < P; ++k) {
          Packet b = pload<Packet>(best + p * C + k * L);
          Packet bi = pload<Packet>(best_index + p * C + k * L);
          for (int r = 0; r < R; ++r) {
            const Packet dist =
                pmadd(minus_two, pload<Packet>(ws.tile.data() + (p * R + r) * C + k * L),
                      pset1<Packet>(ws.centre_sqnorm[g * R + r]));
            const Packet closer = pcmp_lt(dist, b);
            b = pselect(closer, dist, b);
            bi = pselect(closer, pset1<Packet>(static_cast<T>(g * R + r)), bi);
          }
          pstore(best + p * C + k * L, b);
          pstore(best_index + p * C + k * L, bi);
        }
    }
    const Index rows = std::min(chunk * C, n - p0 * C);
    for (Index i = 0; i < rows; ++i) {
      assignment[size_t(p0 * C + i)] = static_cast<Index>(best_index[i]);
      ws.nearest[p0 * C + i] = std::max(T(0), sqnorm[p0 * C + i] + best[i]);
    }
  }
}

/// Gives every empty cluster the row farthest from its centre among clusters with >= 2 rows
/// (ties: the larger hash, then the lower index); that row's contribution to the objective drops
/// to 0, so the objective does not increase.
template <class T>
void reseed_empty(const std::vector<std::uint64_t>& hash, KMeansWorkspace<T>& ws,
                  std::vector<Index>& assignment, std::vector<Index>& counts) {
  const Index n = Index(assignment.size());
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] > 0) continue;
    Index best = -1;
    for (Index i = 0; i < n; ++i) {
      if (counts[size_t(assignment[size_t(i)])] < 2) continue;
      if (best < 0 || ws.nearest[i] > ws.nearest[best] ||
          (ws.nearest[i] == ws.nearest[best] && hash[size_t(i)] > hash[size_t(best)]))
        best = i;
    }
    // n >= C and every other cluster has >= 1 row, so some cluster has >= 2 rows.
    --counts[size_t(assignment[size_t(best)])];
    assignment[size_t(best)] = Index(e);
    counts[e] = 1;
    ws.nearest[best] = 0;
  }
}

/// centres <- the mean of each cluster's rows (sums in row order).
template <class T>
void update_means(const ConstMatRef<T>& x, const std::vector<Index>& assignment,
                  const std::vector<Index>& counts, KMeansWorkspace<T>& ws,
                  RowMatrix<T>& centres) {
  ws.sums.setZero(centres.rows(), centres.cols());
  for (Index i = 0; i < x.rows(); ++i) ws.sums.row(assignment[size_t(i)]) += x.row(i);
  for (Index c = 0; c < centres.rows(); ++c)
    centres.row(c) = ws.sums.row(c) / static_cast<T>(counts[size_t(c)]);
}

/// One Lloyd iteration over the rows x: assign, re-seed empty clusters, centres <- means.
template <class T>
void lloyd_step(const ConstMatRef<T>& x, const Vector<T>& sqnorm,
                const std::vector<std::uint64_t>& hash, KMeansWorkspace<T>& ws,
                std::vector<Index>& assignment, std::vector<Index>& counts,
                RowMatrix<T>& centres) {
  assign<T>(x, sqnorm, centres, ws, assignment);
  counts.assign(size_t(centres.rows()), 0);
  for (Index a : assignment) ++counts[size_t(a)];
  reseed_empty<T>(hash, ws, assignment, counts);
  update_means<T>(x, assignment, counts, ws, centres);
}

}  // namespace kmeans_impl

/// sum_i |x_i - centres_{assignment_i}|^2, in double.
template <class T>
double kmeans_objective(const ConstMatRef<T>& x, const std::vector<Index>& assignment,
                        const RowMatrix<T>& centres) {
  double total = 0;
  for (Index i = 0; i < x.rows(); ++i)
    total += (x.row(i).template cast<double>() -
              centres.row(assignment[size_t(i)]).template cast<double>())
                 .squaredNorm();
  return total;
}

/// x [n, D] (n >= 1), clusters >= 1, iterations >= 1 -> a partition of the rows into
/// min(clusters, number of distinct rows) non-empty clusters with their means. `objective`, if
/// given, receives the objective after each iteration (non-increasing).
template <class T>
void kmeans(const ConstMatRef<T>& x, Index clusters, int iterations, std::uint64_t seed,
            KMeansWorkspace<T>& ws, KMeansResult<T>& result,
            std::vector<double>* objective = nullptr) {
  using namespace kmeans_impl;
  const Index n = x.rows(), d = x.cols();
  FASTATTN_CHECK(n >= 1 && clusters >= 1 && iterations >= 1,
                 "kmeans: needs n >= 1 rows, clusters >= 1 and iterations >= 1, got n = "
                     << n << ", clusters = " << clusters << ", iterations = " << iterations);
  clusters = std::min(clusters, n);
  // The assignment holds centre indices in T (exact up to 2^24 in float).
  FASTATTN_CHECK(clusters <= (Index(1) << std::numeric_limits<T>::digits),
                 "kmeans: clusters = " << clusters << " exceeds "
                                       << (Index(1) << std::numeric_limits<T>::digits)
                                       << ", the largest index exact in this element type");
  ws.hash.resize(size_t(n));
  for (Index i = 0; i < n; ++i) ws.hash[size_t(i)] = row_hash(x.row(i).data(), d);
  row_squared_norms<T>(x, ws.sqnorm);
  RowMatrix<T>& centres = result.centres;
  centres.resize(clusters, d);
  Index c = 0;
  const Index sample = std::max(kSeedRowsPerCluster * clusters, kMinSeedRows);
  if (n <= sample) {
    c = seed_centres<T>(x, ws.hash, clusters, seed, ws, centres);
  } else {
    // Seed on the `sample` rows with the smallest hashed uniforms: a uniform sample chosen by
    // content, so it does not depend on the row order either (ties: equal rows).
    const std::uint64_t stream = derive_seed(seed, ~std::uint64_t(0));
    ws.order.resize(size_t(n));
    for (Index i = 0; i < n; ++i) ws.order[size_t(i)] = {hashed_uniform(ws.hash[size_t(i)], stream), i};
    std::nth_element(ws.order.begin(), ws.order.begin() + sample, ws.order.end());
    ws.sample.resize(sample, d);
    ws.sample_hash.resize(size_t(sample));
    for (Index i = 0; i < sample; ++i) {
      const Index row = ws.order[size_t(i)].second;
      ws.sample.row(i) = x.row(row);
      ws.sample_hash[size_t(i)] = ws.hash[size_t(row)];
    }
    c = seed_centres<T>(ws.sample, ws.sample_hash, clusters, seed, ws, centres);
  }
  centres.conservativeResize(c, d);
  result.num_clusters = c;
  pack_points<T>(x, ws);
  if (objective != nullptr) objective->clear();
  ws.nearest.resize(n);
  result.assignment.assign(size_t(n), 0);
  for (int it = 0; it < iterations; ++it) {
    lloyd_step<T>(x, ws.sqnorm, ws.hash, ws, result.assignment, result.counts, centres);
    if (objective != nullptr)
      objective->push_back(kmeans_objective<T>(x, result.assignment, centres));
  }
}

}  // namespace fastattn::detail
