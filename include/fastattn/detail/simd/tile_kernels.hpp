#pragma once
/// @file detail/simd/tile_kernels.hpp
/// Register-blocked micro-kernels of the exact attention tile (docs/exact_kernel.md): the score
/// tile S = Q_g K_p^T of one query group against one key panel, and the value tile O_g += P V over
/// a run of key panels. Written on Eigen's packet primitives, so one source gives AVX-512, AVX2,
/// SSE and NEON code, and scalar code under EIGEN_DONT_VECTORIZE.
///
/// Why hand-written: Eigen's GEMM repacks both operands for every product, so a 96 x 256 tile
/// reaches 65-70% of the FMA peak; these kernels read operands packed once per call
/// (detail/exact/packed_kv.hpp) and keep the whole tile in registers.
///
/// Why EIGEN_DONT_INLINE: inlined into the panel loops, GCC 12 at -O3 keeps a copy of the
/// accumulator array on the stack and stores all of it in every step (measured: 32% of the FMA
/// peak instead of 97%); as separate functions the accumulators stay in registers. A call costs
/// a few cycles against the >= 500 cycles of one tile.

#include <algorithm>
#include <limits>

#include <Eigen/Core>

#include "fastattn/detail/simd/exp2.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The online-softmax bookkeeping of one query group within one key block, read and updated by
/// score_tiles (docs/exact_kernel.md, "Softmax"). Each row has a reference m (at most
/// kHeadroom ln 2 below the row's largest logit so far); the weight of a logit x is
/// e^(x - m) = 2^((x - m) log2 e): a subtraction, a multiplication and pexp2. A logit above
/// limit[r] = m + kHeadroom ln 2 stops the fused pass, so the caller can raise the reference
/// first and no weight exceeds about 2^kHeadroom.
///
/// Why (x - m) log2 e: x - m is exact when x is near m (and rounded relative to itself
/// otherwise), so a weight is as accurate as a natural-unit exp(x - m), for logits of any
/// magnitude and without relying on a fused multiply-add. Scaling the queries by log2 e instead
/// rounds every logit by u |x| (1e-3 at logits of 1e4 in float), and x log2 e - m log2 e is off
/// by half an ulp of m log2 e, which at |m| ~ 1e300 in double is itself astronomically large.
template <class T>
struct GroupSoftmax {
  using Packet = typename RegisterTile<T>::Packet;
  static constexpr int R = RegisterTile<T>::kRows;
  /// Weights may exceed 1 by up to this factor (base-2 exponent) before a rescale.
  static constexpr T kHeadroom = T(8);
  Packet sum[R];  // running sums of this block's weights
  T shift[R];     // m; 0 while m = -inf (nothing visible yet); +inf for absent rows
  T limit[R];     // m + kHeadroom ln 2; the lowest finite T while m = -inf

  /// Sets row r's shift and limit from its reference m (-inf: nothing visible yet; +inf: an
  /// absent row, whose weights are all 0 and which never asks for a rescale).
  void set_reference(int r, T m) {
    constexpr T inf = std::numeric_limits<T>::infinity();
    shift[r] = m == -inf ? T(0) : m;  // (-inf - 0) log2 e = -inf: weight 0
    limit[r] = m == -inf ? std::numeric_limits<T>::lowest() : m + kHeadroom * kLn2<T>;
  }
};

/// Adds add_row [C] (one panel's key mask and per-key bias) to every row of the logits acc.
template <class T>
EIGEN_ALWAYS_INLINE void add_key_row(
    typename RegisterTile<T>::Packet (&acc)[RegisterTile<T>::kRows][RegisterTile<T>::kPackets],
    const T* add_row) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  typename Tile::Packet b[Tile::kPackets];
  for (int p = 0; p < Tile::kPackets; ++p)
    b[p] = pload<typename Tile::Packet>(add_row + p * Tile::kLanes);
  for (int r = 0; r < Tile::kRows; ++r)
    for (int p = 0; p < Tile::kPackets; ++p) acc[r][p] = padd(acc[r][p], b[p]);
}

/// Whether any logit of acc exceeds its row's limit (limit is finite or +inf, so no inf - inf).
template <class T>
EIGEN_ALWAYS_INLINE bool exceeds_limit(
    typename RegisterTile<T>::Packet (&acc)[RegisterTile<T>::kRows][RegisterTile<T>::kPackets],
    const GroupSoftmax<T>& sm) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  Packet excess = pset1<Packet>(std::numeric_limits<T>::lowest());
  for (int r = 0; r < Tile::kRows; ++r) {
    Packet m = acc[r][0];
    for (int p = 1; p < Tile::kPackets; ++p) m = pmax(m, acc[r][p]);
    excess = pmax(excess, psub(m, pset1<Packet>(sm.limit[r])));
  }
  return predux_any(pcmp_lt(pset1<Packet>(T(0)), excess));
}

/// Stores the tile acc [R][P packets] to s [R][C].
template <class T>
EIGEN_ALWAYS_INLINE void store_tile(
    typename RegisterTile<T>::Packet (&acc)[RegisterTile<T>::kRows][RegisterTile<T>::kPackets],
    T* s) {
  using Tile = RegisterTile<T>;
  for (int r = 0; r < Tile::kRows; ++r)
    for (int p = 0; p < Tile::kPackets; ++p)
      Eigen::internal::pstore(s + r * Tile::kCols + p * Tile::kLanes, acc[r][p]);
}

/// The weight e^(x - m) of a packet x of row r's logits (see GroupSoftmax), added to its sum.
template <class T>
EIGEN_ALWAYS_INLINE typename RegisterTile<T>::Packet weight_packet(
    const typename RegisterTile<T>::Packet& x, int r, GroupSoftmax<T>& sm) {
  using namespace Eigen::internal;
  using Packet = typename RegisterTile<T>::Packet;
  const Packet e = pexp2<T>(pmul(psub(x, pset1<Packet>(sm.shift[r])), pset1<Packet>(kLog2e<T>)));
  sm.sum[r] = padd(sm.sum[r], e);
  return e;
}

/// The queries of one group as score_tiles reads them: element (k, r) is query r's coordinate k.
/// Packed: qp [depth][R], the group transposed (the exact kernel packs each query block once).
template <class T>
struct PackedGroupQueries {
  const T* qp;
  T operator()(Index k, int r) const { return qp[k * RegisterTile<T>::kRows + r]; }
};

/// Score tiles of one query group against `panels` consecutive key panels: for each panel p,
/// s_p [R, C] = Q kp_p (R = kRows, C = kCols of RegisterTile<T>), logits in natural units. `q`
/// gives the group's scaled queries (PackedGroupQueries or RowPointers); kp the panels, each
/// [depth][C] (keys transposed); s the tiles, each [R][C] row-major. kAddRow: adds add_row
/// [panels * C] (key mask and per-key bias) to every row. kExp: turns the logits into weights
/// (see GroupSoftmax) and adds them to sm.sum; stops at the first panel where a score exceeds its
/// row's limit, leaving that panel's raw scores in s. Returns the number of panels turned into
/// weights (`panels` unless it stopped; 0 without kExp).
///
/// Software-pipelined with kExp: panel p's logits are stored, and turned into weights one packet
/// at a time between the reduction steps of panel p + 1 (the last panel's after the loop). The
/// exponentials then sit among the FMAs of the next product, where the out-of-order core fills
/// the FMA pipes with both; computed right after their own product, they mostly ran alone.
/// Measured for one group against a 256-key block (D = 64, float, AVX-512): the score pass went
/// from 82.6% to 87.8% of the FMA peak (98.6% without the exponentials).
template <class T, bool kAddRow, bool kExp, class Queries>
EIGEN_DONT_INLINE Index score_tiles_of(const Queries& q, const T* kp, Index depth, Index panels,
                                       const T* add_row, T* s, GroupSoftmax<T>& sm) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int R = Tile::kRows, P = Tile::kPackets, L = Tile::kLanes, C = Tile::kCols;
  constexpr int kTilePackets = R * P;
  // Reduction steps between two packets of the previous panel's weights.
  const Index stride = std::max<Index>(1, depth / kTilePackets);
  T* pending = nullptr;  // the previous panel's logits, still to be turned into weights
  auto weights_of = [&sm](T* tile, int packet) {  // packet of the tile [R][C], row by row
    T* x = tile + packet * L;
    pstore(x, weight_packet<T>(pload<Packet>(x), packet / P, sm));
  };
  for (Index panel = 0; panel < panels; ++panel, s += R * C, kp += depth * C) {
    Packet acc[R][P];
    for (int r = 0; r < R; ++r)
      for (int p = 0; p < P; ++p) acc[r][p] = pset1<Packet>(T(0));
    Index k = 0;
    if (kExp && pending) {
      int packet = 0;
      for (; packet < kTilePackets && k + stride <= depth; ++packet, k += stride) {
        tile_steps<T, P, true>(q, kp, C, k, k + stride, acc);
        weights_of(pending, packet);
      }
      for (; packet < kTilePackets; ++packet) weights_of(pending, packet);
    }
    tile_steps<T, P, true>(q, kp, C, k, depth, acc);
    if constexpr (kAddRow) add_key_row<T>(acc, add_row + panel * C);
    store_tile<T>(acc, s);
    if constexpr (kExp) {
      if (exceeds_limit<T>(acc, sm)) return panel;  // rare: the caller raises the reference
      pending = s;
    }
  }
  if (kExp && pending)
    for (int packet = 0; packet < kTilePackets; ++packet) weights_of(pending, packet);
  return kExp ? panels : 0;
}

/// The score tile of one query group against a key panel whose keys are all in its first packet
/// (a cluster's last panel holding at most kLanes keys): s [R, C] gets the logits of the first
/// kLanes keys and -inf after them. Half the work of score_tiles_of on that panel.
template <class T, class Queries>
EIGEN_DONT_INLINE void score_half_panel_of(const Queries& q, const T* kp, Index depth, T* s) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int R = Tile::kRows, P = Tile::kPackets, L = Tile::kLanes, C = Tile::kCols;
  Packet acc[R];
  for (int r = 0; r < R; ++r) acc[r] = pset1<Packet>(T(0));
  for (Index k = 0; k < depth; ++k, kp += C) {
    const Packet b = pload<Packet>(kp);
    for (int r = 0; r < R; ++r) acc[r] = pmadd(pset1<Packet>(q(k, r)), b, acc[r]);
  }
  const Packet masked = pset1<Packet>(-std::numeric_limits<T>::infinity());
  for (int r = 0; r < R; ++r) {
    pstore(s + r * C, acc[r]);
    for (int p = 1; p < P; ++p) pstore(s + r * C + p * L, masked);
  }
}

/// score_tiles_of with the group packed: qp [depth][R] holds the group's scaled queries
/// transposed.
template <class T, bool kAddRow, bool kExp>
Index score_tiles(const T* qp, const T* kp, Index depth, Index panels, const T* add_row, T* s,
                  GroupSoftmax<T>& sm) {
  return score_tiles_of<T, kAddRow, kExp>(PackedGroupQueries<T>{qp}, kp, depth, panels, add_row, s,
                                          sm);
}

/// The output rows of one group as value_tile writes them: row(r) is row r's accumulator.
/// Strided: o + r ldo. Row pointers: row[r] (rows gathered from anywhere).
template <class T>
struct StridedGroupRows {
  T* o;
  Index ldo;
  T* operator()(int r) const { return o + r * ldo; }
};
template <class T>
struct GroupOutputRows {
  T* const* row;
  Index offset;  // the value column chunk
  T* operator()(int r) const { return row[r] + offset; }
};

/// o [rows, W L] (W = kWidth packets of L lanes; o(r) points to row r, packet-aligned) =
/// diag(alpha) o + sum over `panels` key panels of P_panel V_panel, for one query group: p holds
/// the panels' P tiles, each [R][C] (as written by score_tiles and the softmax pass); v the same
/// keys' values for this column chunk, each panel's [C][W L] (row-major, aligned) at v + panel *
/// panel_stride. Only the first `rows` rows of o are written. kHalfLast: the last panel's keys
/// are all in its first kLanes (its other weights are 0), so only those are read.
template <class T, int kWidth, class Out, bool kHalfLast = false>
EIGEN_DONT_INLINE void value_tile_of(const T* p, Index panels, const T* v, Index panel_stride,
                                     const Out& o, const T* alpha, int rows) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int R = Tile::kRows, L = Tile::kLanes, C = Tile::kCols;
  Packet acc[R][kWidth];
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < kWidth; ++w) acc[r][w] = pset1<Packet>(T(0));
  for (Index panel = 0; panel < panels; ++panel, p += R * C) {
    const T* b_ptr = v + panel * panel_stride;
    const int keys = kHalfLast && panel + 1 == panels ? L : C;
    for (int j = 0; j < keys; ++j, b_ptr += kWidth * L) {
      Packet b[kWidth];
      for (int w = 0; w < kWidth; ++w) b[w] = pload<Packet>(b_ptr + w * L);
      for (int r = 0; r < R; ++r) {
        const Packet a = pset1<Packet>(p[r * C + j]);
        for (int w = 0; w < kWidth; ++w) acc[r][w] = pmadd(a, b[w], acc[r][w]);
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    const Packet a = pset1<Packet>(alpha[r]);
    T* const row = o(r);
    for (int w = 0; w < kWidth; ++w) {
      T* dst = row + w * L;
      pstore(dst, pmadd(a, pload<Packet>(dst), acc[r][w]));
    }
  }
}

/// value_tile_of with the rows of o [rows, W L] ldo apart.
template <class T, int kWidth>
void value_tile(const T* p, Index panels, const T* v, Index panel_stride, T* o, Index ldo,
                const T* alpha, int rows) {
  value_tile_of<T, kWidth>(p, panels, v, panel_stride, StridedGroupRows<T>{o, ldo}, alpha, rows);
}

}  // namespace fastattn::detail
