#pragma once
/// @file favor_options.hpp
/// Configuration of Favor<T> (favor.hpp): the kernel estimator, the projection, and the
/// compatibility modes that reproduce reference implementations.

#include <cstdint>
#include <optional>

#include "fastattn/random.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// Which reference implementation's FAVOR formulas to reproduce (docs/spec/favor.md §11). `None` is
/// the library's exact, eps-free formulation; the others exist for parity only.
enum class FavorCompat {
  None,
  PerformerPytorch,  ///< lucidrains/performer-pytorch (kernels Positive and Relu)
  GoogleJax,         ///< google-research performer/fast_attention/jax (kernel Positive)
  FastTransformers,  ///< idiap/fast-transformers Favor (kernel Hyperbolic)
  EvaRepo,           ///< HKUNLP/efficient-attention favorp, the EVA paper's FAVOR+ baseline
};

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
  /// FAVOR++ parameter A (< 1/8). Empty = the optimal A* computed from each call's data
  /// (non-causal only: in causal use A would depend on future tokens, so it must be fixed).
  std::optional<double> optimal_a;
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

}  // namespace fastattn
