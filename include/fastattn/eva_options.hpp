#pragma once
/// @file eva_options.hpp
/// Configuration, learned parameters and diagnostics of Eva<T> (eva.hpp): docs/spec/eva.md §5.1.

#include <optional>

#include "fastattn/types.hpp"

namespace fastattn {

/// Which EVA estimator Eva<T> computes (docs/spec/eva.md §5).
enum class EvaSemantics {
  /// The official code's eval-mode output: overlapping chunks, divisor counting invalid slots,
  /// every chunk (also those inside the window) in every softmax, no chunk-size factor.
  Reference,
  /// The paper's estimator over a true partition: disjoint chunks, chunks inside the query's
  /// window excluded, chunk logits + ln n_c. With one window covering the sequence it is exact
  /// softmax attention.
  Disjoint,
};

/// Configuration of Eva<T> (docs/spec/eva.md §5.1).
struct EvaOptions {
  /// W: window length (1-D) or window tile side (2-D).
  Index window = 0;
  /// e: extra key slots before (and, non-causal, after) each window; in Reference also the chunk
  /// extension of non-causal chunks. Official: max(1, W/2) non-causal, W causal, when overlapping.
  Index ext = 0;
  /// C: chunk length L = floor(n_p / C) (2-D: side floor(sqrt(floor(n / C)))). Exactly one of
  /// num_chunks and chunk_size is set.
  Index num_chunks = 0;
  /// L directly (2-D: the chunk tile side).
  Index chunk_size = 0;
  EvaSemantics semantics = EvaSemantics::Reference;
  /// mu_c = mu_scale (f_q(qbar_c) + f_k(kbar_c)); 0 gives mu = 0. Negative = the reference
  /// default (1/2 non-causal, 1 causal). (The one real-valued option whose computed default is a
  /// negative number rather than an empty std::optional: its type is part of the API contract.)
  double mu_scale = -1;
  /// Both > 0: 2-D mode over a row-major H x W token grid (non-causal; n = H * W).
  Index grid_height = 0, grid_width = 0;
};

/// An adaptive projection x [D] -> LayerNorm?(x W^T + b) (official adaptive_mu_q / adaptive_mu_k).
template <class T>
struct EvaProjection {
  RowMatrix<T> weight;  ///< [D, D], applied as x W^T.
  Vector<T> bias;       ///< [D].
  /// [D] each, or both empty for no LayerNorm (biased variance, eps 1e-5, after the Linear).
  Vector<T> ln_gamma, ln_beta;
};

/// Learned parameters of one Eva head (shared by all heads of a layer in the official code).
template <class T>
struct EvaParams {
  /// Adaptive projections of the chunk means; absent = identity.
  std::optional<EvaProjection<T>> mu_q, mu_k;
  /// Optional additive local-window bias (spec §3.6), the same for every window:
  /// [W, S_w] in 1-D (S_w = W + 2e non-causal, W + e causal), [W^2, (W + 2e)^2] in 2-D, indexed
  /// [query in window, key slot in window]; empty = none.
  RowMatrix<T> local_bias;
};

/// Per-chunk intermediates of one EVA call (Eva::chunk_stats), C' chunks: the adaptive summaries
/// kt [C', D] (k~_c), the proposal means mu [C', D], the control-variate values beta [C', Dv] and
/// the logit offsets [C'] (Disjoint: ln n_c, -inf for an empty chunk; Reference: 0). For
/// debugging and parity checks.
template <class T>
struct EvaChunkStats {
  RowMatrix<T> kt, mu, beta;
  Vector<T> offset;
};

/// The sequence length n of a bounded EVA decoding state (Eva::make_state): needed when the chunk
/// length derives from n (options.num_chunks), and it checks the configuration against the
/// domain of a forward() over n tokens; step() then accepts at most n tokens.
struct EvaSequenceLength {
  Index tokens = 0;
};

}  // namespace fastattn
