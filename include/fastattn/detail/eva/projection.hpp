#pragma once
/// @file detail/eva/projection.hpp
/// EVA's optional adaptive projections of the chunk means (official adaptive_mu_q /
/// adaptive_mu_k), as a non-owning view: x -> LayerNorm?(x W^T + b), identity when absent.

#include <cmath>
#include <optional>

#include "fastattn/eva_options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// A view of an optional adaptive projection x -> LayerNorm?(x W^T + b); identity when `weight`
/// is null. LayerNorm (when `ln_gamma` is non-null): biased variance, eps 1e-5.
template <class T>
struct EvaMap {
  const RowMatrix<T>* weight = nullptr;  // [D, D]
  const Vector<T>* bias = nullptr;       // [D]
  const Vector<T>* ln_gamma = nullptr;   // [D] or null
  const Vector<T>* ln_beta = nullptr;    // [D] (with ln_gamma)

  /// x [D] -> y [D]; x and y must be distinct. Does not allocate.
  void apply(const Vector<T>& x, Vector<T>& y) const {
    if (weight == nullptr) {
      y = x;
      return;
    }
    y.noalias() = *weight * x;  // (x W^T)^T = W x^T
    y += *bias;
    if (ln_gamma == nullptr) return;
    const T mean = y.mean();
    y.array() -= mean;
    const T var = y.squaredNorm() / static_cast<T>(y.size());
    y *= T(1) / std::sqrt(var + static_cast<T>(1e-5));
    y.array() = y.array() * ln_gamma->array() + ln_beta->array();
  }
};

/// A view of an optional projection (identity when absent).
template <class T>
EvaMap<T> eva_map(const std::optional<EvaProjection<T>>& p) {
  EvaMap<T> m;
  if (!p) return m;
  m.weight = &p->weight;
  m.bias = &p->bias;
  if (p->ln_gamma.size() != 0) {
    m.ln_gamma = &p->ln_gamma;
    m.ln_beta = &p->ln_beta;
  }
  return m;
}

}  // namespace fastattn::detail
