#pragma once
/// @file detail/simd/rank1_update.hpp
/// The fused readout + rank-1 update of a linear-attention decoding state.

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

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

}  // namespace fastattn::detail
