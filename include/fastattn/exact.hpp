#pragma once
/// @file exact.hpp
/// Exact softmax attention, the baseline every approximation is measured against.
/// Semantics: docs/spec/exact.md (bottom-right causal alignment, key padding, empty rows -> 0,
/// bias, ALiBi, log-sum-exp).

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/exact/packed_bf16.hpp"
#include "fastattn/detail/exact/packed_decode.hpp"
#include "fastattn/detail/exact/packed_kernel.hpp"
#include "fastattn/detail/exact/packed_kv.hpp"
#include "fastattn/detail/exact/packed_kv_bf16.hpp"
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

/// The element type of the KV cache of Exact<T>::State.
enum class CacheStorage {
  /// T (float or double): the default.
  Element,
  /// bfloat16 (Exact<float> only; docs/bfloat16.md): half the bytes of a float cache, so a
  /// decoding step, which streams the cache, takes about half the time. Tokens are rounded to
  /// bfloat16 as they are appended; scores, softmax and output stay in float.
  BFloat16,
};

/// Configuration of Exact<T>.
struct ExactOptions {
  ExactKernel kernel = ExactKernel::Blocked;
  /// Query rows per block (Br) of the blocked kernel; 0 = default (192). Tuning only.
  Index block_q = 0;
  /// Keys per block (Bc) of the blocked kernel, rounded up to whole key panels (8 to 32 keys,
  /// depending on the ISA); 0 = default: from D, Dv and the cache sizes, at least 256
  /// (docs/exact_kernel.md, "Blocking"). Tuning only.
  Index block_k = 0;
  /// Element type of the KV cache of the decoding states made by make_state().
  CacheStorage cache = CacheStorage::Element;
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
    FASTATTN_CHECK(options.cache == CacheStorage::Element || (std::is_same_v<T, float>),
                   "Exact<double>: cache = CacheStorage::BFloat16 needs Exact<float> (a bfloat16 "
                   "cache is read with float accumulation; use CacheStorage::Element)");
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
               const AttentionOptions& opt, ConstMatRef<T> bias, VecRef<T> lse) const;

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> float out [Nq, Dv] (Exact<float> only;
  /// docs/bfloat16.md): softmax, accumulation and output in float. With AVX512_BF16
  /// (bfloat16_dot_product()) both products run on vdpbf16ps, the weights rounded to bfloat16
  /// for the second; otherwise K and V are widened to float as they are packed.
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void forward(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k, ConstMatRef<bfloat16> v,
               MatRef<float> out, const AttentionOptions& opt = {}) const {
    forward(q, k, v, out, opt, RowMatrix<float>());
  }

  /// As the bfloat16 forward above, with a float logit `bias` ([Nq, Nk], [1, Nk] or [0, 0]).
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void forward(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k, ConstMatRef<bfloat16> v,
               MatRef<float> out, const AttentionOptions& opt, ConstMatRef<float> bias) const {
    Vector<float> no_lse;
    forward(q, k, v, out, opt, bias, no_lse);
  }

  /// As the bfloat16 forward above, with a float logit `bias` ([Nq, Nk], [1, Nk] or [0, 0]) and
  /// a float log-sum-exp output `lse` ([Nq], or size 0 to skip; -inf on empty rows).
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void forward(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k, ConstMatRef<bfloat16> v,
               MatRef<float> out, const AttentionOptions& opt, ConstMatRef<float> bias,
               VecRef<float> lse) const {
    check_forward(q, k, v, out, opt, bias, lse);
    detail::SerialEigenScope serial_eigen;
    if (options_.kernel == ExactKernel::Reference) {  // the anchor: on the widened inputs
      detail::exact_reference<float>(to_float(q), to_float(k), to_float(v), out, opt, bias, lse);
    } else {
      detail::exact_packed_bf16(q, k, v, out, opt, bias, lse, blocking());
    }
  }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new float [Nq, Dv] matrix (Exact<float>).
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  RowMatrix<float> operator()(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k,
                              ConstMatRef<bfloat16> v, const AttentionOptions& opt = {}) const {
    RowMatrix<float> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

  /// Causal decoding state: a KV cache of the keys [size, D] and values [size, Dv] seen so far,
  /// kept in the kernels' packed layout (appending a token writes it into its key panel; a step
  /// never repacks), with reserved capacity that grows geometrically, so step() does not allocate
  /// once the capacity covers the sequence (see reserve()). The cache holds T, or bfloat16 when
  /// the Exact<float> that made it has cache = CacheStorage::BFloat16.
  class State {
   public:
    /// Number of cached tokens.
    Index size() const { return bf16_ ? cache16_.size() : cache_.size(); }
    /// Tokens the cache holds without reallocating.
    Index capacity() const { return bf16_ ? cache16_.capacity() : cache_.capacity(); }
    /// The element type of the cache.
    CacheStorage storage() const { return bf16_ ? CacheStorage::BFloat16 : CacheStorage::Element; }
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
      if (bf16_)
        cache16_.truncate(tokens);
      else
        cache_.truncate(tokens);
    }
    /// Cached keys [size, D], unpacked into a new matrix (padded tokens read as 0; a bfloat16
    /// cache's keys widened).
    RowMatrix<T> keys() const {
      RowMatrix<T> k(size(), head_dim_);
      for (Index j = 0; j < k.rows(); ++j)
        for (Index c = 0; c < k.cols(); ++c)
          k(j, c) = bf16_ ? T(cache16_.key(j, c)) : cache_.key(j, c);
      return k;
    }
    /// Cached values [size, Dv], unpacked into a new matrix (padded tokens read as 0; a bfloat16
    /// cache's values widened).
    RowMatrix<T> values() const {
      RowMatrix<T> v(size(), value_dim_);
      for (Index j = 0; j < v.rows(); ++j)
        for (Index c = 0; c < v.cols(); ++c)
          v(j, c) = bf16_ ? T(cache16_.value(j, c)) : cache_.value(j, c);
      return v;
    }

   private:
    friend class Exact;
    State(Index value_dim, double scale, double alibi_slope, bool bf16)
        : value_dim_(value_dim), scale_(scale), alibi_slope_(alibi_slope), bf16_(bf16) {}

    void grow(Index tokens) {
      if (tokens <= capacity()) return;
      const Index room = std::max({tokens, 2 * capacity(), Index(64)});
      if (bf16_)
        cache16_.reserve(room);
      else
        cache_.reserve(room);
      decode_.reserve(head_dim_, capacity(), detail::packet_padded<T>(value_dim_), bf16_);
      if (query_.size() < head_dim_) query_.resize(head_dim_);
    }

    detail::PackedKvStorage<T> cache_;     // the cache in T
    detail::PackedKvBf16Storage cache16_;  // or in bfloat16 (T = float)
    detail::DecodeWorkspace<T> decode_;    // buffers of a one-token step
    detail::PackedWorkspace<T> prefill_;   // buffers of a chunked prefill
    Vector<T> query_;                      // a bfloat16 query widened to T
    Index requested_ = 0, head_dim_ = 0;
    Index value_dim_;
    double scale_;  // 0 = 1/sqrt(D)
    double alibi_slope_;
    bool bf16_;  // the cache is cache16_
  };

  /// A decoding state for values of width `value_dim` (default scale, no ALiBi).
  State make_state(Index value_dim) const { return make_state(value_dim, AttentionOptions{}); }

  /// A decoding state for values of width `value_dim` using opt.scale and opt.alibi_slope
  /// (decoding is causal by construction; per-token padding is an argument of step()), with room
  /// for `capacity` tokens; its cache holds options().cache.
  State make_state(Index value_dim, const AttentionOptions& opt, Index capacity = 0) const;

  /// Appends n >= 1 tokens (k_t [n, D], v_t [n, Dv]) to the cache and writes the causal attention
  /// of q_t [n, D] over the whole cache to out_t [n, Dv]. n = 1 is one decoding step; n > 1 is a
  /// chunked prefill. Feeding a sequence through step() equals forward() with causal = true.
  void step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
            MatRef<T> out_t) const;

  /// As step() above; `padded` marks the new tokens' keys as padding (never visible).
  void step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
            MatRef<T> out_t, bool padded) const;

  /// As step() above with bfloat16 tokens (Exact<float>; either cache storage): q_t [n, D],
  /// k_t [n, D], v_t [n, Dv] -> float out_t [n, Dv].
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void step(State& state, ConstMatRef<bfloat16> q_t, ConstMatRef<bfloat16> k_t,
            ConstMatRef<bfloat16> v_t, MatRef<float> out_t, bool padded = false) const {
    step_tokens(state, q_t, k_t, v_t, out_t, padded);
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new [Nq, Dv] matrix.
  RowMatrix<T> operator()(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                          const AttentionOptions& opt = {}) const {
    RowMatrix<T> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

 private:
  /// The checks of every forward overload (In = T or bfloat16).
  template <class In>
  static void check_forward(const ConstMatRef<In>& q, const ConstMatRef<In>& k,
                            const ConstMatRef<In>& v, const MatRef<T>& out,
                            const AttentionOptions& opt, const ConstMatRef<T>& bias,
                            const VecRef<T>& lse) {
    detail::check_qkv_views<T>("Exact::forward", q, k, v, out, opt);
    FASTATTN_CHECK(bias.size() == 0 ||
                       (bias.cols() == k.rows() && (bias.rows() == 1 || bias.rows() == q.rows())),
                   "Exact::forward: bias " << detail::shape(bias) << " must be [Nq, Nk] = ["
                                           << q.rows() << ", " << k.rows() << "], [1, " << k.rows()
                                           << "] or empty");
    FASTATTN_CHECK(lse.size() == 0 || lse.size() == q.rows(),
                   "Exact::forward: lse has size " << lse.size() << " but q " << detail::shape(q)
                                                   << " has Nq = " << q.rows() << " rows");
  }

  /// step() for tokens of element type In (T, or bfloat16 with T = float).
  template <class In>
  void step_tokens(State& state, const ConstMatRef<In>& q_t, const ConstMatRef<In>& k_t,
                   const ConstMatRef<In>& v_t, MatRef<T>& out_t, bool padded) const {
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
      state.cache16_.set_dims(d, state.value_dim_);
    }
    detail::SerialEigenScope serial_eigen;
    state.grow(std::max(state.size() + n, state.requested_));
    // A padded token is stored with zero key and value and masked: it is never visible, and
    // garbage in its value cannot reach an output through 0 * NaN.
    const Index first = state.size();
    for (Index t = 0; t < n; ++t) {
      if (state.bf16_)
        state.cache16_.append(k_t.row(t).data(), v_t.row(t).data(), padded);
      else
        state.cache_.append(k_t.row(t).data(), v_t.row(t).data(), padded);
    }

    AttentionOptions opt;
    opt.scale = state.scale_;
    opt.alibi_slope = state.alibi_slope_;
    const double scale = detail::resolve_scale(opt, d);
    // One token's decoding step over the first `size` cached tokens (query row t).
    auto decode = [&](Index t, Index size) {
      const T* q = nullptr;
      if constexpr (std::is_same_v<In, T>) {
        q = q_t.row(t).data();
      } else {
        for (Index dd = 0; dd < d; ++dd) state.query_[dd] = detail::widen<T>(q_t(t, dd));
        q = state.query_.data();
      }
      T* out = out_t.row(t).data();
      if constexpr (std::is_same_v<T, float>) {
        if (state.bf16_) {
          auto view = state.cache16_.view();
          view.size = size;
          detail::exact_packed_decode<float>(q, view, scale, opt.alibi_slope, state.decode_, out);
          return;
        }
      }
      auto view = state.cache_.view();
      view.size = size;
      detail::exact_packed_decode<T>(q, view, scale, opt.alibi_slope, state.decode_, out);
    };
    if (n == 1) {
      decode(0, first + 1);
      return;
    }
    // Chunked prefill: bottom-right causal attention of the n new queries.
    opt.causal = true;
    Vector<T> no_lse;
    VecRef<T> lse(no_lse);
    if (!state.bf16_) {
      detail::exact_packed_attention<T>(q_t, state.cache_.view(), out_t, opt, nullptr, lse,
                                        blocking(), state.prefill_);
      return;
    }
#if FASTATTN_BF16_DOT
    if constexpr (std::is_same_v<T, float>)
      detail::exact_packed_attention<float>(q_t, state.cache16_.view(), out_t, opt, nullptr, lse,
                                            blocking(), state.prefill_);
#else
    // Without vdpbf16ps there are no tile kernels for a bfloat16 cache: token by token, query t
    // sees the first first + t + 1 tokens (the same causal attention).
    for (Index t = 0; t < n; ++t) decode(t, first + t + 1);
#endif
  }

  detail::PackedBlocking blocking() const {
    detail::PackedBlocking b;
    if (options_.block_q > 0) b.block_q = options_.block_q;
    if (options_.block_k > 0) b.block_k = options_.block_k;
    return b;
  }

  ExactOptions options_;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
void Exact<T>::forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                       const AttentionOptions& opt, ConstMatRef<T> bias, VecRef<T> lse) const {
  check_forward(q, k, v, out, opt, bias, lse);
  detail::SerialEigenScope serial_eigen;
  if (options_.kernel == ExactKernel::Reference) {
    detail::exact_reference<T>(q, k, v, out, opt, bias, lse);
  } else {
    detail::exact_packed<T>(q, k, v, out, opt, bias, lse, blocking());
  }
}

template <class T>
auto Exact<T>::make_state(Index value_dim, const AttentionOptions& opt, Index capacity) const
    -> State {
  FASTATTN_CHECK(value_dim >= 0, "Exact::make_state: value_dim must be >= 0, got " << value_dim);
  detail::check_scale_and_slope<T>("Exact::make_state", opt);
  FASTATTN_CHECK(opt.key_padding.size() == 0,
                 "Exact::make_state: key_padding must be empty; pass padding per token to step()");
  State state(value_dim, opt.scale, opt.alibi_slope, options_.cache == CacheStorage::BFloat16);
  state.reserve(capacity);
  return state;
}

template <class T>
void Exact<T>::step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
                    MatRef<T> out_t) const {
  step_tokens(state, q_t, k_t, v_t, out_t, false);
}

template <class T>
void Exact<T>::step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
                    MatRef<T> out_t, bool padded) const {
  step_tokens(state, q_t, k_t, v_t, out_t, padded);
}

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

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class Exact<float>;
extern template class Exact<double>;
#endif

}  // namespace fastattn
