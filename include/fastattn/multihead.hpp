#pragma once
/// @file multihead.hpp
/// Multi-head, batched attention on 4-D tensors without copies: TensorView (any strides with a
/// contiguous last dimension), multihead() for every method with per-batch key lengths, causal,
/// grouped-query / multi-query attention and threads over (batch, head), and BatchedDecoder for
/// stepping all (batch, head) decoding states together.
///
/// Determinism: each (batch, head) result is computed by one thread with the same code whatever
/// the thread count, and Eigen's own GEMM threading is kept off inside, so results are bitwise
/// identical for any number of threads.

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/detail/common/eigen_threads.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// A 4-D strided view (batch, seq, heads, dim) of T, with the last dimension contiguous. Element
/// (b, n, h, d) is data[b * stride_batch + n * stride_seq + h * stride_head + d * stride_dim].
template <class T>
struct TensorView {
  T* data = nullptr;
  Index batch = 0, seq = 0, heads = 0, dim = 0;
  Index stride_batch = 0, stride_seq = 0, stride_head = 0;
  /// Must be 1 (checked): heads are used as Eigen row-major maps with inner stride 1.
  Index stride_dim = 1;

  using Scalar = std::remove_const_t<T>;
  using HeadMap = std::conditional_t<std::is_const_v<T>, ConstMatMap<Scalar>, MatMap<Scalar>>;

  /// A view of a row-major [B, N, H, D] buffer (e.g. the output of a fused QKV projection).
  static TensorView bnhd(T* data, Index b, Index n, Index h, Index d) {
    return TensorView{data, b, n, h, d, n * h * d, h * d, d, 1};
  }
  /// A view of a row-major [B, H, N, D] buffer (heads first).
  static TensorView bhnd(T* data, Index b, Index h, Index n, Index d) {
    return TensorView{data, b, n, h, d, h * n * d, d, n * d, 1};
  }

  /// Head h of batch element b: a [seq, dim] row-major map with outer stride stride_seq (no copy;
  /// binds to ConstMatRef / MatRef).
  HeadMap head(Index b, Index h) const {
    // (an empty head is not offset: the view's data may be null or not span the offsets)
    const Index offset = seq == 0 || dim == 0 ? 0 : b * stride_batch + h * stride_head;
    return HeadMap(data + offset, seq, dim, Eigen::OuterStride<>(stride_seq));
  }

  /// A TensorView<T> converts to a TensorView<const T>.
  template <class U = T, std::enable_if_t<!std::is_const_v<U>, int> = 0>
  operator TensorView<const U>() const {
    return TensorView<const U>{data,         batch,      seq,         heads,     dim,
                               stride_batch, stride_seq, stride_head, stride_dim};
  }
};

/// How a multi-head call spreads its (batch, head) items over threads.
struct ThreadOptions {
  /// Threads over (batch, head): 0 = all available (OpenMP's max, or the parallel_for hook), 1 =
  /// serial. More than 1 needs OpenMP (compile with it) or a parallel_for hook.
  int threads = 0;
  /// Optional caller-supplied parallel-for (a thread pool): must call task(i) exactly once for
  /// every i in [0, count), possibly concurrently, and return when all calls have returned. Used
  /// instead of OpenMP when set.
  std::function<void(Index count, const std::function<void(Index)>& task)> parallel_for;
};

/// Options of multihead(): the per-call AttentionOptions (key_padding [Nk] applies to every batch
/// element), batching, and threading (ThreadOptions).
struct MultiheadOptions : AttentionOptions, ThreadOptions {
  /// Per batch element, the number of valid keys (keys j >= key_lengths[b] are padding); empty =
  /// all keys valid. Combines with key_padding.
  std::vector<Index> key_lengths;
  /// Per query head ALiBi slopes [Hq] (Exact only; e.g. alibi_slopes(H)); empty = alibi_slope for
  /// every head.
  std::vector<double> alibi_slopes;
};

namespace detail {

template <class T>
void check_view(const char* fn, const char* name, const TensorView<T>& t) {
  FASTATTN_CHECK(t.batch >= 0 && t.seq >= 0 && t.heads >= 0 && t.dim >= 0,
                 fn << ": " << name << " has negative sizes [" << t.batch << ", " << t.seq << ", "
                    << t.heads << ", " << t.dim << "]");
  FASTATTN_CHECK(t.stride_dim == 1, fn << ": " << name << " has stride_dim = " << t.stride_dim
                                       << "; the last dimension must be contiguous (inner stride "
                                          "1): copy the tensor or use a contiguous layout");
  const Index elements = t.batch * t.seq * t.heads * t.dim;
  FASTATTN_CHECK(elements == 0 || t.data != nullptr, fn << ": " << name << " has no data");
  FASTATTN_CHECK(t.seq <= 1 || t.stride_seq >= t.dim || t.dim == 0,
                 fn << ": " << name << " has stride_seq = " << t.stride_seq << " < dim = " << t.dim
                    << " (rows of a head would overlap)");
}

/// The address range [first, last] spanned by a view (strides may be negative).
template <class T>
std::pair<const char*, const char*> view_span(const TensorView<T>& t) {
  const Index extents[3] = {t.batch, t.seq, t.heads};
  const Index strides[3] = {t.stride_batch, t.stride_seq, t.stride_head};
  Index lo = 0, hi = t.dim - 1;
  for (int i = 0; i < 3; ++i) {
    if (extents[i] <= 1) continue;
    const Index reach = strides[i] * (extents[i] - 1);
    (reach < 0 ? lo : hi) += reach;
  }
  const auto* base = reinterpret_cast<const char*>(t.data);
  return {base + lo * Index(sizeof(T)), base + hi * Index(sizeof(T)) + Index(sizeof(T)) - 1};
}

/// True when distinct (batch, seq, head) rows of the view can share memory: with the extents
/// sorted by stride, each stride must step over the whole span of the smaller ones.
template <class T>
bool view_self_overlaps(const TensorView<T>& t) {
  if (t.batch * t.seq * t.heads * t.dim == 0) return false;  // no rows, nothing to overlap
  std::vector<std::pair<Index, Index>> dims;                 // (|stride|, extent)
  if (t.batch > 1) dims.emplace_back(std::abs(t.stride_batch), t.batch);
  if (t.seq > 1) dims.emplace_back(std::abs(t.stride_seq), t.seq);
  if (t.heads > 1) dims.emplace_back(std::abs(t.stride_head), t.heads);
  std::sort(dims.begin(), dims.end());
  Index span = t.dim;  // elements covered by one row
  for (const auto& [stride, extent] : dims) {
    if (stride < span) return true;
    span = stride * (extent - 1) + span;
  }
  return false;
}

template <class A, class B>
bool views_overlap(const TensorView<A>& a, const TensorView<B>& b) {
  if (a.batch * a.seq * a.heads * a.dim == 0 || b.batch * b.seq * b.heads * b.dim == 0)
    return false;
  const auto [a0, a1] = view_span(a);
  const auto [b0, b1] = view_span(b);
  return a0 <= b1 && b0 <= a1;
}

/// Runs task(i) for i in [0, count) on `threads` threads (0 = all available), via the hook,
/// OpenMP, or serially.
inline void run_parallel(Index count, int threads,
                         const std::function<void(Index, const std::function<void(Index)>&)>& hook,
                         const std::function<void(Index)>& task) {
  if (count == 0) return;
  if (hook && threads != 1) {
    hook(count, task);
    return;
  }
#if FASTATTN_HAS_OPENMP
  const int n = threads > 0 ? threads : omp_get_max_threads();
  if (n > 1) {
    // Exceptions must not escape an OpenMP region: keep the first, rethrow after.
    std::exception_ptr error;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n)
    for (Index i = 0; i < count; ++i) {
      try {
        task(i);
      } catch (...) {
#pragma omp critical(fastattn_multihead_error)
        if (!error) error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return;
  }
#endif
  for (Index i = 0; i < count; ++i) task(i);
}

inline void check_threads(const char* fn, const ThreadOptions& opt) {
  FASTATTN_CHECK(opt.threads >= 0,
                 fn << ": threads must be >= 0 (0 = all available), got " << opt.threads);
#if !FASTATTN_HAS_OPENMP
  FASTATTN_CHECK(opt.threads <= 1 || opt.parallel_for,
                 fn << ": threads = " << opt.threads
                    << " needs OpenMP (compile with -fopenmp) or a parallel_for hook");
#endif
}

/// True when Method has forward_group (shared key-side work for GQA).
template <class Method, class T, class = void>
struct has_forward_group : std::false_type {};
template <class Method, class T>
struct has_forward_group<
    Method, T,
    std::void_t<decltype(std::declval<const Method&>().forward_group(
        std::declval<const std::vector<ConstMatMap<T>>&>(), std::declval<ConstMatRef<T>>(),
        std::declval<ConstMatRef<T>>(), std::declval<std::vector<MatMap<T>>&>(),
        std::declval<const AttentionOptions&>()))>> : std::true_type {};

}  // namespace detail

namespace detail {

/// multihead() for inputs of element type In and an output of type Out (T and T, or bfloat16 and
/// float).
template <class Method, class In, class Out>
void multihead_views(const Method& method, TensorView<const In> q, TensorView<const In> k,
                     TensorView<const In> v, TensorView<Out> out, const MultiheadOptions& opt) {
  const char* fn = "multihead";
  check_view(fn, "q", q);
  check_view(fn, "k", k);
  check_view(fn, "v", v);
  check_view(fn, "out", out);
  FASTATTN_CHECK(k.batch == q.batch && v.batch == q.batch && out.batch == q.batch,
                 fn << ": q, k, v and out must have the same batch, got " << q.batch << ", "
                    << k.batch << ", " << v.batch << ", " << out.batch);
  FASTATTN_CHECK(v.seq == k.seq && v.heads == k.heads, fn << ": v [seq " << v.seq << ", heads "
                                                          << v.heads << "] must match k [seq "
                                                          << k.seq << ", heads " << k.heads << "]");
  FASTATTN_CHECK(out.seq == q.seq && out.heads == q.heads && out.dim == v.dim,
                 fn << ": out [seq " << out.seq << ", heads " << out.heads << ", dim " << out.dim
                    << "] must be [Nq " << q.seq << ", Hq " << q.heads << ", Dv " << v.dim << "]");
  FASTATTN_CHECK(k.dim == q.dim, fn << ": k has dim " << k.dim << " but q has D = " << q.dim);
  FASTATTN_CHECK(q.heads == 0 || (k.heads >= 1 && q.heads % k.heads == 0),
                 fn << ": the number of query heads (" << q.heads
                    << ") must be a multiple of the number of key/value heads (" << k.heads << ")");
  FASTATTN_CHECK(
      opt.key_lengths.empty() || Index(opt.key_lengths.size()) == q.batch,
      fn << ": key_lengths has " << opt.key_lengths.size() << " entries but batch = " << q.batch);
  for (Index len : opt.key_lengths)
    FASTATTN_CHECK(len >= 0 && len <= k.seq,
                   fn << ": key_lengths entry " << len << " is outside [0, Nk = " << k.seq << "]");
  FASTATTN_CHECK(
      opt.key_padding.size() == 0 || opt.key_padding.size() == k.seq,
      fn << ": key_padding has length " << opt.key_padding.size() << " but Nk = " << k.seq);
  FASTATTN_CHECK(opt.alibi_slopes.empty() || Index(opt.alibi_slopes.size()) == q.heads,
                 fn << ": alibi_slopes has " << opt.alibi_slopes.size() << " entries but there are "
                    << q.heads << " query heads");
  FASTATTN_CHECK(!view_self_overlaps(out),
                 fn << ": out's strides make different (batch, seq, head) rows overlap");
  FASTATTN_CHECK(!views_overlap(out, q) && !views_overlap(out, k) && !views_overlap(out, v),
                 fn << ": out must not share memory with q, k or v");
  check_threads(fn, opt);

  // Per-batch options: key padding from key_lengths and key_padding.
  const Index batch = q.batch, hq = q.heads, hkv = k.heads, group = hkv ? hq / hkv : 0;
  std::vector<AttentionOptions> per_batch(static_cast<std::size_t>(batch));
  for (Index b = 0; b < batch; ++b) {
    AttentionOptions& o = per_batch[size_t(b)];
    o = static_cast<const AttentionOptions&>(opt);
    if (!opt.key_lengths.empty()) {
      if (o.key_padding.size() == 0) o.key_padding = KeyMask::Constant(k.seq, false);
      o.key_padding.tail(k.seq - opt.key_lengths[size_t(b)]).setConstant(true);
    }
  }

  constexpr bool grouped = has_forward_group<Method, In>::value;
  const bool share_keys = grouped && group > 1 && opt.alibi_slopes.empty();
  const Index items = batch * (share_keys ? hkv : hq);
  run_parallel(items, opt.threads, opt.parallel_for, [&](Index item) {
    SerialEigenScope serial_eigen;
    if constexpr (grouped) {
      if (share_keys) {
        const Index b = item / hkv, g = item % hkv;
        std::vector<ConstMatMap<In>> qs;
        std::vector<MatMap<Out>> outs;
        for (Index h = g * group; h < (g + 1) * group; ++h) {
          qs.push_back(q.head(b, h));
          outs.push_back(out.head(b, h));
        }
        method.forward_group(qs, k.head(b, g), v.head(b, g), outs, per_batch[size_t(b)]);
        return;
      }
    }
    const Index b = item / hq, h = item % hq;
    if (!opt.alibi_slopes.empty()) {
      AttentionOptions o = per_batch[size_t(b)];
      o.alibi_slope = opt.alibi_slopes[size_t(h)];
      method.forward(q.head(b, h), k.head(b, h / group), v.head(b, h / group), out.head(b, h), o);
    } else {
      method.forward(q.head(b, h), k.head(b, h / group), v.head(b, h / group), out.head(b, h),
                     per_batch[size_t(b)]);
    }
  });
}

}  // namespace detail

/// Multi-head attention over q [B, Nq, Hq, D], k [B, Nk, Hkv, D], v [B, Nk, Hkv, Dv] -> out
/// [B, Nq, Hq, Dv] with any `method` (Exact, Favor, Rfa, Eva, ...): query head h reads key/value
/// head h / (Hq / Hkv) (GQA; Hkv = 1 is MQA). For methods with forward_group (Favor, Rfa) the
/// key-side sums of a kv head are computed once and shared by its query heads. Work is spread over
/// (batch, head) on opt.threads threads; results do not depend on the thread count.
/// `method.forward` must be safe to call concurrently (every fastattn method's is).
template <class Method, class T>
void multihead(const Method& method, TensorView<const T> q, TensorView<const T> k,
               TensorView<const T> v, TensorView<T> out, const MultiheadOptions& opt = {}) {
  detail::multihead_views<Method, T, T>(method, q, k, v, out, opt);
}

/// As above for bfloat16 inputs and a float output (Method<float>; docs/bfloat16.md): each head
/// runs the method's bfloat16 forward (Exact: bfloat16 kernels; the others widen the head once).
template <class Method>
void multihead(const Method& method, TensorView<const bfloat16> q, TensorView<const bfloat16> k,
               TensorView<const bfloat16> v, TensorView<float> out,
               const MultiheadOptions& opt = {}) {
  detail::multihead_views<Method, bfloat16, float>(method, q, k, v, out, opt);
}

/// As above for non-const input views (the common case: q, k, v and out all TensorView<T>).
template <class Method, class T, std::enable_if_t<!std::is_const_v<T>, int> = 0>
void multihead(const Method& method, TensorView<T> q, TensorView<T> k, TensorView<T> v,
               TensorView<T> out, const MultiheadOptions& opt = {}) {
  multihead<Method, T>(method, TensorView<const T>(q), TensorView<const T>(k),
                       TensorView<const T>(v), out, opt);
}

/// Decoding states for every (batch, query head) stepping together: each step takes one token
/// per batch element, q_t [B, 1, Hq, D], k_t [B, 1, Hkv, D], v_t [B, 1, Hkv, Dv] -> out_t
/// [B, 1, Hq, Dv]. With GQA, each query head's state is fed its kv head's token.
template <class Method, class T>
class BatchedDecoder {
 public:
  using State = typename Method::State;

  /// States from method.make_state(value_dim) for batch x query_heads; kv_heads divides
  /// query_heads.
  explicit BatchedDecoder(const Method& method, Index batch, Index query_heads, Index kv_heads,
                          Index value_dim)
      : method_(&method), batch_(batch), hq_(query_heads), hkv_(kv_heads) {
    FASTATTN_CHECK(batch >= 0 && query_heads >= 0 && kv_heads >= 1 && query_heads % kv_heads == 0,
                   "BatchedDecoder: need batch >= 0 and query_heads a multiple of kv_heads >= 1, "
                   "got "
                       << batch << ", " << query_heads << ", " << kv_heads);
    states_.reserve(static_cast<std::size_t>(batch * query_heads));
    for (Index i = 0; i < batch * query_heads; ++i) states_.push_back(method.make_state(value_dim));
  }

  /// The state of (batch element b, query head h).
  State& state(Index b, Index h) { return states_[size_t(b * hq_ + h)]; }

  /// One token per batch element; `padded` [B] (empty = none) marks a batch element's token as
  /// padding. Threads as in multihead() (a MultiheadOptions converts to its ThreadOptions);
  /// bitwise identical for any thread count.
  void step(TensorView<const T> q_t, TensorView<const T> k_t, TensorView<const T> v_t,
            TensorView<T> out_t, const std::vector<bool>& padded = {},
            const ThreadOptions& opt = {}) {
    const char* fn = "BatchedDecoder::step";
    for (const auto* view : {&q_t, &k_t, &v_t}) detail::check_view(fn, "input", *view);
    detail::check_view(fn, "out_t", out_t);
    FASTATTN_CHECK(q_t.batch == batch_ && q_t.seq == 1 && q_t.heads == hq_ && k_t.batch == batch_ &&
                       k_t.seq == 1 && k_t.heads == hkv_ && v_t.batch == batch_ && v_t.seq == 1 &&
                       v_t.heads == hkv_ && out_t.batch == batch_ && out_t.seq == 1 &&
                       out_t.heads == hq_,
                   fn << ": expected q_t/out_t [" << batch_ << ", 1, " << hq_
                      << ", .] and k_t/v_t [" << batch_ << ", 1, " << hkv_ << ", .]");
    FASTATTN_CHECK(padded.empty() || Index(padded.size()) == batch_,
                   fn << ": padded has " << padded.size() << " entries but batch = " << batch_);
    detail::check_threads(fn, opt);
    const Index group = hq_ / hkv_;
    detail::run_parallel(batch_ * hq_, opt.threads, opt.parallel_for, [&](Index item) {
      const Index b = item / hq_, h = item % hq_;
      const bool pad = !padded.empty() && padded[size_t(b)];
      method_->step(states_[size_t(item)], q_t.head(b, h), k_t.head(b, h / group),
                    v_t.head(b, h / group), out_t.head(b, h), pad);
    });
  }

 private:
  const Method* method_;
  Index batch_, hq_, hkv_;
  std::vector<State> states_;
};

}  // namespace fastattn
