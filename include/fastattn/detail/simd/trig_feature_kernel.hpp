#pragma once
/// @file detail/simd/trig_feature_kernel.hpp
/// The trigonometric feature map (RFA's) with its product and its sine/cosine pass fused, one
/// group of rows at a time (docs/linear_kernel.md §7): u = x W in register tiles, panel by panel,
/// and the cosines and sines of one panel's tile computed a packet at a time between the
/// reduction steps of the next panel's product.
///
/// Why: computed after the product, the sincos pass ran alone and cost about a third of the
/// product's time. Its range reduction and quadrant logic are mostly additions, integer and
/// logic operations, which use other pipes than the product's FMAs, so between the FMAs the
/// out-of-order core runs them nearly for free (the exact kernel pipelines its exponentials the
/// same way: tile_kernels.hpp, score_tiles_of).

#include <algorithm>

#include <Eigen/Core>

#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/sincos.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// For the kRows rows of one group: out_row[r][j] = cos(f_r u_rj) and out_row[r][m + j] =
/// sin(f_r u_rj) for j in [0, m), where u_r = x_row[r] W, W [depth, m] row-major with leading
/// dimension ldw, and f_r = factor[r]. m must be a multiple of kCols. Only the first `rows` rows
/// are written; the pointers of the others may repeat a row (they are computed, not written).
/// kKnownInRange: the caller has proved |f_r u_rj| <= max_reduced for every r and j, so the
/// sincos skips its per-packet range test (sincos_packet).
/// EIGEN_DONT_INLINE for the reason given in tile_kernels.hpp (the accumulators stay in
/// registers).
template <bool kKnownInRange, class T>
EIGEN_DONT_INLINE void trig_feature_group(const T* const* x_row, const T* w, Index ldw, Index depth,
                                          Index m, const T* factor, T* const* out_row, int rows) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int R = Tile::kRows, P = Tile::kPackets, L = Tile::kLanes, C = Tile::kCols;
  constexpr int kTilePackets = R * P;
  eigen_assert(m % C == 0);
  const RowPointers<T> rows_of_x{x_row};
  EIGEN_ALIGN_MAX T tile[R * C];  // the previous panel's u, [R][C]: its sincos is pending
  Index pending = -1;             // that panel's index, or -1
  auto sincos_of_pending = [&](int packet) {
    const int r = packet / P;
    if (r >= rows) return;
    const Index j = pending * C + (packet % P) * L;
    sincos_packet<kKnownInRange>(tile + packet * L, out_row[r] + j, out_row[r] + m + j, factor[r]);
  };
  // Reduction steps between two packets of the pending panel.
  const Index stride = std::max<Index>(1, depth / kTilePackets);
  for (Index panel = 0; panel * C < m; ++panel) {
    const T* wp = w + panel * C;
    Packet acc[R][P];
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < P; ++p) acc[r][p] = pset1<Packet>(T(0));
    Index k = 0;
    if (pending >= 0) {
      int packet = 0;
      for (; packet < kTilePackets && k + stride <= depth; ++packet, k += stride) {
        tile_steps<T, P, false>(rows_of_x, wp, ldw, k, k + stride, acc);
        sincos_of_pending(packet);
      }
      for (; packet < kTilePackets; ++packet) sincos_of_pending(packet);
    }
    tile_steps<T, P, false>(rows_of_x, wp, ldw, k, depth, acc);
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < P; ++p) pstore(tile + r * C + p * L, acc[r][p]);
    pending = panel;
  }
  if (pending >= 0)
    for (int packet = 0; packet < kTilePackets; ++packet) sincos_of_pending(packet);
}

}  // namespace fastattn::detail
