#pragma once
/// @file linear_state.hpp
/// The recurrent (decoding) states of causal linear attention: LinearState (the key sums, given
/// the feature maps at each step) and LinearDecodingState (which owns its map: what Favor::State
/// and Rfa::State are). Feeding a sequence token by token equals the causal core (linear.hpp) to
/// rounding.

#include <cmath>
#include <limits>
#include <utility>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/linear/rows.hpp"
#include "fastattn/detail/simd/exp.hpp"
#include "fastattn/detail/simd/packet.hpp"
#include "fastattn/detail/simd/rank1_update.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear_options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// Recurrent state of causal linear attention, for decoding: the key sums
/// S = sum_j w_j phi(k_j) [v_j, 1]^T [M, Dv + 1] (log domain: scaled by exp(-shift) with the
/// running key shift), O(M Dv) memory whatever the sequence length. step() does not allocate.
template <class T>
class LinearState {
 public:
  /// A state for `feature_dim` features (M) and values of width `value_dim`.
  explicit LinearState(Index feature_dim, Index value_dim, LinearOptions options = {});

  /// M, the feature dimension.
  Index feature_dim() const { return sums_.rows(); }
  /// M, the feature dimension.
  [[deprecated("use feature_dim()")]] Index num_features() const { return feature_dim(); }
  /// Dv, the width of the values.
  Index value_dim() const { return value_dim_; }
  /// Tokens stepped so far (padded ones included).
  Index tokens() const { return tokens_; }
  /// The key sums [M, Dv + 1] (last column: the denominator's sums).
  auto sums() const { return sums_.leftCols(value_dim_ + 1); }
  /// The running key shift (log domain; -inf before the first key).
  T key_shift() const { return shift_; }
  /// Rows clamped or zeroed by the denominator guard so far.
  Index guarded_rows() const { return guarded_; }

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]; `padded` = the token's key is
  /// padding (it gets no weight).
  void step(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map, ConstMatRef<T> q_t,
            ConstMatRef<T> k_t, ConstMatRef<T> v_t, MatRef<T> out_t, bool padded = false) {
    step_impl(query_map, key_map, q_t, k_t, v_t, out_t, false, T(0), padded);
  }

  /// One gated token (RFA-Gate): S <- g S + (1 - g) phi(k_t) [v_t, 1]^T with log_gate = log g <= 0
  /// (g = 1 ignores the token); `padded` = no weight and no decay.
  void gated_step(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map, ConstMatRef<T> q_t,
                  ConstMatRef<T> k_t, ConstMatRef<T> v_t, T log_gate, MatRef<T> out_t,
                  bool padded = false) {
    step_impl(query_map, key_map, q_t, k_t, v_t, out_t, true, log_gate, padded);
  }

 private:
  // Validates the sizes before the member initializers allocate with them.
  static Index checked_features(Index feature_dim, Index value_dim) {
    FASTATTN_CHECK(feature_dim >= 1 && value_dim >= 0,
                   "LinearState: feature_dim must be >= 1 and value_dim >= 0, got "
                       << feature_dim << " and " << value_dim);
    return feature_dim;
  }

  void step_impl(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                 const ConstMatRef<T>& q_t, const ConstMatRef<T>& k_t, const ConstMatRef<T>& v_t,
                 MatRef<T>& out_t, bool gated, T log_gate, bool padded);

  LinearOptions options_;
  RowMatrix<T> sums_;
  RowMatrix<T> fq_, fk_, v1_, r_;
  RowMatrix<T> qk_, fqk_;  // [2, D] and [2, M]: a step's query and key rows, projected together
  T shift_ = -std::numeric_limits<T>::infinity();
  T mass_ = 0;  // total weight of the keys so far (count, or 1 - prod g when gated)
  Index value_dim_;
  Index tokens_ = 0, contributing_ = 0, guarded_ = 0;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
LinearState<T>::LinearState(Index feature_dim, Index value_dim, LinearOptions options)
    : options_(options),
      sums_(RowMatrix<T>::Zero(checked_features(feature_dim, value_dim),
                               detail::packet_padded<T>(value_dim + 1))),
      fq_(1, feature_dim),
      fk_(1, feature_dim),
      v1_(RowMatrix<T>::Zero(1, sums_.cols())),
      r_(1, sums_.cols()),
      fqk_(2, feature_dim),
      value_dim_(value_dim) {
  FASTATTN_CHECK(std::isfinite(options.den_eps) && options.den_eps >= 0,
                 "LinearState: den_eps must be finite and >= 0, got " << options.den_eps);
}

template <class T>
void LinearState<T>::step_impl(const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                               const ConstMatRef<T>& q_t, const ConstMatRef<T>& k_t,
                               const ConstMatRef<T>& v_t, MatRef<T>& out_t, bool gated, T log_gate,
                               bool padded) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const Index dv = value_dim();
  detail::check_linear_maps("LinearState::step", query_map, key_map, q_t.cols());
  FASTATTN_CHECK(query_map.feature_dim() == feature_dim(),
                 "LinearState::step: feature maps have M = "
                     << query_map.feature_dim() << " but the state has M = " << feature_dim());
  FASTATTN_CHECK(q_t.rows() == 1 && k_t.rows() == 1 && k_t.cols() == q_t.cols() &&
                     v_t.rows() == 1 && v_t.cols() == dv && out_t.rows() == 1 && out_t.cols() == dv,
                 "LinearState::step: q_t " << detail::shape(q_t) << ", k_t " << detail::shape(k_t)
                                           << ", v_t " << detail::shape(v_t) << ", out_t "
                                           << detail::shape(out_t)
                                           << " must be one row each with Dv = " << dv);
  FASTATTN_CHECK(std::isfinite(log_gate) && log_gate <= 0,
                 "LinearState::step: log_gate must be finite and <= 0, got " << log_gate);
  detail::SerialEigenScope serial_eigen;
  ++tokens_;
  // Features first (the readout is fused into the state update below). With one map for both,
  // the query and key rows are projected together: one pass over the weights.
  const bool shared = &query_map == &key_map && !padded;
  if (shared) {
    if (qk_.cols() != q_t.cols()) qk_.resize(2, q_t.cols());  // first step only
    qk_.row(0) = q_t;
    qk_.row(1) = k_t;
    query_map.apply(qk_, fqk_);
    fq_ = fqk_.row(0);
    fk_ = fqk_.row(1);
  } else {
    query_map.apply(q_t, fq_);
  }
  if (query_map.log_domain()) fq_ = fq_.unaryExpr(detail::ShiftedExp<T>{fq_.maxCoeff()});
  T decay = 1, weight = 0;  // S <- decay S + weight phi(k) [v, 1]^T
  if (!padded) {
    if (!shared) key_map.apply(k_t, fk_);
    if (key_map.log_domain()) {
      const T key_max = fk_.maxCoeff();
      if (key_max > shift_) {
        if (shift_ != neg_inf) decay = std::exp(shift_ - key_max);
        shift_ = key_max;
      }
      fk_ = fk_.unaryExpr(detail::ShiftedExp<T>{shift_});
    }
    weight = gated ? -std::expm1(log_gate) : T(1);  // 1 - g
    if (gated) decay *= std::exp(log_gate);
    v1_.leftCols(dv) = v_t;
    v1_(0, dv) = 1;
    contributing_ += weight > 0;
    mass_ = (gated ? std::exp(log_gate) : T(1)) * mass_ + weight;  // total weight of the keys
  } else {
    fk_.setZero();
  }
  // r = phi(q) S_new = decay phi(q) S_old + weight (phi(q).phi(k)) [v, 1], in one pass over S.
  // (sums_, v1_ and r_ are padded to whole packets; the padding columns stay 0.)
  detail::rank1_update_with_readout(sums_.data(), sums_.rows(), sums_.cols(), sums_.cols(),
                                    fq_.data(), fk_.data(), v1_.data(), decay, weight, r_.data());
  r_ = decay * r_ + (weight * fq_.row(0).dot(fk_.row(0))) * v1_;
  guarded_ += detail::finish_row(r_.row(0), out_t.row(0), contributing_ > 0 ? mass_ : T(0),
                                 static_cast<T>(options_.den_eps));
}

/// A decoding state that owns its feature map (the same map for queries and keys) and the
/// recurrent LinearState: what Favor::State and Rfa::State are. Owning the map means a later
/// redraw() of the method does not change a state that is mid-sequence.
template <class T>
class LinearDecodingState {
 public:
  /// A state for `map`'s features and values of width value_dim.
  explicit LinearDecodingState(FeatureMap<T> map, Index value_dim, LinearOptions options = {})
      : map_(std::move(map)), linear_(map_.feature_dim(), value_dim, options) {}

  /// Tokens stepped so far (padded ones included).
  Index tokens() const { return linear_.tokens(); }
  /// The recurrent linear-attention state (key sums, shift, diagnostics).
  const LinearState<T>& linear() const { return linear_; }
  /// The feature map this state was made with.
  const FeatureMap<T>& feature_map() const { return map_; }

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]; see LinearState::step.
  void step(ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t, MatRef<T> out_t,
            bool padded = false) {
    linear_.step(map_, map_, q_t, k_t, v_t, out_t, padded);
  }
  /// One gated token (log_gate = log g <= 0); see LinearState::gated_step.
  void gated_step(ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t, T log_gate,
                  MatRef<T> out_t, bool padded = false) {
    linear_.gated_step(map_, map_, q_t, k_t, v_t, log_gate, out_t, padded);
  }

 private:
  FeatureMap<T> map_;  // one map for queries and keys: shared, a step streams its weights once
  LinearState<T> linear_;
};

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class LinearState<float>;
extern template class LinearState<double>;
#endif

}  // namespace fastattn
