// Tests of the linear core's products (detail/simd/gemm_kernel.hpp): gemm_rows (c (+)= a b) and
// gemm_transposed (c (+)= at^T b) against a product summed in long double from the same
// operands. Shapes cover partial row groups and column panels (rows, cols and depth from 1 to past
// two register tiles, cols not a multiple of the packet width, e.g. the Dv + 1 of [V, 1]), depth
// 0, row strides larger than the width and operands at odd offsets (unaligned), and both the
// overwriting and the accumulating form. Cells outside c's block must stay untouched.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "fastattn/detail/simd/gemm_kernel.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

template <class T>
class GemmKernelTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(GemmKernelTest, Types);

/// A [rows, cols] view starting one element into a buffer with a row stride of cols + 3, so rows
/// are neither packet-aligned nor contiguous.
template <class T>
struct OffsetView {
  RowMatrix<T> buffer;
  Index rows, cols;
  OffsetView(Index r, Index c, std::uint64_t seed)
      : buffer(test::random_matrix<T>(r + 1, c + 4, seed)), rows(r), cols(c) {}
  Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>> view() {
    return {buffer.data() + 1, rows, cols, Eigen::OuterStride<>(cols + 4)};
  }
};

/// Checks the buffer of c (after the call) against before + a b (accumulate) or a b in the view
/// (element 1 of the buffer on, row stride = buffer width), within the rounding of a depth-long
/// sum: |error| <= 4 (depth + 1) u sum_k |a_ik b_kj| + 2 u |before|. Cells outside the view must
/// equal their values before the call.
template <class T, class AAt>
void expect_product(const RowMatrix<T>& before, const RowMatrix<T>& after, Index rows, Index cols,
                    const AAt& a_at, const RowMatrix<T>& b, bool accumulate) {
  const long double u = std::numeric_limits<T>::epsilon();
  const Index stride = after.cols();
  for (Index i = 0; i < after.rows(); ++i)
    for (Index j = 0; j < after.cols(); ++j) {
      const Index flat = i * stride + j - 1;  // offset from the view's first element
      const Index vi = flat / stride, vj = flat % stride;
      if (flat < 0 || vi >= rows || vj >= cols) {
        ASSERT_EQ(after(i, j), before(i, j))
            << "cell outside the view written: (" << i << ", " << j << ")";
        continue;
      }
      long double exact = 0, magnitude = 0;
      for (Index k = 0; k < b.rows(); ++k) {
        const long double term = static_cast<long double>(a_at(vi, k)) * b(k, vj);
        exact += term;
        magnitude += std::fabs(term);
      }
      const long double base = accumulate ? before(i, j) : T(0);
      const long double tol = 4 * (b.rows() + 1) * u * magnitude + 2 * u * std::fabs(base);
      ASSERT_LE(std::fabs(after(i, j) - (base + exact)), tol)
          << "cell (" << vi << ", " << vj << ") of [" << rows << ", " << cols << "], depth "
          << b.rows() << (accumulate ? ", accumulating" : "");
    }
}

TYPED_TEST(GemmKernelTest, RowsMatchesTheReference) {
  using T = TypeParam;
  int cases = 0;
  for (Index rows : {1, 3, 8, 9, 17, 40})
    for (Index depth : {0, 1, 5, 64, 130})
      for (Index cols : {1, 3, 15, 16, 17, 33, 65, 100})
        for (bool accumulate : {false, true}) {
          const std::uint64_t seed =
              std::uint64_t(rows * 10007 + depth * 101 + cols * 3 + accumulate);
          OffsetView<T> a(rows, depth, seed), c(rows, cols, seed + 1);
          const RowMatrix<T> b = test::random_matrix<T>(depth, cols, seed + 2);
          const RowMatrix<T> before = c.buffer;
          if (accumulate)
            detail::gemm_rows<T, true>(a.view(), b, c.view());
          else
            detail::gemm_rows<T, false>(a.view(), b, c.view());
          const auto av = a.view();
          expect_product<T>(
              before, c.buffer, rows, cols, [&](Index i, Index k) { return av(i, k); }, b,
              accumulate);
          ++cases;
        }
  EXPECT_EQ(cases, 6 * 5 * 8 * 2);
}

TYPED_TEST(GemmKernelTest, TransposedMatchesTheReference) {
  using T = TypeParam;
  int cases = 0;
  for (Index rows : {1, 3, 8, 9, 17, 40, 256})
    for (Index depth : {0, 1, 5, 64, 130})
      for (Index cols : {1, 3, 16, 17, 33, 65})
        for (bool accumulate : {false, true}) {
          const std::uint64_t seed =
              std::uint64_t(rows * 7919 + depth * 97 + cols * 5 + accumulate);
          OffsetView<T> at(depth, rows, seed), c(rows, cols, seed + 1);
          const RowMatrix<T> b = test::random_matrix<T>(depth, cols, seed + 2);
          const RowMatrix<T> before = c.buffer;
          if (accumulate)
            detail::gemm_transposed<T, true>(at.view(), b, c.view());
          else
            detail::gemm_transposed<T, false>(at.view(), b, c.view());
          const auto atv = at.view();
          expect_product<T>(
              before, c.buffer, rows, cols, [&](Index i, Index k) { return atv(k, i); }, b,
              accumulate);
          ++cases;
        }
  EXPECT_EQ(cases, 7 * 5 * 6 * 2);
}

// Non-finite operands propagate as in a plain product: an Inf or NaN in a row of a reaches that
// row of c only (the clamped rows of a partial group are computed but never written).
TYPED_TEST(GemmKernelTest, NonFiniteStaysInItsRow) {
  using T = TypeParam;
  const Index rows = 11, depth = 7, cols = 40;
  RowMatrix<T> a = test::random_matrix<T>(rows, depth, 5);
  a(rows - 1, 3) = std::numeric_limits<T>::quiet_NaN();
  const RowMatrix<T> b = test::random_matrix<T>(depth, cols, 6);
  RowMatrix<T> c(rows, cols);
  detail::gemm_rows<T, false>(a, b, c);
  EXPECT_TRUE(c.topRows(rows - 1).allFinite());
  for (Index j = 0; j < cols; ++j) EXPECT_TRUE(std::isnan(c(rows - 1, j))) << j;
}

// Depth 0 with truly empty operands (Eigen may give them null data): the product is zero, so c is
// zeroed, or left as it is when accumulating.
TYPED_TEST(GemmKernelTest, EmptyDepthIsAZeroProduct) {
  using T = TypeParam;
  const Index rows = 9, cols = 33;
  const RowMatrix<T> a(rows, 0), at(0, rows), b(0, cols);
  const RowMatrix<T> start = test::random_matrix<T>(rows, cols, 8);
  RowMatrix<T> c = start;
  detail::gemm_rows<T, true>(a, b, c);
  detail::gemm_transposed<T, true>(at, b, c);
  EXPECT_EQ(c, start);
  detail::gemm_rows<T, false>(a, b, c);
  EXPECT_TRUE(c.isZero(0));
  c = start;
  detail::gemm_transposed<T, false>(at, b, c);
  EXPECT_TRUE(c.isZero(0));
}

}  // namespace
}  // namespace fastattn
