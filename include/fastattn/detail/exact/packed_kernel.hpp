#pragma once
/// @file detail/exact/packed_kernel.hpp
/// The fast path of exact attention: blocked online softmax (docs/spec/exact.md §7) over keys and
/// values packed once per call, with register-blocked micro-kernels for both products
/// (docs/exact_kernel.md). Never materializes Nq x Nk.
///
/// Loop nest, per call: pack K, V (detail/exact/packed_kv.hpp; each key block just before the
/// kernel first reads it, by exact_packed's LazyKvPacking); for each query block of Br rows
/// (queries scaled by s and packed per group of R rows; output accumulator [Br, Dv]): for each
/// key block of Bc keys: for each group of R rows: score tiles for the key panels the group can
/// see, turned into weights e^(x - reference) while still in registers; masks and biases
/// where a panel needs them; then the value tiles. Causal attention computes only the panels a
/// group can see and masks only the panels on its diagonal.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <type_traits>

#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/exact/packed_kv.hpp"
#include "fastattn/detail/exact/packed_kv_bf16.hpp"
#include "fastattn/detail/simd/exp2.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/detail/simd/tile_kernels.hpp"
#include "fastattn/detail/simd/tile_kernels_bf16.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Tile sizes of the packed kernel (docs/exact_kernel.md, "Blocking").
///  - block_q (Br): query rows per block. The block's packed queries and output accumulator
///    (Br (D + Dv) elements, 96 KiB for 192 rows at D = Dv = 64 in float) stay in L2 across all
///    key blocks, and each key block is read from L3 into L2 once per Br rows, i.e. Br / 2 flops
///    per byte of L3 traffic (96 at Br = 192).
///  - block_k (Bc): keys per block, rounded up to whole key panels; 0 = default_key_block().
struct PackedBlocking {
  Index block_q = 192;
  Index block_k = 0;
};

/// The default key block Bc of the packed kernel: as many keys as let the block's packed keys
/// and values (Bc (D + Dv) elements of S) fill half of L2, where every group of the query block
/// reads them, and one group's weight tile (R x Bc elements of T, plus their bfloat16 copy with
/// S = bfloat16) at most two thirds of L1, where the value tiles read it back; at least 256 and
/// at most 4096 (a bound on the workspace if a program sets Eigen's cache sizes very large);
/// whole panels. The cache sizes are Eigen's (Eigen::l1CacheSize, l2CacheSize: CPUID on x86,
/// Eigen's defaults of 32 KiB and 256 KiB when it cannot tell, which give Bc = 256 at D = 64).
/// Why: larger blocks amortize the per-block work of a group (starting and closing its online
/// softmax, the rescale of its accumulator, the last panel's exponentials, which the pipelined
/// score kernel cannot overlap) until the block no longer stays in L2 or the tile in L1.
/// Measured (Zen 5, 48 KiB L1, 1 MiB L2; docs/exact_kernel.md §2): float D = 64 gets Bc = 1024,
/// 3% faster than 256; D = 128 and double D = 64 get 512, 1.4% faster.
template <class T, class S = T>
Index default_key_block(Index dim, Index value_stride) {
  constexpr Index R = RegisterTile<T>::kRows, C = RegisterTile<T>::kCols, kMinimum = 256,
                  kMaximum = 4096;
  constexpr Index tile_bytes_per_key =
      R * Index(sizeof(T) + (std::is_same_v<S, T> ? 0 : sizeof(S)));
  const Index by_l2 = Index(Eigen::l2CacheSize()) / 2 / ((dim + value_stride) * Index(sizeof(S)));
  const Index by_l1 = Index(Eigen::l1CacheSize()) * 2 / 3 / tile_bytes_per_key;
  return std::clamp(std::min(by_l2, by_l1), kMinimum, kMaximum) / C * C;
}

/// Workspace of the packed kernel for one call.
template <class T>
struct PackedWorkspace {
  using Tile = RegisterTile<T>;
  Vector<T> queries;           // [groups][D][R]  scaled queries of one block, transposed per group
  Vector<T> acc;               // [groups * R][value_stride]  running sum of p v
  Vector<T> row_ref, row_sum;  // [groups * R]  softmax reference m and sum l
  Vector<T> tile;              // [block panels][R][C]  scores, then weights, of one group
  // Only for bfloat16 pairs (T = float, detail/simd/tile_kernels_bf16.hpp):
  Vector<Eigen::bfloat16> pair_queries;  // [groups][D/2][R][2]  unscaled queries of one block
  Vector<Eigen::bfloat16> pair_weights;  // [block panels][R][C]  the tile rounded to bfloat16

  /// Sizes the buffers for a call (they only grow).
  void reserve(Index groups, Index dim, Index value_stride, Index block_panels) {
    const Index rows = groups * Tile::kRows;
    grow(queries, rows * dim);
    grow(acc, rows * value_stride);
    grow(row_ref, rows);
    grow(row_sum, rows);
    grow(tile, block_panels * Tile::kRows * Tile::kCols);
  }

  /// Sizes the bfloat16 buffers too (pair_depth = D rounded up to even).
  void reserve_pairs(Index groups, Index pair_depth, Index block_panels) {
    if (pair_queries.size() < groups * Tile::kRows * pair_depth)
      pair_queries.resize(groups * Tile::kRows * pair_depth);
    if (pair_weights.size() < block_panels * Tile::kRows * Tile::kCols)
      pair_weights.resize(block_panels * Tile::kRows * Tile::kCols);
  }

 private:
  static void grow(Vector<T>& buffer, Index size) {
    if (buffer.size() < size) buffer.resize(size);
  }
};

/// Per-thread buffers of exact_packed, kept between calls.
///
/// Why: packing K and V needs O(Nk (D + Dv)) fresh memory per call, and first-touching fresh
/// pages costs about 2.4 us per 4 KiB here (measured: 10% of a 4096 x 64 forward). Reusing the
/// pages of the previous call removes that. Packed K/V of up to kRetainedBytes are kept per thread
/// (and per T); larger ones are freed after the call, where the O(Nk^2) work dwarfs the page
/// faults (under 2% at Nk = 16384).
template <class T>
struct ExactScratch {
  static constexpr std::size_t kRetainedBytes = std::size_t(16) << 20;
  PackedKvStorage<T> kv;
  PackedWorkspace<T> tiles;

  static ExactScratch& of_this_thread() {
    thread_local ExactScratch scratch;
    return scratch;
  }
};

/// The key/value source of exact_packed_attention when kv is packed before the call (the KV
/// cache of Exact<T>::State, the bfloat16 pair panels): nothing to pack or prefetch.
struct AlreadyPacked {
  static constexpr Index packed_panels() { return std::numeric_limits<Index>::max(); }
  void pack_until(Index) {}
  void prefetch_keys(Index, Index) const {}
};

/// The key/value source of exact_packed: packs k and v into `storage` (after its start_pack) as
/// the kernel asks, panels it will read next, and prefetches the raw rows it will ask for after
/// them. Why: the rows of a strided head ([B, N, H, D]) defeat the hardware prefetchers; packed
/// all at once before the first block, their loads stalled alone (docs/exact_kernel.md §3).
template <class T, class In, class KeyBias>
struct LazyKvPacking {
  PackedKvStorage<T>& storage;
  const ConstMatRef<In>& k;
  const ConstMatRef<In>& v;
  const KeyMask& padding;
  const KeyBias& key_bias;
  Index packed = 0;  // panels [0, packed) are written

  Index packed_panels() const { return packed; }
  void pack_until(Index panels) {
    if (panels <= packed) return;
    storage.pack_panels(k, v, padding, key_bias, packed, panels);
    packed = panels;
  }
  void prefetch_keys(Index begin, Index end) const {
    for (Index j = begin; j < end; ++j) {
      prefetch_row_l2(k.row(j).data(), k.cols());
      prefetch_row_l2(v.row(j).data(), v.cols());
    }
  }
};

namespace packed_detail {

/// Adds the full bias and ALiBi, and masks keys past the causal limit or past Nk, in one score
/// panel s [R][C] of a group whose first row is query i0 (rows of them present) and whose first
/// key is j0. `bias` is the [Nq, Nk] bias or null; `alibi` the ALiBi slope.
template <class T>
void finish_scores(T* s, int rows, Index i0, Index j0, Index nk, Index delta, bool causal,
                   const ConstMatRef<T>* bias, T alibi) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int C = Tile::kCols, L = Tile::kLanes;
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  if (j0 + C > nk) {  // the last panel: per element, never reading the bias past Nk
    for (int r = 0; r < rows; ++r) {
      const Index i = i0 + r;
      for (int c = 0; c < C; ++c) {
        const Index j = j0 + c;
        T& x = s[r * C + c];
        if (j >= nk || (causal && j > i + delta)) {
          x = neg_inf;
        } else {
          if (bias) x += (*bias)(i, j);
          if (alibi != 0) x -= alibi * static_cast<T>(std::abs(i + delta - j));
        }
      }
    }
    return;
  }
  const Packet iota = plset<Packet>(T(0));
  for (int r = 0; r < rows; ++r) {
    const Index i = i0 + r;
    for (int p = 0; p < Tile::kPackets; ++p) {
      const Index jp = j0 + p * L;  // first key of this packet
      Packet x = pload<Packet>(s + r * C + p * L);
      if (bias) x = padd(x, ploadu<Packet>(bias->data() + i * bias->outerStride() + jp));
      if (alibi != 0) {  // -slope |i + delta - j|, with j - jp = 0, 1, ... exact in T
        const Packet distance = pabs(psub(pset1<Packet>(static_cast<T>(i + delta - jp)), iota));
        x = psub(x, pmul(pset1<Packet>(alibi), distance));
      }
      if (causal) {  // keys jp + c with c < visible are visible to row i
        const Index visible = std::clamp<Index>(i + delta - jp + 1, 0, L);
        x = pselect(pcmp_lt(iota, pset1<Packet>(static_cast<T>(visible))), x,
                    pset1<Packet>(neg_inf));
      }
      pstore(s + r * C + p * L, x);
    }
  }
}

/// The online-softmax references of the rows of one group, for one key block.
template <class T>
struct GroupReference {
  static constexpr int R = RegisterTile<T>::kRows;
  T ref[R];  // the rows' references m (natural units; -inf while nothing is visible)

  /// Starts a key block: references from the running m, sums 0. Absent rows (r >= rows) get the
  /// reference +inf: weights 0, never a rescale.
  void start(const T* m, int rows, GroupSoftmax<T>& sm) {
    for (int r = 0; r < R; ++r) {
      ref[r] = r < rows ? m[r] : std::numeric_limits<T>::infinity();
      sm.set_reference(r, ref[r]);
      sm.sum[r] = Eigen::internal::pset1<typename GroupSoftmax<T>::Packet>(T(0));
    }
  }
};

/// Turns panel p of a group's tile (logits) into weights: first, for each row with a logit above
/// its limit, raises the reference to the row's max there and rescales the weights of the panels
/// before p and the running sum by e^(old - new); then the weights as in score_tiles.
template <class T>
void exp_panel(T* tile, Index p, GroupSoftmax<T>& sm, GroupReference<T>& gr) {
  using namespace Eigen::internal;
  using Tile = RegisterTile<T>;
  using Packet = typename Tile::Packet;
  constexpr int R = Tile::kRows, C = Tile::kCols, L = Tile::kLanes;
  for (int r = 0; r < R; ++r) {
    T* row = tile + (p * R + r) * C;
    Packet mx = pload<Packet>(row);
    for (int c = L; c < C; c += L) mx = pmax(mx, pload<Packet>(row + c));
    const T row_max = predux_max(mx);
    if (row_max > sm.limit[r]) {
      const Packet f = pset1<Packet>(std::exp(gr.ref[r] - row_max));  // 0 from a -inf reference
      for (Index q = 0; q < p; ++q)
        for (int c = 0; c < C; c += L) {
          T* w = tile + (q * R + r) * C + c;
          pstore(w, pmul(f, pload<Packet>(w)));
        }
      sm.sum[r] = pmul(f, sm.sum[r]);
      gr.ref[r] = row_max;
      sm.set_reference(r, row_max);
    }
    for (int c = 0; c < C; c += L) pstore(row + c, weight_packet<T>(pload<Packet>(row + c), r, sm));
  }
}

/// score_tiles with the template flags from run-time values.
template <class T>
Index score_panels(bool add_row, bool exp, const T* qp, const T* kp, Index depth, Index panels,
                   const T* key_add, T* s, GroupSoftmax<T>& sm) {
  if (panels <= 0) return 0;
  if (add_row)
    return exp ? score_tiles<T, true, true>(qp, kp, depth, panels, key_add, s, sm)
               : score_tiles<T, true, false>(qp, kp, depth, panels, key_add, s, sm);
  return exp ? score_tiles<T, false, true>(qp, kp, depth, panels, key_add, s, sm)
             : score_tiles<T, false, false>(qp, kp, depth, panels, key_add, s, sm);
}

}  // namespace packed_detail

/// q [Nq, D] against packed keys/values kv (Nk keys) -> out [Nq, Dv], lse [Nq] if non-empty.
/// opt supplies scale, causal and the ALiBi slope (its key_padding must already be folded into
/// kv.key_add); `bias` points to the [Nq, Nk] bias, or is null (a per-key bias belongs in
/// kv.key_add). Arguments are already validated.
/// bfloat16 (docs/bfloat16.md): q may be bfloat16 (In; widened as it is packed), and with
/// FASTATTN_BF16_DOT the keys and values may be bfloat16 pairs (S; T = float), multiplied by the
/// kernels of detail/simd/tile_kernels_bf16.hpp; the softmax, masks and output stay in T.
/// kv_source packs kv's panels on demand (LazyKvPacking), or kv is complete (AlreadyPacked).
template <class T, class In = T, class S = T, class KvSource = AlreadyPacked>
void exact_packed_attention(const ConstMatRef<In>& q, const PackedKv<T, S>& kv, MatRef<T>& out,
                            const AttentionOptions& opt, const ConstMatRef<T>* bias, VecRef<T>& lse,
                            PackedBlocking blocking, PackedWorkspace<T>& ws,
                            KvSource&& kv_source = KvSource{}) {
  using Tile = RegisterTile<T>;
  constexpr int R = Tile::kRows, C = Tile::kCols;
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  constexpr bool kPairs = !std::is_same_v<S, T>;  // bfloat16 pairs on vdpbf16ps
  static_assert(!kPairs || (FASTATTN_BF16_DOT && std::is_same_v<T, float> &&
                            std::is_same_v<S, Eigen::bfloat16>),
                "bfloat16 pair panels need FASTATTN_BF16_DOT and T = float");
  const Index nq = q.rows(), nk = kv.size, d = kv.dim, dv = kv.value_dim;
  const Index kd = kPairs ? pair_depth(d) : d;  // elements per key in a key panel
  const Index ldv = kv.value_stride, delta = nk - nq;
  const T scale = static_cast<T>(resolve_scale(opt, d));
  const T alibi = static_cast<T>(opt.alibi_slope);
  const bool causal = opt.causal;
  const bool finish_all = bias != nullptr || alibi != 0;  // every panel needs finish_scores

  const Index br = std::clamp<Index>(blocking.block_q, 1, std::max<Index>(nq, 1));
  const Index block_k =
      blocking.block_k > 0 ? blocking.block_k : default_key_block<T, S>(d, kv.value_stride);
  const Index block_panels = std::max<Index>(1, key_panels<T>(block_k));
  ws.reserve((br + R - 1) / R, d, ldv, block_panels);
  if constexpr (kPairs) ws.reserve_pairs((br + R - 1) / R, kd, block_panels);
  GroupSoftmax<T> sm;
  packed_detail::GroupReference<T> gr;
  // Keys any row of the query block starting at r0 may see: all, or (causal) those with
  // j <= r0 + rows - 1 + delta.
  const auto visible_keys = [&](Index r0) {
    if (r0 >= nq) return Index(0);
    const Index rows = std::min(br, nq - r0);
    return causal ? std::clamp<Index>(r0 + rows + delta, 0, nk) : nk;
  };

  for (Index r0 = 0; r0 < nq; r0 += br) {
    const Index rows = std::min(br, nq - r0);
    const Index groups = (rows + R - 1) / R;
    // Scaled queries, transposed per group of R rows (absent rows are 0); bfloat16 pairs are
    // not scaled (the score kernel scales the float dot products).
    for (Index g = 0; g < groups; ++g) {
      if constexpr (kPairs) {
        pack_query_pairs(q, r0 + g * R, std::min<Index>(R, rows - g * R),
                         ws.pair_queries.data() + g * kd * R);
        continue;
      }
      T* dst = ws.queries.data() + g * d * R;
      for (int r = 0; r < R; ++r) {
        const Index i = r0 + g * R + r;
        if (i < r0 + rows) {
          const In* src = q.row(i).data();
          for (Index dd = 0; dd < d; ++dd) dst[dd * R + r] = scale * widen<T>(src[dd]);
        } else {
          for (Index dd = 0; dd < d; ++dd) dst[dd * R + r] = T(0);
        }
      }
    }
    ws.acc.head(groups * R * ldv).setZero();
    ws.row_ref.head(groups * R).setConstant(neg_inf);
    ws.row_sum.head(groups * R).setZero();

    const Index key_end = visible_keys(r0);
    const Index panels_total = key_panels<T>(key_end);
    // The next block's queries and this block's output rows are fetched a group's rows at a
    // time while the key block that starts a whole block before the end computes: rows of a
    // strided head ([B, N, H, D]) defeat the hardware prefetchers, and fetched in one burst at
    // the start of the block they left L2 again under the stream of packed keys and values
    // (measured on Zen 4: packing the queries then stalled for 1.4% of a [B, N, H, D] call, 0.8%
    // with this placement).
    const Index prefetch_pb =
        std::max<Index>(0, panels_total - block_panels) / block_panels * block_panels;
    for (Index pb = 0; pb < panels_total; pb += block_panels) {
      const Index block_end = std::min(pb + block_panels, panels_total);
      kv_source.pack_until(block_end);
      // The panels needed next (by the next key block, or by the next query block), packed
      // while this block computes: group g prefetches the raw rows of share g, and group g + 1
      // packs them. Why so close: the rows of a head of a [B, N, H, D] tensor lie a multiple of
      // 2 KiB apart, so they all fall in a small fraction of the cache sets, where rows
      // prefetched a whole block ahead evicted each other before use (measured, Zen 4).
      const Index next_end = block_end < panels_total
                                 ? std::min(block_end + block_panels, panels_total)
                                 : key_panels<T>(visible_keys(r0 + br));
      const Index ahead_first = std::min(kv_source.packed_panels(), next_end),
                  ahead_panels = next_end - ahead_first;
      const auto share_end = [&](Index g) { return ahead_first + ahead_panels * g / groups; };
      for (Index g = 0; g < groups; ++g) {
        const Index i0 = r0 + g * R;
        const int grows = static_cast<int>(std::min<Index>(R, r0 + rows - i0));
        if (pb == prefetch_pb) {
          for (Index i = i0 + br; i < std::min(nq, i0 + br + R); ++i)
            prefetch_row_l2(q.row(i).data(), d);
          for (Index i = i0; i < i0 + grows; ++i) prefetch_row_l2(out.row(i).data(), dv);
        }
        if (ahead_panels > 0) {
          kv_source.pack_until(share_end(g));
          kv_source.prefetch_keys(share_end(g) * C, std::min(share_end(g + 1) * C, nk));
        }
        // Keys this group may see, and the panels of this block that hold them.
        const Index limit = causal ? std::clamp<Index>(i0 + grows + delta, 0, key_end) : key_end;
        const Index panels = std::min(block_panels, key_panels<T>(limit) - pb);
        if (panels <= 0) continue;
        // Panels [0, clean) need nothing beyond the key row: scores and weights in one pass.
        // The rest (the panel holding key Nk, the panels on the group's causal diagonal, or all
        // of them with a full bias or ALiBi) are scored, finished, then turned into weights.
        Index clean = panels;
        if (finish_all) {
          clean = 0;
        } else {
          clean = std::min(clean, nk / C - pb);
          if (causal)  // the first panel with a key past row i0's limit i0 + delta
            clean = std::min(clean, std::max<Index>(i0 + delta + 1, 0) / C - pb);
          clean = std::max<Index>(clean, 0);
        }
        T* m = ws.row_ref.data() + g * R;
        T* l = ws.row_sum.data() + g * R;
        gr.start(m, grows, sm);
        const T* qp = ws.queries.data() + g * d * R;
        const S* kp = kv.keys + pb * kd * C;
        const T* add = kv.key_add ? kv.key_add + pb * C : nullptr;
        T* tile = ws.tile.data();
        // Score tiles of panels [first, first + count) of this block (see score_tiles).
        auto score = [&](bool exp, Index first, Index count) -> Index {
          const T* add_first = add ? add + first * C : nullptr;
          if constexpr (kPairs)
            return score_panels_bf16(add != nullptr, exp, ws.pair_queries.data() + g * kd * R,
                                     kp + first * kd * C, kd / 2, count, add_first,
                                     tile + first * R * C, sm, scale);
          else
            return packed_detail::score_panels<T>(add != nullptr, exp, qp, kp + first * d * C, d,
                                                  count, add_first, tile + first * R * C, sm);
        };
        for (Index done = 0; done < clean;) {
          done += score(true, done, clean - done);
          if (done < clean) packed_detail::exp_panel<T>(tile, done++, sm, gr);  // rescale
        }
        score(false, clean, panels - clean);
        for (Index p = clean; p < panels; ++p) {
          packed_detail::finish_scores<T>(tile + p * R * C, grows, i0, (pb + p) * C, nk, delta,
                                          causal, bias, alibi);
          packed_detail::exp_panel<T>(tile, p, sm, gr);
        }
        // Close the block: alpha = e^(m_old - m_new) rescales what the rows had before.
        T alpha[R];
        for (int r = 0; r < grows; ++r) {
          alpha[r] = m[r] == gr.ref[r] ? T(1) : std::exp(m[r] - gr.ref[r]);  // e^-inf = 0
          l[r] = alpha[r] * l[r] + Eigen::internal::predux(sm.sum[r]);
          m[r] = gr.ref[r];
        }
        const S* v = kv.values + pb * C * ldv;
        T* o = ws.acc.data() + g * R * ldv;
        Index c = 0;
        static_assert(Tile::kPackets == 2, "the last value chunk is one packet wide");
#if FASTATTN_BF16_DOT
        if constexpr (kPairs) {  // the weights as bfloat16 pairs along the keys
          const Eigen::bfloat16* p = ws.pair_weights.data();
          round_to_bf16(tile, panels * R * C, ws.pair_weights.data());
          for (; c + C <= ldv; c += C)
            value_tile_bf16<2>(p, panels, v + c * C, C * ldv, o + c, ldv, alpha, grows);
          if (c < ldv) value_tile_bf16<1>(p, panels, v + c * C, C * ldv, o + c, ldv, alpha, grows);
        } else
#endif
        {
          for (; c + C <= ldv; c += C)
            value_tile<T, Tile::kPackets>(tile, panels, v + c * C, C * ldv, o + c, ldv, alpha,
                                          grows);
          if (c < ldv) value_tile<T, 1>(tile, panels, v + c * C, C * ldv, o + c, ldv, alpha, grows);
        }
      }
    }

    for (Index r = 0; r < rows; ++r) {
      const Index i = r0 + r;
      const SoftmaxRow<T> row{ws.row_ref[r], ws.row_sum[r]};
      if (row.visible())
        out.row(i) = ws.acc.segment(r * ldv, dv).transpose() / row.sum;
      else  // empty row (docs/spec/exact.md §4)
        out.row(i).setZero();
      if (lse.size() != 0) lse[i] = row.log_sum_exp();
    }
  }
}

/// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv] (and lse [Nq] if non-empty). `bias` is
/// [Nq, Nk], [1, Nk] or empty. Packs K and V (with opt.key_padding and a per-key bias folded in)
/// and runs exact_packed_attention. Arguments are already validated. In = bfloat16 (T = float):
/// the widening path of docs/bfloat16.md, the inputs widened to T as they are packed.
template <class T, class In = T>
void exact_packed(const ConstMatRef<In>& q, const ConstMatRef<In>& k, const ConstMatRef<In>& v,
                  MatRef<T>& out, const AttentionOptions& opt, const ConstMatRef<T>& bias,
                  VecRef<T>& lse, PackedBlocking blocking) {
  const bool full_bias = bias.size() != 0 && bias.rows() == q.rows() && q.rows() != 1;
  const bool key_bias = bias.size() != 0 && !full_bias;
  ExactScratch<T>& scratch = ExactScratch<T>::of_this_thread();
  scratch.kv.set_dims(k.cols(), v.cols());
  const auto run = [&](const auto& key_bias_row) {  // packs K and V as the kernel needs them
    using KeyBias = std::decay_t<decltype(key_bias_row)>;
    scratch.kv.start_pack(k.rows(), opt.key_padding, key_bias_row);
    exact_packed_attention<T>(
        q, scratch.kv.view(), out, opt, full_bias ? &bias : nullptr, lse, blocking, scratch.tiles,
        LazyKvPacking<T, In, KeyBias>{scratch.kv, k, v, opt.key_padding, key_bias_row});
  };
  if (key_bias)
    run(bias.row(0));
  else
    run(Vector<T>());
  if (scratch.kv.bytes() > ExactScratch<T>::kRetainedBytes) scratch.kv.release();
}

}  // namespace fastattn::detail
