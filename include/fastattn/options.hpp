#pragma once
/// @file options.hpp
/// Per-call options shared by every method.

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
