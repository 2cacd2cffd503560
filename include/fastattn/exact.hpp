#pragma once
/// @file exact.hpp
/// Exact softmax attention, the baseline every approximation is measured against.
/// Semantics: docs/spec/exact.md (bottom-right causal alignment, key padding, empty rows -> 0,
/// bias, ALiBi, log-sum-exp).

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/exact/packed_decode.hpp"
#include "fastattn/detail/exact/packed_kernel.hpp"
#include "fastattn/detail/exact/packed_kv.hpp"
#include "fastattn/detail/exact/reference.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// Which implementation Exact<T> runs. Both compute the same function.
enum class ExactKernel {
  /// Blocked online softmax (docs/spec/exact.md §7) over keys and values packed once per call,
  /// with register-blocked micro-kernels (docs/exact_kernel.md); never an Nq x Nk buffer. The
  /// default.
  Blocked,
  /// One query row at a time with the row's logits materialized; simple and obviously right. The
  /// anchor the blocked kernel is tested against. Applies to forward(); decoding (State) always
  /// runs the packed kernels on its packed cache.
  Reference,
};

/// Configuration of Exact<T>.
struct ExactOptions {
  ExactKernel kernel = ExactKernel::Blocked;
  /// Query rows per block (Br) of the blocked kernel; 0 = default (96). Tuning only.
  Index block_q = 0;
  /// Keys per block (Bc) of the blocked kernel, rounded up to whole key panels (8 to 32 keys,
  /// depending on the ISA); 0 = default (256). Tuning only.
  Index block_k = 0;
};

/// Exact softmax attention: out_i = sum_j softmax_j(s q_i.k_j + b_ij) v_j over the visible keys.
///
/// Thread safety: const member functions may be called concurrently on one object.
template <class T>
class Exact {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "fastattn::Exact<T>: T must be float or double");

 public:
  /// An exact attention method with the given kernel and tiling (defaults: the blocked kernel).
  explicit Exact(ExactOptions options = {}) : options_(options) {
    FASTATTN_CHECK(options.block_q >= 0 && options.block_k >= 0,
                   "Exact: block_q and block_k must be >= 0 (0 = default), got "
                       << options.block_q << " and " << options.block_k);
  }

  /// The options given to the constructor.
  const ExactOptions& options() const { return options_; }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv].
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt = {}) const {
    forward(q, k, v, out, opt, RowMatrix<T>());
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv], with an additive logit `bias` ([Nq, Nk],
  /// [1, Nk] broadcast over queries, or [0, 0] for none; entries finite or -inf, added after
  /// scaling).
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt, ConstMatRef<T> bias) const {
    Vector<T> no_lse;
    forward(q, k, v, out, opt, bias, no_lse);
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> out [Nq, Dv], with an additive logit `bias` ([Nq, Nk],
  /// [1, Nk] broadcast over queries, or [0, 0] for none; entries finite or -inf, added after
  /// scaling) and an optional log-sum-exp output `lse` ([Nq], or size 0 to skip; -inf on empty
  /// rows).
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt, ConstMatRef<T> bias, VecRef<T> lse) const {
    detail::check_qkv<T>("Exact::forward", q, k, v, out, opt);
    FASTATTN_CHECK(bias.size() == 0 ||
                       (bias.cols() == k.rows() && (bias.rows() == 1 || bias.rows() == q.rows())),
                   "Exact::forward: bias " << detail::shape(bias) << " must be [Nq, Nk] = ["
                                           << q.rows() << ", " << k.rows() << "], [1, " << k.rows()
                                           << "] or empty");
    FASTATTN_CHECK(lse.size() == 0 || lse.size() == q.rows(),
                   "Exact::forward: lse has size " << lse.size() << " but q " << detail::shape(q)
                                                   << " has Nq = " << q.rows() << " rows");
    detail::SerialEigenScope serial_eigen;
    if (options_.kernel == ExactKernel::Reference) {
      detail::exact_reference<T>(q, k, v, out, opt, bias, lse);
    } else {
      detail::exact_packed<T>(q, k, v, out, opt, bias, lse, blocking());
    }
  }

  /// Causal decoding state: a KV cache of the keys [size, D] and values [size, Dv] seen so far,
  /// kept in the kernels' packed layout (appending a token writes it into its key panel; a step
  /// never repacks), with reserved capacity that grows geometrically, so step() does not allocate
  /// once the capacity covers the sequence (see reserve()).
  class State {
   public:
    /// Number of cached tokens.
    Index size() const { return cache_.size(); }
    /// Tokens the cache holds without reallocating.
    Index capacity() const { return cache_.capacity(); }
    /// Makes room for `tokens` tokens in total (allocates now if D is known, else at the first
    /// step).
    void reserve(Index tokens) {
      FASTATTN_CHECK(tokens >= 0, "Exact::State::reserve: tokens must be >= 0, got " << tokens);
      requested_ = std::max(requested_, tokens);
      if (head_dim_ > 0) grow(requested_);
    }
    /// Drops every token after the first `tokens` (a rollback, e.g. for speculative decoding);
    /// keeps the capacity. O(1).
    void truncate(Index tokens) {
      FASTATTN_CHECK(
          tokens >= 0 && tokens <= size(),
          "Exact::State::truncate: tokens must be in [0, " << size() << "], got " << tokens);
      cache_.truncate(tokens);
    }
    /// Cached keys [size, D], unpacked into a new matrix (padded tokens read as 0).
    RowMatrix<T> keys() const {
      RowMatrix<T> k(size(), head_dim_);
      for (Index j = 0; j < k.rows(); ++j)
        for (Index c = 0; c < k.cols(); ++c) k(j, c) = cache_.key(j, c);
      return k;
    }
    /// Cached values [size, Dv], unpacked into a new matrix (padded tokens read as 0).
    RowMatrix<T> values() const {
      RowMatrix<T> v(size(), value_dim_);
      for (Index j = 0; j < v.rows(); ++j)
        for (Index c = 0; c < v.cols(); ++c) v(j, c) = cache_.value(j, c);
      return v;
    }

   private:
    friend class Exact;
    State(Index value_dim, double scale, double alibi_slope)
        : value_dim_(value_dim), scale_(scale), alibi_slope_(alibi_slope) {}

    void grow(Index tokens) {
      if (tokens <= cache_.capacity()) return;
      cache_.reserve(std::max({tokens, 2 * cache_.capacity(), Index(64)}));
      decode_.reserve(head_dim_, cache_.capacity(), detail::packet_padded<T>(value_dim_));
    }

    detail::PackedKvStorage<T> cache_;
    detail::DecodeWorkspace<T> decode_;   // buffers of a one-token step
    detail::PackedWorkspace<T> prefill_;  // buffers of a chunked prefill
    Index requested_ = 0, head_dim_ = 0;
    Index value_dim_;
    double scale_;  // 0 = 1/sqrt(D)
    double alibi_slope_;
  };

  /// A decoding state for values of width `value_dim` (default scale, no ALiBi).
  State make_state(Index value_dim) const { return make_state(value_dim, AttentionOptions{}); }

  /// A decoding state for values of width `value_dim` using opt.scale and opt.alibi_slope
  /// (decoding is causal by construction; per-token padding is an argument of step()), with room
  /// for `capacity` tokens.
  State make_state(Index value_dim, const AttentionOptions& opt, Index capacity = 0) const {
    FASTATTN_CHECK(value_dim >= 0, "Exact::make_state: value_dim must be >= 0, got " << value_dim);
    detail::check_scale_and_slope<T>("Exact::make_state", opt);
    FASTATTN_CHECK(
        opt.key_padding.size() == 0,
        "Exact::make_state: key_padding must be empty; pass padding per token to step()");
    State state(value_dim, opt.scale, opt.alibi_slope);
    state.reserve(capacity);
    return state;
  }

  /// Appends n >= 1 tokens (k_t [n, D], v_t [n, Dv]) to the cache and writes the causal attention
  /// of q_t [n, D] over the whole cache to out_t [n, Dv]. n = 1 is one decoding step; n > 1 is a
  /// chunked prefill. Feeding a sequence through step() equals forward() with causal = true.
  void step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
            MatRef<T> out_t) const {
    step(state, q_t, k_t, v_t, out_t, false);
  }

  /// As step() above; `padded` marks the new tokens' keys as padding (never visible).
  void step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
            MatRef<T> out_t, bool padded) const {
    const Index n = q_t.rows();
    FASTATTN_CHECK(n >= 1, "Exact::step: q_t " << detail::shape(q_t) << " must have a row");
    const Index d = state.head_dim_ != 0 ? state.head_dim_ : q_t.cols();  // the first step sets D
    FASTATTN_CHECK(d >= 1 && q_t.cols() == d && k_t.rows() == n && k_t.cols() == d,
                   "Exact::step: q_t " << detail::shape(q_t) << " and k_t " << detail::shape(k_t)
                                       << " must both be [n, D] with D = " << d << " >= 1");
    FASTATTN_CHECK(v_t.rows() == n && v_t.cols() == state.value_dim_,
                   "Exact::step: v_t " << detail::shape(v_t) << " must be [" << n << ", "
                                       << state.value_dim_ << "] (value_dim of the state)");
    FASTATTN_CHECK(out_t.rows() == n && out_t.cols() == state.value_dim_,
                   "Exact::step: out_t " << detail::shape(out_t) << " must be [" << n << ", "
                                         << state.value_dim_ << "]");
    FASTATTN_CHECK(!detail::overlaps(out_t, q_t) && !detail::overlaps(out_t, k_t) &&
                       !detail::overlaps(out_t, v_t),
                   "Exact::step: out_t " << detail::shape(out_t)
                                         << " must not share memory with q_t, k_t or v_t");
    if (state.head_dim_ == 0) {  // only once the call is known to be valid
      state.head_dim_ = d;
      state.cache_.set_dims(d, state.value_dim_);
    }
    detail::SerialEigenScope serial_eigen;
    state.grow(std::max(state.size() + n, state.requested_));
    // A padded token is stored with zero key and value and masked: it is never visible, and
    // garbage in its value cannot reach an output through 0 * NaN.
    for (Index t = 0; t < n; ++t) state.cache_.append(k_t.row(t).data(), v_t.row(t).data(), padded);

    AttentionOptions opt;
    opt.scale = state.scale_;
    opt.alibi_slope = state.alibi_slope_;
    if (n == 1) {
      detail::exact_packed_decode<T>(q_t.row(0).data(), state.cache_.view(),
                                     detail::resolve_scale(opt, d), opt.alibi_slope, state.decode_,
                                     out_t.row(0).data());
    } else {  // chunked prefill: bottom-right causal attention of the n new queries
      opt.causal = true;
      Vector<T> no_lse;
      VecRef<T> lse(no_lse);
      detail::exact_packed_attention<T>(q_t, state.cache_.view(), out_t, opt, nullptr, lse,
                                        blocking(), state.prefill_);
    }
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new [Nq, Dv] matrix.
  RowMatrix<T> operator()(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                          const AttentionOptions& opt = {}) const {
    RowMatrix<T> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

 private:
  detail::PackedBlocking blocking() const {
    detail::PackedBlocking b;
    if (options_.block_q > 0) b.block_q = options_.block_q;
    if (options_.block_k > 0) b.block_k = options_.block_k;
    return b;
  }

  ExactOptions options_;
};

/// The standard ALiBi slopes for `heads` heads (Press et al.): 2^(-8(h+1)/H) when H is a power of
/// two; otherwise the P = 2^floor(log2 H) power-of-two slopes followed by the odd-indexed slopes of
/// the 2P-head sequence.
inline std::vector<double> alibi_slopes(Index heads) {
  FASTATTN_CHECK(heads >= 1, "alibi_slopes: heads must be at least 1, got " << heads);
  Index p = 1;
  while (p * 2 <= heads) p *= 2;
  std::vector<double> slopes;
  slopes.reserve(static_cast<std::size_t>(heads));
  for (Index h = 0; h < p; ++h)
    slopes.push_back(std::exp2(-8.0 * static_cast<double>(h + 1) / static_cast<double>(p)));
  for (Index t = 0; t < heads - p; ++t)
    slopes.push_back(std::exp2(-4.0 * static_cast<double>(2 * t + 1) / static_cast<double>(p)));
  return slopes;
}

}  // namespace fastattn
