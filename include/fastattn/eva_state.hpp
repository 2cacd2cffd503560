#pragma once
/// @file eva_state.hpp
/// The causal EVA decoding state, Eva<T>::State (docs/spec/eva.md §6). Reproduces the parallel
/// causal forward token by token: blocked windows (not a sliding window) and chunks published
/// when the first token of the next chunk arrives.

#include <algorithm>
#include <limits>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/eva/chunks.hpp"
#include "fastattn/detail/eva/config.hpp"
#include "fastattn/detail/simd/softmax.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// Per-head causal decoding state of Eva<T>. Make it with Eva::make_state, feed it with Eva::step.
/// Holds the current window's keys and values (at most W + e rows), the partial chunk's rows
/// (at most L), and the published chunks (k̃ [C_done, D], β [C_done, Dv], logit offsets), which
/// grow by one row per L tokens: EVA decoding is not constant-memory.
template <class T>
class EvaState {
 public:
  /// An empty state; a usable one comes from Eva::make_state.
  EvaState() = default;

  /// A state for `config` (the Eva's resolved options) on heads of width head_dim and values of
  /// width value_dim, with chunk length `chunk`, at most `max_tokens` tokens (0 = unbounded) and
  /// logit scale `scale`. Eva::make_state validates these; use it rather than this constructor.
  explicit EvaState(const detail::EvaConfig& config, Index head_dim, Index value_dim, Index chunk,
                    Index max_tokens, T scale);

  /// Number of tokens consumed so far.
  Index tokens() const { return t_; }
  /// Head dimension D of the queries and keys.
  Index head_dim() const { return d_; }
  /// Value dimension Dv of the outputs.
  Index value_dim() const { return dv_; }
  /// Chunk length L.
  Index chunk_length() const { return chunk_; }
  /// The most tokens this state accepts (0 = unbounded).
  Index max_tokens() const { return max_tokens_; }
  /// The logit scale s.
  T scale() const { return scale_; }
  /// Number of published (complete) chunks.
  Index published_chunks() const { return done_; }
  /// Chunks that fit without reallocation.
  Index chunk_capacity() const { return kt_.rows(); }
  /// True when the state was made for an Eva with this configuration and head dimension.
  bool made_for(const detail::EvaConfig& config, Index head_dim) const {
    return d_ == head_dim && window_ == config.window && ext_ == config.ext &&
           disjoint_ == config.disjoint &&
           (config.chunk_size > 0 ? chunk_ == config.chunk_size : max_tokens_ > 0);
  }
  /// Reserves room for a sequence of `total_tokens` tokens, so that step() never allocates up to
  /// that length. Without it, the chunk storage grows geometrically.
  void reserve(Index total_tokens);

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv], with the chunk rule and local bias
  /// of the Eva that made the state. Eva::step validates the arguments and calls this.
  void step(const detail::EvaChunkRule<T>& rule, const RowMatrix<T>& bias,
            const ConstMatRef<T>& q_t, const ConstMatRef<T>& k_t, const ConstMatRef<T>& v_t,
            bool padded, MatRef<T>& out_t);

 private:
  /// Reallocates the chunk storage to `capacity` rows, keeping the published ones.
  void grow(Index capacity);

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
  detail::EvaChunkWorkspace<T> chunk_ws_;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
EvaState<T>::EvaState(const detail::EvaConfig& config, Index head_dim, Index value_dim, Index chunk,
                      Index max_tokens, T scale)
    : d_(head_dim),
      dv_(value_dim),
      window_(config.window),
      ext_(config.ext),
      chunk_(chunk),
      max_tokens_(max_tokens),
      disjoint_(config.disjoint),
      scale_(scale) {
  const Index cap = window_ + ext_;
  buf_k_.resize(cap, d_);
  buf_v_.resize(cap, dv_);
  buf_pad_.resize(cap);
  part_q_.resize(chunk_, d_);
  part_k_.resize(chunk_, d_);
  part_v_.resize(chunk_, dv_);
  part_pad_.resize(chunk_);
  q_scaled_.resize(d_);
  chunk_ws_.reserve(d_, dv_, chunk_);
  grow(max_tokens_ > 0 ? max_tokens_ / chunk_ + 1 : 4);
}

template <class T>
void EvaState<T>::reserve(Index total_tokens) {
  if (chunk_ <= 0) return;
  const Index needed = total_tokens / chunk_ + 1;
  if (needed > chunk_capacity()) grow(needed);
}

template <class T>
void EvaState<T>::step(const detail::EvaChunkRule<T>& rule, const RowMatrix<T>& bias,
                       const ConstMatRef<T>& q_t, const ConstMatRef<T>& k_t,
                       const ConstMatRef<T>& v_t, bool padded, MatRef<T>& out_t) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const Index t = t_;
  // 1. Publish the chunk that the previous token completed (spec §6 step 1).
  if (t > 0 && t % chunk_ == 0) {
    if (done_ == chunk_capacity()) grow(2 * chunk_capacity());
    // The chunk's products are GEMMs Eigen could thread; the per-token ones below are GEMVs,
    // which it never does, so only this branch pays for the scope (about 40 ns per step).
    detail::SerialEigenScope serial_eigen;
    detail::finalize_eva_chunk<T>(rule, part_q_.topRows(part_count_), part_k_.topRows(part_count_),
                                  part_v_.topRows(part_count_), part_pad_.data(), chunk_, chunk_ws_,
                                  kt_, beta_, offset_, done_);
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
  const T inverse_sum = detail::softmax_numerators(all).inverse_sum();
  auto out = out_t.row(0);
  out.noalias() = local.transpose() * buf_v_.topRows(m);
  if (nc > 0) out.noalias() += chunks.transpose() * beta_.topRows(nc);
  out *= inverse_sum;
  ++t_;
}

template <class T>
void EvaState<T>::grow(Index capacity) {
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

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class EvaState<float>;
extern template class EvaState<double>;
#endif

}  // namespace fastattn
