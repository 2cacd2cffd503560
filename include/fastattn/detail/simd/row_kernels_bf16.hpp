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

#if FASTATTN_BF16_DOT
/// The weights lo [16] and hi [16] rounded to bfloat16 (to nearest even) into dst [32], in order.
inline void store_bf16_weights(Eigen::bfloat16* dst, __m512 lo, __m512 hi) {
  _mm512_storeu_si512(dst, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
}

/// out [W L] = sum over `panels` pair panels of p_j v_j for one column chunk of W packets: p
/// [panels * C] the weights in bfloat16, chunk the chunk of panel 0 ([C/2][W L][2]), panels
/// panel_stride apart. Two sets of accumulators (even and odd pairs of keys): 2 W chains.
template <int kWidth>
void value_chunk_bf16(const Eigen::bfloat16* p, Index panels, const Eigen::bfloat16* chunk,
                      Index panel_stride, float* out) {
  constexpr int L = RegisterTile<float>::kLanes, C = RegisterTile<float>::kCols;
  __m512 a[kWidth], b[kWidth];
  for (int w = 0; w < kWidth; ++w) a[w] = b[w] = _mm512_setzero_ps();
  for (Index panel = 0; panel < panels; ++panel, p += C) {
    const Eigen::bfloat16* row = chunk + panel * panel_stride;
    for (int j = 0; j < C; j += 4, row += 4 * kWidth * L) {
      const __m512bh x = broadcast_bf16_pair(p + j), y = broadcast_bf16_pair(p + j + 2);
      for (int w = 0; w < kWidth; ++w) {
        a[w] = _mm512_dpbf16_ps(a[w], x, load_bf16_pairs(row + 2 * w * L));
        b[w] = _mm512_dpbf16_ps(b[w], y, load_bf16_pairs(row + 2 * kWidth * L + 2 * w * L));
      }
    }
  }
  for (int w = 0; w < kWidth; ++w) _mm512_storeu_ps(out + w * L, _mm512_add_ps(a[w], b[w]));
}
#endif

/// out [value_stride] = sum over `panels` pair panels of p_j v_j, v the cache's values
/// (detail/exact/packed_kv_bf16.hpp). With FASTATTN_BF16_DOT the weights are read from p_pairs
/// [panels * C] (rounded to bfloat16 by store_bf16_weights) and multiplied with vdpbf16ps, as in
/// the forward kernel; otherwise from p [panels * C] in float, the values widened to float.
inline void value_row_bf16(const float* p, const Eigen::bfloat16* p_pairs, Index panels,
                           const Eigen::bfloat16* v, Index value_stride, float* out) {
  constexpr int C = RegisterTile<float>::kCols;
  const Index panel_stride = C * value_stride;
#if FASTATTN_BF16_DOT
  (void)p;
#else
  (void)p_pairs;
#endif
  for (Index c0 = 0; c0 < value_stride; c0 += C) {
    const bool wide = c0 + C <= value_stride;  // else the last chunk is one packet
#if FASTATTN_BF16_DOT
    const Eigen::bfloat16* chunk = v + c0 * C;
    if (wide)
      value_chunk_bf16<2>(p_pairs, panels, chunk, panel_stride, out + c0);
    else
      value_chunk_bf16<1>(p_pairs, panels, chunk, panel_stride, out + c0);
#else
    const Index width = wide ? C : RegisterTile<float>::kLanes;
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
