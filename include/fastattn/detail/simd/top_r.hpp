#pragma once
/// @file detail/simd/top_r.hpp
/// The r largest of the C scores of each query (larger first, ties to the lower index; NaN and
/// -inf rank last), for scores stored transposed, [C, queries]: one query per SIMD lane. Each
/// packet of L queries' scores of cluster j enters L sorted lists of r (score, index) pairs held
/// as r packets, by compares and blends only, so no step needs a horizontal reduction.
///
/// Why: ClusteredEva selects the top r of C cluster scores for every query (r = 4 of C = 64 at
/// N = 4096). Per query, an insertion sort costs a branch misprediction per insertion, and r
/// passes of a vectorized max two horizontal reductions and a store-forwarding stall per pass:
/// ~125 ns per query, a tenth of a ClusteredEva call; across lanes ~6 ns (measured at r = 4,
/// C = 64, AVX-512; docs/spec/eva.md §10.7).

#include <algorithm>
#include <limits>
#include <vector>

#include <Eigen/Core>

#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Scratch storage of select_top_r (grows, reused across calls).
template <class T>
struct TopRWorkspace {
  Vector<T> block;  // [C][L] the last, partial packet of queries, padded with -inf
  Vector<T> index;  // [r][L] the lists' indices
  Vector<T> value;  // [r][L] the lists' values when r > 8 ([r] on the scalar path)
};

namespace top_r_detail {

/// The top r of the scores x[0], x[ld], ..., x[(c - 1) ld] by insertion (the scalar path): `top`
/// [r] receives the indices, -1 where fewer than r scores exceed -inf. `value` [r] is scratch.
template <class T>
void scalar_top_r(const T* x, Index ld, Index c, Index r, T* value, Index* top) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  for (Index t = 0; t < r; ++t) {
    value[t] = neg_inf;
    top[t] = -1;
  }
  for (Index j = 0; j < c; ++j) {
    const T v = x[j * ld];
    if (!(v > value[r - 1])) continue;  // also NaN and -inf
    Index t = r - 1;
    for (; t > 0 && v > value[t - 1]; --t) {  // strict: an equal earlier entry stays first
      value[t] = value[t - 1];
      top[t] = top[t - 1];
    }
    value[t] = v;
    top[t] = j;
  }
}

/// Fills the -1 slots of top [r] with the lowest indices not taken (the entries ranking -inf).
inline void fill_missing(Index r, Index* top) {
  Index t = 0;
  while (t < r && top[t] >= 0) ++t;
  for (Index c = 0; t < r; ++c) {
    bool taken = false;
    for (Index u = 0; u < t; ++u) taken = taken || top[u] == c;
    if (!taken) top[t++] = c;
  }
}

/// A new column's entries v (index w, larger than every index in the lists) into the sorted
/// lists value/index [r] (one list per lane, larger values first; kR > 0: r = kR packets held in
/// registers, kR = 0: r packets in memory at value_mem and index_out). In a lane where v beats slot
/// t (strictly: an equal earlier entry stays first; NaN and -inf beat nothing), it beats every
/// later slot too, so slot t takes v if it does not beat slot t - 1, else slot t - 1's old
/// entry. Every comparison is against the old lists: no dependency from slot to slot.
/// block [c][L] (row stride ld): the scores of L queries.
template <class T, int kR>
EIGEN_DONT_INLINE void sort_lanes(const T* block, Index ld, Index c, Index r, T* value_mem,
                                  T* index_out) {
  using namespace Eigen::internal;
  using Packet = typename packet_traits<T>::type;
  constexpr Index L = packet_traits<T>::size;
  if constexpr (kR > 0) {
    // Small r: the even and the odd clusters fill two lists per lane (two independent
    // dependency chains), merged at the end.
    constexpr int kHalves = kR <= 4 ? 2 : 1;
    Packet value[kHalves][kR], index[kHalves][kR];
    for (int h = 0; h < kHalves; ++h)
      for (int t = 0; t < kR; ++t) {
        value[h][t] = pset1<Packet>(-std::numeric_limits<T>::infinity());
        index[h][t] = pset1<Packet>(T(-1));
      }
    // Entry (v, w) into list h; `tie` orders equal values by index (needed only when merging:
    // a new cluster's index is larger than every index in its list).
    auto insert = [&](int h, const Packet& v, const Packet& w, bool tie) {
      auto beats_slot = [&](int t) {
        const Packet lower = pcmp_lt(value[h][t], v);
        return tie ? por(lower, pand(pcmp_eq(value[h][t], v), pcmp_lt(w, index[h][t]))) : lower;
      };
      Packet beats = beats_slot(kR - 1);
      for (int t = kR - 1; t > 0; --t) {
        const Packet beats_above = beats_slot(t - 1);
        value[h][t] = pselect(beats, pselect(beats_above, value[h][t - 1], v), value[h][t]);
        index[h][t] = pselect(beats, pselect(beats_above, index[h][t - 1], w), index[h][t]);
        beats = beats_above;
      }
      value[h][0] = pselect(beats, v, value[h][0]);
      index[h][0] = pselect(beats, w, index[h][0]);
    };
    Index j = 0;
    for (; j + kHalves <= c; j += kHalves)
      for (int h = 0; h < kHalves; ++h)
        insert(h, ploadu<Packet>(block + (j + h) * ld), pset1<Packet>(static_cast<T>(j + h)),
               false);
    for (; j < c; ++j)
      insert(0, ploadu<Packet>(block + j * ld), pset1<Packet>(static_cast<T>(j)), false);
    if constexpr (kHalves == 2)
      for (int t = 0; t < kR; ++t) insert(0, value[1][t], index[1][t], true);
    for (int t = 0; t < kR; ++t) pstore(index_out + t * L, index[0][t]);
  } else {
    for (Index t = 0; t < r; ++t) {
      pstore(value_mem + t * L, pset1<Packet>(-std::numeric_limits<T>::infinity()));
      pstore(index_out + t * L, pset1<Packet>(T(-1)));
    }
    for (Index j = 0; j < c; ++j) {
      const Packet v = ploadu<Packet>(block + j * ld), w = pset1<Packet>(static_cast<T>(j));
      Packet beats = pcmp_lt(pload<Packet>(value_mem + (r - 1) * L), v);
      for (Index t = r - 1; t >= 0; --t) {
        const Packet above_v = t > 0 ? pload<Packet>(value_mem + (t - 1) * L) : v;
        const Packet above_w = t > 0 ? pload<Packet>(index_out + (t - 1) * L) : w;
        const Packet beats_above = t > 0 ? pcmp_lt(above_v, v) : pset1<Packet>(T(0));
        const Packet old_v = pload<Packet>(value_mem + t * L);
        const Packet old_w = pload<Packet>(index_out + t * L);
        pstore(value_mem + t * L, pselect(beats, pselect(beats_above, above_v, v), old_v));
        pstore(index_out + t * L, pselect(beats, pselect(beats_above, above_w, w), old_w));
        beats = beats_above;
      }
    }
  }
}

}  // namespace top_r_detail

/// x [c, rows] (row stride ldx; entry (j, i) is the score of cluster j for query i), 1 <= r <= c
/// -> top [rows * r]: query i's r largest scores' indices at top[i r, i r + r), larger first,
/// ties to the lower index; scores that are -inf or NaN rank last, in index order.
template <class T>
void select_top_r(const T* x, Index ldx, Index rows, Index c, Index r, Index* top,
                  TopRWorkspace<T>& ws) {
  using namespace Eigen::internal;
  constexpr Index L = packet_traits<T>::size;
  // Indices are held in T: exact below 2^24 (float) / 2^53 (double).
  constexpr Index kExactIndex = Index(1) << std::numeric_limits<T>::digits;
  constexpr Index kRegisterLists = 8;  // r <= 8: the lists stay in registers
  Index i0 = 0;
  if constexpr (L > 1) {
    if (c <= kExactIndex) {
      if (ws.index.size() < r * L) ws.index.resize(r * L);
      if (r > kRegisterLists && ws.value.size() < r * L) ws.value.resize(r * L);
      T* const index = ws.index.data();
      for (; i0 < rows; i0 += L) {
        const Index lanes = std::min(L, rows - i0);
        const T* block = x + i0;
        Index ld = ldx;
        if (lanes < L) {  // the last queries: padded with -inf (those lanes are not read)
          if (ws.block.size() < c * L) ws.block.resize(c * L);
          ws.block.head(c * L).setConstant(-std::numeric_limits<T>::infinity());
          for (Index j = 0; j < c; ++j)
            for (Index l = 0; l < lanes; ++l) ws.block[j * L + l] = x[j * ldx + i0 + l];
          block = ws.block.data();
          ld = L;
        }
        switch (r) {
#define FASTATTN_TOP_R_CASE(k)                                       \
  case k:                                                            \
    top_r_detail::sort_lanes<T, k>(block, ld, c, r, nullptr, index); \
    break;
          FASTATTN_TOP_R_CASE(1)
          FASTATTN_TOP_R_CASE(2)
          FASTATTN_TOP_R_CASE(3)
          FASTATTN_TOP_R_CASE(4)
          FASTATTN_TOP_R_CASE(5)
          FASTATTN_TOP_R_CASE(6)
          FASTATTN_TOP_R_CASE(7)
          FASTATTN_TOP_R_CASE(8)
#undef FASTATTN_TOP_R_CASE
          default:
            top_r_detail::sort_lanes<T, 0>(block, ld, c, r, ws.value.data(), index);
        }
        for (Index l = 0; l < lanes; ++l) {
          Index* out = top + (i0 + l) * r;
          for (Index t = 0; t < r; ++t) out[t] = static_cast<Index>(index[t * L + l]);
          if (out[r - 1] < 0) top_r_detail::fill_missing(r, out);
        }
      }
      return;
    }
  }
  if (ws.value.size() < r) ws.value.resize(r);
  for (Index i = i0; i < rows; ++i) {
    top_r_detail::scalar_top_r(x + i, ldx, c, r, ws.value.data(), top + i * r);
    if (top[i * r + r - 1] < 0) top_r_detail::fill_missing(r, top + i * r);
  }
}

}  // namespace fastattn::detail
