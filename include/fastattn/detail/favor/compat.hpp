#pragma once
/// @file detail/favor/compat.hpp
/// FAVOR+ as the reference implementations compute it (docs/spec/favor.md §11), for porting trained
/// models and for side-by-side comparisons. These formulas carry the references' additive eps
/// (which biases outputs towards uniform averaging, §6.2) and a key shift over the whole sequence
/// (not causal, so no decoding). Deliberately plain: features are materialized, [N, m].
///
/// Padding: the references mishandle it (performer-pytorch zeroes V only, §13.9). Here a padded key
/// is removed: it is excluded from the key max and its feature row is zero (eps included). A row
/// with no visible key is 0 (the library's empty-row rule), not the references' 0/0.

#include <algorithm>
#include <cmath>
#include <limits>

#include "fastattn/detail/common/checks.hpp"
#include "fastattn/favor_options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Compat FAVOR: q [Nq, D], k [Nk, D], v [Nk, Dv], projection w [m, D] -> out [Nq, Dv].
/// `relu` selects performer-pytorch's generalized (ReLU) attention.
template <class T>
void favor_compat_forward(FavorCompat compat, bool relu, const RowMatrix<T>& w,
                          const ConstMatRef<T>& q, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                          MatRef<T>& out, bool causal, const KeyMask& padding) {
  using Mat = RowMatrix<double>;
  const Index nq = q.rows(), nk = k.rows(), d = q.cols(), m = w.rows(), dv = v.cols();
  const Index delta = nk - nq;
  const Mat wd = w.template cast<double>();
  auto is_pad = [&](Index j) { return is_padded(padding, j); };

  // Features in double (the references' formulas, evaluated without extra rounding).
  Mat fq, fk;
  if (relu) {  // performer-pytorch generalized attention: relu(D^-1/4 x W^T) + 1e-3
    const double c = std::pow(double(d), -0.25);
    fq = ((q.template cast<double>() * c) * wd.transpose()).array().max(0.0) + 1e-3;
    fk = ((k.template cast<double>() * c) * wd.transpose()).array().max(0.0) + 1e-3;
  } else if (compat == FavorCompat::FastTransformers) {
    // Hyperbolic, n = 2m features: offset |x_s|^2/2 + ln(n)/2, x_s = x * D^-1/4.
    const double c = std::pow(double(d), -0.25), half_log_n = 0.5 * std::log(2.0 * double(m));
    auto hyperbolic = [&](const ConstMatRef<T>& x) {
      const Mat xs = x.template cast<double>() * c;
      const Mat u = xs * wd.transpose();
      Mat f(x.rows(), 2 * m);
      for (Index i = 0; i < x.rows(); ++i) {
        const double offset = 0.5 * xs.row(i).squaredNorm() + half_log_n;
        f.row(i).head(m) = (u.row(i).array() - offset).exp();
        f.row(i).tail(m) = (-u.row(i).array() - offset).exp();
      }
      return f;
    };
    fq = hyperbolic(q);
    fk = hyperbolic(k);
  } else {
    // performer-pytorch / google jax / EVA repo softmax_kernel: x_s = D^-1/4 x, u = x_s W^T,
    // h = |x_s|^2/2, ratio m^-1/2; queries shift by max_r u, keys by the max of u over the whole
    // sequence; eps inside (ratio (exp + eps)) or after (ratio exp + eps).
    const double c = std::pow(double(d), -0.25), ratio = 1 / std::sqrt(double(m));
    const double eps = compat == FavorCompat::GoogleJax ? 1e-6 : 1e-4;
    const bool eps_after_ratio = compat == FavorCompat::EvaRepo;
    auto softmax_kernel = [&](const ConstMatRef<T>& x, bool is_query) {
      const Mat xs = x.template cast<double>() * c;
      const Mat u = xs * wd.transpose();
      double key_max = -std::numeric_limits<double>::infinity();
      if (!is_query)
        for (Index j = 0; j < x.rows(); ++j)
          if (!is_pad(j)) key_max = std::max(key_max, u.row(j).maxCoeff());
      Mat f(x.rows(), m);
      for (Index i = 0; i < x.rows(); ++i) {
        const double shift = is_query ? u.row(i).maxCoeff() : key_max;
        const Eigen::ArrayXd e = (u.row(i).array() - 0.5 * xs.row(i).squaredNorm() - shift).exp();
        if (eps_after_ratio)
          f.row(i) = (ratio * e + eps).matrix().transpose();
        else
          f.row(i) = (ratio * (e + eps)).matrix().transpose();
      }
      return f;
    };
    fq = softmax_kernel(q, true);
    fk = softmax_kernel(k, false);
  }
  Mat vd = v.template cast<double>();
  for (Index j = 0; j < nk; ++j)
    if (is_pad(j)) fk.row(j).setZero(), vd.row(j).setZero();

  // Numerators and denominators (prefix sums when causal, bottom-right aligned).
  Mat num = Mat::Zero(nq, dv);
  Eigen::VectorXd den = Eigen::VectorXd::Zero(nq);
  if (!causal) {
    const Mat kv = fk.transpose() * vd;
    // (no keys: Eigen's colwise().sum() of a [0, m] matrix offsets a null pointer)
    const Eigen::VectorXd z = nk == 0 ? Eigen::VectorXd::Zero(fk.cols())
                                      : Eigen::VectorXd(fk.colwise().sum().transpose());
    num = fq * kv;
    den = fq * z;
  } else {
    Mat s = Mat::Zero(fq.cols(), dv);
    Eigen::VectorXd z = Eigen::VectorXd::Zero(fq.cols());
    for (Index i = 0, j = 0; i < nq; ++i) {
      for (; j <= i + delta && j < nk; ++j) {
        s += fk.row(j).transpose() * vd.row(j);
        z += fk.row(j).transpose();
      }
      num.row(i) = fq.row(i) * s;
      // performer-pytorch adds 1e-6 to every component of the cumulative key sum.
      den[i] = compat == FavorCompat::PerformerPytorch ? fq.row(i).dot((z.array() + 1e-6).matrix())
                                                       : fq.row(i).dot(z);
    }
  }
  // The library-wide empty-row rule holds in compat mode too: no visible key -> 0, not 0/0.
  Index valid_keys = 0, seen = 0;
  for (Index j = 0; j < nk; ++j) valid_keys += !is_pad(j);
  for (Index i = 0, j = 0; i < nq; ++i) {
    for (; causal && j <= i + delta && j < nk; ++j) seen += !is_pad(j);
    if ((causal ? seen : valid_keys) == 0) {
      out.row(i).setZero();
      continue;
    }
    double r = den[i];
    switch (compat) {
      case FavorCompat::GoogleJax:  // R <- R + 2 eps [|R| <= eps]
        if (std::abs(r) <= 1e-6) r += 2e-6;
        break;
      case FavorCompat::FastTransformers:
        r += 1e-6;
        break;
      case FavorCompat::EvaRepo:
        r = std::max(r, 1e-2);
        break;
      default:  // performer-pytorch: no guard
        break;
    }
    out.row(i) = (num.row(i) / r).template cast<T>();
  }
}

}  // namespace fastattn::detail
