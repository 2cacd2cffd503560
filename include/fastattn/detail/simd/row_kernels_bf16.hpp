#pragma once
/// @file detail/simd/row_kernels_bf16.hpp
/// The one-row kernels of detail/simd/row_kernels.hpp on a bfloat16 KV cache in pair panels
/// (detail/exact/packed_kv_bf16.hpp): the exact decoding step. A step streams the whole cache
/// once at 2 flops per element, so it is bound by bandwidth and bfloat16 halves its bytes.
///  - scores: with FASTATTN_BF16_DOT, the query rounded to bfloat16 pairs and vdpbf16ps (four
///    independent chains); otherwise plain loops that widen each key element to float.
///  - values: with FASTATTN_BF16_DOT, the weights rounded to bfloat16 pairs along the keys and
///    vdpbf16ps, as in the forward kernel (widening each value instead, by a shift and a mask of
///    the 32-bit lane, measured 1.6x the float step at 4K context against 1.7-1.8x here: the
///    extra integer operations per element left the step short of the bandwidth); otherwise
///    plain loops that widen each value to float.

#include <cstdint>

#include <Eigen/Core>

#include "fastattn/detail/exact/packed_kv_bf16.hpp"
#include "fastattn/detail/simd/bf16.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/tile_kernels_bf16.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// s [panels * C] = scale (q . k_j) for one query row: q [dim] in float, kp `panels` pair panels
/// [Dp/2][C][2] (Dp = dim rounded up to even); add_row [panels * C] (or null) is added.
/// q_pairs [Dp] is scratch (the query in bfloat16 on the vdpbf16ps path).
inline void score_row_bf16(const float* q, Index dim, const Eigen::bfloat16* kp, Index panels,
                           float scale, const float* add_row, float* s, Eigen::bfloat16* q_pairs) {
  constexpr int C = RegisterTile<float>::kCols;
  const Index pairs = pair_depth(dim) / 2;
#if FASTATTN_BF16_DOT
  constexpr int L = RegisterTile<float>::kLanes;
  for (Index dd = 0; dd < 2 * pairs; ++dd)
    q_pairs[dd] = dd < dim ? Eigen::bfloat16(q[dd]) : Eigen::bfloat16();
  const __m512 vscale = _mm512_set1_ps(scale);
  for (Index panel = 0; panel < panels; ++panel, s += C) {
    // Two sets of accumulators (even and odd pairs): four independent chains.
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    Index k = 0;
    for (; k + 2 <= pairs; k += 2, kp += 4 * C) {
      const __m512bh x = broadcast_bf16_pair(q_pairs + 2 * k);
      const __m512bh y = broadcast_bf16_pair(q_pairs + 2 * k + 2);
      a0 = _mm512_dpbf16_ps(a0, x, load_bf16_pairs(kp));
      a1 = _mm512_dpbf16_ps(a1, x, load_bf16_pairs(kp + 2 * L));
      b0 = _mm512_dpbf16_ps(b0, y, load_bf16_pairs(kp + 2 * C));
      b1 = _mm512_dpbf16_ps(b1, y, load_bf16_pairs(kp + 2 * C + 2 * L));
    }
    if (k < pairs) {
      const __m512bh x = broadcast_bf16_pair(q_pairs + 2 * k);
      a0 = _mm512_dpbf16_ps(a0, x, load_bf16_pairs(kp));
      a1 = _mm512_dpbf16_ps(a1, x, load_bf16_pairs(kp + 2 * L));
      kp += 2 * C;
    }
    a0 = _mm512_mul_ps(_mm512_add_ps(a0, b0), vscale);
    a1 = _mm512_mul_ps(_mm512_add_ps(a1, b1), vscale);
    if (add_row) {
      a0 = _mm512_add_ps(a0, _mm512_loadu_ps(add_row + panel * C));
      a1 = _mm512_add_ps(a1, _mm512_loadu_ps(add_row + panel * C + L));
    }
    _mm512_storeu_ps(s, a0);
    _mm512_storeu_ps(s + L, a1);
  }
#else
  (void)q_pairs;  // the portable path keeps the query in float
  for (Index panel = 0; panel < panels; ++panel, s += C) {
    float acc[C] = {};
    for (Index k = 0; k < pairs; ++k, kp += 2 * C) {
      const float x = q[2 * k], y = 2 * k + 1 < dim ? q[2 * k + 1] : 0.0f;
      for (int c = 0; c < C; ++c)
        acc[c] += x * bf16_to_float(kp[2 * c]) + y * bf16_to_float(kp[2 * c + 1]);
    }
    for (int c = 0; c < C; ++c) s[c] = scale * acc[c] + (add_row ? add_row[panel * C + c] : 0.0f);
  }
#endif
}

/// out [value_stride] = sum over `panels` pair panels of p_j v_j: p [panels * C] weights in
/// float, v the cache's values (detail/exact/packed_kv_bf16.hpp). With FASTATTN_BF16_DOT the
/// weights are rounded to bfloat16 into p_pairs [panels * C] and multiplied with vdpbf16ps (as in
/// the forward kernel); otherwise the values are widened to float and p_pairs is unused.
inline void value_row_bf16(const float* p, Index panels, const Eigen::bfloat16* v,
                           Index value_stride, float* out, Eigen::bfloat16* p_pairs) {
  constexpr int L = RegisterTile<float>::kLanes, C = RegisterTile<float>::kCols;
  const Index panel_stride = C * value_stride;
#if FASTATTN_BF16_DOT
  round_to_bf16(p, panels * C, p_pairs);
#else
  (void)p_pairs;
#endif
  for (Index c0 = 0; c0 < value_stride; c0 += C) {
    const bool wide = c0 + C <= value_stride;  // else the last chunk is one packet
    const Index width = wide ? C : L;
#if FASTATTN_BF16_DOT
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    for (Index panel = 0; panel < panels; ++panel) {
      const Eigen::bfloat16* row = v + panel * panel_stride + c0 * C;
      const Eigen::bfloat16* w = p_pairs + panel * C;
      // Two sets (even and odd pairs of keys): four independent chains for a two-packet chunk.
      for (int j = 0; j < C; j += 4, row += 4 * width) {
        const __m512bh x = broadcast_bf16_pair(w + j), y = broadcast_bf16_pair(w + j + 2);
        a0 = _mm512_dpbf16_ps(a0, x, load_bf16_pairs(row));
        b0 = _mm512_dpbf16_ps(b0, y, load_bf16_pairs(row + 2 * width));
        if (wide) {
          a1 = _mm512_dpbf16_ps(a1, x, load_bf16_pairs(row + 2 * L));
          b1 = _mm512_dpbf16_ps(b1, y, load_bf16_pairs(row + 2 * width + 2 * L));
        }
      }
    }
    _mm512_storeu_ps(out + c0, _mm512_add_ps(a0, b0));
    if (wide) _mm512_storeu_ps(out + c0 + L, _mm512_add_ps(a1, b1));
#else
    for (Index c = 0; c < width; ++c) out[c0 + c] = 0.0f;
    for (Index panel = 0; panel < panels; ++panel) {
      const Eigen::bfloat16* row = v + panel * panel_stride + c0 * C;
      const float* w = p + panel * C;
      for (int j = 0; j < C; j += 2, row += 2 * width)
        for (Index c = 0; c < width; ++c)
          out[c0 + c] +=
              w[j] * bf16_to_float(row[2 * c]) + w[j + 1] * bf16_to_float(row[2 * c + 1]);
    }
#endif
  }
}

}  // namespace fastattn::detail
