#pragma once
/// @file detail/exact/packed_decode.hpp
/// One exact decoding step over a packed KV cache (detail/exact/packed_kv.hpp): the last query
/// against every cached key. Three streaming passes: scores (reads the keys once), 2^(x - m) on
/// the scores in place (they stay in L1/L2), then the weighted sum of the values (reads the
/// values once). The step is bound by the bandwidth of the level the cache lives in
/// (bench/bench_kernels.cpp measures it).

#include <algorithm>
#include <limits>
#include <type_traits>

#include "fastattn/detail/exact/packed_kv.hpp"
#include "fastattn/detail/simd/exp2.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/row_kernels.hpp"
#include "fastattn/detail/simd/row_kernels_bf16.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Caller-owned buffers of exact_packed_decode, so a step does not allocate.
template <class T>
struct DecodeWorkspace {
  Vector<T> query;                       // [D]  the query scaled by s
  Vector<T> scores;                      // [capacity, whole panels]  scores, then weights
  Vector<T> out;                         // [value_stride]
  Vector<Eigen::bfloat16> query_pairs;   // [D rounded up to even]  a bfloat16 cache's query
  Vector<Eigen::bfloat16> weight_pairs;  // [capacity]  a bfloat16 cache's weights

  /// Sizes the buffers for a cache of `capacity` keys (they only grow); bf16_cache: a bfloat16
  /// cache's buffers too.
  void reserve(Index dim, Index capacity, Index value_stride, bool bf16_cache = false) {
    if (query.size() < dim) query.resize(dim);
    if (scores.size() < capacity) scores.resize(capacity);
    if (bf16_cache && query_pairs.size() < dim + 1) query_pairs.resize(dim + 1);
    if (bf16_cache && weight_pairs.size() < capacity) weight_pairs.resize(capacity);
    if (out.size() < value_stride) out.resize(value_stride);
  }
};

/// q [D] (the last position) against all kv.size cached keys -> out [Dv]: causal attention of the
/// last query, so every key is visible except padded ones (masked by kv.key_add). `scale` and
/// `alibi` are the logit scale and the ALiBi slope (natural units). ws is reserved for the cache's
/// capacity. Does not allocate. S = bfloat16 (T = float): a bfloat16 cache in pair panels
/// (detail/simd/row_kernels_bf16.hpp); the softmax stays in float.
template <class T, class S = T>
void exact_packed_decode(const T* q, const PackedKv<T, S>& kv, double scale, double alibi,
                         DecodeWorkspace<T>& ws, T* out) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int L = Tile::kLanes, C = Tile::kCols;
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const Index nk = kv.size, panels = key_panels<T>(nk);
  T* scores = ws.scores.data();
  const T s = static_cast<T>(scale), slope = static_cast<T>(alibi);
  if constexpr (std::is_same_v<S, T>) {
    for (Index dd = 0; dd < kv.dim; ++dd) ws.query[dd] = s * q[dd];
    score_row<T>(ws.query.data(), kv.keys, kv.dim, panels, kv.key_add, scores);
  } else {
    score_row_bf16(q, kv.dim, kv.keys, panels, s, kv.key_add, scores, ws.query_pairs.data());
  }

  // ALiBi (-slope (Nk - 1 - j)), the mask of the slots past Nk, and the max.
  const Index full = nk / L * L;
  Packet mx = pset1<Packet>(neg_inf);
  if (slope != 0) {
    const Packet pslope = pset1<Packet>(slope), iota = plset<Packet>(T(0));
    for (Index j = 0; j < full; j += L) {
      const Packet distance = psub(pset1<Packet>(static_cast<T>(nk - 1 - j)), iota);
      const Packet x = psub(pload<Packet>(scores + j), pmul(pslope, distance));
      pstore(scores + j, x);
      mx = pmax(mx, x);
    }
  } else {
    for (Index j = 0; j < full; j += L) mx = pmax(mx, pload<Packet>(scores + j));
  }
  T row_max = predux_max(mx);
  for (Index j = full; j < panels * C; ++j) {
    T& x = scores[j];
    x = j < nk ? x - slope * static_cast<T>(nk - 1 - j) : neg_inf;
    row_max = std::max(row_max, x);
  }
  if (row_max == neg_inf) {  // every key padded (or none): the empty-row rule
    std::fill(out, out + kv.value_dim, T(0));
    return;
  }

  // e^(x - m) = 2^((x - m) log2 e), as in the forward kernel (GroupSoftmax).
  // A bfloat16 cache on the vdpbf16ps path: weights rounded to bfloat16 as they are computed.
  constexpr bool kDotPairs = !std::is_same_v<S, T> && FASTATTN_BF16_DOT;
  const Packet log2e = pset1<Packet>(kLog2e<T>), shift = pset1<Packet>(row_max);
  Packet sum0 = pset1<Packet>(T(0)), sum1 = sum0;
  for (Index j = 0; j < panels * C; j += C) {
    const Packet e0 = pexp2<T>(pmul(psub(pload<Packet>(scores + j), shift), log2e));
    const Packet e1 = pexp2<T>(pmul(psub(pload<Packet>(scores + j + L), shift), log2e));
    if constexpr (kDotPairs) {  // the value kernel reads the weights as bfloat16 pairs
      store_bf16_weights(ws.weight_pairs.data() + j, e0, e1);
    } else {
      pstore(scores + j, e0);
      pstore(scores + j + L, e1);
    }
    sum0 = padd(sum0, e0);
    sum1 = padd(sum1, e1);
  }
  const T sum = predux(padd(sum0, sum1));
  if constexpr (std::is_same_v<S, T>)
    value_row<T>(scores, panels, kv.values, kv.value_stride, ws.out.data());
  else
    value_row_bf16(scores, ws.weight_pairs.data(), panels, kv.values, kv.value_stride,
                   ws.out.data());
  for (Index c = 0; c < kv.value_dim; ++c) out[c] = ws.out[c] / sum;
}

}  // namespace fastattn::detail
