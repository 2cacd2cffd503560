#pragma once
/// @file rfa.hpp
/// Random Feature Attention: Peng, Pappas, Yogatama, Schwartz, Smith, Kong, "Random Feature
/// Attention", ICLR 2021. Math and the choices made where the paper is uncertain: docs/spec/rfa.md.
///
/// Queries and keys are l2-normalized (a zero row stays zero); features are random Fourier
/// features [cos(W x), sin(W x)] (cos block first, as FAVOR's trig map; the paper writes sin
/// first, an equivalent layout) or the arc-cosine map relu(W x). `sigma` is the standard deviation
/// of the projection rows, w ~ N(0, sigma^2 I), so RFA estimates softmax attention over cosine
/// similarities with inverse temperature sigma^2: weights ~ exp(sigma^2 q_hat.k_hat). The
/// attention `scale` has no effect (normalization removes it). Gated RFA takes per-token gates.

#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/widen_inputs.hpp"
#include "fastattn/detail/linear/random_feature_method.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear.hpp"
#include "fastattn/options.hpp"
#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// The feature map of Rfa<T>.
enum class RfaKernel {
  Trig,  ///< [cos(W x_hat), sin(W x_hat)], 2 n_f features: the Gaussian kernel (softmax of cosines)
  Arccos,  ///< relu(W x_hat), n_f features: the order-1 arc-cosine kernel (sigma has no effect)
};

/// Configuration of Rfa<T>.
struct RfaOptions {
  /// n_f, the number of projections w_r; 0 = 128 (256 trig features, the same feature count and
  /// cost as Favor's default).
  Index num_features = 0;
  /// Standard deviation of the projection rows (w ~ N(0, sigma^2 I)); inverse temperature sigma^2.
  /// Must be finite and > 0. (A kernel length scale l corresponds to sigma = 1/l.)
  double sigma = 1.0;
  RfaKernel kernel = RfaKernel::Trig;
  Projection projection = Projection::Orthogonal;
  std::uint64_t seed = 0;
  /// Denominator guard: signed trig features can estimate a denominator <= 0; on rows with a
  /// visible key the output is N / max(den, den_eps) (a heuristic that prevents division by <= 0,
  /// not large errors). Such rows are counted (LinearStats::guarded_rows). Must be > 0.
  double den_eps = 1e-6;
  /// Rows per chunk of the linear-attention core; 0 = its default.
  Index chunk_size = 0;
};

/// Random Feature Attention, bidirectional, causal and gated, with O(n_f Dv) decoding state.
/// (Thread safety: see RandomFeatureMethod.)
template <class T>
class Rfa : public detail::RandomFeatureMethod<Rfa<T>, T> {
  using Base = detail::RandomFeatureMethod<Rfa<T>, T>;
  friend Base;

 public:
  using Base::step;
  using typename Base::State;

  /// Draws W = sigma E, E [n_f, head_dim] from options.seed.
  explicit Rfa(Index head_dim, RfaOptions options = {}) : Rfa(head_dim, options, Vector<T>()) {}

  /// Per-dimension sigma [head_dim] (learned sigma, docs/spec/rfa.md §4): W = E diag(sigma); the
  /// target weights are then ~ exp(q_hat' S k_hat - k_hat' S k_hat / 2) with S = diag(sigma^2).
  /// options.sigma is not used (it must stay 1).
  explicit Rfa(Index head_dim, RfaOptions options, Vector<T> sigma_per_dim);

  /// Uses the caller's projection W [n_f, D], which already includes sigma (options.sigma must
  /// stay 1, num_features must be 0 or n_f; projection and seed are not used).
  explicit Rfa(RowMatrix<T> projection, RfaOptions options = {});

  /// The options (options().seed is the seed of the current projection).
  const RfaOptions& options() const { return options_; }
  /// The feature map applied to queries and keys.
  const FeatureMap<T>& feature_map() const { return *map_; }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> float out [Nq, Dv] (Rfa<float> only;
  /// docs/bfloat16.md): the inputs are widened to float once; features and sums in float.
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void forward(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k, ConstMatRef<bfloat16> v,
               MatRef<float> out, const AttentionOptions& opt = {}) const {
    detail::forward_widened(*this, "Rfa::forward", q, k, v, out, opt);
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv] (bidirectional, or causal per opt).
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt = {}) const {
    forward(q, k, v, out, opt, nullptr);
  }

  /// As forward() above; `stats` (if not null) receives the denominator-guard diagnostics.
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt, LinearStats* stats) const;

  /// Gated causal RFA (RFA-Gate): gates [Nk] in (0, 1] (g = 1 ignores the token), causal is
  /// implied. S_t = g_t S_{t-1} + (1 - g_t) phi(k_t) v_t^T.
  void forward_gated(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, ConstVecRef<T> gates,
                     MatRef<T> out, const AttentionOptions& opt = {},
                     LinearStats* stats = nullptr) const;

  /// Gated causal RFA with log-gates log g_t [Nk] (finite, <= 0): more precise when gates are
  /// close to 1 (1 - g is computed as -expm1(log g)).
  void forward_gated_log(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                         ConstVecRef<T> log_gates, MatRef<T> out, AttentionOptions opt = {},
                         LinearStats* stats = nullptr) const;

  /// A decoding state for values of width value_dim.
  State make_state(Index value_dim) const;

  /// One gated token, gate g_t in (0, 1]; token-by-token equals forward_gated().
  void step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t, T gate,
            MatRef<T> out_t, bool padded = false) const;

 private:
  static constexpr const char* kName = "Rfa";

  static RfaOptions validated(RfaOptions o);

  // --- what RandomFeatureMethod asks of its derived class ---
  void draw(std::uint64_t seed);
  const FeatureMap<T>& query_map() const { return *map_; }
  const FeatureMap<T>& key_map() const { return *map_; }
  bool fixed_maps(const AttentionOptions&) const { return true; }
  T input_factor(const AttentionOptions&) const { return T(1); }  // inputs are normalized
  // The feature map drops the n_f^{-1/2} factors (they cancel in the ratio), so its denominators
  // are n_f times the kernel-unit ones den_eps is defined in.
  LinearOptions linear_options() const {
    return LinearOptions{options_.chunk_size,
                         options_.den_eps * static_cast<double>(this->num_projections())};
  }

  void build_map();

  RfaOptions options_;
  Vector<T> sigma_per_dim_;
  std::optional<FeatureMap<T>> map_;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
Rfa<T>::Rfa(Index head_dim, RfaOptions options, Vector<T> sigma_per_dim)
    : options_(validated(options)), sigma_per_dim_(std::move(sigma_per_dim)) {
  this->set_head_dim(head_dim);
  FASTATTN_CHECK(
      sigma_per_dim_.size() == 0 || sigma_per_dim_.size() == head_dim,
      "Rfa: sigma_per_dim has size " << sigma_per_dim_.size() << " but head_dim = " << head_dim);
  FASTATTN_CHECK(sigma_per_dim_.size() == 0 ||
                     (sigma_per_dim_.allFinite() && (sigma_per_dim_.array() > T(0)).all()),
                 "Rfa: sigma_per_dim entries must be finite and > 0");
  FASTATTN_CHECK(
      sigma_per_dim_.size() == 0 || options.sigma == 1.0,
      "Rfa: give either sigma or sigma_per_dim, not both (sigma = " << options.sigma << ")");
  draw(options_.seed);
}

template <class T>
Rfa<T>::Rfa(RowMatrix<T> projection, RfaOptions options) : options_(validated(options)) {
  FASTATTN_CHECK(options.sigma == 1.0,
                 "Rfa: a caller-supplied projection already includes "
                 "sigma; options.sigma must stay 1, got "
                     << options.sigma);
  this->set_caller_projection(std::move(projection), options.num_features);
  build_map();
}

template <class T>
void Rfa<T>::forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                     const AttentionOptions& opt, LinearStats* stats) const {
  this->check_call("forward", q, k, v, out, opt);
  const LinearStats s = this->run_fixed_maps(q, k, v, out, opt);
  if (stats) *stats = s;
}

template <class T>
void Rfa<T>::forward_gated(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                           ConstVecRef<T> gates, MatRef<T> out, const AttentionOptions& opt,
                           LinearStats* stats) const {
  FASTATTN_CHECK(gates.size() == k.rows(), "Rfa::forward_gated: gates has size "
                                               << gates.size() << " but k has Nk = " << k.rows());
  FASTATTN_CHECK(((gates.array() > T(0)) && (gates.array() <= T(1))).all(),
                 "Rfa::forward_gated: gates must be in (0, 1]");
  const Vector<T> log_gates = gates.array().log().matrix();
  forward_gated_log(q, k, v, log_gates, out, opt, stats);
}

template <class T>
void Rfa<T>::forward_gated_log(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                               ConstVecRef<T> log_gates, MatRef<T> out, AttentionOptions opt,
                               LinearStats* stats) const {
  opt.causal = true;
  this->check_call("forward_gated", q, k, v, out, opt);
  detail::check_log_gates<T>("Rfa::forward_gated", log_gates, k.rows());
  detail::SingleHead<T> head(q, out);
  detail::LinearCarry<T> carry(map_->feature_dim(), v.cols());
  const LinearStats s =
      detail::linear_causal<T>(*map_, *map_, head.heads(), k, v, opt.key_padding,
                               detail::Gated<T>{log_gates.data()}, linear_options(), carry);
  if (stats) *stats = s;
}

template <class T>
auto Rfa<T>::make_state(Index value_dim) const -> State {
  this->check_make_state(value_dim, AttentionOptions{});
  return State(*map_, value_dim, linear_options());
}

template <class T>
void Rfa<T>::step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t, T gate,
                  MatRef<T> out_t, bool padded) const {
  FASTATTN_CHECK(gate > 0 && gate <= 1, "Rfa::step: gate must be in (0, 1], got " << gate);
  state.gated_step(q_t, k_t, v_t, std::log(gate), out_t, padded);
}

template <class T>
auto Rfa<T>::validated(RfaOptions o) -> RfaOptions {
  FASTATTN_CHECK(o.num_features >= 0,
                 "Rfa: num_features must be >= 0 (0 = default 128), got " << o.num_features);
  FASTATTN_CHECK(std::isfinite(o.sigma) && o.sigma > 0,
                 "Rfa: sigma must be finite and > 0, got " << o.sigma);
  FASTATTN_CHECK(
      std::isfinite(o.den_eps) && o.den_eps > 0,
      "Rfa: den_eps must be finite and > 0 (signed features need a guard), got " << o.den_eps);
  FASTATTN_CHECK(o.chunk_size >= 0, "Rfa: chunk_size must be >= 0, got " << o.chunk_size);
  return o;
}

template <class T>
void Rfa<T>::draw(std::uint64_t seed) {
  const Index m = options_.num_features > 0 ? options_.num_features : 128;
  RowMatrix<T> w = draw_projection<T>(options_.projection, m, this->head_dim(), seed);
  if (sigma_per_dim_.size() != 0)
    w = w * sigma_per_dim_.asDiagonal();
  else
    w *= static_cast<T>(options_.sigma);
  options_.seed = seed;
  this->set_projection(std::move(w));
  build_map();
}

template <class T>
void Rfa<T>::build_map() {
  FeatureMapOptions fo;
  fo.normalize = true;
  map_.emplace(options_.kernel == RfaKernel::Trig ? FeatureKind::Trig : FeatureKind::Relu,
               this->shared_projection(), fo);
}

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class detail::RandomFeatureMethod<Rfa<float>, float>;
extern template class detail::RandomFeatureMethod<Rfa<double>, double>;
extern template class Rfa<float>;
extern template class Rfa<double>;
#endif

}  // namespace fastattn
