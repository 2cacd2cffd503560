#pragma once
/// @file detail/eva/window.hpp
/// The per-window EVA kernel (implementation detail, no API promise): for one window, one GEMM
/// of its scaled queries against its key slots, one against the chunk summaries k̃, the masks, one
/// joint row softmax, and two GEMMs (value slots, then β) accumulating into the output rows
/// (docs/spec/eva.md §3.2 steps 6-8, §3.4 steps 3-5, §5.3, §5.4).
///
/// Measured (float, D = 64, W = 64, C' = 64): two output GEMMs reading k and v in place are ~8%
/// faster than one GEMM against a stacked [value slots; β] copy, so 1-D windows without padded
/// slots use the inputs in place; 2-D windows (whose slots are not contiguous) and windows with a
/// padded slot gather their slots into a workspace first.

#include <algorithm>
#include <limits>
#include <vector>

#include "fastattn/detail/eva/chunks.hpp"
#include "fastattn/detail/eva/geometry.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Runs every window of one call. Construct once per call (allocates its workspaces), then
/// run(w) for each window (no allocation).
template <class T>
class EvaWindows {
 public:
  /// q, k [n, D], v [n, Dv]; key_padding [n] or empty; bias [W^k, S_w] or empty; out [n, Dv].
  explicit EvaWindows(const EvaGeometry& g, const EvaChunkStats<T>& stats, const ConstMatRef<T>& q,
             const ConstMatRef<T>& k, const ConstMatRef<T>& v, const KeyMask& key_padding,
             const RowMatrix<T>& bias, T scale, MatRef<T>& out)
      : g_(g),
        stats_(stats),
        q_(q),
        k_(k),
        v_(v),
        pad_(key_padding),
        bias_(bias),
        scale_(scale),
        out_(out) {
    const Index d = q.cols(), dv = v.cols(), nc = g.num_chunks();
    max_keys_ = g.max_window_keys();
    const Index wq = g.max_window_queries();
    queries_.resize(wq, d);
    keys_.resize(max_keys_, d);
    values_.resize(max_keys_, dv);
    logits_.resize(wq, max_keys_ + nc);
    inv_sum_.resize(wq);
    window_out_.resize(wq, dv);
    slot_token_.resize(static_cast<std::size_t>(max_keys_));
  }

  /// Computes the output rows of window w.
  void run(Index w) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const Index nc_all = g_.num_chunks();
    // 1. Queries, scaled once (s q_i enters both the local and the chunk logits).
    Index nq = 0, first_query = 0;
    g_.for_each_query_run(w, [&](Index token, Index count) {
      if (nq == 0) first_query = token;
      queries_.middleRows(nq, count) = scale_ * q_.middleRows(token, count);
      nq += count;
    });
    // 2. Key slots: in place (1-D, one run, no padded slot) or gathered, padded rows zeroed.
    Index ns = 0, runs = 0, first_key = 0;
    g_.for_each_key_run(w, [&](Index token, Index count, Index) {
      if (runs++ == 0) first_key = token;
      ns += count;
    });
    bool any_padded = false;
    if (pad_.size() != 0) {
      g_.for_each_key_run(w, [&](Index token, Index count, Index) {
        for (Index j = 0; j < count; ++j) any_padded = any_padded || pad_[token + j];
      });
    }
    const bool in_place = runs == 1 && !any_padded;
    if (!in_place) {
      Index r = 0;
      g_.for_each_key_run(w, [&](Index token, Index count, Index) {
        keys_.middleRows(r, count) = k_.middleRows(token, count);
        values_.middleRows(r, count) = v_.middleRows(token, count);
        for (Index j = 0; j < count; ++j) {
          slot_token_[static_cast<std::size_t>(r + j)] = token + j;
          if (pad_.size() != 0 && pad_[token + j]) {
            // Zero rather than weight 0, so non-finite padded values cannot leak (0 * inf).
            keys_.row(r + j).setZero();
            values_.row(r + j).setZero();
          }
        }
        r += count;
      });
    }
    const ConstMatRef<T> keys =
        in_place ? ConstMatRef<T>(k_.middleRows(first_key, ns)) : ConstMatRef<T>(keys_.topRows(ns));
    const ConstMatRef<T> values = in_place ? ConstMatRef<T>(v_.middleRows(first_key, ns))
                                           : ConstMatRef<T>(values_.topRows(ns));
    // 3. Which chunks the window's rows see: a prefix [0, nc) of them, minus masks below.
    Index nc = nc_all;
    if (g_.causal) {
      nc = g_.disjoint ? g_.causal_disjoint_visible_chunks(w)
                       : g_.causal_reference_visible_chunks(first_query + nq - 1);
    }
    const Index ncols = ns + nc;
    auto logits = logits_.topLeftCorner(nq, ncols);
    logits.leftCols(ns).noalias() = queries_.topRows(nq) * keys.transpose();
    if (nc > 0)
      logits.rightCols(nc).noalias() = queries_.topRows(nq) * stats_.kt.topRows(nc).transpose();
    // 4. Additive terms: the local bias (before masking, spec §3.6) and ln n_c (Disjoint).
    if (bias_.size() != 0) {
      Index r = 0;
      g_.for_each_key_run(w, [&](Index, Index count, Index slot) {
        logits.middleCols(r, count) += bias_.block(0, slot, nq, count);
        r += count;
      });
    }
    if (g_.disjoint && nc > 0) logits.rightCols(nc).rowwise() += stats_.offset.head(nc).transpose();
    // 5. Masks (-inf; equivalent to the official -5e4 on every row with an unmasked entry).
    if (any_padded) {
      for (Index j = 0; j < ns; ++j)
        if (pad_[slot_token_[static_cast<std::size_t>(j)]]) logits.col(j).setConstant(neg_inf);
    }
    if (g_.causal) {
      // 1-D: slot j holds token first_key + j; query row r is token first_query + r.
      for (Index r = 0; r < nq; ++r) {
        const Index i = first_query + r;
        const Index seen = std::min(ns, i - first_key + 1);  // slots t <= i
        auto row = logits.row(r);
        if (!g_.disjoint && pad_.size() != 0 && pad_[i]) {
          row.head(ns).setConstant(neg_inf);  // Reference: a padded query's local row is masked
        } else if (seen < ns) {
          row.segment(seen, ns - seen).setConstant(neg_inf);
        }
        if (!g_.disjoint) {
          const Index vis = g_.causal_reference_visible_chunks(i);
          if (vis < nc) row.segment(ns + vis, nc - vis).setConstant(neg_inf);
        }
      }
    } else if (g_.disjoint) {
      g_.for_each_excluded_chunk_range(
          w, [&](Index c0, Index c1) { logits.middleCols(ns + c0, c1 - c0).setConstant(neg_inf); });
    }
    // 6. Joint softmax over [local, chunk] entries; an empty row gets weight 0 everywhere.
    for (Index r = 0; r < nq; ++r) inv_sum_[r] = softmax_numerators(logits.row(r)).inverse_sum();
    // 7. Two GEMMs (value slots, then beta), the normalization, and a copy to the output rows.
    // The products go to a workspace, not to out: Eigen's small products peel unaligned leading
    // columns into scalar code (no FMA), so writing to out would make the rounding depend on the
    // caller's buffer address, and multihead() would not be bitwise reproducible.
    auto dst = window_out_.topRows(nq);
    dst.noalias() = logits.leftCols(ns) * values;
    if (nc > 0) dst.noalias() += logits.rightCols(nc) * stats_.beta.topRows(nc);
    dst.array().colwise() *= inv_sum_.head(nq).array();
    Index r = 0;
    g_.for_each_query_run(w, [&](Index token, Index count) {
      out_.middleRows(token, count) = dst.middleRows(r, count);
      r += count;
    });
  }

 private:
  const EvaGeometry& g_;
  const EvaChunkStats<T>& stats_;
  const ConstMatRef<T>& q_;
  const ConstMatRef<T>& k_;
  const ConstMatRef<T>& v_;
  const KeyMask& pad_;
  const RowMatrix<T>& bias_;
  T scale_;
  MatRef<T>& out_;
  Index max_keys_ = 0;
  RowMatrix<T> queries_, keys_, values_, logits_, window_out_;
  Vector<T> inv_sum_;
  std::vector<Index> slot_token_;
};

}  // namespace fastattn::detail
