#pragma once
/// @file detail/simd/row_kernels.hpp
/// Micro-kernels for one query row against packed keys and values (detail/exact/packed_kv.hpp):
/// the exact decoding step. One row does 2 flops per loaded element, so these kernels are bound by
/// the bandwidth of the cache level the keys and values live in, not by the FMA units; they keep
/// enough independent accumulators (4) that FMA latency never limits the stream.

#include <Eigen/Core>

#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// s [panels * C] = q kp for one query row: q [depth], kp `panels` key panels of [depth][C]
/// (C = kCols). add_row [panels * C] (or null) is added.
template <class T>
void score_row(const T* q, const T* kp, Index depth, Index panels, const T* add_row, T* s) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int L = Tile::kLanes, C = Tile::kCols;
  static_assert(Tile::kPackets == 2, "one panel is two packets");
  for (Index panel = 0; panel < panels; ++panel, s += C) {
    // Two sets of accumulators (even and odd dimensions): four independent FMA chains.
    Packet a0 = pset1<Packet>(T(0)), a1 = a0, b0 = a0, b1 = a0;
    Index k = 0;
    for (; k + 2 <= depth; k += 2, kp += 2 * C) {
      const Packet x = pset1<Packet>(q[k]), y = pset1<Packet>(q[k + 1]);
      a0 = pmadd(x, pload<Packet>(kp), a0);
      a1 = pmadd(x, pload<Packet>(kp + L), a1);
      b0 = pmadd(y, pload<Packet>(kp + C), b0);
      b1 = pmadd(y, pload<Packet>(kp + C + L), b1);
    }
    if (k < depth) {
      const Packet x = pset1<Packet>(q[k]);
      a0 = pmadd(x, pload<Packet>(kp), a0);
      a1 = pmadd(x, pload<Packet>(kp + L), a1);
      kp += C;
    }
    a0 = padd(a0, b0);
    a1 = padd(a1, b1);
    if (add_row) {
      a0 = padd(a0, pload<Packet>(add_row + panel * C));
      a1 = padd(a1, pload<Packet>(add_row + panel * C + L));
    }
    pstore(s, a0);
    pstore(s + L, a1);
  }
}

/// out [value_stride] = sum over `panels` key panels of p_j v_j: p [panels * C] weights, v the
/// packed values (each panel [value_stride * C], in column chunks of C;
/// detail/exact/packed_kv.hpp).
template <class T>
void value_row(const T* p, Index panels, const T* v, Index value_stride, T* out) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int L = Tile::kLanes, C = Tile::kCols;
  const Index panel_stride = C * value_stride;
  for (Index c0 = 0; c0 < value_stride; c0 += C) {
    const bool wide = c0 + C <= value_stride;  // else the last chunk is one packet
    const Index width = wide ? C : L;
    // Two sets (even and odd keys), so four independent FMA chains for a two-packet chunk.
    Packet a0 = pset1<Packet>(T(0)), a1 = a0, b0 = a0, b1 = a0;
    for (Index panel = 0; panel < panels; ++panel) {
      const T* chunk = v + panel * panel_stride + c0 * C;
      const T* w = p + panel * C;
      for (int j = 0; j < C; j += 2) {
        const Packet x = pset1<Packet>(w[j]), y = pset1<Packet>(w[j + 1]);
        const T* row = chunk + j * width;
        a0 = pmadd(x, pload<Packet>(row), a0);
        b0 = pmadd(y, pload<Packet>(row + width), b0);
        if (wide) {
          a1 = pmadd(x, pload<Packet>(row + L), a1);
          b1 = pmadd(y, pload<Packet>(row + width + L), b1);
        }
      }
    }
    pstore(out + c0, padd(a0, b0));
    if (wide) pstore(out + c0 + L, padd(a1, b1));
  }
}

}  // namespace fastattn::detail
