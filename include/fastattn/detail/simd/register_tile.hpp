#pragma once
/// @file detail/simd/register_tile.hpp
/// The register tile of the attention micro-kernels for element type T, chosen at compile time from
/// the ISA the user compiles for (no runtime dispatch).

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Shape of one register tile: kRows query rows x kCols keys (or value columns), held as kRows x
/// kPackets packets of kLanes elements.
///
/// Why these numbers: a tile needs kRows * kPackets accumulators, kPackets registers for the
/// streamed operand and one for a broadcast, and at least 2 (FMA pipes) x 4 (FMA latency)
/// independent accumulators to keep both FMA pipes busy.
///  - 32 vector registers (AVX-512, AArch64 NEON): 8 x 2 packets = 16 accumulators + 2 + 1.
///    Each step does 2 loads and 8 broadcasts for 16 FMAs, so the loads fit beside the FMAs.
///  - 16 registers (SSE, AVX2): 6 x 2 = 12 accumulators + 2 + 1 = 15 (the BLIS sgemm shape).
///  - scalar builds (EIGEN_DONT_VECTORIZE, 8 registers assumed): 4 x 2.
/// The same shape serves float and double; the panel width kCols follows the packet width
/// (AVX-512: 32 floats or 16 doubles).
template <class T>
struct RegisterTile {
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  /// Elements per packet (1 under EIGEN_DONT_VECTORIZE).
  static constexpr int kLanes = Eigen::internal::packet_traits<T>::size;
  /// Packets per tile row.
  static constexpr int kPackets = 2;
  /// Query rows per tile.
  static constexpr int kRows = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 32   ? 8
                               : EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS >= 16 ? 6
                                                                              : 4;
  /// Keys (or value columns) per tile: the width of one key panel.
  static constexpr int kCols = kPackets * kLanes;
};

/// The left operand of a register tile given by one pointer per row of the group: element (k, r)
/// is row[r][k] (rows gathered from anywhere, not copied).
template <class T>
struct RowPointers {
  const T* const* row;
  T operator()(Index k, int r) const { return row[r][k]; }
};

/// Reduction steps [k_begin, k_end) of one register tile of kRows x W packets: acc[r][w] +=
/// a(k, r) b[k ldb + w kLanes]. `a` is read by broadcasts through an accessor (element (k, r):
/// RowPointers, or a packed or transposed layout); b is row-major with leading dimension ldb,
/// its rows packet-aligned when kAligned. The inner loop of the score tiles (tile_kernels.hpp),
/// the linear core's GEMM (gemm_kernel.hpp) and the fused trig features (trig_feature_kernel.hpp).
template <class T, int W, bool kAligned, class A>
EIGEN_ALWAYS_INLINE void tile_steps(
    const A& a, const T* b, Index ldb, Index k_begin, Index k_end,
    typename RegisterTile<T>::Packet (&acc)[RegisterTile<T>::kRows][W]) {
  using namespace Eigen::internal;
  using Packet = typename RegisterTile<T>::Packet;
  constexpr int R = RegisterTile<T>::kRows, L = RegisterTile<T>::kLanes;
  for (Index k = k_begin; k < k_end; ++k) {
    Packet bk[W];
    for (int w = 0; w < W; ++w)
      bk[w] = kAligned ? pload<Packet>(b + k * ldb + w * L) : ploadu<Packet>(b + k * ldb + w * L);
    for (int r = 0; r < R; ++r) {
      const Packet ar = pset1<Packet>(a(k, r));
      for (int w = 0; w < W; ++w) acc[r][w] = pmadd(ar, bk[w], acc[r][w]);
    }
  }
}

}  // namespace fastattn::detail
