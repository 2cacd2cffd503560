// Tests of detail/clustering/kmeans.hpp (docs/spec/eva.md §10.7): every row in exactly one
// non-empty cluster, the centres are the means of their rows, the objective does not increase
// over the Lloyd iterations, the caps (C <= n, C <= distinct rows), determinism for a seed,
// permutation equivariance (same seed, permuted rows -> the same clusters), and the assignment
// step against brute-force distances.

#include "fastattn/detail/clustering/kmeans.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <set>
#include <vector>

#include "support.hpp"

namespace fastattn {
namespace {

using test::random_matrix;

template <class T>
class KMeansTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(KMeansTest, Types);

/// Rows near `centres` random centres (clusters in the data), [n, d].
template <class T>
RowMatrix<T> clustered_rows(Index n, Index d, Index centres, std::uint64_t seed) {
  const RowMatrix<double> c = random_matrix<double>(centres, d, seed, 3.0);
  RowMatrix<double> x = random_matrix<double>(n, d, seed + 1, 0.5);
  test::DataRng rng(seed + 2);
  for (Index i = 0; i < n; ++i) x.row(i) += c.row(Index(rng.next() % std::uint64_t(centres)));
  return x.cast<T>();
}

template <class T>
detail::KMeansResult<T> run_kmeans(const RowMatrix<T>& x, Index clusters, int iterations,
                                   std::uint64_t seed, std::vector<double>* objective = nullptr) {
  detail::KMeansWorkspace<T> ws;
  detail::KMeansResult<T> result;
  detail::kmeans<T>(x, clusters, iterations, seed, ws, result, objective);
  return result;
}

// Every row has one cluster in [0, C); the counts are right and every cluster is non-empty; the
// centres are the means of their rows (checked in double, independently of the library's sums).
TYPED_TEST(KMeansTest, PartitionAndMeans) {
  using T = TypeParam;
  for (Index n : {1, 7, 300, 1000}) {  // 300, 1000 > max(8 C, 256): the seeding runs on a sample
    const RowMatrix<T> x = clustered_rows<T>(n, 6, 5, 10 + std::uint64_t(n));
    const Index clusters = 12;
    const auto r = run_kmeans<T>(x, clusters, 3, 1);
    ASSERT_EQ(r.num_clusters, std::min(clusters, n));
    ASSERT_EQ(Index(r.assignment.size()), n);
    ASSERT_EQ(Index(r.counts.size()), r.num_clusters);
    std::vector<Index> counts(size_t(r.num_clusters), 0);
    RowMatrix<double> sums = RowMatrix<double>::Zero(r.num_clusters, x.cols());
    for (Index i = 0; i < n; ++i) {
      const Index a = r.assignment[size_t(i)];
      ASSERT_GE(a, 0);
      ASSERT_LT(a, r.num_clusters);
      ++counts[size_t(a)];
      sums.row(a) += x.row(i).template cast<double>();
    }
    for (Index c = 0; c < r.num_clusters; ++c) {
      EXPECT_EQ(counts[size_t(c)], r.counts[size_t(c)]);
      EXPECT_GE(counts[size_t(c)], 1) << "cluster " << c << " is empty";
      // Means of O(1) values over <= 1000 rows: float sums round at ~1e-7 relative per addition.
      const RowMatrix<double> mean = sums.row(c) / double(counts[size_t(c)]);
      EXPECT_TRUE(test::near(r.centres.row(c), mean, std::is_same_v<T, float> ? 1e-5 : 1e-13,
                             std::is_same_v<T, float> ? 1e-5 : 1e-13))
          << "n " << n << " cluster " << c;
    }
  }
}

// Lloyd's assignment and mean steps each do not increase the objective, nor does re-seeding an
// empty cluster (its row's distance drops to 0). Float: the assignment compares rounded
// distances, so allow a relative slack of 1e-5 per step.
TYPED_TEST(KMeansTest, ObjectiveDoesNotIncrease) {
  using T = TypeParam;
  const double slack = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    const RowMatrix<T> x = clustered_rows<T>(600, 8, 9, 100 + seed);
    std::vector<double> objective;
    const auto r = run_kmeans<T>(x, 16, 12, seed, &objective);
    ASSERT_EQ(objective.size(), 12u);
    for (size_t t = 1; t < objective.size(); ++t)
      EXPECT_LE(objective[t], objective[t - 1] * (1 + slack)) << "iteration " << t;
    // The trace is the objective of the returned partition and centres.
    EXPECT_NEAR(objective.back(), detail::kmeans_objective<T>(x, r.assignment, r.centres),
                1e-12 * objective.back());
    // With 9 well-separated blobs and 16 clusters the final objective is far below one cluster's.
    const RowMatrix<double> xd = x.template cast<double>();
    const double total = (xd.rowwise() - xd.colwise().mean()).squaredNorm();
    EXPECT_LT(objective.back(), 0.2 * total);
  }
}

// Iid rows (no structure) with many clusters: empty clusters occur and are re-seeded, so every
// cluster keeps at least one row through all iterations.
TYPED_TEST(KMeansTest, EmptyClustersAreReseeded) {
  using T = TypeParam;
  const RowMatrix<T> x = random_matrix<T>(64, 2, 5);
  std::vector<double> objective;
  const auto r = run_kmeans<T>(x, 40, 6, 3, &objective);
  ASSERT_EQ(r.num_clusters, 40);
  for (Index c : r.counts) EXPECT_GE(c, 1);
  for (size_t t = 1; t < objective.size(); ++t)
    EXPECT_LE(objective[t], objective[t - 1] * (1 + (std::is_same_v<T, float> ? 1e-5 : 1e-12)));
}

// C is capped at the number of rows and at the number of distinct rows (duplicates of a chosen
// centre are never drawn again, so no two centres are equal rows).
TYPED_TEST(KMeansTest, Caps) {
  using T = TypeParam;
  const RowMatrix<T> x = random_matrix<T>(5, 3, 7);
  EXPECT_EQ(run_kmeans<T>(x, 9, 2, 0).num_clusters, 5);
  // 30 rows with 4 distinct values.
  const RowMatrix<T> distinct = random_matrix<T>(4, 3, 8);
  RowMatrix<T> dup(30, 3);
  for (Index i = 0; i < 30; ++i) dup.row(i) = distinct.row(i % 4);
  const auto r = run_kmeans<T>(dup, 10, 3, 0);
  ASSERT_EQ(r.num_clusters, 4);
  // Each cluster is one distinct value: all its rows are equal.
  for (Index i = 0; i < 30; ++i)
    for (Index j = 0; j < 30; ++j)
      if (r.assignment[size_t(i)] == r.assignment[size_t(j)]) {
        EXPECT_EQ(i % 4, j % 4);
      }
  // Singletons: C = n distinct rows gives one row per cluster.
  const RowMatrix<T> y = random_matrix<T>(20, 4, 9);
  const auto s = run_kmeans<T>(y, 20, 2, 0);
  ASSERT_EQ(s.num_clusters, 20);
  std::set<Index> used(s.assignment.begin(), s.assignment.end());
  EXPECT_EQ(used.size(), 20u);
}

TYPED_TEST(KMeansTest, DeterministicForASeed) {
  using T = TypeParam;
  const RowMatrix<T> x = clustered_rows<T>(500, 6, 7, 21);
  const auto a = run_kmeans<T>(x, 14, 3, 42), b = run_kmeans<T>(x, 14, 3, 42);
  EXPECT_EQ(a.assignment, b.assignment);
  EXPECT_TRUE(a.centres == b.centres);
  // Another seed gives another seeding (iid rows: no unique optimum to converge to).
  const RowMatrix<T> iid = random_matrix<T>(500, 6, 22);
  EXPECT_NE(run_kmeans<T>(iid, 14, 1, 1).assignment, run_kmeans<T>(iid, 14, 1, 2).assignment);
}

// The seeding keys its random choices by row contents, and assignment ties go to the lower
// cluster index (an order set by content), so permuting the rows permutes the assignment and
// nothing else. (Means are summed in another order, so centres agree to rounding; the random
// data has no assignment within rounding of a tie.)
TYPED_TEST(KMeansTest, PermutationEquivariant) {
  using T = TypeParam;
  for (Index n : {200, 1000}) {  // 1000: the seeding sample is chosen by content too
    const RowMatrix<T> x = clustered_rows<T>(n, 5, 6, 31 + std::uint64_t(n));
    std::vector<Index> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    test::DataRng rng(77);
    for (Index i = n - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t(rng.next() % std::uint64_t(i + 1))]);
    RowMatrix<T> xp(n, x.cols());
    for (Index i = 0; i < n; ++i) xp.row(i) = x.row(perm[size_t(i)]);
    const auto a = run_kmeans<T>(x, 20, 3, 5), b = run_kmeans<T>(xp, 20, 3, 5);
    ASSERT_EQ(a.num_clusters, b.num_clusters);
    for (Index i = 0; i < n; ++i)
      ASSERT_EQ(b.assignment[size_t(i)], a.assignment[size_t(perm[size_t(i)])]) << "row " << i;
    EXPECT_TRUE(test::near(b.centres, a.centres, std::is_same_v<T, float> ? 1e-5 : 1e-12, 1e-6));
  }
}

// The assignment step (the score kernel over packed rows, the nearest centre taken across the
// tile's rows) against brute-force distances in double: each row's centre is a nearest one up to
// the rounding of |x|^2 - 2 x.c + |c|^2 (float: ~1e-6 of |x|^2 + |c|^2), exact ties (duplicate
// centres) go to the lower index, and ws.nearest is that distance. Shapes: whole and partial
// panels of rows and groups of centres, D from 1 to 70.
TYPED_TEST(KMeansTest, AssignmentIsTheNearestCentre) {
  using T = TypeParam;
  const double rel = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  for (Index n : {1, 31, 32, 33, 100, 257})
    for (Index c : {1, 5, 8, 9, 17, 64})
      for (Index d : {1, 3, 70}) {
        const std::uint64_t seed = std::uint64_t(n * 1000 + c * 10 + d);
        const RowMatrix<T> x = random_matrix<T>(n, d, seed);
        RowMatrix<T> centres = random_matrix<T>(c, d, seed + 1);
        if (c >= 5) centres.row(4) = centres.row(1);  // a duplicate: its rows go to centre 1
        detail::KMeansWorkspace<T> ws;
        Vector<T> sqnorm;
        detail::kmeans_impl::row_squared_norms<T>(x, sqnorm);
        detail::kmeans_impl::pack_points<T>(x, ws);
        ws.nearest.resize(n);
        std::vector<Index> assignment(size_t(n), -1);
        detail::kmeans_impl::assign<T>(x, sqnorm, centres, ws, assignment);
        for (Index i = 0; i < n; ++i) {
          std::vector<double> dist(static_cast<size_t>(c));
          for (Index j = 0; j < c; ++j)
            dist[size_t(j)] =
                (x.row(i).template cast<double>() - centres.row(j).template cast<double>())
                    .squaredNorm();
          const double best = *std::min_element(dist.begin(), dist.end());
          const double slack =
              rel * (x.row(i).template cast<double>().squaredNorm() + centres.squaredNorm());
          const Index a = assignment[size_t(i)];
          ASSERT_GE(a, 0);
          ASSERT_LT(a, c);
          EXPECT_LE(dist[size_t(a)], best + slack) << "n " << n << " c " << c << " d " << d;
          if (c >= 5) {
            EXPECT_NE(a, 4) << "the duplicate of centre 1 never wins the tie";
          }
          EXPECT_NEAR(double(ws.nearest[i]), dist[size_t(a)], slack);
        }
      }
}

TYPED_TEST(KMeansTest, RejectsBadArguments) {
  using T = TypeParam;
  const RowMatrix<T> x = random_matrix<T>(5, 3, 7);
  detail::KMeansWorkspace<T> ws;
  detail::KMeansResult<T> r;
  EXPECT_NE(test::invalid_argument_message([&] { detail::kmeans<T>(x, 0, 1, 0, ws, r); })
                .find("clusters"),
            std::string::npos);
  EXPECT_NE(test::invalid_argument_message([&] { detail::kmeans<T>(x, 2, 0, 0, ws, r); })
                .find("iterations"),
            std::string::npos);
  const RowMatrix<T> empty(0, 3);
  EXPECT_NE(test::invalid_argument_message([&] { detail::kmeans<T>(empty, 2, 1, 0, ws, r); })
                .find("n >= 1"),
            std::string::npos);
}

}  // namespace
}  // namespace fastattn
