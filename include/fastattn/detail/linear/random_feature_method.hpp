#pragma once
/// @file detail/linear/random_feature_method.hpp
/// What Favor<T> and Rfa<T> have in common: a projection (drawn from a seed, or the caller's),
/// explicit redraw, one validation per call, the call into the linear-attention core, grouped
/// queries (GQA), operator() and the decoding step.
///
/// Why a CRTP base rather than a member both own: these are public member functions of both
/// classes (redraw, operator(), forward_group, step). A member would still need a forwarding
/// function for each of them in both classes, which is the duplication this removes; the base
/// asks the method only for what differs (its feature maps and core options).

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear.hpp"
#include "fastattn/linear_state.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// What the linear core needs to run one call of a random-feature method outside the method's
/// own forward() (sequence parallelism): its feature maps, core options and per-call input
/// factor. The maps belong to the method and stay valid until its next redraw().
template <class T>
struct LinearCall {
  const FeatureMap<T>* query_map;
  const FeatureMap<T>* key_map;
  LinearOptions options;
  T input_factor;
};

template <class Derived, class T>
class RandomFeatureMethod;

/// The one way to reach a method's LinearCall (kept out of the methods' public interface).
struct LinearMethodAccess {
  /// The core's view of a call with options `opt`, or null when the method fits its features to
  /// each call's data (compat modes, rescaling, FAVOR++'s per-call A*): only forward() runs those.
  template <class Derived, class T>
  static std::optional<LinearCall<T>> call(const RandomFeatureMethod<Derived, T>& method,
                                           const AttentionOptions& opt) {
    return method.linear_call(opt);
  }
};

/// Base of a random-feature attention method. Derived provides:
///   static constexpr const char* kName;             // "Favor", "Rfa": prefixes messages
///   void draw(std::uint64_t seed);                  // draws a projection, calls set_projection
///   const FeatureMap<T>& query_map() const, key_map() const;  // maps of the default call
///   LinearOptions linear_options() const;
///   bool fixed_maps(const AttentionOptions&) const;  // the maps above serve this call
///   T input_factor(const AttentionOptions&) const;   // per-call factor on the inputs
///   void forward(q, k, v, out, opt) const;           // the method's own forward
///
/// Thread safety: const members may be called concurrently; redraw() may not run concurrently
/// with anything else on the same object.
template <class Derived, class T>
class RandomFeatureMethod {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "fastattn: random-feature methods take T = float or double");

 public:
  /// Draws a new projection from `seed` (explicit; nothing is ever redrawn implicitly). Not for a
  /// method built from a caller's projection (it would be replaced by a drawn one): that throws.
  void redraw(std::uint64_t seed) {
    FASTATTN_CHECK(!caller_projection_, Derived::kName
                                            << "::redraw: this " << Derived::kName
                                            << " uses a caller-supplied projection; construct a "
                                               "new one with the new projection instead");
    derived().draw(seed);
  }

  /// D, the head dimension of q and k.
  Index head_dim() const { return head_dim_; }
  /// The projection W [m, D] (Rfa: sigma included).
  const RowMatrix<T>& projection() const { return *projection_; }
  /// m, the number of projections (rows of W).
  Index num_projections() const { return projection_->rows(); }
  /// M, the feature dimension (2m for sin/cos and hyperbolic features, else m).
  Index feature_dim() const { return derived().query_map().feature_dim(); }
  /// M, the feature dimension.
  [[deprecated(
      "ambiguous next to options().num_features (m): use feature_dim() (M) or "
      "num_projections() (m)")]] Index
  num_features() const {
    return feature_dim();
  }

  /// Grouped-query attention: query heads q[g] [Nq, D] sharing k [Nk, D], v [Nk, Dv] ->
  /// out[g] [Nq, Dv]; the key-side work is done once for the group when the method's maps do not
  /// depend on the call's data. Each result equals forward() on that head.
  void forward_group(const std::vector<ConstMatMap<T>>& q, ConstMatRef<T> k, ConstMatRef<T> v,
                     std::vector<MatMap<T>>& out, const AttentionOptions& opt = {}) const;

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new [Nq, Dv] matrix.
  RowMatrix<T> operator()(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                          const AttentionOptions& opt = {}) const {
    RowMatrix<T> out(q.rows(), v.cols());
    derived().forward(q, k, v, out, opt);
    return out;
  }

  /// bfloat16 q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new float [Nq, Dv] matrix (T = float).
  template <class U = T, std::enable_if_t<std::is_same_v<U, float>, int> = 0>
  RowMatrix<float> operator()(ConstMatRef<bfloat16> q, ConstMatRef<bfloat16> k,
                              ConstMatRef<bfloat16> v, const AttentionOptions& opt = {}) const {
    RowMatrix<float> out(q.rows(), v.cols());
    derived().forward(q, k, v, out, opt);
    return out;
  }

  /// Causal decoding state: the key sums [M, Dv + 1] and the running key shift, O(M Dv) memory
  /// whatever the sequence length; owns its feature map (sharing the projection), so a later
  /// redraw() does not affect it.
  using State = LinearDecodingState<T>;

  /// One token: q_t, k_t [1, D], v_t [1, Dv] -> out_t [1, Dv]; token by token equals the causal
  /// forward(). `padded` marks the token's key as padding. Does not allocate.
  void step(State& state, ConstMatRef<T> q_t, ConstMatRef<T> k_t, ConstMatRef<T> v_t,
            MatRef<T> out_t, bool padded = false) const {
    state.step(q_t, k_t, v_t, out_t, padded);
  }

 protected:
  RandomFeatureMethod() = default;

  /// For a drawn projection: the head dimension (checked).
  void set_head_dim(Index head_dim) {
    FASTATTN_CHECK(head_dim >= 1,
                   Derived::kName << ": head_dim must be at least 1, got " << head_dim);
    head_dim_ = head_dim;
  }

  /// For the caller's projection [m, D]: `num_projections` (the options' count) must be 0 or m.
  void set_caller_projection(RowMatrix<T> projection, Index num_projections) {
    FASTATTN_CHECK(projection.rows() >= 1 && projection.cols() >= 1,
                   Derived::kName << ": projection " << shape(projection) << " must be non-empty");
    FASTATTN_CHECK(num_projections == 0 || num_projections == projection.rows(),
                   Derived::kName << ": num_features = " << num_projections << " but projection "
                                  << shape(projection) << " has " << projection.rows() << " rows");
    head_dim_ = projection.cols();
    caller_projection_ = true;
    set_projection(std::move(projection));
  }

  /// Installs a projection [m, D]; the derived class then builds its maps from
  /// shared_projection().
  void set_projection(RowMatrix<T> projection) {
    projection_ = std::make_shared<const RowMatrix<T>>(std::move(projection));
  }
  const std::shared_ptr<const RowMatrix<T>>& shared_projection() const { return projection_; }

  /// The validation of one call (once per call: the core entry below does not repeat it).
  void check_call(const char* fn, const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                  const ConstMatRef<T>& v, const MatRef<T>& out,
                  const AttentionOptions& opt) const {
    FASTATTN_CHECK(q.cols() == head_dim_, fn_name(fn) << ": q " << shape(q)
                                                      << " must have D = head_dim = " << head_dim_
                                                      << " columns");
    check_no_alibi(fn, opt);
    check_qkv<T>(fn_name(fn), q, k, v, out, opt);
  }

  /// ALiBi is a per-pair bias: random features cannot represent it.
  static void check_no_alibi(const char* fn, const AttentionOptions& opt) {
    FASTATTN_CHECK(opt.alibi_slope == 0,
                   fn_name(fn) << ": ALiBi (alibi_slope = " << opt.alibi_slope
                               << ") cannot be represented by random features; use Exact");
  }

  /// The checks make_state shares: value_dim >= 0, no ALiBi, padding per token, a valid scale.
  void check_make_state(Index value_dim, const AttentionOptions& opt) const {
    FASTATTN_CHECK(value_dim >= 0, fn_name("make_state")
                                       << ": value_dim must be >= 0, got " << value_dim);
    check_scale_and_slope<T>(fn_name("make_state"), opt);
    check_no_alibi("make_state", opt);
    FASTATTN_CHECK(opt.key_padding.size() == 0, fn_name("make_state")
                                                    << ": key_padding must be empty (got length "
                                                    << opt.key_padding.size()
                                                    << "); pass each token's padding to step()");
  }

  /// Validated arguments, the method's fixed maps -> the core.
  LinearStats run_fixed_maps(const ConstMatRef<T>& q, const ConstMatRef<T>& k,
                             const ConstMatRef<T>& v, MatRef<T>& out,
                             const AttentionOptions& opt) const;

  static FunctionName fn_name(const char* fn) { return {Derived::kName, fn}; }

 private:
  friend struct LinearMethodAccess;
  std::optional<LinearCall<T>> linear_call(const AttentionOptions& opt) const {
    if (!derived().fixed_maps(opt)) return std::nullopt;
    return LinearCall<T>{&derived().query_map(), &derived().key_map(), derived().linear_options(),
                         derived().input_factor(opt)};
  }

  const Derived& derived() const { return static_cast<const Derived&>(*this); }
  Derived& derived() { return static_cast<Derived&>(*this); }

  std::shared_ptr<const RowMatrix<T>> projection_;
  Index head_dim_ = 0;
  bool caller_projection_ = false;
};

// The entry points, defined outside the class so that FASTATTN_EXTERN_TEMPLATES can keep them
// from being compiled in every translation unit (docs/instances.md).
template <class Derived, class T>
void RandomFeatureMethod<Derived, T>::forward_group(const std::vector<ConstMatMap<T>>& q,
                                                    ConstMatRef<T> k, ConstMatRef<T> v,
                                                    std::vector<MatMap<T>>& out,
                                                    const AttentionOptions& opt) const {
  FASTATTN_CHECK(q.size() == out.size(), Derived::kName << "::forward_group: " << q.size()
                                                        << " query heads but " << out.size()
                                                        << " outputs");
  if (!derived().fixed_maps(opt)) {  // maps fitted per call: each head on its own
    for (std::size_t g = 0; g < q.size(); ++g) derived().forward(q[g], k, v, out[g], opt);
    return;
  }
  for (std::size_t g = 0; g < q.size(); ++g) {
    FASTATTN_CHECK(q[g].rows() == q[0].rows(),
                   Derived::kName << "::forward_group: every query head must have the same Nq, "
                                     "got "
                                  << q[g].rows() << " and " << q[0].rows());
    check_call("forward_group", q[g], k, v, MatRef<T>(out[g]), opt);
  }
  const QueryHeads<T> heads{q.data(), out.data(), Index(q.size())};
  linear_attention_heads<T>(derived().query_map(), derived().key_map(), heads, k, v, opt,
                            derived().linear_options(), derived().input_factor(opt));
}

template <class Derived, class T>
auto RandomFeatureMethod<Derived, T>::run_fixed_maps(const ConstMatRef<T>& q,
                                                     const ConstMatRef<T>& k,
                                                     const ConstMatRef<T>& v, MatRef<T>& out,
                                                     const AttentionOptions& opt) const
    -> LinearStats {
  SingleHead<T> head(q, out);
  return linear_attention_heads<T>(derived().query_map(), derived().key_map(), head.heads(), k, v,
                                   opt, derived().linear_options(), derived().input_factor(opt));
}

}  // namespace fastattn::detail
