#pragma once
/// @file sequence_parallel_options.hpp
/// Options of sequence_parallel() (sequence_parallel.hpp); no MPI needed to include this one.

namespace fastattn {

/// Which tokens each rank holds.
enum class TokenLayout {
  /// Rank r holds one contiguous block; rank order is sequence order. The default.
  Contiguous,
  /// Exact causal attention only: rank r holds two chunks, its first n_r / 2 rows (rounded down)
  /// being chunk r and the rest chunk 2P - 1 - r of the 2P chunks, in sequence order
  /// A_0, A_1, ..., A_{P-1}, B_{P-1}, ..., B_1, B_0 (A_r, B_r = rank r's first and second chunk).
  /// Pairs an early chunk with a late one, so every rank does the same causal work; see
  /// docs/sequence_parallel.md for when it pays.
  ZigZag,
};

/// Options of a sequence-parallel call beyond AttentionOptions.
struct SequenceParallelOptions {
  TokenLayout layout = TokenLayout::Contiguous;
};

}  // namespace fastattn
