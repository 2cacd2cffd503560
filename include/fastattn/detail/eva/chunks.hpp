#pragma once
/// @file detail/eva/chunks.hpp
/// EVA chunk statistics (implementation detail, no API promise): per chunk the adaptive summary
/// k̃_c, the proposal mean μ_c, the control-variate coefficient β_c and the logit offset
/// (docs/spec/eva.md §3.2 steps 3-5, §3.4 step 2, §5.3). One function finalizes one chunk from its rows;
/// the parallel forward and the decoding state both use it, so they agree on every chunk.

#include <cmath>
#include <limits>

#include "fastattn/config.hpp"
#include "fastattn/detail/eva/geometry.hpp"
#include "fastattn/detail/eva/projection.hpp"
#include "fastattn/eva_options.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/features.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// The per-call constants of chunk finalization.
template <class T>
struct EvaChunkRule {
  EvaMap<T> f_q, f_k;
  T scale = 0;     // s, in the proposal log-weights s (mu.k - |k|^2 / 2)
  T mu_scale = 0;  // mu_c = mu_scale (f_q(qbar) + f_k(kbar))
  bool disjoint = false;
};

/// Scratch space of finalize_eva_chunk; sized once, reused for every chunk.
template <class T>
struct EvaChunkWorkspace {
  Vector<T> q_sum, k_sum, q_proj, k_proj, mu, logits;
  RowMatrix<T> k_rows, v_rows;                // the valid rows, compacted when some are padded
  RowMatrix<T> q_gather, k_gather, v_gather;  // 2-D chunks: slot rows gathered from the grid
  KeyMask pad_gather;

  /// Room for chunks of up to `rows` slots.
  void reserve(Index d, Index dv, Index rows) {
    for (Vector<T>* x : {&q_sum, &k_sum, &q_proj, &k_proj, &mu}) x->resize(d);
    if (logits.size() < rows) logits.resize(rows);
    if (k_rows.rows() < rows || k_rows.cols() != d) k_rows.resize(rows, d);
    if (v_rows.rows() < rows || v_rows.cols() != dv) v_rows.resize(rows, dv);
  }
};

/// Finalizes one chunk from its in-range slot rows q, k [m, D], v [m, Dv] (`padded`: m flags, or
/// null for none). `divisor` is the Reference mean divisor (every slot, valid or not); Disjoint
/// divides by the valid count n_c. Writes kt.row(c) [D], beta.row(c) [Dv], offset[c] (Reference
/// 0; Disjoint ln n_c, or -inf for an empty chunk) and leaves mu_c in ws.mu. The workspace must be
/// reserved for m rows. Does not allocate.
template <class T>
void finalize_eva_chunk(const EvaChunkRule<T>& rule, const ConstMatRef<T>& q,
                        const ConstMatRef<T>& k, const ConstMatRef<T>& v, const bool* padded,
                        Index divisor, EvaChunkWorkspace<T>& ws, RowMatrix<T>& kt,
                        RowMatrix<T>& beta, Vector<T>& offset, Index c) {
  const Index m = k.rows();
  const bool need_q = rule.mu_scale != 0;
  // Sums of the valid rows, in token order (masked tokens are zeroed before the means).
  ws.k_sum.setZero();
  if (need_q) ws.q_sum.setZero();
  Index count = 0;
  bool any_padded = false;
  for (Index j = 0; j < m; ++j) {
    if (padded != nullptr && padded[j]) {
      any_padded = true;
      continue;
    }
    ws.k_sum += k.row(j).transpose();
    if (need_q) ws.q_sum += q.row(j).transpose();
    ++count;
  }
  if (rule.disjoint && count == 0) {  // an empty Disjoint chunk does not exist
    kt.row(c).setZero();
    beta.row(c).setZero();
    ws.mu.setZero();
    offset[c] = -std::numeric_limits<T>::infinity();
    return;
  }
  const T inv_div = T(1) / static_cast<T>(rule.disjoint ? count : divisor);
  ws.k_sum *= inv_div;
  rule.f_k.apply(ws.k_sum, ws.k_proj);
  kt.row(c) = ws.k_proj.transpose();
  if (need_q) {
    ws.q_sum *= inv_div;
    rule.f_q.apply(ws.q_sum, ws.q_proj);
    ws.mu = rule.mu_scale * (ws.q_proj + ws.k_proj);
  } else {
    ws.mu.setZero();
  }
  offset[c] = rule.disjoint ? static_cast<T>(std::log(static_cast<double>(count))) : T(0);
  if (count == 0) {  // Reference, every slot invalid: uniform weights on zero values
    beta.row(c).setZero();
    return;
  }
  // Padded rows are left out rather than weighted by 0, so that non-finite values stored at
  // padded positions cannot reach beta (0 * inf = NaN in a product).
  auto kv = k.topRows(count);
  auto vv = v.topRows(count);
  if (any_padded) {
    Index r = 0;
    for (Index j = 0; j < m; ++j) {
      if (padded[j]) continue;
      ws.k_rows.row(r) = k.row(j);
      ws.v_rows.row(r) = v.row(j);
      ++r;
    }
  }
  const ConstMatRef<T> kr =
      any_padded ? ConstMatRef<T>(ws.k_rows.topRows(count)) : ConstMatRef<T>(kv);
  const ConstMatRef<T> vr =
      any_padded ? ConstMatRef<T>(ws.v_rows.topRows(count)) : ConstMatRef<T>(vv);
  // Proposal log-weights a_t = s (mu.k_t - |k_t|^2 / 2), softmax over the chunk's valid slots.
  // These are the positive log-features of k_t at w = mu (features.hpp), times s.
  auto a = ws.logits.head(count);
  positive_log_features<T>(kr, ws.mu.transpose(), a);
  a *= rule.scale;
  const SoftmaxRow<T> weights = softmax_numerators(a);
  beta.row(c).noalias() = a.transpose() * vr;
  beta.row(c) /= weights.sum;
}

/// q, k [n, D], v [n, Dv], key padding [n] or empty -> the statistics of every chunk of `g`, in
/// one pass over the chunks.
template <class T>
void compute_eva_chunk_stats(const EvaGeometry& g, const EvaChunkRule<T>& rule,
                             const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                             const ConstMatRef<T>& v, const KeyMask& key_padding,
                             EvaChunkStats<T>& stats, EvaChunkWorkspace<T>& ws) {
  const Index d = k.cols(), dv = v.cols(), nc = g.num_chunks();
  const Index max_rows = g.max_chunk_slots();
  stats.kt.resize(nc, d);
  stats.mu.resize(nc, d);
  stats.beta.resize(nc, dv);
  stats.offset.resize(nc);
  ws.reserve(d, dv, max_rows);
  const bool has_padding = key_padding.size() != 0;
  const Index divisor = g.chunk_divisor();
  for (Index c = 0; c < nc; ++c) {
    Index runs = 0, first = 0, total = 0;
    g.for_each_chunk_run(c, [&](Index token, Index count) {
      if (runs++ == 0) first = token;
      total += count;
    });
    if (runs <= 1) {  // 1-D: the slots are one block of rows, used in place
      const bool* pad = has_padding && total > 0 ? key_padding.data() + first : nullptr;
      finalize_eva_chunk<T>(rule, q.middleRows(first, total), k.middleRows(first, total),
                            v.middleRows(first, total), pad, divisor, ws, stats.kt, stats.beta,
                            stats.offset, c);
    } else {  // 2-D: gather the slot rows of the chunk's square
      if (ws.k_gather.rows() < max_rows) {
        ws.q_gather.resize(max_rows, d);
        ws.k_gather.resize(max_rows, d);
        ws.v_gather.resize(max_rows, dv);
        ws.pad_gather.resize(max_rows);
      }
      Index r = 0;
      g.for_each_chunk_run(c, [&](Index token, Index count) {
        ws.q_gather.middleRows(r, count) = q.middleRows(token, count);
        ws.k_gather.middleRows(r, count) = k.middleRows(token, count);
        ws.v_gather.middleRows(r, count) = v.middleRows(token, count);
        for (Index j = 0; j < count; ++j)
          ws.pad_gather[r + j] = has_padding && key_padding[token + j];
        r += count;
      });
      finalize_eva_chunk<T>(rule, ws.q_gather.topRows(total), ws.k_gather.topRows(total),
                            ws.v_gather.topRows(total), ws.pad_gather.data(), divisor, ws, stats.kt,
                            stats.beta, stats.offset, c);
    }
    stats.mu.row(c) = ws.mu.transpose();
  }
}

}  // namespace fastattn::detail
