#pragma once
/// @file detail/simd/tile_kernels_bf16.hpp
/// The micro-kernels of detail/simd/tile_kernels.hpp on bfloat16 pairs with vdpbf16ps
/// (docs/bfloat16.md): the score tile S = Q_g K_p^T (queries and keys in bfloat16, logits in
/// float) and the value tile O_g += P V (weights rounded to bfloat16, as GPU flash kernels do;
/// accumulation in float). Compiled only when FASTATTN_BF16_DOT is 1 (AVX512_BF16 and Eigen's
/// AVX-512 packets); otherwise bfloat16 inputs are widened while packing and the float kernels run.
///
/// Why: vdpbf16ps does two multiply-adds per float lane in the time of one float FMA, and the
/// operands are half the bytes. The register tile (8 rows x 2 packets of 16 floats) and the
/// reasons for EIGEN_DONT_INLINE are those of the float kernels; one reduction step now consumes
/// a pair (two dimensions of a key, or two keys of a value column).

#include "fastattn/detail/simd/bf16.hpp"

#if FASTATTN_BF16_DOT

#include <cstdint>
#include <cstring>

#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/tile_kernels.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The bfloat16 pair at p (two adjacent elements) broadcast to every 32-bit lane.
inline __m512bh broadcast_bf16_pair(const Eigen::bfloat16* p) {
  std::uint32_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(bits)));
}

/// 32 bfloat16 at p (16 pairs).
inline __m512bh load_bf16_pairs(const Eigen::bfloat16* p) {
  return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
}

/// The end of one score tile of score_tiles_bf16: the raw logits acc [R][P packets] of
/// one panel; kAddRow adds add_row [C] (that panel's key mask and per-key bias); kExp turns them
/// into weights into s [R][C] (see GroupSoftmax and score_tiles) unless a logit exceeds its row's
/// limit, in which case it stores the logits and returns false. Always inlined, so the
/// accumulators stay in the caller's registers.
template <class T, bool kAddRow, bool kExp>
EIGEN_ALWAYS_INLINE bool finish_score_tile(
    typename RegisterTile<T>::Packet (&acc)[RegisterTile<T>::kRows][RegisterTile<T>::kPackets],
    const T* add_row, T* s, GroupSoftmax<T>& sm) {
  using Tile = RegisterTile<T>;
  if constexpr (kAddRow) add_key_row<T>(acc, add_row);
  if constexpr (kExp) {
    if (exceeds_limit<T>(acc, sm)) {  // rare: the caller raises the reference first
      store_tile<T>(acc, s);
      return false;
    }
    for (int r = 0; r < Tile::kRows; ++r)
      for (int p = 0; p < Tile::kPackets; ++p)
        Eigen::internal::pstore(s + r * Tile::kCols + p * Tile::kLanes,
                                weight_packet<T>(acc[r][p], r, sm));
  } else {
    store_tile<T>(acc, s);
  }
  return true;
}

/// As score_tiles<float> on pairs: qp [pairs][R][2] holds the group's queries (bfloat16, not
/// scaled), kp the panels, each [pairs][C][2]; the logits are scale q.k (the scale is applied to
/// the float dot products, so it adds no bfloat16 rounding). Everything else (add_row, kExp, the
/// stop at a logit above its row's limit, the return value) as score_tiles.
template <bool kAddRow, bool kExp>
EIGEN_DONT_INLINE Index score_tiles_bf16(const Eigen::bfloat16* qp, const Eigen::bfloat16* kp,
                                         Index pairs, Index panels, const float* add_row, float* s,
                                         GroupSoftmax<float>& sm, float scale) {
  using Tile = RegisterTile<float>;
  constexpr int R = Tile::kRows, P = Tile::kPackets, C = Tile::kCols;
  static_assert(Tile::kLanes == 16 && P == 2, "one packet holds 16 pairs");
  const __m512 vscale = _mm512_set1_ps(scale);
  for (Index panel = 0; panel < panels; ++panel, s += R * C) {
    __m512 acc[R][P];
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_ps();
    const Eigen::bfloat16* a_ptr = qp;
    for (Index k = 0; k < pairs; ++k, a_ptr += 2 * R, kp += 2 * C) {
      __m512bh b[P];
      for (int p = 0; p < P; ++p) b[p] = load_bf16_pairs(kp + p * C);
      for (int r = 0; r < R; ++r) {
        const __m512bh a = broadcast_bf16_pair(a_ptr + 2 * r);
        for (int p = 0; p < P; ++p) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], a, b[p]);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < P; ++p) acc[r][p] = _mm512_mul_ps(acc[r][p], vscale);
    if (!finish_score_tile<float, kAddRow, kExp>(acc, kAddRow ? add_row + panel * C : nullptr, s,
                                                 sm))
      return panel;
  }
  return kExp ? panels : 0;
}

/// score_tiles_bf16 with the template flags from run-time values.
inline Index score_panels_bf16(bool add_row, bool exp, const Eigen::bfloat16* qp,
                               const Eigen::bfloat16* kp, Index pairs, Index panels,
                               const float* key_add, float* s, GroupSoftmax<float>& sm,
                               float scale) {
  if (panels <= 0) return 0;
  if (add_row)
    return exp ? score_tiles_bf16<true, true>(qp, kp, pairs, panels, key_add, s, sm, scale)
               : score_tiles_bf16<true, false>(qp, kp, pairs, panels, key_add, s, sm, scale);
  return exp ? score_tiles_bf16<false, true>(qp, kp, pairs, panels, key_add, s, sm, scale)
             : score_tiles_bf16<false, false>(qp, kp, pairs, panels, key_add, s, sm, scale);
}

/// w [n] (n a multiple of 32) rounded to bfloat16 (to nearest even) into out [n], in order: the
/// weights of a group's tile become pairs along the keys for value_tile_bf16.
inline void round_to_bf16(const float* w, Index n, Eigen::bfloat16* out) {
  for (Index i = 0; i < n; i += 32) {
    const __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(w + i));
    _mm512_storeu_si512(out + i, reinterpret_cast<__m512i>(h));
  }
}

/// As value_tile<float, kWidth> on pairs: p holds the panels' weights in bfloat16, each [R][C]
/// (keys 2i and 2i + 1 adjacent); v the values of this column chunk, each panel's [C/2][W L][2]
/// (pairs of keys) at v + panel * panel_stride. o = diag(alpha) o + P V in float.
template <int kWidth>
EIGEN_DONT_INLINE void value_tile_bf16(const Eigen::bfloat16* p, Index panels,
                                       const Eigen::bfloat16* v, Index panel_stride, float* o,
                                       Index ldo, const float* alpha, int rows) {
  using Tile = RegisterTile<float>;
  constexpr int R = Tile::kRows, L = Tile::kLanes, C = Tile::kCols;
  __m512 acc[R][kWidth];
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < kWidth; ++w) acc[r][w] = _mm512_setzero_ps();
  for (Index panel = 0; panel < panels; ++panel, p += R * C) {
    const Eigen::bfloat16* b_ptr = v + panel * panel_stride;
    for (int j = 0; j < C; j += 2, b_ptr += 2 * kWidth * L) {
      __m512bh b[kWidth];
      for (int w = 0; w < kWidth; ++w) b[w] = load_bf16_pairs(b_ptr + w * 2 * L);
      for (int r = 0; r < R; ++r) {
        const __m512bh a = broadcast_bf16_pair(p + r * C + j);
        for (int w = 0; w < kWidth; ++w) acc[r][w] = _mm512_dpbf16_ps(acc[r][w], a, b[w]);
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    const __m512 a = _mm512_set1_ps(alpha[r]);
    for (int w = 0; w < kWidth; ++w) {
      float* dst = o + r * ldo + w * L;
      _mm512_storeu_ps(dst, _mm512_fmadd_ps(a, _mm512_loadu_ps(dst), acc[r][w]));
    }
  }
}

}  // namespace fastattn::detail

#endif  // FASTATTN_BF16_DOT
