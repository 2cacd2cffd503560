#pragma once
/// @file eva.hpp
/// EVA: attention with a local window computed exactly and the rest of the keys summarized per
/// chunk by a control-variate estimate.
///
/// Paper: Lin Zheng, Jianbo Yuan, Chong Wang, Lingpeng Kong, "Efficient Attention via Control
/// Variates", ICLR 2023 (arXiv:2302.04542). Official code: HKUNLP/efficient-attention @ 531ff51.
/// Semantics: docs/spec/eva.md. `Reference` reproduces the official eval-mode output (§3, §5.2);
/// `Disjoint` is the paper's estimator over a true partition of the keys (§5.3); the decoding state
/// is §6.

#include <cmath>
#include <optional>
#include <type_traits>
#include <utility>

#include "fastattn/bfloat16.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/detail/common/widen_inputs.hpp"
#include "fastattn/detail/eva/chunks.hpp"
#include "fastattn/detail/eva/config.hpp"
#include "fastattn/detail/eva/geometry.hpp"
#include "fastattn/detail/eva/projection.hpp"
#include "fastattn/detail/eva/window.hpp"
#include "fastattn/eva_options.hpp"
#include "fastattn/eva_state.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// EVA attention (self-attention: Nq = Nk) over one head.
///
/// Cost per head: O(n (S_w + C')(D + Dv)) for the windows plus O(n (D + Dv)(1 + 2e/L)) for the
/// chunk statistics; linear in n for a fixed number of chunks. Thread safety: const member
/// functions may be called concurrently on one object; a State must not be shared between
/// threads.
template <class T>
class Eva {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "fastattn::Eva<T>: T must be float or double");

 public:
  /// The causal decoding state (spec §6); see make_state() and step().
  using State = EvaState<T>;

  /// Validates everything that does not depend on the input and resolves the defaults once;
  /// throws std::invalid_argument.
  explicit Eva(Index head_dim, EvaOptions options, EvaParams<T> params = {});

  /// D, the head dimension of q and k.
  Index head_dim() const { return head_dim_; }
  /// The options given to the constructor.
  const EvaOptions& options() const { return options_; }
  /// The learned parameters given to the constructor.
  const EvaParams<T>& params() const { return params_; }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> float out [Nq, Dv] (Eva<float> only;
  /// docs/bfloat16.md): the inputs are widened to float once; features and sums in float.
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  void forward(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k, ConstMatRef<bfloat16> v,
               MatRef<float> out, const AttentionOptions& opt = {}) const {
    detail::forward_widened(*this, "Eva::forward", q, k, v, out, opt);
  }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new float [Nq, Dv] matrix (T = float).
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  RowMatrix<float> operator()(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k,
                              ConstMatRef<bfloat16> v, const AttentionOptions& opt = {}) const {
    RowMatrix<float> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

  /// q [n, D], k [n, D], v [n, Dv] -> out [n, Dv]. opt supplies the scale (0 = 1/sqrt(D); the
  /// Reference parity needs the default), causal and key_padding; alibi_slope must be 0.
  void forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
               const AttentionOptions& opt = {}) const;

  /// q [n, D], k [n, D], v [n, Dv] -> a new [n, Dv] matrix.
  RowMatrix<T> operator()(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                          const AttentionOptions& opt = {}) const {
    RowMatrix<T> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

  /// q, k [n, D], v [n, Dv] -> the per-chunk intermediates of forward() with the same arguments:
  /// kt [C', D], mu [C', D], beta [C', Dv], offset [C'] (chunk c starts at token c L; 2-D: tiles in
  /// row-major order). For debugging and parity checks.
  EvaChunkStats<T> chunk_stats(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                               const AttentionOptions& opt = {}) const;

  /// A decoding state for outputs of Dv = value_dim columns, with the default scale. Needs
  /// options.chunk_size (num_chunks derives L from the sequence length: use the overload with an
  /// EvaSequenceLength).
  State make_state(Index value_dim) const { return make_state(value_dim, AttentionOptions{}); }

  /// An unbounded decoding state for outputs of Dv = value_dim columns (needs options.chunk_size).
  /// opt supplies the scale (decoding is always causal; opt.causal is ignored; key_padding must be
  /// empty: pass padding per token to step()). `capacity` reserves room for that many tokens
  /// (a hint, as for Exact::make_state: the state grows past it).
  State make_state(Index value_dim, const AttentionOptions& opt, Index capacity = 0) const;

  /// A decoding state for a sequence of exactly `length.tokens` = n tokens (at most n steps):
  /// required with options.num_chunks (L = floor(n_p / C) as in the parallel forward over n
  /// tokens), and checked against the same domain as forward() on n tokens. Otherwise as above.
  State make_state(Index value_dim, const AttentionOptions& opt, EvaSequenceLength length) const;

  /// One token: q_t [1, D], k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]. Feeding tokens 0..n-1 equals
  /// forward() with causal = true (same scale). Does not allocate once the state has capacity.
  void step(State& s, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
            MatRef<T> out_t) const {
    step(s, q_t, k_t, v_t, out_t, false);
  }

  /// As above, for a token that is padded (`padded` = true): it is not a key for any query, and
  /// its own output is unspecified (spec §6 step 4; finite).
  void step(State& s, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t, MatRef<T> out_t,
            bool padded) const;

 private:
  void check_make_state(const char* fn, Index value_dim, const AttentionOptions& opt) const {
    FASTATTN_CHECK(value_dim >= 0, fn << ": value_dim must be >= 0, got " << value_dim);
    FASTATTN_CHECK(options_.grid_height == 0,
                   fn << ": decoding is causal and the 2-D mode (options.grid_height/grid_width) "
                         "is non-causal only");
    FASTATTN_CHECK(opt.key_padding.size() == 0,
                   fn << ": opt.key_padding must be empty (got length " << opt.key_padding.size()
                      << "); pass each token's padding to step(..., padded)");
    check_no_alibi(fn, opt);
    detail::check_scale_and_slope<T>(fn, opt);
  }

  void check_projection(const char* name, const EvaProjection<T>& p) const {
    const Index d = head_dim_;
    FASTATTN_CHECK(p.weight.rows() == d && p.weight.cols() == d,
                   "Eva: " << name << ".weight " << detail::shape(p.weight) << " must be [D, D] = ["
                           << d << ", " << d << "]");
    FASTATTN_CHECK(p.bias.size() == d, "Eva: " << name << ".bias has size " << p.bias.size()
                                               << " but must have D = " << d << " entries");
    FASTATTN_CHECK((p.ln_gamma.size() == 0 && p.ln_beta.size() == 0) ||
                       (p.ln_gamma.size() == d && p.ln_beta.size() == d),
                   "Eva: " << name << ".ln_gamma (size " << p.ln_gamma.size() << ") and " << name
                           << ".ln_beta (size " << p.ln_beta.size()
                           << ") must both be empty (no LayerNorm) or both have D = " << d
                           << " entries");
  }

  static void check_no_alibi(const char* fn, const AttentionOptions& opt) {
    FASTATTN_CHECK(opt.alibi_slope == 0,
                   fn << ": alibi_slope = " << opt.alibi_slope
                      << " is not supported: EVA's chunk summaries cannot represent a per-pair "
                         "ALiBi bias (use params.local_bias for a local position bias)");
  }

  void check_call(const char* fn, const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                  const ConstMatRef<T>& v, const MatRef<T>& out,
                  const AttentionOptions& opt) const {
    detail::check_qkv<T>(fn, q, k, v, out, opt);
    FASTATTN_CHECK(q.cols() == head_dim_,
                   fn << ": q " << detail::shape(q) << " has D = " << q.cols()
                      << " but this Eva was built for head_dim = " << head_dim_);
    FASTATTN_CHECK(q.rows() == k.rows(), fn << ": EVA is self-attention: q " << detail::shape(q)
                                            << " and k " << detail::shape(k)
                                            << " must have Nq = Nk");
    check_no_alibi(fn, opt);
  }

  void check_bias(const char* fn, const detail::EvaGeometry& g) const {
    const RowMatrix<T>& b = params_.local_bias;
    FASTATTN_CHECK(
        b.size() == 0 || (b.rows() == g.window_queries() && b.cols() == g.window_slots()),
        fn << ": params.local_bias " << detail::shape(b) << " must be [" << g.window_queries()
           << ", " << g.window_slots() << "] for a " << (g.causal ? "causal" : "non-causal")
           << " call (S_w = "
           << (g.causal  ? "W + e"
               : g.two_d ? "(W + 2e)^2"
                         : "W + 2e")
           << ")");
  }

  detail::EvaChunkRule<T> chunk_rule(T scale, bool causal) const {
    detail::EvaChunkRule<T> r;
    r.f_q = detail::eva_map(params_.mu_q);
    r.f_k = detail::eva_map(params_.mu_k);
    r.scale = scale;
    r.mu_scale = static_cast<T>(config_.mu_scale(causal));
    r.disjoint = config_.disjoint;
    return r;
  }

  Index head_dim_;
  EvaOptions options_;
  detail::EvaConfig config_;  // options_ validated, defaults resolved (once)
  EvaParams<T> params_;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class T>
Eva<T>::Eva(Index head_dim, EvaOptions options, EvaParams<T> params)
    : head_dim_(head_dim),
      options_(options),
      config_(detail::make_eva_config(options)),
      params_(std::move(params)) {
  FASTATTN_CHECK(head_dim >= 1, "Eva: head_dim must be at least 1, got " << head_dim);
  if (params_.mu_q) check_projection("params.mu_q", *params_.mu_q);
  if (params_.mu_k) check_projection("params.mu_k", *params_.mu_k);
  const RowMatrix<T>& b = params_.local_bias;
  if (b.size() != 0) {
    const Index w = options.window, e = options.ext;
    if (options.grid_height > 0) {
      FASTATTN_CHECK(b.rows() == w * w && b.cols() == (w + 2 * e) * (w + 2 * e),
                     "Eva: params.local_bias "
                         << detail::shape(b) << " must be [W^2, (W + 2e)^2] = [" << w * w << ", "
                         << (w + 2 * e) * (w + 2 * e) << "] in 2-D (window " << w << ", ext " << e
                         << ")");
    } else {
      FASTATTN_CHECK(b.rows() == w && (b.cols() == w + 2 * e || b.cols() == w + e),
                     "Eva: params.local_bias " << detail::shape(b) << " must be [W, S_w] = [" << w
                                               << ", " << w + 2 * e << "] (non-causal) or [" << w
                                               << ", " << w + e << "] (causal) for window " << w
                                               << ", ext " << e);
    }
  }
}

template <class T>
void Eva<T>::forward(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                     const AttentionOptions& opt) const {
  const char* fn = "Eva::forward";
  check_call(fn, q, k, v, out, opt);
  if (q.rows() == 0) return;
  detail::SerialEigenScope serial_eigen;
  const detail::EvaGeometry g = detail::resolve_eva_geometry(config_, q.rows(), opt.causal, fn);
  check_bias(fn, g);
  const T scale = static_cast<T>(detail::resolve_scale(opt, head_dim_));
  EvaChunkStats<T> stats;
  detail::EvaChunkWorkspace<T> ws;
  detail::compute_eva_chunk_stats<T>(g, chunk_rule(scale, opt.causal), q, k, v, opt.key_padding,
                                     stats, ws);
  detail::EvaWindows<T> windows(g, stats, q, k, v, opt.key_padding, params_.local_bias, scale, out);
  for (Index w = 0; w < g.num_windows(); ++w) windows.run(w);
}

template <class T>
auto Eva<T>::chunk_stats(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                         const AttentionOptions& opt) const -> EvaChunkStats<T> {
  const char* fn = "Eva::chunk_stats";
  RowMatrix<T> unused(q.rows(), v.cols());
  check_call(fn, q, k, v, unused, opt);
  EvaChunkStats<T> stats;
  if (q.rows() == 0) return stats;
  detail::SerialEigenScope serial_eigen;
  const detail::EvaGeometry g = detail::resolve_eva_geometry(config_, q.rows(), opt.causal, fn);
  const T scale = static_cast<T>(detail::resolve_scale(opt, head_dim_));
  detail::EvaChunkWorkspace<T> ws;
  detail::compute_eva_chunk_stats<T>(g, chunk_rule(scale, opt.causal), q, k, v, opt.key_padding,
                                     stats, ws);
  return stats;
}

template <class T>
auto Eva<T>::make_state(Index value_dim, const AttentionOptions& opt, Index capacity) const
    -> State {
  const char* fn = "Eva::make_state";
  FASTATTN_CHECK(capacity >= 0, fn << ": capacity must be >= 0, got " << capacity);
  check_make_state(fn, value_dim, opt);
  const detail::EvaConfig& c = config_;
  FASTATTN_CHECK(c.chunk_size > 0,
                 fn << ": options.num_chunks = " << c.num_chunks
                    << " derives the chunk length from the sequence length; pass "
                       "EvaSequenceLength{n} (or set options.chunk_size instead)");
  const Index chunk = c.chunk_size;
  if (c.disjoint) {
    FASTATTN_CHECK(c.window % chunk == 0 && c.ext % chunk == 0,
                   fn << ": unbounded Disjoint decoding needs options.chunk_size = " << chunk
                      << " to divide window (" << c.window << ") and ext (" << c.ext
                      << ") so that every window's key range starts and ends on chunk "
                         "boundaries; or pass EvaSequenceLength{n}");
  } else {
    FASTATTN_CHECK(chunk <= c.window && c.window % chunk == 0,
                   fn << ": causal Reference with options.chunk_size = " << chunk
                      << " needs chunk_size <= window and window % chunk_size == 0 (window = "
                      << c.window << "), as asserted by the official code");
  }
  State s(c, head_dim_, value_dim, chunk, 0, static_cast<T>(detail::resolve_scale(opt, head_dim_)));
  s.reserve(capacity);
  return s;
}

template <class T>
auto Eva<T>::make_state(Index value_dim, const AttentionOptions& opt,
                        EvaSequenceLength length) const -> State {
  const char* fn = "Eva::make_state";
  FASTATTN_CHECK(length.tokens >= 1,
                 fn << ": the sequence length must be >= 1, got " << length.tokens);
  check_make_state(fn, value_dim, opt);
  const Index chunk = detail::resolve_eva_geometry(config_, length.tokens, true, fn).cols.chunk;
  return State(config_, head_dim_, value_dim, chunk, length.tokens,
               static_cast<T>(detail::resolve_scale(opt, head_dim_)));
}

template <class T>
void Eva<T>::step(State& s, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
                  MatRef<T> out_t, bool padded) const {
  const char* fn = "Eva::step";
  FASTATTN_CHECK(s.made_for(config_, head_dim_),
                 fn << ": the state was not made by an Eva with these options (use this "
                       "object's make_state)");
  FASTATTN_CHECK(
      q_t.rows() == 1 && q_t.cols() == head_dim_ && k_t.rows() == 1 && k_t.cols() == head_dim_,
      fn << ": q_t " << detail::shape(q_t) << " and k_t " << detail::shape(k_t)
         << " must be [1, D] = [1, " << head_dim_ << "]");
  const Index dv = s.value_dim();
  FASTATTN_CHECK(v_t.rows() == 1 && v_t.cols() == dv && out_t.rows() == 1 && out_t.cols() == dv,
                 fn << ": v_t " << detail::shape(v_t) << " and out_t " << detail::shape(out_t)
                    << " must be [1, Dv] = [1, " << dv << "] (the state's value_dim)");
  FASTATTN_CHECK(!detail::overlaps(out_t, q_t) && !detail::overlaps(out_t, k_t) &&
                     !detail::overlaps(out_t, v_t),
                 fn << ": out_t must not share memory with q_t, k_t or v_t");
  FASTATTN_CHECK(s.max_tokens() == 0 || s.tokens() < s.max_tokens(),
                 fn << ": the state was made for a sequence of " << s.max_tokens()
                    << " tokens, and all of them have been consumed");
  const RowMatrix<T>& bias = params_.local_bias;
  FASTATTN_CHECK(bias.size() == 0 || bias.cols() == config_.window + config_.ext,
                 fn << ": params.local_bias " << detail::shape(bias) << " must be [W, W + e] = ["
                    << config_.window << ", " << config_.window + config_.ext
                    << "] for causal decoding");
  s.step(chunk_rule(s.scale(), true), bias, q_t, k_t, v_t, padded, out_t);
}

// Explicit instantiation declarations (FASTATTN_EXTERN_TEMPLATES; fastattn/instances.hpp).
#if FASTATTN_EXTERN_TEMPLATES
extern template class Eva<float>;
extern template class Eva<double>;
#endif

}  // namespace fastattn
