#pragma once
/// @file detail/linear/block_carry.hpp
/// Carries of consecutive key blocks, for sequence parallelism (docs/sequence_parallel.md): a
/// block's own carry, computed without any output, and the composition of the carries of two
/// consecutive blocks. compose_carry(carry(A), carry(B)) = carry(A then B) up to rounding, and the
/// composition is associative, so an exclusive scan of the blocks' own carries gives each block
/// the carry of every key before it.

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "fastattn/detail/linear/causal.hpp"
#include "fastattn/detail/linear/chunk.hpp"
#include "fastattn/detail/linear/noncausal.hpp"
#include "fastattn/detail/linear/rows.hpp"
#include "fastattn/linear_options.hpp"

namespace fastattn::detail {

/// Folds the keys k [Nk, D], v [Nk, Dv] (key padding and gating as in linear_causal) into
/// `carry` without computing any output: the carry a causal pass over them would leave. `chunk`
/// rows per accumulation step (no intra-chunk products here, so the non-causal chunk suits).
template <class T, class Gating>
void fold_keys(const FeatureMap<T>& key_map, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
               const KeyMask& padding, const Gating& gating, Index chunk, LinearCarry<T>& carry,
               T input_factor) {
  if constexpr (!Gating::gated) {
    SerialEigenScope serial_eigen;
    LinearWorkspace<T> ws(std::min(chunk, k.rows()) + 1, key_map.feature_dim(), v.cols(), false);
    accumulate_key_sums(key_map, k, v, padding, chunk, carry, ws, input_factor);
  } else {
    // The causal pass with no query heads runs only its fold: S <- prod(g) S + phi(K)^T diag(w)
    // [V, 1] chunk by chunk, with the chunk's gates composed exactly as in the forward pass.
    const QueryHeads<T> no_queries{nullptr, nullptr, 0};
    LinearOptions lopt;
    lopt.chunk_size = chunk;
    linear_causal(key_map, key_map, no_queries, k, v, padding, gating, lopt, carry, input_factor);
  }
}

/// later <- the carry of the keys of `earlier` followed by the keys of `later` (sums of the same
/// shape). Earlier and Later are LinearCarry<T> or any type with the same members (shift,
/// log_gate_sum, contributing, sums), e.g. a view of a packed carry. The shifts merge as the
/// running key shift does (the larger one wins, the other side's sums are rescaled; a side with
/// shift -inf holds no log-domain key, or the features are not log-domain and both shifts are
/// -inf); the later block's gates decay every earlier key by prod g = exp(later.log_gate_sum)
/// (1 when ungated).
template <class Earlier, class Later>
void compose_carry(const Earlier& earlier, Later& later) {
  using T = std::decay_t<decltype(later.shift)>;
  const T shift = std::max(earlier.shift, later.shift);
  const T earlier_factor =
      (earlier.shift == shift ? T(1) : std::exp(earlier.shift - shift)) *
      std::exp(later.log_gate_sum);
  const T later_factor = later.shift == shift ? T(1) : std::exp(later.shift - shift);
  later.sums = earlier_factor * earlier.sums + later_factor * later.sums;
  later.shift = shift;
  later.log_gate_sum += earlier.log_gate_sum;
  later.contributing += earlier.contributing;
}

}  // namespace fastattn::detail
