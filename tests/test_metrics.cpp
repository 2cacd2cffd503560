// Tests of metrics.hpp.

#include "fastattn/metrics.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "support.hpp"

namespace fastattn {
namespace {

template <class T>
class MetricsTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(MetricsTest, Types);

TYPED_TEST(MetricsTest, HandComputedValues) {
  using M = RowMatrix<TypeParam>;
  M exact(2, 2), approx(2, 2);
  exact << 3, 0, 0, 4;   // ||exact||_F = 5
  approx << 3, 1, 0, 2;  // difference (0, 1, 0, -2): norm sqrt(5)
  EXPECT_NEAR(relative_error<TypeParam>(approx, exact), std::sqrt(5.0) / 5, 1e-7);
  EXPECT_NEAR(max_abs_error<TypeParam>(approx, exact), 2.0, 1e-7);
  // Row 0: (3,1) vs (3,0): cos = 3/sqrt(10). Row 1: (0,2) vs (0,4): cos = 1.
  EXPECT_NEAR(mean_row_cosine<TypeParam>(approx, exact), (3 / std::sqrt(10.0) + 1) / 2, 1e-7);
}

TYPED_TEST(MetricsTest, ZeroRowsAndMatrices) {
  using M = RowMatrix<TypeParam>;
  const M zero = M::Zero(2, 3);
  M one_row = M::Zero(2, 3);
  one_row(1, 0) = 1;
  EXPECT_EQ(relative_error<TypeParam>(zero, zero), 0.0);
  EXPECT_TRUE(std::isinf(relative_error<TypeParam>(one_row, zero)));
  // Row 0 is zero in both (counts 1); row 1 is zero against non-zero (counts 0).
  EXPECT_DOUBLE_EQ(mean_row_cosine<TypeParam>(zero, one_row), 0.5);
  EXPECT_EQ(max_abs_error<TypeParam>(M(0, 3), M(0, 3)), 0.0);
}

TYPED_TEST(MetricsTest, ShapeMismatchThrows) {
  using M = RowMatrix<TypeParam>;
  const std::string msg =
      test::invalid_argument_message([] { relative_error<TypeParam>(M(2, 3), M(3, 2)); });
  EXPECT_NE(msg.find("approx [2, 3] and exact [3, 2]"), std::string::npos) << msg;
  EXPECT_THROW(max_abs_error<TypeParam>(M(2, 3), M(2, 2)), std::invalid_argument);
  EXPECT_THROW(mean_row_cosine<TypeParam>(M(1, 3), M(2, 3)), std::invalid_argument);
}

}  // namespace
}  // namespace fastattn
