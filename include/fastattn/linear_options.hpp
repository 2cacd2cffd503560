#pragma once
/// @file linear_options.hpp
/// Options and diagnostics of the linear-attention core (linear.hpp, linear_state.hpp).

#include "fastattn/types.hpp"

namespace fastattn {

/// Options of the linear-attention core.
struct LinearOptions {
  /// Rows per chunk: keys per accumulation step (non-causal) or the causal chunk C. 0 = default
  /// (256 non-causal, 32 causal).
  Index chunk_size = 0;
  /// Denominator guard, relative to each row's total visible weight w (the number of visible keys,
  /// or 1 - prod g for gated attention): a row with w > 0 whose denominator is <= den_eps * w
  /// gives N / (den_eps * w) (clamped), or 0 when den_eps = 0 (signed features, or complete
  /// underflow of positive ones). Such rows are counted in LinearStats::guarded_rows. Relative, so
  /// the guard means the same for any sequence length and for gates close to 1.
  double den_eps = 0;
};

/// Diagnostics of one call.
struct LinearStats {
  /// Rows with a visible key whose denominator was <= den_eps (clamped, or zeroed when den_eps =
  /// 0).
  Index guarded_rows = 0;
};

}  // namespace fastattn
