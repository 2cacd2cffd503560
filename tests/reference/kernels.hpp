#pragma once
/// @file kernels.hpp
/// The exact kernels that RFA's random features estimate (docs/spec/rfa.md §3, §7), in closed
/// form: the Gaussian kernel of normalized rows and the arc-cosine kernel with its moments J1, J2.

#include <algorithm>
#include <cmath>

#include "fastattn/types.hpp"

namespace fastattn::test::ref {

constexpr double kPi = 3.14159265358979323846;

/// J1(theta) = sin theta + (pi - theta) cos theta: E[relu(w.x) relu(w.y)] = J1 / (2 pi) for unit
/// x, y at angle theta and w ~ N(0, I).
inline double arccos_j1(double theta) { return std::sin(theta) + (kPi - theta) * std::cos(theta); }

/// J2(theta) = 3 sin theta cos theta + (pi - theta)(1 + 2 cos^2 theta): E[(relu(w.x) relu(w.y))^2]
/// = J2 / (2 pi).
inline double arccos_j2(double theta) {
  const double c = std::cos(theta);
  return 3 * std::sin(theta) * c + (kPi - theta) * (1 + 2 * c * c);
}

/// [Nq, Nk] exp(qh_i' S kh_j - kh_j' S kh_j / 2), S = diag(s2), on normalized rows qh, kh: the
/// kernel trig features with W = E diag(sigma) estimate, up to a query factor that cancels
/// (docs/spec/rfa.md §3; scalar sigma: s2 = sigma^2, where the key factor is a constant).
inline RowMatrix<double> gaussian_kernel(const RowMatrix<double>& qh, const RowMatrix<double>& kh,
                                         const Eigen::VectorXd& s2) {
  RowMatrix<double> kern(qh.rows(), kh.rows());
  for (Index i = 0; i < qh.rows(); ++i)
    for (Index j = 0; j < kh.rows(); ++j) {
      double cross = 0, self = 0;
      for (Index c = 0; c < qh.cols(); ++c) {
        cross += s2[c] * qh(i, c) * kh(j, c);
        self += s2[c] * kh(j, c) * kh(j, c);
      }
      kern(i, j) = std::exp(cross - 0.5 * self);
    }
  return kern;
}

/// [Nq, Nk] kappa_1(theta_ij) = J1(theta_ij) / (2 pi) on normalized rows (docs/spec/rfa.md §7).
inline RowMatrix<double> arccos_kernel(const RowMatrix<double>& qh, const RowMatrix<double>& kh) {
  RowMatrix<double> kern(qh.rows(), kh.rows());
  for (Index i = 0; i < qh.rows(); ++i)
    for (Index j = 0; j < kh.rows(); ++j) {
      const double cosine = std::clamp(qh.row(i).dot(kh.row(j)), -1.0, 1.0);
      kern(i, j) = arccos_j1(std::acos(cosine)) / (2 * kPi);
    }
  return kern;
}

}  // namespace fastattn::test::ref
