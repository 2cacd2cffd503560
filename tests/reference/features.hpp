#pragma once
/// @file features.hpp
/// The random-feature maps in double, written from their formulas (docs/spec/favor.md §3-§5,
/// docs/spec/rfa.md §2, §7) with plain loops. For rows x [n, D] and projection w [m, D]:
/// x~ = input_scale * psi o x_hat (x_hat = x / |x| when normalizing, 0 for a zero row),
/// h = |x~|^2 / 2, u_r = w_r . x~, and
///   Positive    u_r - h                          (log-features)
///   Hyperbolic  [u_r - h, -u_r - h]              (log-features)
///   Optimal     A |w_r|^2 + sqrt(1 - 4A) u_r - h (log-features)
///   Trig        [cos u_r, sin u_r]
///   Relu        max(u_r, 0) + eps
///   Identity    x~;  Exponential x~ (log-features)
/// No m^-1/2 factor (it cancels in attention; the library's feature maps drop it too).

#include <algorithm>
#include <cmath>

#include "fastattn/features.hpp"
#include "fastattn/types.hpp"

namespace fastattn::test::ref {

/// The input transform and parameters of a feature map.
struct FeatureSpec {
  double input_scale = 1;
  bool normalize = false;
  Eigen::VectorXd dim_scale;  // psi [D]; empty = all ones
  double optimal_a = 0;
  double relu_eps = 0;
};

/// True for the kinds whose features are log-features (phi = exp of them).
inline bool log_domain(FeatureKind kind) {
  return kind == FeatureKind::Positive || kind == FeatureKind::Hyperbolic ||
         kind == FeatureKind::Optimal || kind == FeatureKind::Exponential;
}

/// Rows of x divided by their norms (computed without underflow); a zero row stays zero.
inline RowMatrix<double> normalized_rows(const RowMatrix<double>& x) {
  RowMatrix<double> out = x;
  for (Index i = 0; i < x.rows(); ++i) {
    const double norm = x.row(i).stableNorm();
    if (norm > 0) out.row(i) /= norm;
  }
  return out;
}

/// [n, D] the rows the maps project: x~ = input_scale * psi o x_hat.
inline RowMatrix<double> feature_inputs(const RowMatrix<double>& x, const FeatureSpec& spec) {
  const RowMatrix<double> xn = spec.normalize ? normalized_rows(x) : x;
  RowMatrix<double> xt(x.rows(), x.cols());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index l = 0; l < x.cols(); ++l)
      xt(i, l) = spec.input_scale * (spec.dim_scale.size() ? spec.dim_scale[l] : 1.0) * xn(i, l);
  return xt;
}

/// [n, M] features of the rows of x (M = m, 2m or D, see the file comment).
inline RowMatrix<double> features(FeatureKind kind, const RowMatrix<double>& w,
                                  const RowMatrix<double>& x, const FeatureSpec& spec) {
  const Index n = x.rows(), d = x.cols(), m = w.rows();
  const bool projected = kind != FeatureKind::Identity && kind != FeatureKind::Exponential;
  const bool two = kind == FeatureKind::Hyperbolic || kind == FeatureKind::Trig;
  const RowMatrix<double> xt = feature_inputs(x, spec);
  if (!projected) return xt;
  RowMatrix<double> out(n, two ? 2 * m : m);
  for (Index i = 0; i < n; ++i) {
    double h = 0;
    for (Index l = 0; l < d; ++l) h += 0.5 * xt(i, l) * xt(i, l);
    for (Index r = 0; r < m; ++r) {
      double u = 0, w2 = 0;
      for (Index l = 0; l < d; ++l) {
        u += w(r, l) * xt(i, l);
        w2 += w(r, l) * w(r, l);
      }
      switch (kind) {
        case FeatureKind::Positive:
          out(i, r) = u - h;
          break;
        case FeatureKind::Hyperbolic:
          out(i, r) = u - h;
          out(i, m + r) = -u - h;
          break;
        case FeatureKind::Optimal:
          out(i, r) = spec.optimal_a * w2 + std::sqrt(1 - 4 * spec.optimal_a) * u - h;
          break;
        case FeatureKind::Trig:
          out(i, r) = std::cos(u);
          out(i, m + r) = std::sin(u);
          break;
        case FeatureKind::Relu:
          out(i, r) = std::max(u, 0.0) + spec.relu_eps;
          break;
        default:
          break;
      }
    }
  }
  return out;
}

}  // namespace fastattn::test::ref
