#pragma once
/// @file detail/eva_state.hpp
/// The causal EVA decoding state, Eva<T>::State (docs/spec/eva.md §6; implementation detail, no API
/// promise beyond the public members). Reproduces the parallel causal forward token by token:
/// blocked windows (not a sliding window) and chunks published when the first token of the next
/// chunk arrives.

#include <algorithm>
#include <limits>

#include "fastattn/detail/eva_chunks.hpp"
#include "fastattn/detail/simd.hpp"
#include "fastattn/types.hpp"

namespace fastattn {
template <class T>
class Eva;
}  // namespace fastattn

namespace fastattn::detail {

/// Per-head causal decoding state of Eva<T>. Make it with Eva::make_state, feed it with Eva::step.
/// Holds the current window's keys and values (at most W + e rows), the partial chunk's rows
/// (at most L), and the published chunks (k̃ [C_done, D], β [C_done, Dv], logit offsets), which
/// grow by one row per L tokens: EVA decoding is not constant-memory.
template <class T>
class EvaState {
 public:
  EvaState() = default;

  /// Number of tokens consumed so far.
  Index tokens() const { return t_; }
  /// Value dimension Dv of the outputs.
  Index value_dim() const { return dv_; }
  /// Chunk length L.
  Index chunk_length() const { return chunk_; }
  /// Number of published (complete) chunks.
  Index published_chunks() const { return done_; }
  /// Chunks that fit without reallocation.
  Index chunk_capacity() const { return kt_.rows(); }
  /// Reserves room for a sequence of `total_tokens` tokens, so that step() never allocates up to
  /// that length. Without it, the chunk storage grows geometrically.
  void reserve(Index total_tokens) {
    if (chunk_ <= 0) return;
    const Index needed = total_tokens / chunk_ + 1;
    if (needed > chunk_capacity()) grow(needed);
  }

 private:
  template <class>
  friend class ::fastattn::Eva;

  void init(Index d, Index dv, Index window, Index ext, Index chunk, Index max_tokens,
            bool disjoint, T scale) {
    d_ = d;
    dv_ = dv;
    window_ = window;
    ext_ = ext;
    chunk_ = chunk;
    max_tokens_ = max_tokens;
    disjoint_ = disjoint;
    scale_ = scale;
    const Index cap = window + ext;
    buf_k_.resize(cap, d);
    buf_v_.resize(cap, dv);
    buf_pad_.resize(cap);
    part_q_.resize(chunk, d);
    part_k_.resize(chunk, d);
    part_v_.resize(chunk, dv);
    part_pad_.resize(chunk);
    q_scaled_.resize(d);
    chunk_ws_.reserve(d, dv, chunk);
    grow(max_tokens > 0 ? max_tokens / chunk + 1 : 4);
  }

  /// Reallocates the chunk storage to `capacity` rows, keeping the published ones.
  void grow(Index capacity) {
    RowMatrix<T> kt(capacity, d_), beta(capacity, dv_);
    Vector<T> offset(capacity);
    if (done_ > 0) {
      kt.topRows(done_) = kt_.topRows(done_);
      beta.topRows(done_) = beta_.topRows(done_);
      offset.head(done_) = offset_.head(done_);
    }
    kt_.swap(kt);
    beta_.swap(beta);
    offset_.swap(offset);
    logits_.resize(window_ + ext_ + capacity);
  }

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]. Arguments are validated.
  void step(const EvaChunkRule<T>& rule, const RowMatrix<T>& bias, const ConstMatRef<T>& q_t,
            const ConstMatRef<T>& k_t, const ConstMatRef<T>& v_t, bool padded, MatRef<T>& out_t) {
    constexpr T neg_inf = -std::numeric_limits<T>::infinity();
    const Index t = t_;
    // 1. Publish the chunk that the previous token completed (spec §6 step 1).
    if (t > 0 && t % chunk_ == 0) {
      if (done_ == chunk_capacity()) grow(2 * chunk_capacity());
      finalize_eva_chunk<T>(rule, part_q_.topRows(part_count_), part_k_.topRows(part_count_),
                            part_v_.topRows(part_count_), part_pad_.data(), chunk_, chunk_ws_, kt_,
                            beta_, offset_, done_);
      ++done_;
      part_count_ = 0;
    }
    // 2. The token joins the partial chunk (padded rows are stored as zeros and flagged).
    if (padded) {
      part_q_.row(part_count_).setZero();
      part_k_.row(part_count_).setZero();
      part_v_.row(part_count_).setZero();
    } else {
      part_q_.row(part_count_) = q_t.row(0);
      part_k_.row(part_count_) = k_t.row(0);
      part_v_.row(part_count_) = v_t.row(0);
    }
    part_pad_[part_count_++] = padded;
    // 3. Window buffer: positions [max(0, wW - e), t] of the current (blocked) window w.
    const Index w = t / window_;
    const Index start = std::max<Index>(0, w * window_ - ext_);
    if (start > buf_begin_) {
      const Index drop = std::min(start - buf_begin_, buf_count_);
      for (Index j = drop; j < buf_count_; ++j) {  // rows move up one by one: no overlap
        buf_k_.row(j - drop) = buf_k_.row(j);
        buf_v_.row(j - drop) = buf_v_.row(j);
        buf_pad_[j - drop] = buf_pad_[j];
      }
      buf_count_ -= drop;
      buf_begin_ = start;
    }
    if (padded) {
      buf_k_.row(buf_count_).setZero();
      buf_v_.row(buf_count_).setZero();
    } else {
      buf_k_.row(buf_count_) = k_t.row(0);
      buf_v_.row(buf_count_) = v_t.row(0);
    }
    buf_pad_[buf_count_++] = padded;
    // 4. One softmax over the window's valid rows and the visible chunks (spec §6 step 4).
    const Index m = buf_count_;
    const Index nc = disjoint_ ? std::min(done_, start / chunk_) : done_;
    q_scaled_ = scale_ * q_t.row(0).transpose();
    auto local = logits_.head(m);
    local.noalias() = buf_k_.topRows(m) * q_scaled_;
    if (bias.size() != 0)
      local += bias.row(t - w * window_).segment(buf_begin_ - (w * window_ - ext_), m).transpose();
    if (padded && !disjoint_) {
      local.setConstant(neg_inf);  // Reference: a padded query's local row is masked
    } else {
      for (Index j = 0; j < m; ++j)
        if (buf_pad_[j]) local[j] = neg_inf;
    }
    auto chunks = logits_.segment(m, nc);
    if (nc > 0) {
      chunks.noalias() = kt_.topRows(nc) * q_scaled_;
      if (disjoint_) chunks += offset_.head(nc);
    }
    auto all = logits_.head(m + nc);
    const T row_max = all.maxCoeff();
    all = all.array().unaryExpr(ShiftedExp<T>{row_max}).matrix();
    const T sum = all.sum();
    auto out = out_t.row(0);
    out.noalias() = local.transpose() * buf_v_.topRows(m);
    if (nc > 0) out.noalias() += chunks.transpose() * beta_.topRows(nc);
    out *= sum > 0 ? T(1) / sum : T(0);
    ++t_;
  }

  // Configuration.
  Index d_ = 0, dv_ = 0, window_ = 0, ext_ = 0, chunk_ = 0, max_tokens_ = 0;
  bool disjoint_ = false;
  T scale_ = 0;
  // Progress.
  Index t_ = 0;
  // Window buffer: positions [buf_begin_, buf_begin_ + buf_count_).
  RowMatrix<T> buf_k_, buf_v_;
  KeyMask buf_pad_;
  Index buf_begin_ = 0, buf_count_ = 0;
  // The partial chunk.
  RowMatrix<T> part_q_, part_k_, part_v_;
  KeyMask part_pad_;
  Index part_count_ = 0;
  // Published chunks (capacity = rows).
  RowMatrix<T> kt_, beta_;
  Vector<T> offset_;
  Index done_ = 0;
  // Workspaces.
  Vector<T> q_scaled_, logits_;
  EvaChunkWorkspace<T> chunk_ws_;
};

}  // namespace fastattn::detail
