// Tests of detail/simd/sincos.hpp: the joint sin/cos of the trig features against std::sin and
// std::cos in double (moderate and reduced-range arguments, the large-argument fallback mixed with
// small arguments in one packet, NaN and infinity, in-place use, the folded scale).

#include "fastattn/features.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "reference/kernels.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

namespace ref = test::ref;

template <class T>
class SincosTest : public ::testing::Test {
 protected:
  // Largest |x| served by the polynomial path (beyond it: std::sin/std::cos per element).
  static constexpr double max_reduced = detail::SincosConstants<T>::max_reduced;
  // Allowed |error| against std::sin/std::cos in double: 2 ulp of 1 (2^-22 float, 2^-51 double).
  // A correct Cody-Waite reduction plus the Cephes polynomials is within 1 ulp of the true value,
  // and so is the double libm reference.
  static constexpr double tol = std::is_same_v<T, float> ? 0x1p-22 : 0x1p-51;

  /// Runs detail::sincos on xs and reports the largest errors against double std::sin/std::cos.
  static ::testing::AssertionResult accurate(const std::vector<T>& xs, double bound) {
    const Index n = static_cast<Index>(xs.size());
    std::vector<T> c(xs.size()), s(xs.size());
    detail::sincos(xs.data(), c.data(), s.data(), n);
    double worst = 0, at = 0;
    for (size_t j = 0; j < xs.size(); ++j) {
      const double xd = double(xs[j]);
      const double e =
          std::max(std::abs(double(s[j]) - std::sin(xd)), std::abs(double(c[j]) - std::cos(xd)));
      if (!(e <= worst)) worst = e, at = xd;  // NaN counts as the worst
    }
    if (worst <= bound) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "max |error| " << worst << " at x = " << at << " exceeds " << bound;
  }
};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SincosTest, Scalars);

TYPED_TEST(SincosTest, AccurateForModerateArguments) {
  // |x| <= 100: a dense grid (every quadrant, both signs, k up to 64) and random points, with a
  // length that is not a multiple of the packet width so the scalar tail runs too.
  using T = TypeParam;
  std::vector<T> xs;
  for (int i = -200001; i <= 200001; ++i) xs.push_back(static_cast<T>(i * (100.0 / 200001)));
  test::DataRng rng(21);
  for (int i = 0; i < 100003; ++i) xs.push_back(static_cast<T>(200 * rng.uniform() - 100));
  for (double special : {0.0, -0.0, 1e-30, ref::kPi / 4, ref::kPi / 2, ref::kPi, 3 * ref::kPi / 4,
                         -ref::kPi / 4, 2.5})
    xs.push_back(static_cast<T>(special));
  EXPECT_TRUE(this->accurate(xs, this->tol));
}

TYPED_TEST(SincosTest, AccurateUpToTheEndOfTheReducedRange) {
  // 100 < |x| <= max_reduced (8192 float, 1e6 double), still the polynomial path: the three-part
  // pi/2 must represent pi/2 to well below ulp(1) / k. Random points plus the boundary itself.
  using T = TypeParam;
  std::vector<T> xs;
  test::DataRng rng(22);
  for (int i = 0; i < 200001; ++i) {
    const double mag = 100 + (this->max_reduced - 100) * rng.uniform();
    xs.push_back(static_cast<T>(i % 2 ? mag : -mag));
  }
  xs.push_back(static_cast<T>(this->max_reduced));
  xs.push_back(static_cast<T>(-this->max_reduced));
  EXPECT_TRUE(this->accurate(xs, this->tol));
}

TYPED_TEST(SincosTest, LargeArgumentsUseTheFallbackAndMixWithSmallOnes) {
  // 1e4, 1e7, 1e9 (beyond max_reduced for float; 1e7 and 1e9 for double) interleaved with small
  // arguments in the same packets: every lane is right, whichever path its packet takes.
  using T = TypeParam;
  std::vector<T> xs;
  for (double big : {1e4, 1e7, 1e9, -1e9, 3.4e38})
    for (double small : {0.5, -2.0, 7.0, 1e-3, -30.0}) {
      xs.push_back(static_cast<T>(small));
      xs.push_back(static_cast<T>(big));
      xs.push_back(static_cast<T>(small * 3));
    }
  // The fallback is std::sin/std::cos in T; its own error at huge arguments is that of libm.
  EXPECT_TRUE(this->accurate(xs, this->tol));
}

TYPED_TEST(SincosTest, NanAndInfinityGiveNanWithoutDisturbingNeighbours) {
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  std::vector<T> xs = {T(0.3), nan, T(-1.2), T(2.5), T(4), inf, T(-0.7), -inf, T(1), nan, T(9)};
  std::vector<T> c(xs.size()), s(xs.size());
  detail::sincos(xs.data(), c.data(), s.data(), static_cast<Index>(xs.size()));
  for (size_t j = 0; j < xs.size(); ++j) {
    if (std::isfinite(xs[j])) {
      EXPECT_NEAR(double(s[j]), std::sin(double(xs[j])), this->tol) << "x = " << xs[j];
      EXPECT_NEAR(double(c[j]), std::cos(double(xs[j])), this->tol) << "x = " << xs[j];
    } else {
      EXPECT_TRUE(std::isnan(s[j]) && std::isnan(c[j])) << "x = " << xs[j];
    }
  }
  T sv, cv;
  detail::sincos_scalar(nan, sv, cv);
  EXPECT_TRUE(std::isnan(sv) && std::isnan(cv));
}

TYPED_TEST(SincosTest, CosineMayOverwriteTheInput) {
  // Trig features call sincos(u, u, u + m, m): the cosines replace the arguments in place.
  using T = TypeParam;
  std::vector<T> buf(2 * 37);
  for (size_t j = 0; j < 37; ++j) buf[j] = static_cast<T>(0.37 * double(j) - 5);
  const std::vector<T> xs(buf.begin(), buf.begin() + 37);
  detail::sincos(buf.data(), buf.data(), buf.data() + 37, 37);
  for (size_t j = 0; j < 37; ++j) {
    EXPECT_NEAR(double(buf[j]), std::cos(double(xs[j])), this->tol);
    EXPECT_NEAR(double(buf[37 + j]), std::sin(double(xs[j])), this->tol);
  }
}

TYPED_TEST(SincosTest, ScaleMultipliesEachArgumentFirst) {
  // The trig features fold the row factor 1/|x| into the pass: sincos(x, ..., scale) must equal
  // sincos of the rounded products scale * x, in the vector body, the large-argument fallback and
  // the scalar tail alike (a large argument in the middle, n not a multiple of any packet width).
  using T = TypeParam;
  const T scale = static_cast<T>(0.3183);
  std::vector<T> xs, scaled;
  for (int i = 0; i < 1003; ++i) xs.push_back(static_cast<T>(0.731 * (i - 501)));
  xs[300] = static_cast<T>(4 * this->max_reduced / double(scale));  // scaled: beyond the range
  for (T x : xs) scaled.push_back(scale * x);
  const Index n = static_cast<Index>(xs.size());
  std::vector<T> c(xs.size()), s(xs.size()), c_ref(xs.size()), s_ref(xs.size());
  detail::sincos(xs.data(), c.data(), s.data(), n, scale);
  detail::sincos(scaled.data(), c_ref.data(), s_ref.data(), n);
  for (size_t j = 0; j < xs.size(); ++j) {
    ASSERT_EQ(c[j], c_ref[j]) << "at x = " << xs[j];
    ASSERT_EQ(s[j], s_ref[j]) << "at x = " << xs[j];
  }
  EXPECT_TRUE(this->accurate(scaled, this->tol));
}

}  // namespace
}  // namespace fastattn
