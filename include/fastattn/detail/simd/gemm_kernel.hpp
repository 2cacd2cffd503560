#pragma once
/// @file detail/simd/gemm_kernel.hpp
/// Register-blocked products of the linear-attention core (docs/linear_kernel.md): the feature
/// GEMM X W^T, the key sums phi(K)^T [V, 1] and the read-out phi(Q) S. Written on Eigen's packet
/// primitives like the exact tile kernels (detail/simd/tile_kernels.hpp), with the same register
/// tile (RegisterTile<T>): kRows rows x kWidth packets of accumulators.
///
/// Why hand-written: these products are thin (depth D = 64 or a chunk of keys, M = 256
/// features), where Eigen's GEMM spends a large share of its time packing both operands for each
/// call. Here the operands are read in place: the right-hand side B is row-major (a key chunk,
/// the projection, the key sums), so a row of one B panel is kWidth unaligned loads and the
/// panel [depth, kWidth L] stays in L1 while every row group of A passes over it; A is read by
/// broadcasts, from row pointers (row-major A) or from rows of its transpose.
///
/// Columns beyond the last whole packet (e.g. the ones column of [V, 1]) go to Eigen, which turns
/// a single column into a GEMV; so do the rows of a transposed A beyond its last whole group.

#include <algorithm>
#include <type_traits>

#include <Eigen/Core>

#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The left operand A of the kernels below is read through an accessor: A [rows, depth] row-major
/// through RowPointers (register_tile.hpp), one pointer per row of the group; or this one.
/// A given as its transpose At [depth, rows] row-major (leading dimension ld), from the group's
/// first row on: element (k, r) is at[k ld + r]. The group must be whole.
template <class T>
struct GemmTransposedA {
  const T* at;
  Index ld;
  T operator()(Index k, int r) const { return at[k * ld + r]; }
};

/// c [rows, kWidth L] (+)= A [rows, depth] b [depth, kWidth L] for one row group (rows <=
/// kRows) and one column panel; b and c row-major with leading dimensions ldb and ldc, any
/// alignment. kAccumulate: add to c, else overwrite. EIGEN_DONT_INLINE for the reason given in
/// tile_kernels.hpp: inlined into the drivers, GCC 12 spills the accumulators.
template <class T, int kWidth, bool kAccumulate, class A>
EIGEN_DONT_INLINE void gemm_micro_tile(const A& a, Index depth, const T* b, Index ldb, T* c,
                                       Index ldc, int rows) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int R = Tile::kRows, L = Tile::kLanes;
  Packet acc[R][kWidth];
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < kWidth; ++w) acc[r][w] = pset1<Packet>(T(0));
  tile_steps<T, kWidth, false>(a, b, ldb, 0, depth, acc);
  for (int r = 0; r < rows; ++r)
    for (int w = 0; w < kWidth; ++w) {
      T* dst = c + r * ldc + w * L;
      pstoreu(dst, kAccumulate ? padd(ploadu<Packet>(dst), acc[r][w]) : acc[r][w]);
    }
}

/// The columns [0, vec) of c (+)= A b handled by whole packets, vec = the largest multiple of L
/// not above cols; `group(r0)` gives the accessor of the row group starting at row r0 and
/// `rows` the number of rows the kernels write (the caller clamps or excludes partial groups).
template <class T, bool kAccumulate, class GroupOf>
Index gemm_packet_columns(const GroupOf& group, Index rows, Index depth, const T* b, Index ldb,
                          T* c, Index ldc, Index cols) {
  using Tile = RegisterTile<T>;
  constexpr int R = Tile::kRows, L = Tile::kLanes;
  const Index vec = cols / L * L;
  Index c0 = 0;
  auto panel = [&](auto width) {  // every row group over the panel [depth, width L] at c0
    constexpr int W = decltype(width)::value;
    for (Index r0 = 0; r0 < rows; r0 += R)
      gemm_micro_tile<T, W, kAccumulate>(group(r0), depth, b + c0, ldb, c + r0 * ldc + c0, ldc,
                                         static_cast<int>(std::min<Index>(R, rows - r0)));
    c0 += W * L;
  };
  while (c0 + 2 * L <= vec) panel(std::integral_constant<int, 2>{});
  if (c0 < vec) panel(std::integral_constant<int, 1>{});
  return vec;
}

/// A product with no rows, columns or depth: c (+)= 0. True when it was one, so the drivers do no
/// pointer arithmetic on empty operands (whose data may be null).
template <bool kAccumulate, class C>
bool empty_product(Index rows, Index depth, Index cols, C& c) {
  if (rows > 0 && depth > 0 && cols > 0) return false;
  if constexpr (!kAccumulate) c.setZero();
  return true;
}

/// dst (+)= product by Eigen: the edges the kernels leave to it.
template <bool kAccumulate, class Dst, class Product>
void eigen_edge(Dst dst, const Product& product) {
  if constexpr (kAccumulate)
    dst.noalias() += product;
  else
    dst.noalias() = product;
}

/// c (+)= a b, all row-major (c must not alias a or b). Rows of a partial last group are
/// clamped to the last row (computed twice, written once).
template <class T, bool kAccumulate>
void gemm_rows(const ConstMatRef<T>& a, const ConstMatRef<T>& b, MatRef<T> c) {
  constexpr int R = RegisterTile<T>::kRows;
  const Index rows = a.rows(), depth = a.cols(), cols = b.cols();
  eigen_assert(b.rows() == depth && c.rows() == rows && c.cols() == cols);
  if (empty_product<kAccumulate>(rows, depth, cols, c)) return;
  const T* row[R];
  auto group = [&](Index r0) {
    for (int r = 0; r < R; ++r)
      row[r] = a.data() + std::min<Index>(r0 + r, rows - 1) * a.outerStride();
    return RowPointers<T>{row};
  };
  const Index vec = gemm_packet_columns<T, kAccumulate>(
      group, rows, depth, b.data(), b.outerStride(), c.data(), c.outerStride(), cols);
  if (vec < cols) eigen_edge<kAccumulate>(c.rightCols(cols - vec), a * b.rightCols(cols - vec));
}

/// c (+)= at^T b, all row-major (c must not alias at or b): the key sums phi(K)^T [V, 1].
template <class T, bool kAccumulate>
void gemm_transposed(const ConstMatRef<T>& at, const ConstMatRef<T>& b, MatRef<T> c) {
  constexpr int R = RegisterTile<T>::kRows;
  const Index depth = at.rows(), rows = at.cols(), cols = b.cols();
  eigen_assert(b.rows() == depth && c.rows() == rows && c.cols() == cols);
  if (empty_product<kAccumulate>(rows, depth, cols, c)) return;
  const Index whole = rows / R * R;  // rows in whole groups
  auto group = [&](Index r0) { return GemmTransposedA<T>{at.data() + r0, at.outerStride()}; };
  const Index vec = gemm_packet_columns<T, kAccumulate>(
      group, whole, depth, b.data(), b.outerStride(), c.data(), c.outerStride(), cols);
  if (vec < cols)
    eigen_edge<kAccumulate>(c.block(0, vec, whole, cols - vec),
                            at.leftCols(whole).transpose() * b.rightCols(cols - vec));
  if (whole < rows)
    eigen_edge<kAccumulate>(c.bottomRows(rows - whole), at.rightCols(rows - whole).transpose() * b);
}

}  // namespace fastattn::detail
