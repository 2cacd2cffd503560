#pragma once
/// @file options.hpp
/// Per-call options shared by every method, and the convention every options struct follows.
///
/// "Use the default", everywhere in fastattn:
/// - Counts and sizes are Index (or int) and 0 means "not set": the documented default where the
///   field has one (num_features, chunk_size, block sizes, threads, ...), none where the feature
///   is optional (EvaOptions::ext), and an error where the field is required (EvaOptions::window).
/// - Real-valued parameters whose default is a fixed number carry it as their initializer
///   (RfaOptions::sigma = 1, FavorOptions::relu_eps = 1e-3, ...): leave them alone.
/// - Real-valued parameters whose default is computed (per call, or per mode) are
///   std::optional<double>, and empty selects the computation (FavorOptions::optimal_a: FAVOR++'s
///   A* fitted per call). The one exception is EvaOptions::mu_scale, a double whose negative
///   values select the default: its type is part of the API contract.
/// - AttentionOptions::scale = 0 selects 1/sqrt(D) (a zero logit scale is never meaningful).

#include "fastattn/types.hpp"

namespace fastattn {

/// Options of one attention call (any method).
struct AttentionOptions {
  /// Logit scale s; 0 means 1/sqrt(D) with D the key dimension. Must be finite.
  double scale = 0;
  /// Causal masking, bottom-right aligned: query i sees keys j <= i + (Nk - Nq).
  bool causal = false;
  /// [Nk], true = padded key (ignored). Empty = no padding.
  KeyMask key_padding;
  /// ALiBi slope m > 0 adds -m * |i + Nk - Nq - j| to logit (i, j); 0 = off. Exact attention only:
  /// methods that cannot represent it reject a non-zero slope.
  double alibi_slope = 0;
};

}  // namespace fastattn
