#pragma once
/// @file favor.hpp
/// FAVOR's data-dependent parameters in double (docs/spec/favor.md §4-§5): FAVOR++'s A* and the
/// diagonal rescaling psi, fitted per call from the queries and the valid keys.

#include <algorithm>
#include <cmath>
#include <limits>

#include "fastattn/types.hpp"

namespace fastattn::test::ref {

/// A* = (1 - 2 rho - sqrt((2 rho + 1)^2 + 8 rho)) / 16 (docs/spec/favor.md §4).
inline double optimal_a(double rho) {
  return (1 - 2 * rho - std::sqrt((2 * rho + 1) * (2 * rho + 1) + 8 * rho)) / 16;
}

/// The fitted parameters: psi [D] (ones without rescaling) and A* (NaN unless asked for).
struct FavorFit {
  Eigen::VectorXd psi;
  double a = std::numeric_limits<double>::quiet_NaN();
};

/// For logit scale s, queries q [Nq, D] and the unpadded keys of k [Nk, D]:
///   psi_l = (sum_j k_jl^2 / sum_i q_il^2)^(1/4), with psi_l^2 kept in [psi2_lo, psi2_hi] (the
///           library keeps s psi^2 and s / psi^2 in T's range) and 1 where a sum is 0;
///   A*    of rho = (E|x|^2 + E|y|^2 + 2 E[x] . E[y]) / D over x = sqrt(s) psi o q_i and
///           y = sqrt(s) k_j / psi (the valid keys).
inline FavorFit favor_fit(const RowMatrix<double>& q, const RowMatrix<double>& k,
                          const KeyMask& padding, double s, bool rescale, bool fit_a,
                          double psi2_lo = 0,
                          double psi2_hi = std::numeric_limits<double>::infinity()) {
  const Index d = q.cols();
  Eigen::VectorXd sx2 = Eigen::VectorXd::Zero(d), sy2 = Eigen::VectorXd::Zero(d),
                  mx = Eigen::VectorXd::Zero(d), my = Eigen::VectorXd::Zero(d);
  Index valid = 0;
  for (Index i = 0; i < q.rows(); ++i)
    sx2 += q.row(i).transpose().cwiseAbs2(), mx += q.row(i).transpose();
  for (Index j = 0; j < k.rows(); ++j) {
    if (padding.size() != 0 && padding[j]) continue;
    sy2 += k.row(j).transpose().cwiseAbs2();
    my += k.row(j).transpose();
    ++valid;
  }
  FavorFit fit;
  fit.psi = Eigen::VectorXd::Ones(d);
  if (rescale && psi2_lo <= psi2_hi)
    for (Index l = 0; l < d; ++l)
      if (sx2[l] > 0 && sy2[l] > 0 && std::isfinite(sy2[l] / sx2[l]))
        fit.psi[l] = std::sqrt(std::clamp(std::sqrt(sy2[l] / sx2[l]), psi2_lo, psi2_hi));
  if (fit_a) {
    const Eigen::ArrayXd psi = fit.psi.array();
    const double nq = double(std::max<Index>(q.rows(), 1)), nk = double(std::max<Index>(valid, 1));
    const double ex2 = s * (sx2.array() * psi.square()).sum() / nq;
    const double ey2 = s * (sy2.array() / psi.square()).sum() / nk;
    const double cross = s * ((mx.array() * psi / nq) * (my.array() / psi / nk)).sum();
    fit.a = optimal_a((ex2 + ey2 + 2 * cross) / double(d));
  }
  return fit;
}

}  // namespace fastattn::test::ref
