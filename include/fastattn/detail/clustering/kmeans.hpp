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
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/detail/clustering/row_hash.hpp"
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
  Eigen::VectorXd keys, weights;    // [n] sampling keys and weights of the seeding
  Vector<T> centre_sqnorm;          // [C]
  RowMatrix<T> dots;                // [block, C] x_i . c (seeding: [n, 1])
  RowMatrix<T> sums;                // [C, D]
};

namespace kmeans_impl {

constexpr Index kAssignBlock = 256;  // rows per distance GEMM: [256, C] stays in L2

/// The stream of round `round` of the seeding (distinct per seed and round).
inline std::uint64_t round_stream(std::uint64_t seed, Index round) {
  return derive_seed(seed, static_cast<std::uint64_t>(round));
}

/// k-means++ (D^2 sampling) with Efraimidis-Spirakis keys: round t picks the row maximizing
/// ln(u_i) / w_i, u_i = hashed_uniform(hash_i, stream_t), w_i its squared distance to the nearest
/// chosen centre, which picks row i with probability w_i / sum w. Rows are compared by their keys
/// only (an exact tie of two different rows' keys has probability ~2^-53 per pair; equal rows are
/// interchangeable), so the choice does not depend on the row order. Returns the number of centres
/// chosen: fewer than `clusters` when every remaining row equals a chosen centre.
template <class T>
Index seed_centres(const ConstMatRef<T>& x, Index clusters, std::uint64_t seed,
                   KMeansWorkspace<T>& ws, RowMatrix<T>& centres) {
  const Index n = x.rows();
  ws.nearest.setConstant(n, std::numeric_limits<T>::infinity());
  ws.keys.resize(n);
  Index chosen = 0;
  for (; chosen < clusters; ++chosen) {
    const std::uint64_t stream = round_stream(seed, chosen);
    for (Index i = 0; i < n; ++i) ws.keys[i] = hashed_uniform(ws.hash[size_t(i)], stream);
    Index best = 0;
    if (chosen == 0) {  // every weight is "infinite": the largest u
      ws.keys.maxCoeff(&best);
    } else {
      // ln(u) < 0, so a row with w = 0 (a centre or a duplicate of one) gets -inf. (Two steps:
      // Eigen 3.4 does not vectorize the float -> double cast, and would not the log with it.)
      ws.keys = ws.keys.array().log();
      ws.weights = ws.nearest.template cast<double>();
      ws.keys.array() /= ws.weights.array();
      if (ws.keys.maxCoeff(&best) == -std::numeric_limits<double>::infinity()) break;
    }
    centres.row(chosen) = x.row(best);
    // |x|^2 - 2 x.c + |c|^2 with x.c as one GEMV; the rows equal to the centre (the chosen one
    // and its duplicates: same hash, same bits) get exactly 0 so that they are never drawn again.
    ws.dots.col(0).noalias() = x * centres.row(chosen).transpose();
    const T cc = centres.row(chosen).squaredNorm();
    ws.nearest = ws.nearest.cwiseMin(
        (ws.sqnorm - T(2) * ws.dots.col(0) + Vector<T>::Constant(n, cc)).cwiseMax(T(0)));
    const std::uint64_t h = ws.hash[size_t(best)];
    for (Index i = 0; i < n; ++i)
      if (ws.hash[size_t(i)] == h && x.row(i) == x.row(best)) ws.nearest[i] = 0;
  }
  return chosen;
}

/// Assigns every row to its nearest centre (ties: the lower index); ws.nearest gets the squared
/// distances (clamped at 0). Distances |x|^2 - 2 x.c + |c|^2 with x.c by GEMM, in row blocks.
template <class T>
void assign(const ConstMatRef<T>& x, const RowMatrix<T>& centres, KMeansWorkspace<T>& ws,
            std::vector<Index>& assignment) {
  const Index n = x.rows(), c = centres.rows();
  ws.centre_sqnorm = centres.rowwise().squaredNorm();
  for (Index r0 = 0; r0 < n; r0 += kAssignBlock) {
    const Index rows = std::min(kAssignBlock, n - r0);
    auto dots = ws.dots.topRows(rows);
    dots.noalias() = x.middleRows(r0, rows) * centres.transpose();
    for (Index i = 0; i < rows; ++i) {
      Index arg = 0;
      T best = ws.centre_sqnorm[0] - 2 * dots(i, 0);
      for (Index j = 1; j < c; ++j) {
        const T d = ws.centre_sqnorm[j] - 2 * dots(i, j);
        if (d < best) {
          best = d;
          arg = j;
        }
      }
      assignment[size_t(r0 + i)] = arg;
      ws.nearest[r0 + i] = std::max(T(0), ws.sqnorm[r0 + i] + best);
    }
  }
}

/// Gives every empty cluster the row farthest from its centre among clusters with >= 2 rows
/// (ties: the larger hash, then the lower index); that row's contribution to the objective drops
/// to 0, so the objective does not increase.
template <class T>
void reseed_empty(KMeansWorkspace<T>& ws, std::vector<Index>& assignment,
                  std::vector<Index>& counts) {
  const Index n = Index(assignment.size());
  for (size_t e = 0; e < counts.size(); ++e) {
    if (counts[e] > 0) continue;
    Index best = -1;
    for (Index i = 0; i < n; ++i) {
      if (counts[size_t(assignment[size_t(i)])] < 2) continue;
      if (best < 0 || ws.nearest[i] > ws.nearest[best] ||
          (ws.nearest[i] == ws.nearest[best] && ws.hash[size_t(i)] > ws.hash[size_t(best)]))
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
  ws.hash.resize(size_t(n));
  for (Index i = 0; i < n; ++i) ws.hash[size_t(i)] = row_hash(x.row(i).data(), d);
  ws.sqnorm = x.rowwise().squaredNorm();
  RowMatrix<T>& centres = result.centres;
  centres.resize(clusters, d);
  ws.dots.resize(n, 1);
  const Index c = seed_centres<T>(x, clusters, seed, ws, centres);
  centres.conservativeResize(c, d);
  result.num_clusters = c;
  ws.dots.resize(std::min(kAssignBlock, n), c);
  result.assignment.assign(size_t(n), 0);
  if (objective != nullptr) objective->clear();
  for (int it = 0; it < iterations; ++it) {
    assign<T>(x, centres, ws, result.assignment);
    result.counts.assign(size_t(c), 0);
    for (Index a : result.assignment) ++result.counts[size_t(a)];
    reseed_empty<T>(ws, result.assignment, result.counts);
    update_means<T>(x, result.assignment, result.counts, ws, centres);
    if (objective != nullptr)
      objective->push_back(kmeans_objective<T>(x, result.assignment, centres));
  }
}

}  // namespace fastattn::detail
