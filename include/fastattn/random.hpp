#pragma once
/// @file random.hpp
/// Seeded random numbers and random projection matrices (docs/spec/favor.md §2).
///
/// Reproducibility: the generator is xoshiro256** seeded through SplitMix64, and normals come from
/// Box-Muller on 53-bit uniforms; nothing depends on implementation-defined library distributions
/// (std::normal_distribution) or on std::rand (Eigen's Random()). The uniform stream is identical
/// on every platform; normals use std::log/std::sqrt/std::cos, so they are identical wherever the C
/// math library rounds alike (e.g. every glibc). Projections are drawn in double and then cast to
/// T, so float and double get the same matrix up to rounding. Nothing here depends on threads.

#include <Eigen/QR>
#include <cmath>
#include <cstdint>

#include "fastattn/config.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// One SplitMix64 step: advances `state` and returns a well-mixed 64-bit value.
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The seed of independent stream `stream` (e.g. layer * heads + head) derived from `seed`.
inline std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t state = seed ^ (0xD1B54A32D192ED03ull * (stream + 1));
  splitmix64(state);
  return splitmix64(state);
}

/// Portable pseudo-random generator: xoshiro256** (Blackman & Vigna) seeded by SplitMix64.
class Rng {
 public:
  /// A generator whose stream is fully determined by `seed`.
  explicit Rng(std::uint64_t seed) {
    for (auto& word : s_) word = splitmix64(seed);
  }

  /// Next 64 random bits.
  std::uint64_t next_u64() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

  /// Standard normal N(0, 1) (Box-Muller; the second value of each pair is kept for the next call).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - uniform();  // (0, 1], so the log is finite
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    constexpr double two_pi = 6.283185307179586476925286766559;
    spare_ = r * std::sin(two_pi * u2);
    has_spare_ = true;
    return r * std::cos(two_pi * u2);
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
  double spare_ = 0;
  bool has_spare_ = false;
};

namespace detail {

inline void check_projection_size(const char* fn, Index m, Index d) {
  FASTATTN_CHECK(m >= 1 && d >= 1,
                 fn << ": m (projections) and d (head dimension) must be at least "
                       "1, got m = "
                    << m << ", d = " << d);
}

/// [d, d] Haar-distributed orthogonal matrix: QR of a Gaussian block with Mezzadri's sign fix
/// (columns of Q times sign(R_ii), sign(0) = +1). Without the fix Householder QR makes row 0 of
/// every block point into the negative half-space and the estimator is biased (docs/spec/favor.md §2.2).
inline Eigen::MatrixXd haar_orthogonal(Index d, Rng& rng) {
  Eigen::MatrixXd g(d, d);
  for (Index i = 0; i < d; ++i)
    for (Index j = 0; j < d; ++j) g(i, j) = rng.normal();
  const Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd q = qr.householderQ();
  for (Index i = 0; i < d; ++i)
    if (qr.matrixQR()(i, i) < 0) q.col(i) = -q.col(i);
  return q;
}

/// [m, d] stacked blocks of orthonormal rows, rows of block b = rows of basis(b) (d x d each);
/// the last block contributes its first m - (nb-1) d rows.
template <class BlockFn>
Eigen::MatrixXd stacked_blocks(Index m, Index d, BlockFn basis) {
  Eigen::MatrixXd w(m, d);
  for (Index r0 = 0; r0 < m; r0 += d) {
    const Eigen::MatrixXd block = basis();
    w.middleRows(r0, std::min(d, m - r0)) = block.topRows(std::min(d, m - r0));
  }
  return w;
}

/// Scales row r of w by an independent chi_d norm |g_r|, g_r ~ N(0, I_d).
inline void scale_rows_by_chi_norms(Eigen::MatrixXd& w, Rng& rng) {
  for (Index r = 0; r < w.rows(); ++r) {
    double sq = 0;
    for (Index j = 0; j < w.cols(); ++j) {
      const double g = rng.normal();
      sq += g * g;
    }
    w.row(r) *= std::sqrt(sq);
  }
}

template <class T>
RowMatrix<T> to_row_matrix(const Eigen::MatrixXd& w) {
  return w.cast<T>();
}

}  // namespace detail

/// [m, d] projection with iid N(0, 1) entries (drawn row by row).
template <class T>
RowMatrix<T> gaussian_projection(Index m, Index d, std::uint64_t seed) {
  detail::check_projection_size("gaussian_projection", m, d);
  Rng rng(seed);
  RowMatrix<T> w(m, d);
  for (Index i = 0; i < m; ++i)
    for (Index j = 0; j < d; ++j) w(i, j) = static_cast<T>(rng.normal());
  return w;
}

namespace detail {
/// ORF blocks with or without Mezzadri's sign fix; the unfixed variant reproduces the reference
/// implementations (docs/spec/favor.md §11, §13.1) and exists only for their compatibility modes.
template <class T>
RowMatrix<T> orthogonal_projection_impl(Index m, Index d, std::uint64_t seed, bool sign_fix) {
  Rng rng(seed);
  Eigen::MatrixXd w = stacked_blocks(m, d, [&] {
    if (sign_fix) return Eigen::MatrixXd(haar_orthogonal(d, rng).transpose());
    Eigen::MatrixXd g(d, d);
    for (Index i = 0; i < d; ++i)
      for (Index j = 0; j < d; ++j) g(i, j) = rng.normal();
    return Eigen::MatrixXd(
        Eigen::MatrixXd(Eigen::HouseholderQR<Eigen::MatrixXd>(g).householderQ()).transpose());
  });
  scale_rows_by_chi_norms(w, rng);  // norms drawn after, independent of the directions
  return to_row_matrix<T>(w);
}
}  // namespace detail

/// [m, d] block-orthogonal projection (ORF): ceil(m/d) independent Haar blocks of d orthonormal
/// rows (sign-fixed QR), the last one partial, each row scaled by an independent chi_d norm, so
/// every row is marginally N(0, I_d) (docs/spec/favor.md §2.2).
template <class T>
RowMatrix<T> orthogonal_projection(Index m, Index d, std::uint64_t seed) {
  detail::check_projection_size("orthogonal_projection", m, d);
  return detail::orthogonal_projection_impl<T>(m, d, seed, true);
}

/// [m, d] ORF directions with every row norm sqrt(d): the projection of the SMREG kernel. It does
/// not estimate the softmax kernel (docs/spec/favor.md §2.3); use it only under that name.
template <class T>
RowMatrix<T> fixed_norm_projection(Index m, Index d, std::uint64_t seed) {
  detail::check_projection_size("fixed_norm_projection", m, d);
  Rng rng(seed);
  Eigen::MatrixXd w = detail::stacked_blocks(
      m, d, [&] { return Eigen::MatrixXd(detail::haar_orthogonal(d, rng).transpose()); });
  w *= std::sqrt(static_cast<double>(d));
  return detail::to_row_matrix<T>(w);
}

/// [m, d] simplex random features (Reid et al., ICML 2023): each block is the d unit vertices of a
/// regular simplex (pairwise cosine -1/(d-1)) rotated by an independent Haar matrix, rows scaled
/// by independent chi_d norms (docs/spec/favor.md §2.4). Requires d >= 2.
template <class T>
RowMatrix<T> simplex_projection(Index m, Index d, std::uint64_t seed) {
  detail::check_projection_size("simplex_projection", m, d);
  FASTATTN_CHECK(d >= 2,
                 "simplex_projection: d must be at least 2 (a simplex needs two vertices), "
                 "got d = "
                     << d);
  // Vertices s_i = sqrt(d/(d-1)) e_i - ((sqrt(d) + 1)/(d-1)^{3/2}) 1' (i < d), s_d = (d-1)^{-1/2}
  // 1', with 1' = (1, ..., 1, 0).
  const double dd = static_cast<double>(d);
  Eigen::MatrixXd simplex = Eigen::MatrixXd::Zero(d, d);
  const double diag = std::sqrt(dd / (dd - 1)), shift = (std::sqrt(dd) + 1) / std::pow(dd - 1, 1.5);
  for (Index i = 0; i < d - 1; ++i) {
    simplex.row(i).head(d - 1).setConstant(-shift);
    simplex(i, i) += diag;
  }
  simplex.row(d - 1).head(d - 1).setConstant(1 / std::sqrt(dd - 1));
  Rng rng(seed);
  Eigen::MatrixXd w = detail::stacked_blocks(
      m, d, [&] { return Eigen::MatrixXd(simplex * detail::haar_orthogonal(d, rng)); });
  detail::scale_rows_by_chi_norms(w, rng);
  return detail::to_row_matrix<T>(w);
}

/// How a method draws its projection directions (rows are always marginally N(0, I_d)).
enum class Projection {
  Orthogonal,  ///< block-orthogonal rows (sign-fixed QR), independent chi_d norms (the default)
  Gaussian,    ///< iid N(0, 1) entries
  Simplex,     ///< rotated regular-simplex blocks, independent chi_d norms (Reid et al., 2023)
};

/// [m, d] projection of the given kind drawn from `seed`.
template <class T>
RowMatrix<T> draw_projection(Projection kind, Index m, Index d, std::uint64_t seed) {
  switch (kind) {
    case Projection::Gaussian:
      return gaussian_projection<T>(m, d, seed);
    case Projection::Simplex:
      return simplex_projection<T>(m, d, seed);
    case Projection::Orthogonal:
      break;
  }
  return orthogonal_projection<T>(m, d, seed);
}

}  // namespace fastattn
