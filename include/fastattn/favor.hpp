#pragma once
/// @file favor.hpp
/// FAVOR+ and its successors: Choromanski et al., "Rethinking Attention with Performers" (ICLR
/// 2021); hyperbolic features; FAVOR++ / optimal positive random features (Likhosherstov et al.,
/// "Chefs' Random Tables", NeurIPS 2022); a diagonal asymmetric rescaling in the spirit of FAVOR#
/// (Likhosherstov et al., 2023); simplex random features (Reid et al., ICML 2023). Math and the
/// reference implementations' pitfalls: docs/spec/favor.md.
///
/// Differences from the reference implementations, on purpose: the QR sign fix and independent
/// chi_d norms (unbiased features), exact log-domain stabilization with no additive eps, a causal
/// running key shift (so decoding reproduces the parallel pass), padded keys removed from the
/// denominator, and no implicit redraw. FavorCompat reproduces the references for parity.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/common/widen_inputs.hpp"
#include "fastattn/detail/favor/compat.hpp"
#include "fastattn/detail/linear/random_feature_method.hpp"
#include "fastattn/favor_options.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear.hpp"
#include "fastattn/options.hpp"
#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// FAVOR attention: out ~ softmax(s q k^T) v in O(N m D) time and O(N + m D) extra memory.
/// (Thread safety: see RandomFeatureMethod.)
template <class T>
class Favor : public detail::RandomFeatureMethod<Favor<T>, T> {
  using Base = detail::RandomFeatureMethod<Favor<T>, T>;
  friend Base;

 public:
  using typename Base::State;

  /// Draws an [m, head_dim] projection from options.seed.
  explicit Favor(Index head_dim, FavorOptions options = {});

  /// Uses the caller's projection [m, D] (learned, shared, or ported from another implementation);
  /// options.num_features must be 0 or m, and options.projection/seed are not used.
  explicit Favor(RowMatrix<T> projection, FavorOptions options = {});

  /// The options (options().seed is the seed of the current projection).
  const FavorOptions& options() const { return options_; }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> float out [Nq, Dv] (Favor<float> only;
  /// docs/bfloat16.md): the inputs are widened to float once; features and sums in float.
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void forward(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k, ConstMatRef<bfloat16> v,
               MatRef<float> out, const AttentionOptions& opt = {}) const {
    detail::forward_widened(*this, "Favor::forward", q, k, v, out, opt);
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv]. causal and key_padding apply; alibi is
  /// rejected (a factorized kernel cannot represent it).
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt = {}) const;

  /// A decoding state for values of width value_dim (default scale 1/sqrt(D)).
  State make_state(Index value_dim) const { return make_state(value_dim, AttentionOptions{}); }

  /// A decoding state using opt.scale (decoding is causal; padding is an argument of step()).
  State make_state(Index value_dim, const AttentionOptions& opt) const;

 private:
  static constexpr const char* kName = "Favor";

  struct Maps {
    FeatureMap<T> query, key;
  };

  static FavorOptions validated(FavorOptions o);

  /// m: options.num_features, or the default 256.
  Index drawn_projections() const {
    return options_.num_features > 0 ? options_.num_features : 256;
  }
  double default_scale() const { return 1.0 / std::sqrt(static_cast<double>(this->head_dim())); }
  bool needs_auto_a() const {
    return options_.kernel == FavorKernel::Optimal && !options_.optimal_a;
  }
  /// Features fitted to each call's data (FAVOR++'s A*, the rescaling psi).
  bool data_dependent() const { return options_.rescale || needs_auto_a(); }

  // --- what RandomFeatureMethod asks of its derived class ---
  void draw(std::uint64_t seed);
  const FeatureMap<T>& query_map() const { return maps_->query; }
  const FeatureMap<T>& key_map() const { return maps_->key; }
  LinearOptions linear_options() const { return LinearOptions{options_.chunk_size, 0}; }
  bool fixed_maps(const AttentionOptions&) const {
    return options_.compat == FavorCompat::None && !data_dependent();
  }
  /// The maps hold sqrt(s0) for the default scale s0 = 1/sqrt(D); another scale s multiplies the
  /// inputs by sqrt(s / s0) (no new maps, no copy of the projection).
  T input_factor(const AttentionOptions& opt) const {
    const double scale = detail::resolve_scale(opt, this->head_dim());
    return scale == default_scale() ? T(1) : static_cast<T>(std::sqrt(scale / default_scale()));
  }

  void build_maps() { maps_.emplace(make_maps(default_scale(), nullptr, nullptr, nullptr)); }

  /// FAVOR+ folds sqrt(scale) into the features: the scale must be positive.
  static void check_positive_scale(const char* fn, double scale) {
    FASTATTN_CHECK(scale > 0, "Favor::" << fn
                                        << ": scale must be > 0 for random features (they use "
                                           "sqrt(scale)); 0 selects 1/sqrt(D), got "
                                        << scale);
  }

  /// Feature maps for logit scale s. With q and k given, fits the data-dependent parts: the
  /// rescaling psi and FAVOR++'s A* (docs/spec/favor.md §4-§5; O(N D)).
  Maps make_maps(double scale, const ConstMatRef<T>* q, const ConstMatRef<T>* k,
                 const KeyMask* padding) const;

  FavorOptions options_;
  std::optional<Maps> maps_;  // for the default scale and no data-dependent parts
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
Favor<T>::Favor(Index head_dim, FavorOptions options) : options_(validated(options)) {
  this->set_head_dim(head_dim);
  draw(options_.seed);
}

template <class T>
Favor<T>::Favor(RowMatrix<T> projection, FavorOptions options) : options_(validated(options)) {
  this->set_caller_projection(std::move(projection), options.num_features);
  build_maps();
}

template <class T>
void Favor<T>::forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                       const AttentionOptions& opt) const {
  this->check_call("forward", q, k, v, out, opt);
  detail::SerialEigenScope serial_eigen;
  if (options_.compat != FavorCompat::None) {
    FASTATTN_CHECK(opt.scale == 0,
                   "Favor::forward: compat mode reproduces the reference's "
                   "fixed D^-1/2 scale; scale must be 0");
    detail::favor_compat_forward<T>(options_.compat, options_.kernel == FavorKernel::Relu,
                                    this->projection(), q, k, v, out, opt.causal, opt.key_padding);
    return;
  }
  FASTATTN_CHECK(!(opt.causal && data_dependent()),
                 "Favor::forward: causal attention needs data-independent features: set "
                 "optimal_a to a fixed value and rescale = false (A and psi fitted per call "
                 "would depend on future tokens)");
  const double scale = detail::resolve_scale(opt, this->head_dim());
  check_positive_scale("forward", scale);
  if (!data_dependent()) {
    this->run_fixed_maps(q, k, v, out, opt);
    return;
  }
  const Maps maps = make_maps(scale, &q, &k, &opt.key_padding);
  detail::SingleHead<T> head(q, out);
  detail::linear_attention_heads<T>(maps.query, maps.key, head.heads(), k, v, opt,
                                    linear_options());
}

template <class T>
auto Favor<T>::make_state(Index value_dim, const AttentionOptions& opt) const -> State {
  FASTATTN_CHECK(options_.compat == FavorCompat::None,
                 "Favor::make_state: compat modes shift keys by a max over the whole sequence, "
                 "which decoding cannot reproduce");
  FASTATTN_CHECK(!data_dependent(),
                 "Favor::make_state: decoding needs data-independent features: set optimal_a to "
                 "a fixed value and rescale = false");
  this->check_make_state(value_dim, opt);
  const double scale = detail::resolve_scale(opt, this->head_dim());
  check_positive_scale("make_state", scale);
  Maps maps = make_maps(scale, nullptr, nullptr, nullptr);
  return State(std::move(maps.query), value_dim);  // (the key map is the same)
}

template <class T>
auto Favor<T>::validated(FavorOptions o) -> FavorOptions {
  FASTATTN_CHECK(o.num_features >= 0,
                 "Favor: num_features must be >= 0 (0 = default 256), got " << o.num_features);
  FASTATTN_CHECK(o.chunk_size >= 0, "Favor: chunk_size must be >= 0, got " << o.chunk_size);
  if (o.optimal_a && std::isnan(*o.optimal_a)) o.optimal_a.reset();  // the old NaN spelling
  FASTATTN_CHECK(
      !o.optimal_a || *o.optimal_a < 0.125,
      "Favor: optimal_a must be < 1/8 (or empty for the per-call optimum), got " << *o.optimal_a);
  FASTATTN_CHECK(o.kernel != FavorKernel::Smreg || o.projection == Projection::Orthogonal,
                 "Favor: the Smreg kernel uses orthogonal directions with norms sqrt(d); "
                 "projection must be Orthogonal");
  FASTATTN_CHECK(!o.rescale || o.kernel == FavorKernel::Positive ||
                     o.kernel == FavorKernel::Hyperbolic || o.kernel == FavorKernel::Optimal,
                 "Favor: rescale applies to the softmax estimators (Positive, Hyperbolic, "
                 "Optimal) only");
  switch (o.compat) {
    case FavorCompat::None:
      break;
    case FavorCompat::PerformerPytorch:
      FASTATTN_CHECK(o.kernel == FavorKernel::Positive || o.kernel == FavorKernel::Relu,
                     "Favor: compat PerformerPytorch supports kernels Positive and Relu");
      break;
    case FavorCompat::FastTransformers:
      FASTATTN_CHECK(o.kernel == FavorKernel::Hyperbolic,
                     "Favor: compat FastTransformers uses hyperbolic features; set kernel = "
                     "Hyperbolic");
      break;
    case FavorCompat::GoogleJax:
    case FavorCompat::EvaRepo:
      FASTATTN_CHECK(o.kernel == FavorKernel::Positive,
                     "Favor: compat GoogleJax and EvaRepo support kernel Positive only");
      break;
  }
  FASTATTN_CHECK(o.compat == FavorCompat::None || !o.rescale,
                 "Favor: rescale is not part of any reference implementation (compat)");
  return o;
}

template <class T>
void Favor<T>::draw(std::uint64_t seed) {
  const Index m = drawn_projections(), d = this->head_dim();
  RowMatrix<T> w;
  if (options_.kernel == FavorKernel::Smreg)
    w = fixed_norm_projection<T>(m, d, seed);
  else if (options_.compat != FavorCompat::None && options_.projection == Projection::Orthogonal)
    w = detail::orthogonal_projection_impl<T>(m, d, seed, false);  // as the references
  else
    w = draw_projection<T>(options_.projection, m, d, seed);
  options_.seed = seed;
  this->set_projection(std::move(w));
  build_maps();
}

template <class T>
auto Favor<T>::make_maps(double scale, const ConstMatRef<T>* q, const ConstMatRef<T>* k,
                         const KeyMask* padding) const -> Maps {
  FeatureMapOptions fo;
  fo.input_scale = std::sqrt(scale);
  fo.relu_eps = options_.relu_eps;
  FeatureKind kind = FeatureKind::Positive;
  switch (options_.kernel) {
    case FavorKernel::Hyperbolic:
      kind = FeatureKind::Hyperbolic;
      break;
    case FavorKernel::Optimal:
      kind = FeatureKind::Optimal;
      break;
    case FavorKernel::Relu:
      kind = FeatureKind::Relu;
      break;
    case FavorKernel::Positive:
    case FavorKernel::Smreg:
      break;
  }
  Vector<T> psi_q, psi_k;
  double a = options_.optimal_a.value_or(0.0);
  if (q != nullptr && data_dependent()) {
    // Per-dimension second moments of x = sqrt(s) q and y = sqrt(s) k (valid keys only).
    const Index d = this->head_dim();
    Eigen::ArrayXd sum_x2 = Eigen::ArrayXd::Zero(d), sum_y2 = Eigen::ArrayXd::Zero(d);
    Eigen::ArrayXd mean_x = Eigen::ArrayXd::Zero(d), mean_y = Eigen::ArrayXd::Zero(d);
    Index valid = 0;
    for (Index i = 0; i < q->rows(); ++i) {
      const Eigen::ArrayXd x = q->row(i).transpose().template cast<double>().array();
      sum_x2 += x * x;
      mean_x += x;
    }
    for (Index j = 0; j < k->rows(); ++j) {
      if (detail::is_padded(*padding, j)) continue;
      const Eigen::ArrayXd y = k->row(j).transpose().template cast<double>().array();
      sum_y2 += y * y;
      mean_y += y;
      ++valid;
    }
    // Any psi > 0 leaves the estimator unbiased; keep (c psi)^2 = s psi^2 and s / psi^2, which
    // the feature maps hold in T, inside T's normal range (queries and keys ~1e20 apart in
    // scale would otherwise overflow one of them in float).
    const double t_lo = 1e4 * double(std::numeric_limits<T>::min()),
                 t_hi = double(std::numeric_limits<T>::max()) / 4;
    const double psi2_lo = std::max(scale / t_hi, t_lo / scale),
                 psi2_hi = std::min(t_hi / scale, scale / t_lo);
    Eigen::ArrayXd psi = Eigen::ArrayXd::Ones(d);
    if (options_.rescale && psi2_lo <= psi2_hi)
      for (Index l = 0; l < d; ++l)
        if (sum_x2[l] > 0 && sum_y2[l] > 0 && std::isfinite(sum_y2[l] / sum_x2[l]))
          psi[l] = std::sqrt(std::clamp(std::sqrt(sum_y2[l] / sum_x2[l]), psi2_lo, psi2_hi));
    if (options_.rescale) {
      psi_q = psi.cast<T>().matrix();
      psi_k = psi.inverse().cast<T>().matrix();
    }
    if (needs_auto_a()) {
      // rho = (mean |x'|^2 + mean |y'|^2 + 2 xbar'.ybar') / d on the rescaled data, then
      // A* = (1 - 2 rho - sqrt((2 rho + 1)^2 + 8 rho)) / 16.
      const double nq = std::max<Index>(q->rows(), 1), nk = std::max<Index>(valid, 1);
      const double mx2 = (sum_x2 * psi * psi).sum() / nq, my2 = (sum_y2 / (psi * psi)).sum() / nk;
      const double cross = ((mean_x * psi / nq) * (mean_y / psi / nk)).sum();
      const double rho = scale * (mx2 + my2 + 2 * cross) / double(d);
      a = (1 - 2 * rho - std::sqrt((2 * rho + 1) * (2 * rho + 1) + 8 * rho)) / 16;
    }
  }
  fo.optimal_a = a;
  return Maps{FeatureMap<T>(kind, this->shared_projection(), fo, psi_q),
              FeatureMap<T>(kind, this->shared_projection(), fo, psi_k)};
}

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class detail::RandomFeatureMethod<Favor<float>, float>;
extern template class detail::RandomFeatureMethod<Favor<double>, double>;
extern template class Favor<float>;
extern template class Favor<double>;
#endif

}  // namespace fastattn
