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

#include "fastattn/config.hpp"
#include "fastattn/detail/checks.hpp"
#include "fastattn/detail/favor_compat.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear.hpp"
#include "fastattn/options.hpp"
#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// The kernel estimator of Favor<T> (docs/spec/favor.md §3-§5).
enum class FavorKernel {
  Positive,    ///< FAVOR+: exp(w.x - |x|^2/2), m features
  Hyperbolic,  ///< [exp(w.x - |x|^2/2), exp(-w.x - |x|^2/2)], 2m features; lower variance
  Optimal,     ///< FAVOR++ / OPRF: exp(A|w|^2 + sqrt(1-4A) w.x - |x|^2/2) with the optimal A
  Relu,        ///< Performer's generalized attention relu(w.x) + eps: a different kernel
  Smreg,       ///< positive features with fixed row norms sqrt(d): the regularized softmax kernel
};

/// Configuration of Favor<T>. Defaults: FAVOR+ with 256 orthogonal projections.
struct FavorOptions {
  /// m, the number of projections; 0 = 256 (the paper's experiments and google's default; for
  /// D = 64 it is close to the d ln d = 266 that the theory asks for). Hyperbolic has 2m features.
  Index num_features = 0;
  FavorKernel kernel = FavorKernel::Positive;
  Projection projection = Projection::Orthogonal;
  std::uint64_t seed = 0;
  /// FAVOR++ parameter A (< 1/8). NaN = the optimal A* computed from each call's data
  /// (non-causal only: in causal use A would depend on future tokens, so it must be fixed).
  double optimal_a = std::numeric_limits<double>::quiet_NaN();
  /// Diagonal asymmetric rescaling x -> psi o x, y -> y / psi fitted per call (exact, lowers the
  /// variance when query and key scales differ per dimension). Non-causal only.
  bool rescale = false;
  /// eps added to Relu features (Performer's default 1e-3).
  double relu_eps = 1e-3;
  /// Rows per chunk of the linear-attention core; 0 = its default.
  Index chunk_size = 0;
  /// Reproduce a reference implementation's formulas (docs/spec/favor.md §11); parity only, never
  /// the default: they carry an additive eps that biases outputs, and cannot decode.
  FavorCompat compat = FavorCompat::None;

  /// The lower-variance preset: hyperbolic features on simplex projections (docs/spec/favor.md §8,
  /// §12).
  static FavorOptions best() {
    FavorOptions o;
    o.kernel = FavorKernel::Hyperbolic;
    o.projection = Projection::Simplex;
    return o;
  }
};

/// FAVOR attention: out ~ softmax(s q k^T) v in O(N m D) time and O(N + m D) extra memory.
///
/// Thread safety: const members may be called concurrently; redraw() may not run concurrently
/// with anything else on the same object.
template <class T>
class Favor {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "fastattn::Favor<T>: T must be float or double");

 public:
  /// Draws an [m, head_dim] projection from options.seed.
  Favor(Index head_dim, FavorOptions options = {}) : options_(validated(options)) {
    FASTATTN_CHECK(head_dim >= 1, "Favor: head_dim must be at least 1, got " << head_dim);
    head_dim_ = head_dim;
    draw(options_.seed);
  }

  /// Uses the caller's projection [m, D] (learned, shared, or ported from another implementation);
  /// options.num_features must be 0 or m, and options.projection/seed are not used.
  Favor(RowMatrix<T> projection, FavorOptions options = {}) : options_(validated(options)) {
    FASTATTN_CHECK(projection.rows() >= 1 && projection.cols() >= 1,
                   "Favor: projection " << detail::shape(projection) << " must be non-empty");
    FASTATTN_CHECK(options.num_features == 0 || options.num_features == projection.rows(),
                   "Favor: num_features = " << options.num_features << " but projection "
                                            << detail::shape(projection) << " has "
                                            << projection.rows() << " rows");
    head_dim_ = projection.cols();
    caller_projection_ = true;
    set_projection(std::move(projection));
  }

  /// Draws a new projection from `seed` (explicit; nothing is ever redrawn implicitly). Not for a
  /// Favor built from a caller's projection (it would be replaced by a default one): that throws.
  void redraw(std::uint64_t seed) {
    FASTATTN_CHECK(!caller_projection_,
                   "Favor::redraw: this Favor uses a caller-supplied "
                   "projection; construct a new Favor with the new projection");
    options_.seed = seed;
    draw(seed);
  }

  /// The options (options().seed is the seed of the current projection).
  const FavorOptions& options() const { return options_; }
  /// The projection W [m, D].
  const RowMatrix<T>& projection() const { return projection_; }
  /// D, the head dimension of q and k.
  Index head_dim() const { return head_dim_; }
  /// M, the number of features (2m for Hyperbolic).
  Index num_features() const { return maps_->query.num_features(); }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv]. causal and key_padding apply; alibi is
  /// rejected (a factorized kernel cannot represent it).
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt = {}) const {
    detail::check_qkv<T>("Favor::forward", q, k, v, out, opt);
    FASTATTN_CHECK(q.cols() == head_dim_,
                   "Favor::forward: q " << detail::shape(q)
                                        << " must have D = head_dim = " << head_dim_ << " columns");
    FASTATTN_CHECK(opt.alibi_slope == 0,
                   "Favor::forward: ALiBi (alibi_slope = " << opt.alibi_slope
                                                           << ") cannot be represented by random "
                                                              "features; use Exact");
    if (options_.compat != FavorCompat::None) {
      FASTATTN_CHECK(opt.scale == 0,
                     "Favor::forward: compat mode reproduces the reference's "
                     "fixed D^-1/2 scale; scale must be 0");
      detail::favor_compat_forward<T>(options_.compat, options_.kernel == FavorKernel::Relu,
                                      projection_, q, k, v, out, opt.causal, opt.key_padding);
      return;
    }
    const bool data_dependent = options_.rescale || needs_auto_a();
    FASTATTN_CHECK(!(opt.causal && data_dependent),
                   "Favor::forward: causal attention needs data-independent features: set "
                   "optimal_a to a fixed value and rescale = false (A and psi fitted per call "
                   "would depend on future tokens)");
    const double scale = detail::resolve_scale(opt, head_dim_);
    check_positive_scale("Favor::forward", scale);
    LinearOptions lopt{options_.chunk_size, 0};
    if (!data_dependent && scale == default_scale()) {
      linear_attention<T>(maps_->query, maps_->key, q, k, v, out, opt, lopt);
      return;
    }
    const Maps maps = make_maps(scale, &q, &k, &opt.key_padding);
    linear_attention<T>(maps.query, maps.key, q, k, v, out, opt, lopt);
  }

  /// Grouped-query attention: query heads q[g] [Nq, D] sharing k [Nk, D], v [Nk, Dv] ->
  /// out[g] [Nq, Dv]; the key-side work is done once for the group. Each result equals forward()
  /// on that head. (With per-call fitted parameters, FAVOR++'s A* or rescaling, each head is fitted
  /// on its own queries, so the heads are computed one by one.)
  void forward_group(const std::vector<ConstMatMap<T>>& q, ConstMatRef<T> k, ConstMatRef<T> v,
                     std::vector<MatMap<T>>& out, const AttentionOptions& opt = {}) const {
    FASTATTN_CHECK(q.size() == out.size(), "Favor::forward_group: " << q.size()
                                                                    << " query heads but "
                                                                    << out.size() << " outputs");
    const bool data_dependent = options_.rescale || needs_auto_a();
    if (options_.compat != FavorCompat::None || data_dependent ||
        detail::resolve_scale(opt, head_dim_) != default_scale()) {
      for (std::size_t g = 0; g < q.size(); ++g) forward(q[g], k, v, out[g], opt);
      return;
    }
    for (const auto& qg : q)
      FASTATTN_CHECK(qg.cols() == head_dim_, "Favor::forward_group: q "
                                                 << detail::shape(qg)
                                                 << " must have D = head_dim = " << head_dim_);
    FASTATTN_CHECK(opt.alibi_slope == 0,
                   "Favor::forward_group: ALiBi cannot be represented by "
                   "random features; use Exact");
    grouped_linear_attention<T>(maps_->query, maps_->key, q, k, v, out, opt,
                                LinearOptions{options_.chunk_size, 0});
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new [Nq, Dv] matrix.
  RowMatrix<T> operator()(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                          const AttentionOptions& opt = {}) const {
    RowMatrix<T> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

  /// Causal decoding state: the key sums [M, Dv + 1] and the running key shift, O(M Dv) memory;
  /// owns a copy of the feature map (decoding features never depend on the data, so one map
  /// serves queries and keys), so a later redraw() does not affect it.
  using State = LinearDecodingState<T>;

  /// A decoding state for values of width value_dim (default scale 1/sqrt(D)).
  State make_state(Index value_dim) const { return make_state(value_dim, AttentionOptions{}); }

  /// A decoding state using opt.scale (decoding is causal; padding is an argument of step()).
  State make_state(Index value_dim, const AttentionOptions& opt) const {
    FASTATTN_CHECK(options_.compat == FavorCompat::None,
                   "Favor::make_state: compat modes shift keys by a max over the whole sequence, "
                   "which decoding cannot reproduce");
    FASTATTN_CHECK(!options_.rescale && !needs_auto_a(),
                   "Favor::make_state: decoding needs data-independent features: set optimal_a to "
                   "a fixed value and rescale = false");
    detail::check_scale_and_slope<T>("Favor::make_state", opt);
    check_positive_scale("Favor::make_state", detail::resolve_scale(opt, head_dim_));
    FASTATTN_CHECK(opt.alibi_slope == 0, "Favor::make_state: ALiBi (alibi_slope = "
                                             << opt.alibi_slope
                                             << ") cannot be represented by random features");
    FASTATTN_CHECK(opt.key_padding.size() == 0,
                   "Favor::make_state: key_padding must be empty (got length "
                       << opt.key_padding.size() << "); pass each token's padding to step()");
    FASTATTN_CHECK(value_dim >= 0, "Favor::make_state: value_dim must be >= 0, got " << value_dim);
    Maps maps = make_maps(detail::resolve_scale(opt, head_dim_), nullptr, nullptr, nullptr);
    return State(std::move(maps.query), value_dim);  // (the key map is the same)
  }

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]. Token-by-token equals the causal
  /// forward(). `padded` marks the token's key as padding. Does not allocate.
  void step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
            MatRef<T> out_t, bool padded = false) const {
    state.step(q_t, k_t, v_t, out_t, padded);
  }

 private:
  struct Maps {
    FeatureMap<T> query, key;
  };

  static FavorOptions validated(FavorOptions o) {
    FASTATTN_CHECK(o.num_features >= 0,
                   "Favor: num_features must be >= 0 (0 = default 256), got " << o.num_features);
    FASTATTN_CHECK(o.chunk_size >= 0, "Favor: chunk_size must be >= 0, got " << o.chunk_size);
    FASTATTN_CHECK(
        std::isnan(o.optimal_a) || o.optimal_a < 0.125,
        "Favor: optimal_a must be < 1/8 (or NaN for the per-call optimum), got " << o.optimal_a);
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

  Index num_projections() const { return options_.num_features > 0 ? options_.num_features : 256; }
  double default_scale() const { return 1.0 / std::sqrt(static_cast<double>(head_dim_)); }
  bool needs_auto_a() const {
    return options_.kernel == FavorKernel::Optimal && std::isnan(options_.optimal_a);
  }

  void draw(std::uint64_t seed) {
    const Index m = num_projections();
    RowMatrix<T> w;
    if (options_.kernel == FavorKernel::Smreg)
      w = fixed_norm_projection<T>(m, head_dim_, seed);
    else if (options_.compat != FavorCompat::None && options_.projection == Projection::Orthogonal)
      w = detail::orthogonal_projection_impl<T>(m, head_dim_, seed, false);  // as the references
    else
      w = draw_projection<T>(options_.projection, m, head_dim_, seed);
    set_projection(std::move(w));
  }

  void set_projection(RowMatrix<T> w) {
    projection_ = std::move(w);
    maps_.emplace(make_maps(default_scale(), nullptr, nullptr, nullptr));
  }

  /// FAVOR+ folds sqrt(scale) into the features: the scale must be positive.
  static void check_positive_scale(const char* fn, double scale) {
    FASTATTN_CHECK(scale > 0, fn << ": scale must be > 0 for random features (they use "
                                    "sqrt(scale)); 0 selects 1/sqrt(D), got "
                                 << scale);
  }

  /// Feature maps for logit scale s. With q and k given, fits the data-dependent parts: the
  /// rescaling psi and FAVOR++'s A* (docs/spec/favor.md §4-§5; O(N D)).
  Maps make_maps(double scale, const ConstMatRef<T>* q, const ConstMatRef<T>* k,
                 const KeyMask* padding) const {
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
    double a = std::isnan(options_.optimal_a) ? 0.0 : options_.optimal_a;
    if (q != nullptr && (options_.rescale || needs_auto_a())) {
      // Per-dimension second moments of x = sqrt(s) q and y = sqrt(s) k (valid keys only).
      const Index d = head_dim_;
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
    return Maps{FeatureMap<T>(kind, projection_, fo, psi_q),
                FeatureMap<T>(kind, projection_, fo, psi_k)};
  }

  FavorOptions options_;
  Index head_dim_ = 0;
  bool caller_projection_ = false;
  RowMatrix<T> projection_;
  std::optional<Maps> maps_;  // for the default scale and no data-dependent parts
};

}  // namespace fastattn
