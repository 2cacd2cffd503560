#pragma once
/// @file detail/simd.hpp
/// Fused element-wise functors that Eigen has no single expression for, written on Eigen's packet
/// abstraction so they vectorize for whatever ISA the user compiles for (SSE, AVX2, AVX-512, NEON)
/// and fall back to scalar code under EIGEN_DONT_VECTORIZE. Use them with `array.unaryExpr(f)`.

#include <algorithm>
#include <cmath>
#include <limits>

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// x -> exp(x - shift), and exactly 0 for x = -inf.
/// Why not `(x - shift).exp()`: Eigen's vectorized exp clamps its argument (to about -88.4 for
/// float, -709 for double), so exp(-inf) comes out as a denormal, not 0, and a masked key would
/// keep a tiny weight (and let an Inf in its value through).
template <class T>
struct ShiftedExp {
  T shift;
  T operator()(const T& x) const {
    return x == -std::numeric_limits<T>::infinity() ? T(0) : std::exp(x - shift);
  }
  template <class Packet>
  Packet packetOp(const Packet& x) const {
    using namespace Eigen::internal;
    const Packet visible = pcmp_lt(pset1<Packet>(-std::numeric_limits<T>::infinity()), x);
    return pand(visible, pexp(psub(x, pset1<Packet>(shift))));
  }
};

/// The number of columns rounded up to whole packets of T (for row strides of small states).
template <class T>
constexpr Index packet_padded(Index cols) {
#ifndef EIGEN_DONT_VECTORIZE
  constexpr Index lanes = Eigen::internal::packet_traits<T>::size;
#else
  constexpr Index lanes = 1;
#endif
  return (cols + lanes - 1) / lanes * lanes;
}

namespace simd_detail {
/// rank1_update_with_readout on NP packets of columns starting at c0 (NP fixed at compile time, so
/// the accumulators stay in registers).
template <int NP, class T, class Packet>
void rank1_block(T* s, Index rows, Index stride, Index c0, const T* q, const T* k, const T* v, T a,
                 T w, T* acc) {
  using namespace Eigen::internal;
  constexpr Index lanes = packet_traits<T>::size;
  Packet sum[NP], pv[NP];
  for (int p = 0; p < NP; ++p) {
    sum[p] = pset1<Packet>(T(0));
    pv[p] = ploadu<Packet>(v + c0 + p * lanes);
  }
  const Packet pa = pset1<Packet>(a);
  for (Index i = 0; i < rows; ++i) {  // rows in order: S is streamed sequentially
    T* row = s + i * stride + c0;
    const Packet pq = pset1<Packet>(q[i]), pb = pset1<Packet>(w * k[i]);
    for (int p = 0; p < NP; ++p) {
      const Packet old = ploadu<Packet>(row + p * lanes);
      sum[p] = pmadd(pq, old, sum[p]);
      pstoreu(row + p * lanes, pmadd(pa, old, pmul(pb, pv[p])));
    }
  }
  for (int p = 0; p < NP; ++p) pstoreu(acc + c0 + p * lanes, sum[p]);
}
}  // namespace simd_detail

/// The decoding update of a linear-attention state S [rows, cols] (row-major, row stride
/// `stride`), in one pass over S: acc = q^T S_old, then S <- a S_old + w k v^T (q, k [rows],
/// v [cols], acc [cols]). Why fused: S (M x (Dv + 1), 66 KB at M = 256, Dv = 64) lives in L2 and a
/// step is bound by streaming it; one pass for both the readout and the update is the minimum.
/// Pad the stride to whole packets (packet_padded) so no column needs the scalar path.
template <class T>
void rank1_update_with_readout(T* s, Index rows, Index cols, Index stride, const T* q, const T* k,
                               const T* v, T a, T w, T* acc) {
  Index c0 = 0;
#ifndef EIGEN_DONT_VECTORIZE
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index lanes =
      Eigen::internal::packet_traits<T>::size;  // (not unpacket_traits: GCC warns)
  if constexpr (lanes > 1) {
    for (; c0 + 4 * lanes <= cols; c0 += 4 * lanes)
      simd_detail::rank1_block<4, T, Packet>(s, rows, stride, c0, q, k, v, a, w, acc);
    for (; c0 + lanes <= cols; c0 += lanes)
      simd_detail::rank1_block<1, T, Packet>(s, rows, stride, c0, q, k, v, a, w, acc);
  }
#endif
  for (Index c = c0; c < cols; ++c) {
    T sum = 0;
    for (Index i = 0; i < rows; ++i) {
      T& x = s[i * stride + c];
      sum += q[i] * x;
      x = a * x + w * k[i] * v[c];
    }
    acc[c] = sum;
  }
}

/// out [n, m] = x [n, d] * b [d, m] for a few rows (n <= 4), all row-major with the given row
/// strides: one pass over b with the n output rows of a column block held in registers. Why:
/// Eigen's GEMM has fixed packing costs that dominate for one or two rows, and its GEMV would read
/// b once per row; decoding computes a query and a key row from the same b every step.
template <class T>
void small_rows_product(const T* x, Index x_stride, Index n, const T* b, Index d, Index m, T* out,
                        Index out_stride) {
  Index vectorized = 0;
#ifndef EIGEN_DONT_VECTORIZE
  constexpr Index kMaxRows = 4;
  eigen_assert(n <= kMaxRows);
  using Packet = typename Eigen::internal::packet_traits<T>::type;
  constexpr Index lanes =
      Eigen::internal::packet_traits<T>::size;  // (not unpacket_traits: GCC warns)
  if constexpr (lanes > 1) {
    using namespace Eigen::internal;
    constexpr Index kBlock = 4;  // packets per column block (n * kBlock accumulators)
    vectorized = m / lanes * lanes;
    for (Index c0 = 0; c0 < vectorized; c0 += kBlock * lanes) {
      const Index np = std::min(kBlock, (vectorized - c0) / lanes);
      Packet acc[kMaxRows][kBlock];
      for (Index r = 0; r < n; ++r)
        for (Index p = 0; p < np; ++p) acc[r][p] = pset1<Packet>(T(0));
      for (Index j = 0; j < d; ++j) {
        const T* brow = b + j * m + c0;
        for (Index p = 0; p < np; ++p) {
          const Packet bp = ploadu<Packet>(brow + p * lanes);
          for (Index r = 0; r < n; ++r)
            acc[r][p] = pmadd(pset1<Packet>(x[r * x_stride + j]), bp, acc[r][p]);
        }
      }
      for (Index r = 0; r < n; ++r)
        for (Index p = 0; p < np; ++p) pstoreu(out + r * out_stride + c0 + p * lanes, acc[r][p]);
    }
  }
#endif
  for (Index r = 0; r < n; ++r)
    for (Index c = vectorized; c < m; ++c) {
      T sum = 0;
      for (Index j = 0; j < d; ++j) sum += x[r * x_stride + j] * b[j * m + c];
      out[r * out_stride + c] = sum;
    }
}

}  // namespace fastattn::detail

namespace Eigen::internal {
template <class T>
struct functor_traits<fastattn::detail::ShiftedExp<T>> {
  enum {
    Cost = functor_traits<scalar_exp_op<T>>::Cost + 3 * NumTraits<T>::AddCost,
    PacketAccess = packet_traits<T>::HasExp && packet_traits<T>::HasCmp
  };
};
}  // namespace Eigen::internal
