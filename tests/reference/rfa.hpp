#pragma once
/// @file rfa.hpp
/// RFA's kernel estimate in double (docs/spec/rfa.md §2, §7): for a given projection W [m, D],
/// K_ij = phi(q_i) . phi(k_j) with phi the features of the normalized rows, [cos(W x_hat),
/// sin(W x_hat)] (Trig) or relu(W x_hat) (Arccos), each carrying the factor m^-1/2 (the units the
/// guard's den_eps is defined in). RFA's attention is then reference/linear.hpp's kernel average.

#include "fastattn/rfa.hpp"
#include "fastattn/types.hpp"
#include "features.hpp"
#include "linear.hpp"

namespace fastattn::test::ref {

/// [Nq, Nk] K_ij of RFA with projection w (std::cos/std::sin, every pair explicitly).
inline RowMatrix<double> rfa_kernel(const RowMatrix<double>& w, RfaKernel kernel,
                                    const RowMatrix<double>& q, const RowMatrix<double>& k) {
  FeatureSpec spec;
  spec.normalize = true;
  const FeatureKind kind = kernel == RfaKernel::Trig ? FeatureKind::Trig : FeatureKind::Relu;
  return feature_kernel(features(kind, w, q, spec), features(kind, w, k, spec)) / double(w.rows());
}

}  // namespace fastattn::test::ref
