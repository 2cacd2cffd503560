#pragma once
/// @file sequence_parallel.hpp
/// Sequence parallelism over MPI: one attention head whose sequence is split across the ranks of
/// a communicator, each rank holding a contiguous block of tokens (rank order = sequence order).
/// Exact attention runs as ring attention (Liu, Zaharia, Abbeel, "Ring Attention with Blockwise
/// Transformers for Near-Infinite Context", 2023): the K/V blocks travel the ring while each rank
/// attends its queries to the block it holds, merging partial results by log-sum-exp. Favor and
/// Rfa exchange only their key-side state: an all-reduce (non-causal) or an exclusive scan
/// (causal) of the m x (Dv + 1) key sums (Sun et al., "Linear Attention Sequence Parallelism",
/// 2024). Cost model, overlap conditions and measurements: docs/sequence_parallel.md.
///
/// Opt-in: this header needs <mpi.h> (link MPI::MPI_CXX); fastattn.hpp does not include it.

#include <mpi.h>

#include <climits>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/linear/causal.hpp"
#include "fastattn/detail/linear/random_feature_method.hpp"
#include "fastattn/detail/parallel/agreement.hpp"
#include "fastattn/detail/parallel/linear_scan.hpp"
#include "fastattn/detail/parallel/mpi.hpp"
#include "fastattn/detail/parallel/ring_attention.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/options.hpp"
#include "fastattn/rfa.hpp"
#include "fastattn/sequence_parallel_options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

// Declared (not defined) here so that sequence_parallel can reject it without its header.
template <class T>
class ClusteredEva;

namespace detail {

template <class Method, template <class> class Template>
struct is_instance_of : std::false_type {};
template <class T, template <class> class Template>
struct is_instance_of<Template<T>, Template> : std::true_type {};
template <class Method, template <class> class Template>
inline constexpr bool is_instance_of_v = is_instance_of<Method, Template>::value;

template <class>
inline constexpr bool unsupported_parallel_method = false;

/// The summary of this rank's call for the agreement step.
template <class T>
CallSummary summarize_call(ParallelMethod method, const ConstMatRef<T>& q, const ConstMatRef<T>& v,
                           const AttentionOptions& opt, TokenLayout layout,
                           std::uint64_t fingerprint) {
  CallSummary s;
  s.rows = q.rows();
  s.padded = opt.key_padding.size() != 0 && opt.key_padding.any();
  s.method = static_cast<std::int64_t>(method);
  s.element_size = sizeof(T);
  s.head_dim = q.cols();
  s.value_dim = v.cols();
  s.causal = opt.causal;
  s.layout = static_cast<std::int64_t>(layout);
  s.scale_bits = double_bits(opt.scale);
  s.fingerprint = static_cast<std::int64_t>(fingerprint);
  return s;
}

/// The checks every method shares: shapes (check_qkv), self-attention blocks (q and k hold the
/// same tokens), block lengths that fit an MPI count, no ALiBi (it needs global positions).
template <class T>
void check_parallel_call(const char* fn, const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                         const ConstMatRef<T>& v, const MatRef<T>& out,
                         const AttentionOptions& opt) {
  check_qkv<T>(fn, q, k, v, out, opt);
  FASTATTN_CHECK(q.rows() == k.rows(),
                 fn << ": q_local " << shape(q) << " and k_local " << shape(k)
                    << " must hold the same tokens (self-attention: Nq = Nk on every rank)");
  FASTATTN_CHECK(k.rows() <= INT_MAX, fn << ": a block of " << k.rows()
                                         << " tokens exceeds an MPI count (INT_MAX)");
  FASTATTN_CHECK(opt.alibi_slope == 0,
                 fn << ": ALiBi (alibi_slope = " << opt.alibi_slope
                    << ") is not supported by sequence_parallel (it needs global positions)");
}

/// Exact attention over the ranks of comm (see sequence_parallel); `timings` (optional) receives
/// the phase breakdown.
template <class T>
void exact_sequence_parallel(const Exact<T>& method, MPI_Comm comm, const ConstMatRef<T>& q,
                             const ConstMatRef<T>& k, const ConstMatRef<T>& v, MatRef<T>& out,
                             const AttentionOptions& opt, const SequenceParallelOptions& sp,
                             RingTimings* timings = nullptr) {
  const char* fn = "sequence_parallel(Exact)";
  const SequenceLayout layout = agree_on_call(
      comm, summarize_call<T>(ParallelMethod::Exact, q, v, opt, sp.layout, 0),
      [&] { check_parallel_call<T>(fn, q, k, v, out, opt); });
  const MpiCommDup own(comm);
  ring_attention(method, own.get(), layout, q, k, v, out, opt, sp.layout, timings);
}

/// A fingerprint of what a random-feature call computes with: the projection and the maps'
/// settings, so ranks built with different seeds or options are caught in the agreement step.
template <class T>
std::uint64_t linear_fingerprint(const RowMatrix<T>& projection, const LinearCall<T>& call) {
  std::uint64_t h = fnv1a(projection.data(), static_cast<std::size_t>(projection.size()) * sizeof(T));
  const FeatureMap<T>* maps[2] = {call.query_map, call.key_map};
  for (const FeatureMap<T>* map : maps) {
    const FeatureMapOptions& o = map->options();
    const double settings[5] = {double(map->feature_dim()), double(static_cast<int>(map->kind())),
                                o.input_scale, o.optimal_a, o.relu_eps};
    h = fnv1a(settings, sizeof settings, h);
    h = fnv1a(map->dim_scale().data(), static_cast<std::size_t>(map->dim_scale().size()) * sizeof(T),
              h);
    h = fnv1a(&o.normalize, sizeof o.normalize, h);
  }
  const double core[2] = {double(call.options.chunk_size), call.options.den_eps};
  return fnv1a(core, sizeof core, h);
}

/// Favor or Rfa over the ranks of comm (see sequence_parallel). `log_gates` (gated RFA only) is
/// this rank's [n_r] log-gates; `timings` (optional) receives the phase breakdown.
template <class Method, class T>
void linear_method_sequence_parallel(const Method& method, MPI_Comm comm,
                                     const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                                     const ConstMatRef<T>& v, MatRef<T>& out,
                                     const AttentionOptions& opt,
                                     const SequenceParallelOptions& sp,
                                     const ConstVecRef<T>* log_gates = nullptr,
                                     LinearScanTimings* timings = nullptr) {
  constexpr bool favor = is_instance_of_v<Method, Favor>;
  const char* fn = favor ? "sequence_parallel(Favor)"
                         : (log_gates ? "sequence_parallel(Rfa, gated)" : "sequence_parallel(Rfa)");
  const ParallelMethod kind =
      favor ? ParallelMethod::Favor : (log_gates ? ParallelMethod::RfaGated : ParallelMethod::Rfa);
  // Favor folds sqrt(scale) into its features: the scale must be positive before the call's
  // input factor means anything.
  const bool scale_ok = !favor || resolve_scale(opt, method.head_dim()) > 0;
  const std::optional<LinearCall<T>> call =
      scale_ok ? LinearMethodAccess::call(method, opt) : std::nullopt;
  const std::uint64_t fingerprint = call ? linear_fingerprint(method.projection(), *call) : 0;
  const SequenceLayout layout = agree_on_call(
      comm, summarize_call<T>(kind, q, v, opt, sp.layout, fingerprint), [&] {
        FASTATTN_CHECK(q.cols() == method.head_dim(), fn << ": q_local " << shape(q)
                                                         << " must have D = head_dim = "
                                                         << method.head_dim() << " columns");
        check_parallel_call<T>(fn, q, k, v, out, opt);
        FASTATTN_CHECK(scale_ok, fn << ": scale must be > 0 for random features (they use "
                                       "sqrt(scale)); 0 selects 1/sqrt(D), got "
                                    << opt.scale);
        FASTATTN_CHECK(call.has_value(),
                       fn << ": this Favor fits its features to each call's data (a compat mode, "
                             "rescale, or FAVOR++ with a per-call A*), which would need the whole "
                             "sequence; use fixed features (compat = None, rescale = false, a "
                             "fixed optimal_a)");
        FASTATTN_CHECK(sp.layout == TokenLayout::Contiguous,
                       fn << ": the zig-zag layout is for exact causal attention; linear methods "
                             "are balanced with contiguous blocks");
        if (log_gates) check_log_gates<T>(fn, *log_gates, k.rows());
      });
  const MpiCommDup own(comm);
  if (log_gates)
    linear_sequence_parallel(*call, own.get(), layout, q, k, v, out, opt,
                             Gated<T>{log_gates->data()}, timings);
  else
    linear_sequence_parallel(*call, own.get(), layout, q, k, v, out, opt, Ungated{}, timings);
}

}  // namespace detail

/// Sequence-parallel attention of one head. Collective over `comm`: every rank calls it with the
/// same method (constructed identically, e.g. the same seed), options and head dimensions.
///
/// Rank r holds rows q_local, k_local [n_r, D], v_local [n_r, Dv] of the sequence (self-attention:
/// q and k of a rank cover the same tokens), rank order being sequence order: rank r's first token
/// is token n_0 + ... + n_{r-1}. Blocks may differ in length, and may be empty. out_local [n_r, Dv]
/// receives rank r's rows of method.forward() on the whole sequence (to rounding).
///
/// opt applies to the whole sequence (scale, causal), except opt.key_padding, which is the mask
/// of the LOCAL block: length n_r, or empty for none. ALiBi is rejected (it needs global
/// positions).
///
/// Methods: Exact<T> (ring attention), Favor<T> with fixed features (all-reduce or scan of the key
/// sums), Rfa<T>. Eva<T> and ClusteredEva<T> are rejected with std::invalid_argument (their
/// sequence-parallel form needs a window halo and chunk summaries: docs/sequence_parallel.md);
/// any other Method type is a compile-time error.
///
/// Errors: before any data moves, every rank checks its own arguments and the ranks compare a
/// summary of their calls (one MPI_Allgather). A bad argument on any rank, or ranks that disagree
/// (D, Dv, scale, causal, method, T), make EVERY rank throw the same std::invalid_argument (naming
/// the first failing rank and its message), so no rank is left waiting in an exchange. Failing MPI
/// calls throw std::runtime_error (under MPI_ERRORS_RETURN; the default handler aborts).
///
/// Calling: T is deduced from Eigen::Ref arguments; with plain matrices name it,
/// sequence_parallel<Exact<float>, float>(exact, comm, q, k, v, out, opt).
template <class Method, class T>
void sequence_parallel(const Method& method, MPI_Comm comm, ConstMatRef<T> q_local,
                       ConstMatRef<T> k_local, ConstMatRef<T> v_local, MatRef<T> out_local,
                       const AttentionOptions& opt = {}) {
  sequence_parallel<Method, T>(method, comm, q_local, k_local, v_local, out_local, opt,
                               SequenceParallelOptions{});
}

/// As above, with the token layout (sp.layout = TokenLayout::ZigZag: exact causal attention with
/// each rank holding an early and a late chunk; see TokenLayout).
template <class Method, class T>
void sequence_parallel(const Method& method, MPI_Comm comm, ConstMatRef<T> q_local,
                       ConstMatRef<T> k_local, ConstMatRef<T> v_local, MatRef<T> out_local,
                       const AttentionOptions& opt, const SequenceParallelOptions& sp) {
  if constexpr (detail::is_instance_of_v<Method, Exact>) {
    static_assert(std::is_same_v<Method, Exact<T>>,
                  "fastattn::sequence_parallel: the method's element type must be T");
    detail::exact_sequence_parallel<T>(method, comm, q_local, k_local, v_local, out_local, opt,
                                       sp);
  } else if constexpr (detail::is_instance_of_v<Method, Favor> ||
                       detail::is_instance_of_v<Method, Rfa>) {
    static_assert(std::is_same_v<Method, Favor<T>> || std::is_same_v<Method, Rfa<T>>,
                  "fastattn::sequence_parallel: the method's element type must be T");
    detail::linear_method_sequence_parallel<Method, T>(method, comm, q_local, k_local, v_local,
                                                       out_local, opt, sp);
  } else if constexpr (detail::is_instance_of_v<Method, Eva> ||
                       detail::is_instance_of_v<Method, ClusteredEva>) {
    (void)method, (void)q_local, (void)k_local, (void)v_local, (void)out_local, (void)opt;
    (void)sp;
    // Through the agreement step, so ranks that (wrongly) mix method types fail together too.
    constexpr const char* name = detail::is_instance_of_v<Method, Eva> ? "Eva" : "ClusteredEva";
    detail::CallSummary summary;
    summary.element_size = sizeof(T);
    detail::agree_on_call(comm, summary, [&] {
      FASTATTN_CHECK(false, name << " has no sequence-parallel form yet (it would need a halo "
                                    "exchange of the local windows and gathered chunk or cluster "
                                    "summaries; see docs/sequence_parallel.md); use Exact, Favor "
                                    "or Rfa");
    });
  } else {
    static_assert(detail::unsupported_parallel_method<Method>,
                  "fastattn::sequence_parallel: Method must be Exact<T>, Favor<T> or Rfa<T> "
                  "(Eva<T> and ClusteredEva<T> are rejected at run time)");
  }
}

/// Gated causal RFA (RFA-Gate) over the ranks of comm: as sequence_parallel() above with causal
/// implied and log_gates_local [n_r] = log g_t of this rank's tokens (finite, <= 0; see
/// Rfa::forward_gated_log). The gates of later ranks decay the state of earlier ones exactly as
/// in the single-process pass. Call it as sequence_parallel<float>(rfa, comm, q, k, v, lg, out)
/// when the arguments are plain matrices.
template <class T>
void sequence_parallel(const Rfa<T>& method, MPI_Comm comm, ConstMatRef<T> q_local,
                       ConstMatRef<T> k_local, ConstMatRef<T> v_local,
                       ConstVecRef<T> log_gates_local, MatRef<T> out_local,
                       AttentionOptions opt = {}) {
  opt.causal = true;
  detail::linear_method_sequence_parallel<Rfa<T>, T>(method, comm, q_local, k_local, v_local,
                                                     out_local, opt, SequenceParallelOptions{},
                                                     &log_gates_local);
}

}  // namespace fastattn
