// Tests of random.hpp: the seeded generator and the projection samplers (docs/spec/favor.md §2,
// §10.5-6).
//
// Statistical tests run in double with fixed seeds (so they are deterministic) and compare sample
// means with their exact values within kSe = 4 standard errors; each prints its observed margin.
// Where a test guards against a known sampler bug (missing QR sign fix, norms coupled to the
// directions), the same statistic is also applied to a deliberately broken sampler written here, to
// show that the test would fail on that bug.

#include "fastattn/random.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "reference/kernels.hpp"
#include "reference/statistics.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::invalid_argument_message;

namespace ref = test::ref;
using ref::kPi;
using ref::kSe;
using ref::Moments;
using ref::within_se;

/// E|g| for g ~ N(0, I_d): the mean of the chi_d distribution, sqrt(2) Gamma((d+1)/2) / Gamma(d/2).
double chi_mean(Index d) {
  const double dd = static_cast<double>(d);
  return std::sqrt(2.0) * std::exp(std::lgamma((dd + 1) / 2) - std::lgamma(dd / 2));
}

/// E|v_1| for v uniform on the unit sphere S^{d-1}: Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)).
double abs_coordinate_mean(Index d) {
  const double dd = static_cast<double>(d);
  return std::exp(std::lgamma(dd / 2) - std::lgamma((dd + 1) / 2)) / std::sqrt(kPi);
}

/// Rows divided by their norms (in double).
Eigen::MatrixXd directions(const Eigen::MatrixXd& w) {
  Eigen::MatrixXd dir = w;
  for (Index r = 0; r < w.rows(); ++r) dir.row(r) /= w.row(r).norm();
  return dir;
}

enum class Sampler { Gaussian, Orthogonal, FixedNorm, Simplex };

const char* name(Sampler s) {
  switch (s) {
    case Sampler::Gaussian:
      return "gaussian_projection";
    case Sampler::Orthogonal:
      return "orthogonal_projection";
    case Sampler::FixedNorm:
      return "fixed_norm_projection";
    case Sampler::Simplex:
      return "simplex_projection";
  }
  return "?";
}

template <class T>
RowMatrix<T> draw(Sampler s, Index m, Index d, std::uint64_t seed) {
  switch (s) {
    case Sampler::Gaussian:
      return gaussian_projection<T>(m, d, seed);
    case Sampler::Orthogonal:
      return orthogonal_projection<T>(m, d, seed);
    case Sampler::FixedNorm:
      return fixed_norm_projection<T>(m, d, seed);
    case Sampler::Simplex:
      return simplex_projection<T>(m, d, seed);
  }
  return {};
}

constexpr Sampler kAllSamplers[] = {Sampler::Gaussian, Sampler::Orthogonal, Sampler::FixedNorm,
                                    Sampler::Simplex};

// ---- the generator ---------------------------------------------------------------------------

TEST(Rng, SplitMix64KnownAnswer) {
  // Published first outputs of SplitMix64 from state 0 (Vigna's splitmix64.c).
  std::uint64_t state = 0;
  EXPECT_EQ(splitmix64(state), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64(state), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(splitmix64(state), 0x06C45D188009454Full);
}

TEST(Rng, Xoshiro256StarStarKnownAnswer) {
  // xoshiro256** seeded by four SplitMix64 outputs of 12345; the values come from an independent
  // arbitrary-precision implementation of the published algorithm. They pin the uniform stream,
  // which the header promises to be identical on every platform.
  Rng rng(12345);
  const std::uint64_t expected[] = {0xbe6a36374160d49bull, 0x214aaa0637a688c6ull,
                                    0xf69d16de9954d388ull, 0x0c60048c4e96e033ull,
                                    0x8e2076aeed51c648ull};
  for (std::uint64_t e : expected) EXPECT_EQ(rng.next_u64(), e);
}

TEST(Rng, SameSeedSameStreamDifferentSeedDifferentStream) {
  Rng a(99), b(99), c(100);
  int equal_to_c = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::uint64_t va = a.next_u64();
    EXPECT_EQ(va, b.next_u64());
    equal_to_c += va == c.next_u64();
  }
  EXPECT_EQ(equal_to_c, 0);
}

TEST(Rng, UniformIsIn01With53BitsAndUniformMoments) {
  Rng rng(2024);
  Moments mean, var;
  double lo = 1, hi = 0;
  for (int i = 0; i < 1000000; ++i) {
    const double u = rng.uniform();
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    ASSERT_TRUE(u >= 0 && u < 1) << u;
    const double scaled = std::ldexp(u, 53);
    ASSERT_EQ(scaled, std::floor(scaled)) << "not a multiple of 2^-53: " << u;
    mean.add(u);
    var.add((u - 0.5) * (u - 0.5));
  }
  EXPECT_LT(lo, 1e-5);
  EXPECT_GT(hi, 1 - 1e-5);
  EXPECT_TRUE(within_se("uniform mean (seed 2024)", mean, 0.5));
  EXPECT_TRUE(within_se("uniform variance (seed 2024)", var, 1.0 / 12));
}

TEST(Rng, NormalIsBoxMullerOfTheUniformStreamWithTheSpareKept) {
  // normal() pairs: r cos(2 pi u2), then r sin(2 pi u2), r = sqrt(-2 log(1 - u1)).
  Rng rng(7), uniforms(7);
  for (int pair = 0; pair < 100; ++pair) {
    const double u1 = 1.0 - uniforms.uniform(), u2 = uniforms.uniform();
    const double r = std::sqrt(-2.0 * std::log(u1)), angle = 2 * kPi * u2;
    const double first = rng.normal(), second = rng.normal();
    EXPECT_NEAR(first, r * std::cos(angle), 1e-14 * (1 + r)) << "pair " << pair;
    EXPECT_NEAR(second, r * std::sin(angle), 1e-14 * (1 + r)) << "pair " << pair;
  }
}

TEST(Rng, NormalMomentsWithinFourStandardErrors) {
  // 10^6 draws, seed 31337: E z = 0, E z^2 = 1, E z^4 = 3, P(|z| <= 1) = erf(1/sqrt 2), and
  // consecutive draws (the two halves of a Box-Muller pair, or of adjacent pairs) uncorrelated.
  Rng rng(31337);
  Moments m1, m2, m4, inside, lag1;
  double previous = rng.normal();
  for (int i = 0; i < 1000000; ++i) {
    const double z = rng.normal();
    ASSERT_TRUE(std::isfinite(z));
    m1.add(z);
    m2.add(z * z);
    m4.add(z * z * z * z);
    inside.add(std::abs(z) <= 1 ? 1.0 : 0.0);
    lag1.add(z * previous);
    previous = z;
  }
  EXPECT_TRUE(within_se("normal mean", m1, 0));
  EXPECT_TRUE(within_se("normal variance", m2, 1));
  EXPECT_TRUE(within_se("normal 4th moment", m4, 3));
  EXPECT_TRUE(within_se("normal P(|z| <= 1)", inside, std::erf(1 / std::sqrt(2.0))));
  EXPECT_TRUE(within_se("normal lag-1 correlation", lag1, 0));
}

TEST(DeriveSeed, DeterministicAndDistinctAcrossStreamsAndSeeds) {
  EXPECT_EQ(derive_seed(7, 0), derive_seed(7, 0));
  EXPECT_EQ(derive_seed(7, 3), derive_seed(7, 3));
  std::set<std::uint64_t> seen;
  for (std::uint64_t seed : {0ull, 1ull, 7ull, 0xFFFFFFFFFFFFFFFFull})
    for (std::uint64_t stream = 0; stream < 4096; ++stream) {
      const std::uint64_t s = derive_seed(seed, stream);
      EXPECT_NE(s, seed);
      seen.insert(s);
    }
  EXPECT_EQ(seen.size(), 4u * 4096u) << "derive_seed collided";
  // Stream k of seed s is not stream k-1 of seed s + 1 or any other trivial relabelling.
  EXPECT_NE(derive_seed(1, 2), derive_seed(2, 1));
  EXPECT_NE(derive_seed(0, 1), derive_seed(1, 0));
}

TEST(DeriveSeed, StreamsLookIndependent) {
  // Over 20000 streams of seed 5: the first uniform of each stream has mean 1/2, and the first
  // normals of adjacent streams are uncorrelated (4 SE).
  Moments first_uniform, adjacent;
  double previous = Rng(derive_seed(5, 0)).normal();
  for (std::uint64_t k = 1; k <= 20000; ++k) {
    Rng a(derive_seed(5, k)), b(derive_seed(5, k));
    first_uniform.add(a.uniform());
    const double z = b.normal();
    adjacent.add(z * previous);
    previous = z;
  }
  EXPECT_TRUE(within_se("derive_seed: first uniform of each stream", first_uniform, 0.5));
  EXPECT_TRUE(within_se("derive_seed: adjacent streams' first normals", adjacent, 0));
  // Projections from different streams differ.
  const RowMatrix<double> w0 = orthogonal_projection<double>(8, 4, derive_seed(5, 0));
  const RowMatrix<double> w1 = orthogonal_projection<double>(8, 4, derive_seed(5, 1));
  EXPECT_TRUE((w0.array() != w1.array()).all());
}

// ---- typed over float and double: determinism, shapes, exact structure --------------------

template <class T>
class ProjectionTest : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ProjectionTest, Scalars);

/// Orthogonality tolerance of the directions after the cast to T: double keeps the QR's ~1e-15,
/// float rounds every entry by 2^-24 relative, so dot products of unit rows are off by ~d 2^-24.
template <class T>
constexpr double kOrthoTol = std::is_same_v<T, float> ? 2e-6 : 1e-12;

TYPED_TEST(ProjectionTest, SameSeedIsBitwiseIdenticalAndOtherSeedsDiffer) {
  using T = TypeParam;
  for (Sampler s : kAllSamplers) {
    SCOPED_TRACE(name(s));
    const RowMatrix<T> a = draw<T>(s, 19, 8, 42), b = draw<T>(s, 19, 8, 42);
    const RowMatrix<T> c = draw<T>(s, 19, 8, 43);
    ASSERT_EQ(a.rows(), 19);
    ASSERT_EQ(a.cols(), 8);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<size_t>(a.size())), 0);
    EXPECT_TRUE((a.array() != c.array()).all()) << "seeds 42 and 43 share entries";
    EXPECT_TRUE(test::all_finite(a));
  }
}

TYPED_TEST(ProjectionTest, FloatAgreesWithDoubleToFloatRounding) {
  // Projections are drawn in double and cast: each float entry is the double entry rounded, so
  // |w_f - w_d| <= 2^-24 |w_d| (half an ulp).
  for (Sampler s : kAllSamplers) {
    SCOPED_TRACE(name(s));
    const RowMatrix<double> wd = draw<double>(s, 21, 8, 77);
    const RowMatrix<TypeParam> wt = draw<TypeParam>(s, 21, 8, 77);
    for (Index i = 0; i < wd.rows(); ++i)
      for (Index j = 0; j < wd.cols(); ++j)
        ASSERT_LE(std::abs(double(wt(i, j)) - wd(i, j)), std::ldexp(std::abs(wd(i, j)), -24))
            << "at (" << i << ", " << j << ")";
  }
}

TYPED_TEST(ProjectionTest, GaussianIsTheNormalStreamRowByRow) {
  using T = TypeParam;
  const RowMatrix<T> w = gaussian_projection<T>(5, 3, 11);
  Rng rng(11);
  for (Index i = 0; i < 5; ++i)
    for (Index j = 0; j < 3; ++j) EXPECT_EQ(w(i, j), static_cast<T>(rng.normal()));
}

TYPED_TEST(ProjectionTest, OrthogonalRowsWithinBlocksForEveryShape) {
  // m < d (one partial block), m = d, m = 2d + 3 (two full blocks and a partial one), and d = 1.
  using T = TypeParam;
  const std::pair<Index, Index> shapes[] = {{3, 8}, {8, 8}, {19, 8}, {7, 2}, {5, 1}, {35, 16}};
  for (auto [m, d] : shapes) {
    SCOPED_TRACE("m = " + std::to_string(m) + ", d = " + std::to_string(d));
    for (Sampler s : {Sampler::Orthogonal, Sampler::FixedNorm}) {
      SCOPED_TRACE(name(s));
      const RowMatrix<T> w = draw<T>(s, m, d, 1234);
      ASSERT_EQ(w.rows(), m);
      ASSERT_EQ(w.cols(), d);
      const Eigen::MatrixXd dir = directions(w.template cast<double>());
      for (Index r0 = 0; r0 < m; r0 += d)
        for (Index i = r0; i < std::min(m, r0 + d); ++i)
          for (Index j = r0; j < i; ++j)
            EXPECT_LE(std::abs(dir.row(i).dot(dir.row(j))), kOrthoTol<T>)
                << "rows " << i << ", " << j;
      // Blocks are independent draws, not copies: row i of block b is not +-row i of block 0
      // (a random pair has |cos| > 0.999 with probability ~1e-9 at d = 8; d <= 2 is skipped).
      for (Index i = d; i < m && d >= 8; ++i)
        EXPECT_LT(std::abs(dir.row(i).dot(dir.row(i % d))), 1 - 1e-3)
            << "row " << i << " repeats row " << i % d;
    }
  }
}

TYPED_TEST(ProjectionTest, FixedNormRowsHaveNormSqrtD) {
  using T = TypeParam;
  // The norm of a cast row is sqrt(d) up to d roundings of 2^-24 (float) or a few 1e-16 (double).
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-13;
  for (Index d : {1, 3, 8, 16}) {
    const RowMatrix<T> w = fixed_norm_projection<T>(2 * d + 3, d, 5);
    for (Index r = 0; r < w.rows(); ++r)
      EXPECT_NEAR(w.row(r).template cast<double>().norm(), std::sqrt(double(d)),
                  tol * std::sqrt(double(d)))
          << "d = " << d << ", row " << r;
  }
}

TYPED_TEST(ProjectionTest, SimplexBlocksHavePairwiseCosineMinusOneOverDMinusOne) {
  using T = TypeParam;
  for (Index d : {2, 3, 5, 8}) {
    const Index m = 2 * d + 3;  // the third block is partial (its first 3 vertices)
    const RowMatrix<T> w = simplex_projection<T>(m, d, 99);
    const Eigen::MatrixXd dir = directions(w.template cast<double>());
    for (Index r0 = 0; r0 < m; r0 += d)
      for (Index i = r0; i < std::min(m, r0 + d); ++i)
        for (Index j = r0; j < i; ++j)
          EXPECT_NEAR(dir.row(i).dot(dir.row(j)), -1.0 / double(d - 1), kOrthoTol<T>)
              << "d = " << d << ", rows " << i << ", " << j;
    // Different blocks use different rotations.
    for (Index i = d; i < m; ++i) EXPECT_LT(std::abs(dir.row(i).dot(dir.row(i % d))), 1 - 1e-3);
  }
}

TYPED_TEST(ProjectionTest, BadSizesThrowWithUsefulMessages) {
  using T = TypeParam;
  for (Sampler s : kAllSamplers) {
    SCOPED_TRACE(name(s));
    for (auto [m, d] : {std::pair<Index, Index>{0, 4}, {4, 0}, {-1, 4}, {4, -3}, {0, 0}}) {
      const std::string msg = invalid_argument_message([&] { draw<T>(s, m, d, 1); });
      EXPECT_NE(msg.find(name(s)), std::string::npos) << msg;
      EXPECT_NE(msg.find("m = " + std::to_string(m) + ", d = " + std::to_string(d)),
                std::string::npos)
          << msg;
    }
  }
  const std::string msg = invalid_argument_message([] { simplex_projection<T>(4, 1, 1); });
  EXPECT_NE(msg.find("simplex_projection"), std::string::npos) << msg;
  EXPECT_NE(msg.find("d = 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("at least 2"), std::string::npos) << msg;
}

TYPED_TEST(ProjectionTest, DrawProjectionDispatchesToTheSamplers) {
  using T = TypeParam;
  const std::pair<Projection, Sampler> kinds[] = {{Projection::Orthogonal, Sampler::Orthogonal},
                                                  {Projection::Gaussian, Sampler::Gaussian},
                                                  {Projection::Simplex, Sampler::Simplex}};
  for (auto [kind, sampler] : kinds) {
    SCOPED_TRACE(name(sampler));
    const RowMatrix<T> a = draw_projection<T>(kind, 11, 4, 3), b = draw<T>(sampler, 11, 4, 3);
    ASSERT_EQ(a.rows(), 11);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(T) * static_cast<size_t>(a.size())), 0);
  }
}

// ---- statistical properties (double) ---------------------------------------------------------

TEST(GaussianProjection, EntriesAreStandardNormal) {
  // 400 x 64 entries, seed 8: mean 0, variance 1, and adjacent columns uncorrelated (4 SE).
  const RowMatrix<double> w = gaussian_projection<double>(400, 64, 8);
  Moments mean, var, cross;
  for (Index i = 0; i < w.rows(); ++i)
    for (Index j = 0; j < w.cols(); ++j) {
      mean.add(w(i, j));
      var.add(w(i, j) * w(i, j));
      if (j % 2) cross.add(w(i, j) * w(i, j - 1));
    }
  EXPECT_TRUE(within_se("gaussian entries: mean", mean, 0));
  EXPECT_TRUE(within_se("gaussian entries: variance", var, 1));
  EXPECT_TRUE(within_se("gaussian entries: adjacent-column product", cross, 0));
}

/// For `draws` projections [m, d] of sampler s (seeds derive_seed(seed, k)), the mean of
/// direction(r, r mod d) for every row r: all are 0 for isotropic rows (docs/spec/favor.md §10.6).
std::vector<Moments> diagonal_direction_means(
    const std::function<Eigen::MatrixXd(std::uint64_t)>& w, Index m, Index d, int draws,
    std::uint64_t seed) {
  std::vector<Moments> diag(static_cast<size_t>(m));
  for (int k = 0; k < draws; ++k) {
    const Eigen::MatrixXd dir = directions(w(derive_seed(seed, static_cast<std::uint64_t>(k))));
    for (Index r = 0; r < m; ++r) diag[size_t(r)].add(dir(r, r % d));
  }
  return diag;
}

/// Q of Householder QR of a Gaussian d x d block without Mezzadri's sign fix, transposed (the
/// rows): the bug of docs/spec/favor.md §13.1, used to show the sign-fix test detects it.
Eigen::MatrixXd block_without_sign_fix(Index d, test::DataRng& rng) {
  Eigen::MatrixXd g(d, d);
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < d; ++j) g(i, j) = rng.normal();
  return Eigen::MatrixXd(Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ()).transpose();
}

TEST(OrthogonalProjection, SignFixMakesEveryDirectionCoordinateMeanZero) {
  // Spec §10.6. For d in {1, 2, 4, 8}, m = 2d + 3 (full and partial blocks), 20000 draws
  // (seed 606): the mean of W_dir[r][r mod d] is 0 within 4 SE for every row, for the three
  // samplers that use the Haar blocks. At d = 4, SE ~ 0.0035, while without the fix row 0 has mean
  // -E|v_1| = -0.4244 (checked below on a local copy of the buggy sampler).
  for (Index d : {1, 2, 4, 8}) {
    const Index m = 2 * d + 3;
    for (Sampler s : {Sampler::Orthogonal, Sampler::FixedNorm, Sampler::Simplex}) {
      if (s == Sampler::Simplex && d == 1) continue;
      const auto diag = diagonal_direction_means(
          [&](std::uint64_t seed) { return Eigen::MatrixXd(draw<double>(s, m, d, seed)); }, m, d,
          20000, 606);
      for (Index r = 0; r < m; ++r)
        EXPECT_TRUE(within_se(std::string(name(s)) + " d=" + std::to_string(d) + " W_dir[" +
                                  std::to_string(r) + "][" + std::to_string(r % d) + "]",
                              diag[size_t(r)], 0));
    }
  }
  // The same statistic on the sampler without the sign fix: row 0 has mean -E|v_1| (every draw
  // has a negative first coordinate), hundreds of SE from 0.
  test::DataRng rng(606);
  const auto buggy = diagonal_direction_means(
      [&](std::uint64_t) { return block_without_sign_fix(4, rng); }, 4, 4, 20000, 606);
  EXPECT_TRUE(within_se("no sign fix, d=4, W_dir[0][0]", buggy[0], -abs_coordinate_mean(4)));
  EXPECT_GT(std::abs(buggy[0].mean()) / buggy[0].se(), 100);
}

TEST(OrthogonalProjection, UnfixedCompatVariantReproducesTheReferenceBias) {
  // detail::orthogonal_projection_impl(sign_fix = false) exists to reproduce the references
  // (docs/spec/favor.md §11, §13.1): Householder blocks whose row 0 has a negative first coordinate
  // in every draw, still orthonormal within a block, with chi_d norms. With sign_fix = true it is
  // orthogonal_projection itself. d = 4, m = 11, 2000 draws (seed 505).
  const Index d = 4, m = 11;
  Moments sq_norm;
  for (int k = 0; k < 2000; ++k) {
    const std::uint64_t seed = derive_seed(505, static_cast<std::uint64_t>(k));
    const RowMatrix<double> w = detail::orthogonal_projection_impl<double>(m, d, seed, false);
    const Eigen::MatrixXd dir = directions(w);
    for (Index r0 = 0; r0 < m; r0 += d) {
      ASSERT_LT(dir(r0, 0), 0) << "draw " << k << ", block row " << r0;
      for (Index i = r0 + 1; i < std::min(m, r0 + d); ++i)
        ASSERT_LE(std::abs(dir.row(i).dot(dir.row(r0))), 1e-12);
    }
    for (Index r = 0; r < m; ++r) sq_norm.add(w.row(r).squaredNorm());
  }
  EXPECT_TRUE(within_se("unfixed ORF: E|w|^2", sq_norm, double(d)));
  const RowMatrix<double> fixed = detail::orthogonal_projection_impl<double>(m, d, 9, true);
  EXPECT_TRUE((fixed.array() == orthogonal_projection<double>(m, d, 9).array()).all());
}

TEST(OrthogonalProjection, RowNormsAreChiD) {
  // Row norms of orthogonal (and simplex) projections are chi_d: E|w| = sqrt(2) G((d+1)/2)/G(d/2),
  // E|w|^2 = d, E|w|^4 = d(d + 2); 10000 draws of m = 2d + 3 rows (seed 707), 4 SE. Fixed norms
  // sqrt(d) would give E|w| = sqrt(d) (e.g. 2 vs 1.880 at d = 4: dozens of SE).
  for (Index d : {2, 4, 16}) {
    for (Sampler s : {Sampler::Orthogonal, Sampler::Simplex}) {
      Moments n1, n2, n4;
      for (int k = 0; k < 10000; ++k) {
        const RowMatrix<double> w = draw<double>(s, 2 * d + 3, d, derive_seed(707, k));
        for (Index r = 0; r < w.rows(); ++r) {
          const double sq = w.row(r).squaredNorm();
          n1.add(std::sqrt(sq));
          n2.add(sq);
          n4.add(sq * sq);
        }
      }
      const std::string tag = std::string(name(s)) + " d=" + std::to_string(d);
      EXPECT_TRUE(within_se(tag + " E|w|", n1, chi_mean(d)));
      EXPECT_TRUE(within_se(tag + " E|w|^2", n2, double(d)));
      EXPECT_TRUE(within_se(tag + " E|w|^4", n4, double(d * (d + 2))));
    }
  }
}

/// cov(|w_r| - chi mean, |W_dir[r][0]| - E|v_1|) and the same with the coordinate r mod d, pooled
/// over rows and draws; 0 when norms are independent of the directions.
std::pair<Moments, Moments> norm_direction_covariance(
    const std::function<Eigen::MatrixXd(std::uint64_t)>& sample, Index d, int draws,
    std::uint64_t seed) {
  Moments first, diagonal;
  const double mu_norm = chi_mean(d), mu_coord = abs_coordinate_mean(d);
  for (int k = 0; k < draws; ++k) {
    const Eigen::MatrixXd w = sample(derive_seed(seed, static_cast<std::uint64_t>(k)));
    for (Index r = 0; r < w.rows(); ++r) {
      const double norm = w.row(r).norm();
      first.add((norm - mu_norm) * (std::abs(w(r, 0)) / norm - mu_coord));
      diagonal.add((norm - mu_norm) * (std::abs(w(r, r % d)) / norm - mu_coord));
    }
  }
  return {first, diagonal};
}

TEST(OrthogonalProjection, NormsAreIndependentOfDirections) {
  // 20000 draws of [d, d], d = 4 (seed 808): the covariance of the norm with |first coordinate of
  // the direction| (and with |diagonal coordinate|) is 0 within 4 SE. Taking norms from the rows of
  // the same Gaussian block whose QR gives the directions (the fast-transformers bug, spec §13.2)
  // makes it clearly positive; checked below on a local copy of that sampler.
  const Index d = 4;
  for (Sampler s : {Sampler::Orthogonal, Sampler::Simplex}) {
    const auto [first, diagonal] = norm_direction_covariance(
        [&](std::uint64_t seed) { return Eigen::MatrixXd(draw<double>(s, d, d, seed)); }, d, 20000,
        808);
    EXPECT_TRUE(within_se(std::string(name(s)) + " cov(norm, |dir_0|)", first, 0));
    EXPECT_TRUE(within_se(std::string(name(s)) + " cov(norm, |dir_diag|)", diagonal, 0));
  }
  test::DataRng rng(808);
  const auto coupled = norm_direction_covariance(
      [&](std::uint64_t) {
        Eigen::MatrixXd g(d, d);
        for (Index i = 0; i < d; ++i)
          for (Index j = 0; j < d; ++j) g(i, j) = rng.normal();
        const Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
        Eigen::MatrixXd q = qr.householderQ();
        for (Index i = 0; i < d; ++i)
          if (qr.matrixQR()(i, i) < 0) q.col(i) = -q.col(i);
        Eigen::MatrixXd w = q.transpose();
        for (Index r = 0; r < d; ++r) w.row(r) *= g.row(r).norm();  // coupled norms
        return w;
      },
      d, 20000, 808);
  std::printf("[ stats    ] coupled-norm sampler: cov(norm, |dir_0|) at %+.1f SE\n",
              coupled.first.mean() / coupled.first.se());
  EXPECT_GT(coupled.first.mean() / coupled.first.se(), 2 * kSe);
}

TEST(OrthogonalProjection, BlocksAreIndependent) {
  // Row i of block 1 against row i of block 0 (and the partial block 2), d = 8, m = 2d + 3, 10000
  // draws (seed 909): the squared cosine has mean 1/d and the cosine mean 0 within 4 SE, as for
  // independent uniform directions. Repeated blocks would give 1; rows sharing a rotation could not
  // average to 1/d.
  const Index d = 8, m = 2 * d + 3;
  for (Sampler s : {Sampler::Orthogonal, Sampler::Simplex}) {
    Moments cos1, cos_sq1, cos_sq2;
    for (int k = 0; k < 10000; ++k) {
      const Eigen::MatrixXd dir = directions(draw<double>(s, m, d, derive_seed(909, k)));
      for (Index i = 0; i < d; ++i) {
        const double c = dir.row(d + i).dot(dir.row(i));
        cos1.add(c);
        cos_sq1.add(c * c);
      }
      for (Index i = 2 * d; i < m; ++i)
        cos_sq2.add(std::pow(dir.row(i).dot(dir.row(i - 2 * d)), 2));
    }
    const std::string tag = name(s);
    EXPECT_TRUE(within_se(tag + " cos(block1 row i, block0 row i)", cos1, 0));
    EXPECT_TRUE(within_se(tag + " cos^2(block1 row i, block0 row i)", cos_sq1, 1.0 / d));
    EXPECT_TRUE(within_se(tag + " cos^2(block2 row i, block0 row i)", cos_sq2, 1.0 / d));
  }
}

}  // namespace
}  // namespace fastattn
