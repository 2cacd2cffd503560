#pragma once
/// @file features.hpp
/// Random-feature maps on row blocks (docs/spec/favor.md §3-§5, docs/spec/rfa.md §2, §7): positive
/// (FAVOR+), hyperbolic, FAVOR++ (OPRF), trigonometric (RFF/RFA), ReLU/arc-cosine; plus the plain
/// textbook maps `positive_features` and `trig_features`.
///
/// A FeatureMap turns rows x [n, D] into features [n, M] with one GEMM (x W_eff^T, where W_eff has
/// the input scale, the per-dimension rescaling and FAVOR++'s B folded in once) and one fused
/// vectorized pass in place. Exponential kinds return *log*-features: the linear-attention core
/// (linear.hpp) exponentiates them with stabilizing shifts that cancel exactly (docs/spec/favor.md
/// §6), so no feature ever overflows and no eps is added. Constant factors (m^-1/2, (1-4A)^{d/4})
/// cancel in attention and are dropped by FeatureMap; the public textbook maps keep them.

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/simd/gemm_kernel.hpp"
#include "fastattn/detail/simd/sincos.hpp"
#include "fastattn/detail/simd/small_rows_product.hpp"
#include "fastattn/detail/simd/trig_feature_kernel.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// The feature maps. m = number of projections (rows of W), M = number of features.
enum class FeatureKind {
  Positive,     ///< exp(w.x - |x|^2/2); M = m; log domain (FAVOR+)
  Hyperbolic,   ///< [exp(w.x - |x|^2/2), exp(-w.x - |x|^2/2)]; M = 2m; log domain
  Optimal,      ///< exp(A|w|^2 + B w.x - |x|^2/2), B = sqrt(1 - 4A); M = m; log domain (FAVOR++)
  Trig,         ///< [cos w.x, sin w.x]; M = 2m; signed (RFF, RFA)
  Relu,         ///< max(w.x, 0) + eps; M = m; non-negative (Performer-ReLU, RFA-arccos)
  Identity,     ///< x itself (no projection); M = D; signed (features supplied by the caller)
  Exponential,  ///< exp(x) (no projection); M = D; log domain (log-features supplied by the caller)
};

/// Input transform and parameters of a FeatureMap.
struct FeatureMapOptions {
  /// x -> input_scale * x (FAVOR: sqrt of the attention scale). Must be finite and > 0.
  double input_scale = 1;
  /// x -> x / |x| first (RFA). A zero row stays zero.
  bool normalize = false;
  /// A of FeatureKind::Optimal; must be < 1/8 (finite variance). A = 0 is FAVOR+.
  double optimal_a = 0;
  /// eps added to FeatureKind::Relu features; must be >= 0.
  double relu_eps = 0;
};

/// Reductions of the output rows that FeatureMap::apply can compute in its pass (the linear
/// core's key feature sums phi(K)^T 1 and query denominators phi(q_i) . z): done row by row while
/// the row is in L1, instead of one more pass over the whole block. Null pointers: not computed.
template <class T>
struct FeatureRowReductions {
  T* column_sums = nullptr;    ///< [M]: += the sum of the output rows
  const T* weights = nullptr;  ///< [M]: with dots, the vector each row is dotted with
  T* dots = nullptr;           ///< dots[i * dots_stride] = out row i . weights
  Index dots_stride = 1;
};

/// A feature map phi: R^D -> R^M with projection W [m, D] (see FeatureKind).
///
/// Thread safety: apply() is const and may be called concurrently.
template <class T>
class FeatureMap {
 public:
  /// kind with projection W [m, D] (ignored for Identity/Exponential, which need only D: pass
  /// any [0, D] or [m, D] matrix), options, and an optional per-dimension input rescaling
  /// psi [D] (x -> psi o x; empty = none; entries finite and > 0).
  explicit FeatureMap(FeatureKind kind, RowMatrix<T> projection, FeatureMapOptions options = {},
                      Vector<T> dim_scale = Vector<T>())
      : FeatureMap(kind, std::make_shared<const RowMatrix<T>>(std::move(projection)), options,
                   std::move(dim_scale)) {}

  /// As above with a shared, immutable projection: maps built from one projection (query and key
  /// maps, per-call fitted maps, decoding states) share it instead of copying it.
  explicit FeatureMap(FeatureKind kind, std::shared_ptr<const RowMatrix<T>> projection,
                      FeatureMapOptions options = {}, Vector<T> dim_scale = Vector<T>());

  /// The feature kind.
  FeatureKind kind() const { return kind_; }
  /// The options given to the constructor.
  const FeatureMapOptions& options() const { return options_; }
  /// The projection W [m, D] as given.
  const RowMatrix<T>& projection() const { return *projection_; }
  /// The projection, shared (for building further maps or states without copying it).
  const std::shared_ptr<const RowMatrix<T>>& shared_projection() const { return projection_; }
  /// The per-dimension input rescaling psi [D] (empty = none).
  const Vector<T>& dim_scale() const { return dim_scale_; }
  /// D, the input width.
  Index input_dim() const { return projection_->cols(); }
  /// m, the number of projections (rows of W used; D for Identity/Exponential).
  Index num_projections() const { return w_eff_t_.cols(); }
  /// M, the feature dimension: 2m for Hyperbolic and Trig, m otherwise.
  Index feature_dim() const {
    const Index m = w_eff_t_.cols();
    return kind_ == FeatureKind::Hyperbolic || kind_ == FeatureKind::Trig ? 2 * m : m;
  }
  /// M, the feature dimension.
  [[deprecated("ambiguous: use feature_dim() (M) or num_projections() (m)")]] Index num_features()
      const {
    return feature_dim();
  }
  /// True when apply() returns log-features (the feature is exp of the output).
  bool log_domain() const {
    return kind_ == FeatureKind::Positive || kind_ == FeatureKind::Hyperbolic ||
           kind_ == FeatureKind::Optimal || kind_ == FeatureKind::Exponential;
  }
  /// True when every feature is >= 0 (so attention denominators are >= 0).
  bool nonnegative() const { return log_domain() || kind_ == FeatureKind::Relu; }

  /// x [n, D] -> out [n, M]: log-features when log_domain(), features otherwise, of the rows
  /// input_factor * x (input_factor > 0 multiplies options().input_scale for this call only, e.g.
  /// for a per-call attention scale; normalized maps ignore it). Does not allocate, so the core
  /// can call it once per chunk.
  void apply(const ConstMatRef<T>& x, MatRef<T> out, T input_factor = T(1)) const;

  /// apply() that also reduces each output row while it is in L1 (see FeatureRowReductions);
  /// only for maps that are not log_domain() (log-features are reduced after the core
  /// exponentiates them).
  void apply(const ConstMatRef<T>& x, MatRef<T> out, T input_factor,
             const FeatureRowReductions<T>& reductions) const;

  /// x [n, D] -> a new [n, M] matrix (log-features when log_domain()). Allocates; for hot loops
  /// use apply().
  RowMatrix<T> operator()(ConstMatRef<T> x) const {
    RowMatrix<T> out(x.rows(), feature_dim());
    detail::SerialEigenScope serial_eigen;
    apply(x, out);
    return out;
  }

 private:
  FeatureKind kind_;
  FeatureMapOptions options_;
  static std::shared_ptr<const RowMatrix<T>> checked(std::shared_ptr<const RowMatrix<T>> w) {
    FASTATTN_CHECK(w != nullptr, "FeatureMap: projection must not be null");
    return w;
  }

  std::shared_ptr<const RowMatrix<T>> projection_;  // [m, D] as given; immutable, shared
  Vector<T> dim_scale_;                             // [D] or empty
  // W_eff^T [D, m], W_eff = B W diag(c psi) (Identity/Exponential: diag(c psi)). Stored transposed
  // so that a few rows (decoding) are sweeps of broadcast FMAs over contiguous rows of it.
  RowMatrix<T> w_eff_t_;
  Vector<T> feature_offset_;                          // [m] A |w_r|^2 (Optimal)
  Eigen::Array<T, Eigen::Dynamic, 1> squared_scale_;  // [D] (c psi)^2
  bool uniform_scale_ = true;
  // Trig: |x| f times this bounds the sincos arguments f u of a row (Cauchy-Schwarz): the largest
  // |column| of W_eff^T, inf when it overflows (then no row is bounded).
  T largest_projection_norm_ = 0;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
FeatureMap<T>::FeatureMap(FeatureKind kind, std::shared_ptr<const RowMatrix<T>> projection,
                          FeatureMapOptions options, Vector<T> dim_scale)
    : kind_(kind),
      options_(options),
      projection_(checked(std::move(projection))),
      dim_scale_(std::move(dim_scale)) {
  const RowMatrix<T>& w = *projection_;
  const Index d = w.cols();
  FASTATTN_CHECK(d >= 1,
                 "FeatureMap: projection " << detail::shape(w) << " must have D >= 1 columns");
  const bool projected = kind != FeatureKind::Identity && kind != FeatureKind::Exponential;
  FASTATTN_CHECK(!projected || w.rows() >= 1, "FeatureMap: projection "
                                                  << detail::shape(w)
                                                  << " must have at least one row (m >= 1)");
  FASTATTN_CHECK(w.allFinite(),
                 "FeatureMap: projection " << detail::shape(w) << " has non-finite entries");
  FASTATTN_CHECK(std::isfinite(options.input_scale) && options.input_scale > 0,
                 "FeatureMap: input_scale must be finite and > 0, got " << options.input_scale);
  FASTATTN_CHECK(kind != FeatureKind::Optimal ||
                     (std::isfinite(options.optimal_a) && options.optimal_a < 0.125),
                 "FeatureMap: optimal_a must be finite and < 1/8 (finite variance), got "
                     << options.optimal_a);
  FASTATTN_CHECK(std::isfinite(options.relu_eps) && options.relu_eps >= 0,
                 "FeatureMap: relu_eps must be finite and >= 0, got " << options.relu_eps);
  FASTATTN_CHECK(dim_scale_.size() == 0 || dim_scale_.size() == d,
                 "FeatureMap: dim_scale has size " << dim_scale_.size() << " but D = " << d);
  FASTATTN_CHECK(dim_scale_.size() == 0 ||
                     (dim_scale_.array().isFinite().all() && (dim_scale_.array() > T(0)).all()),
                 "FeatureMap: dim_scale entries must be finite and > 0");

  // Fold x -> c psi o x (and FAVOR++'s B) into the projection: u = W_eff x.
  Vector<T> scale = dim_scale_.size() ? dim_scale_ : Vector<T>::Ones(d);
  scale *= static_cast<T>(options.input_scale);
  squared_scale_ = scale.array().square();
  uniform_scale_ = dim_scale_.size() == 0;
  if (!projected) {
    w_eff_t_ = scale.asDiagonal();
  } else {
    const double b = kind == FeatureKind::Optimal ? std::sqrt(1 - 4 * options.optimal_a) : 1.0;
    w_eff_t_ = ((w * scale.asDiagonal()) * static_cast<T>(b)).transpose();
    if (kind == FeatureKind::Optimal)  // a_r = A |w_r|^2 (norms of the raw projection rows)
      feature_offset_ = w.rowwise().squaredNorm() * static_cast<T>(options.optimal_a);
  }
  // (stableNorm: a column of tiny entries must not underflow to a zero bound)
  if (kind == FeatureKind::Trig)
    largest_projection_norm_ = w_eff_t_.colwise().stableNorm().maxCoeff();
}

template <class T>
void FeatureMap<T>::apply(const ConstMatRef<T>& x, MatRef<T> out, T input_factor) const {
  apply(x, out, input_factor, FeatureRowReductions<T>{});
}

template <class T>
void FeatureMap<T>::apply(const ConstMatRef<T>& x, MatRef<T> out, T input_factor,
                          const FeatureRowReductions<T>& reductions) const {
  const Index n = x.rows(), m = w_eff_t_.cols();
  FASTATTN_CHECK(x.cols() == input_dim() && out.rows() == n && out.cols() == feature_dim(),
                 "FeatureMap::apply: x " << detail::shape(x) << " and out " << detail::shape(out)
                                         << " must be [n, D] and [n, M] with D = " << input_dim()
                                         << ", M = " << feature_dim());
  FASTATTN_CHECK(input_factor > 0 && std::isfinite(input_factor),
                 "FeatureMap::apply: input_factor must be finite and > 0, got " << input_factor);
  const bool reduce = reductions.column_sums != nullptr || reductions.dots != nullptr;
  FASTATTN_CHECK(!reduce || !log_domain(),
                 "FeatureMap::apply: row reductions need features, but this map returns "
                 "log-features");
  FASTATTN_CHECK(reductions.dots == nullptr || reductions.weights != nullptr,
                 "FeatureMap::apply: dots need weights");
  auto u = out.leftCols(m);
  // Trig: the product and the sincos pass fused per group of rows (trig_feature_group).
  const bool fused_trig =
      kind_ == FeatureKind::Trig && n > 4 && m % detail::RegisterTile<T>::kCols == 0;
  if (!fused_trig) {  // (fused: the product is computed below, group by group)
    if (n <= 4)       // decoding: one pass over the weights for all rows (see small_rows_product)
      detail::small_rows_product(x.data(), x.outerStride(), n, w_eff_t_.data(), input_dim(), m,
                                 out.data(), out.outerStride());
    else
      detail::gemm_rows<T, false>(x, w_eff_t_, u);  // the one GEMM
  }

  // Per row (rows are contiguous; a column-wise broadcast would stride through memory): the row
  // factor (1/|x| when normalizing, else input_factor) and h = |c psi o x'|^2 / 2 of the row x'
  // as used (log domain).
  const bool need_h = log_domain() && kind_ != FeatureKind::Exponential;
  struct RowScale {
    T factor, h;
  };
  // Whether |x|^2 = sq neither under- nor overflows T (else a normalized row is rescaled first).
  auto squared_norm_in_range = [](T sq) {
    return sq >= std::numeric_limits<T>::min() && sq <= std::numeric_limits<T>::max();
  };
  auto row_scale = [&](Index i) -> RowScale {
    T factor = options_.normalize ? T(1) : input_factor, h = 0;
    if (!options_.normalize && !need_h) return {factor, h};
    T sq = x.row(i).squaredNorm();
    T pre = 1;  // the row as used below is x_i / pre
    if (options_.normalize && !squared_norm_in_range(sq)) {
      // Rare: |x|^2 under- or overflows T (e.g. |x| ~ 1e-20 or 1e20 in float). Normalizing is
      // scale invariant, so redo this row from x_i / max|x_i|, whose norm is in [1, sqrt(D)].
      const T largest = x.row(i).cwiseAbs().maxCoeff();
      if (largest > 0 && largest <= std::numeric_limits<T>::max()) {
        pre = largest;
        auto ui = u.row(i);
        ui.setZero();
        for (Index l = 0; l < input_dim(); ++l) ui += (x(i, l) / pre) * w_eff_t_.row(l);
        sq = (x.row(i).array() / pre).square().sum();
      }
    }
    if (options_.normalize) factor = sq > 0 ? T(1) / std::sqrt(sq) : T(0);
    if (need_h) {
      const T weighted =
          uniform_scale_
              ? sq * squared_scale_[0]
              : ((x.row(i).array() / pre).square() * squared_scale_.transpose().array()).sum();
      h = T(0.5) * weighted * factor * factor;
    }
    return {factor, h};
  };

  const Index M = feature_dim();
  auto reduce_row = [&](Index i) {  // the row reductions of output row i (while it is in L1)
    const auto row = out.row(i);
    if (reductions.column_sums != nullptr)
      Eigen::Map<Vector<T>>(reductions.column_sums, M) += row.transpose();
    if (reductions.dots != nullptr)
      reductions.dots[i * reductions.dots_stride] =
          row.transpose().dot(Eigen::Map<const Vector<T>>(reductions.weights, M));
  };

  if (fused_trig) {
    constexpr int R = detail::RegisterTile<T>::kRows;
    const T* x_row[R];
    T* out_row[R];
    T factor[R];
    // A row with f |x| below this has every |f u_j| <= |f| |x| |w_j| within the sincos's reduced
    // range; half of it leaves room for the rounding of u, |x| and f (a few ulps of each).
    const T row_limit =
        T(detail::SincosConstants<T>::max_reduced / 2) /
        std::max(largest_projection_norm_, std::numeric_limits<T>::min());  // (W = 0: any row)
    for (Index r0 = 0; r0 < n; r0 += R) {
      const int rows = static_cast<int>(std::min<Index>(R, n - r0));
      bool rare = false;     // a row whose |x|^2 under- or overflows T (see row_scale)
      bool in_range = true;  // every argument of the group within the reduced range
      for (int r = 0; r < R; ++r) {
        const Index i = r0 + std::min(r, rows - 1);  // a partial group repeats its last row
        x_row[r] = x.data() + i * x.outerStride();
        out_row[r] = &out(i, 0);
        factor[r] = input_factor;
        const T sq = x.row(i).squaredNorm(), norm = std::sqrt(sq);
        if (options_.normalize) {
          rare |= !squared_norm_in_range(sq);
          factor[r] = T(1) / norm;
        }
        // (false for NaN, Inf and an |x|^2 that underflows: those groups keep the test)
        in_range &= squared_norm_in_range(sq) && factor[r] * norm <= row_limit;
      }
      if (!rare) {
        // The range test per packet costs 6% of the kernel; a bounded group skips it.
        auto* group_kernel =
            in_range ? &detail::trig_feature_group<true, T> : &detail::trig_feature_group<false, T>;
        group_kernel(x_row, w_eff_t_.data(), w_eff_t_.outerStride(), input_dim(), m, factor,
                     out_row, rows);
      } else {  // rare: this group row by row, as the unfused path
        detail::gemm_rows<T, false>(x.middleRows(r0, rows), w_eff_t_, u.middleRows(r0, rows));
        for (Index i = r0; i < r0 + rows; ++i)
          detail::sincos(&out(i, 0), &out(i, 0), &out(i, m), m, row_scale(i).factor);
      }
      if (reduce)
        for (Index i = r0; i < r0 + rows; ++i) reduce_row(i);
    }
    return;
  }

  // The next row's scale is computed before this row's pass: its norm, square root and division
  // are a chain of latencies that the pass would otherwise wait for (measured for RFA's
  // normalized trig features: 1.5% of a non-causal call).
  const T eps = static_cast<T>(options_.relu_eps);
  RowScale next = n > 0 ? row_scale(0) : RowScale{};
  for (Index i = 0; i < n; ++i) {
    const RowScale scale = next;
    if (i + 1 < n) next = row_scale(i + 1);
    const T factor = scale.factor, h = scale.h;
    auto ui = u.row(i);
    if (factor != T(1) && kind_ != FeatureKind::Trig) ui *= factor;  // Trig: in its sincos pass
    switch (kind_) {
      case FeatureKind::Positive:
        ui.array() -= h;
        break;
      case FeatureKind::Optimal:
        ui.array() += feature_offset_.transpose().array() - h;
        break;
      case FeatureKind::Hyperbolic:
        out.row(i).tail(m).array() = -ui.array() - h;
        ui.array() -= h;
        break;
      case FeatureKind::Trig:
        detail::sincos(&out(i, 0), &out(i, 0), &out(i, m), m, factor);
        break;
      case FeatureKind::Relu:
        ui = (ui.array().max(T(0)) + eps).matrix();
        break;
      case FeatureKind::Identity:
      case FeatureKind::Exponential:
        break;
    }
    if (reduce) reduce_row(i);
  }
}

/// x [n, D], w [m, D] -> out [n, m]: the positive log-features w_r.x'_i - |x'_i|^2 / 2 of the
/// rows x'_i = input_scale * x_i (FAVOR+'s map in the log domain, without the m^-1/2 constant).
/// Also the log-weights of a Gaussian proposal centred at w_r (EVA's chunk summaries). Does not
/// allocate.
template <class T>
void positive_log_features(const ConstMatRef<T>& x, const ConstMatRef<T>& w, MatRef<T> out,
                           T input_scale = T(1)) {
  FASTATTN_CHECK(x.cols() == w.cols() && out.rows() == x.rows() && out.cols() == w.rows(),
                 "positive_log_features: x " << detail::shape(x) << ", w " << detail::shape(w)
                                             << " and out " << detail::shape(out)
                                             << " must be [n, D], [m, D] and [n, m]");
  out.noalias() = x * w.transpose();
  const T c = input_scale, half_c2 = T(0.5) * input_scale * input_scale;
  for (Index i = 0; i < x.rows(); ++i)  // row by row: rows are contiguous
    out.row(i).array() = c * out.row(i).array() - half_c2 * x.row(i).squaredNorm();
}

/// x [N, D], w [m, D] -> [N, m]: m^-1/2 exp(w.x - |x|^2/2), the plain FAVOR+ map (no
/// stabilization: overflows for large |x|; attention uses the log domain instead).
template <class T>
RowMatrix<T> positive_features(ConstMatRef<T> x, ConstMatRef<T> w) {
  FASTATTN_CHECK(x.cols() == w.cols(), "positive_features: x " << detail::shape(x) << " and w "
                                                               << detail::shape(w)
                                                               << " must have the same D");
  RowMatrix<T> out(x.rows(), w.rows());
  detail::SerialEigenScope serial_eigen;
  positive_log_features<T>(x, w, out);
  out = out.array().exp() / std::sqrt(static_cast<T>(w.rows()));
  return out;
}

/// x [N, D], w [m, D] -> [N, 2m]: m^-1/2 exp(|x|^2/2) [cos w.x, sin w.x], the textbook random
/// Fourier features of the softmax kernel (signed; E[phi(x).phi(y)] = exp(x.y)).
template <class T>
RowMatrix<T> trig_features(ConstMatRef<T> x, ConstMatRef<T> w) {
  FASTATTN_CHECK(x.cols() == w.cols(), "trig_features: x " << detail::shape(x) << " and w "
                                                           << detail::shape(w)
                                                           << " must have the same D");
  const FeatureMap<T> map(FeatureKind::Trig, w);
  RowMatrix<T> out = map(x);
  const T inv_sqrt_m = T(1) / std::sqrt(static_cast<T>(w.rows()));
  for (Index i = 0; i < x.rows(); ++i)
    out.row(i) *= inv_sqrt_m * std::exp(T(0.5) * x.row(i).squaredNorm());
  return out;
}

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class FeatureMap<float>;
extern template class FeatureMap<double>;
#endif

}  // namespace fastattn
