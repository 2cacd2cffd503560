// Tests of the kernels ClusteredEva runs on its cluster scores stored transposed, [C, queries]
// (docs/spec/eva.md §10.7): the top-r selection of detail/simd/top_r.hpp against a stable sort
// per query, and softmax_numerators_columns of detail/simd/softmax.hpp against a per-column
// softmax in double. Shapes cover whole and partial packets of queries, the register (r <= 8)
// and memory (r > 8) lists, ties, NaN and infinities, and a row stride larger than the width.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/detail/simd/top_r.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

template <class T>
class TransposedScoresTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(TransposedScoresTest, Types);

/// Scores [c, rows] with a row stride of rows + 3: random, with runs of rounded values (ties),
/// NaN, -inf and +inf sprinkled in (some queries all -inf, some mostly -inf).
template <class T>
RowMatrix<T> scores_with_specials(Index c, Index rows, std::uint64_t seed) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  RowMatrix<T> x = test::random_matrix<double>(c, rows + 3, seed).cast<T>();
  test::DataRng rng(seed + 1);
  for (Index i = 0; i < rows; ++i) {
    const std::uint64_t kind = rng.next() % 8;
    for (Index j = 0; j < c; ++j) {
      if (kind == 0) x(j, i) = std::round(x(j, i) * 2);  // many ties
      if (kind == 1 && rng.next() % 3 == 0) x(j, i) = -inf;
      if (kind == 2) x(j, i) = -inf;  // nothing visible
      if (kind == 3 && rng.next() % 5 == 0) x(j, i) = std::numeric_limits<T>::quiet_NaN();
      if (kind == 4 && rng.next() % 7 == 0) x(j, i) = inf;
    }
  }
  return x;
}

// Query i's r best clusters: larger score first, ties to the lower index, NaN and -inf last in
// index order; that is a stable sort by score with NaN read as -inf.
TYPED_TEST(TransposedScoresTest, TopRIsAStableSortOfEachQuery) {
  using T = TypeParam;
  detail::TopRWorkspace<T> ws;  // reused across shapes (grows and is read at smaller sizes)
  int cases = 0;
  for (Index rows : {1, 5, 15, 16, 17, 37, 100})
    for (Index c : {1, 2, 7, 16, 33, 64, 100})
      for (Index r : {1, 2, 3, 4, 5, 8, 9, 12, 100}) {
        if (r > c) continue;
        const RowMatrix<T> x = scores_with_specials<T>(c, rows, 100 + std::uint64_t(rows * c + r));
        std::vector<Index> top(size_t(rows * r), -7);
        detail::select_top_r(x.data(), x.outerStride(), rows, c, r, top.data(), ws);
        for (Index i = 0; i < rows; ++i) {
          std::vector<Index> order(static_cast<size_t>(c));
          std::iota(order.begin(), order.end(), 0);
          auto key = [&](Index j) {
            const double s = double(x(j, i));
            return std::isnan(s) ? -std::numeric_limits<double>::infinity() : s;
          };
          std::stable_sort(order.begin(), order.end(),
                           [&](Index a, Index b) { return key(a) > key(b); });
          for (Index t = 0; t < r; ++t)
            ASSERT_EQ(top[size_t(i * r + t)], order[size_t(t)])
                << "rows " << rows << " c " << c << " r " << r << " query " << i << " rank " << t;
        }
        ++cases;
      }
  EXPECT_GT(cases, 200);
}

// Every column of x [n, cols] becomes exp(x - max) (exactly 0 at -inf) with {max, sum}; an all
// -inf column gives weights 0 and {-inf, 0}. Reference: the column in double. Tolerance: each
// weight is one exp of a difference of two inputs (a few ulp); sums of <= 40 of them.
TYPED_TEST(TransposedScoresTest, ColumnSoftmaxMatchesDouble) {
  using T = TypeParam;
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  for (Index cols : {1, 7, 16, 17, 40})
    for (Index n : {1, 3, 40}) {
      RowMatrix<T> x = test::random_matrix<double>(n, cols + 2, 7 + std::uint64_t(n * cols), 4.0)
                           .template cast<T>();
      test::DataRng rng(3);
      for (Index j = 0; j < cols; ++j)
        for (Index i = 0; i < n; ++i)
          if (j % 5 == 2 || rng.next() % 4 == 0) x(i, j) = neg_inf;  // column 2, 7, ...: all -inf
      const RowMatrix<T> before = x;
      std::vector<detail::SoftmaxRow<T>> parts(static_cast<size_t>(cols));
      detail::softmax_numerators_columns(x.data(), x.outerStride(), n, cols, parts.data());
      for (Index j = 0; j < cols; ++j) {
        double m = -std::numeric_limits<double>::infinity(), sum = 0;
        for (Index i = 0; i < n; ++i) m = std::max(m, double(before(i, j)));
        for (Index i = 0; i < n; ++i) {
          const double w = before(i, j) == neg_inf ? 0.0 : std::exp(double(before(i, j)) - m);
          sum += w;
          if (w == 0)
            EXPECT_EQ(x(i, j), T(0)) << "column " << j << " row " << i;
          else
            EXPECT_NEAR(double(x(i, j)), w, tol * w) << "column " << j << " row " << i;
        }
        EXPECT_EQ(double(parts[size_t(j)].max), m) << "column " << j;
        EXPECT_NEAR(double(parts[size_t(j)].sum), sum, tol * std::max(sum, 1.0)) << "column " << j;
        EXPECT_EQ(parts[size_t(j)].visible(), m > -std::numeric_limits<double>::infinity());
      }
      // The columns past `cols` are not touched.
      EXPECT_TRUE((x.rightCols(2).array() == before.rightCols(2).array()).all());
    }
}

}  // namespace
}  // namespace fastattn
