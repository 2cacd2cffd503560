#pragma once
/// @file metrics.hpp
/// Error metrics of an approximate attention output against the exact one. All are computed in
/// double, whatever T is.

#include <algorithm>
#include <cmath>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

namespace detail {
template <class T>
void check_same_shape(const char* fn, const ConstMatRef<T>& approx, const ConstMatRef<T>& exact) {
  FASTATTN_CHECK(approx.rows() == exact.rows() && approx.cols() == exact.cols(),
                 fn << ": approx " << shape(approx) << " and exact " << shape(exact)
                    << " must have the same shape");
}
}  // namespace detail

/// approx, exact [N, Dv] -> ||approx - exact||_F / ||exact||_F. 0 when both are zero; +inf when
/// only `exact` is zero.
template <class T>
double relative_error(ConstMatRef<T> approx, ConstMatRef<T> exact) {
  detail::check_same_shape<T>("relative_error", approx, exact);
  const double num = (approx.template cast<double>() - exact.template cast<double>()).norm();
  const double den = exact.template cast<double>().norm();
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return num / den;
}

/// approx, exact [N, Dv] -> max_ij |approx_ij - exact_ij| (0 for empty matrices).
template <class T>
double max_abs_error(ConstMatRef<T> approx, ConstMatRef<T> exact) {
  detail::check_same_shape<T>("max_abs_error", approx, exact);
  if (approx.size() == 0) return 0.0;
  return (approx.template cast<double>() - exact.template cast<double>()).cwiseAbs().maxCoeff();
}

/// approx, exact [N, Dv] -> mean over rows of the cosine similarity of approx_i and exact_i.
/// A pair of zero rows counts as 1 (identical); one zero row against a non-zero row counts as 0.
/// Returns 1 for N = 0.
template <class T>
double mean_row_cosine(ConstMatRef<T> approx, ConstMatRef<T> exact) {
  detail::check_same_shape<T>("mean_row_cosine", approx, exact);
  if (approx.rows() == 0) return 1.0;
  double total = 0;
  for (Index i = 0; i < approx.rows(); ++i) {
    const auto a = approx.row(i).template cast<double>();
    const auto e = exact.row(i).template cast<double>();
    const double na = a.norm(), ne = e.norm();
    if (na == 0 && ne == 0)
      total += 1;
    else if (na > 0 && ne > 0)
      total += a.dot(e) / (na * ne);
  }
  return total / static_cast<double>(approx.rows());
}

}  // namespace fastattn
