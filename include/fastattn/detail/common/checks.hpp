#pragma once
/// @file detail/common/checks.hpp
/// Argument validation shared by every method (implementation detail, no API promise).

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <utility>

#include "fastattn/config.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Streams a matrix shape as "[rows, cols]".
struct Shape {
  Index rows, cols;
};
template <class Derived>
Shape shape(const Eigen::EigenBase<Derived>& m) {
  return {m.rows(), m.cols()};
}
inline std::ostream& operator<<(std::ostream& os, Shape s) {
  return os << '[' << s.rows << ", " << s.cols << ']';
}

/// True when the memory spanned by two row-major views (inner stride 1) overlaps.
template <class A, class B>
bool overlaps(const A& a, const B& b) {
  if (a.size() == 0 || b.size() == 0) return false;
  auto span = [](const auto& m) {
    const auto* first = m.data();
    const auto* last = first + (m.rows() - 1) * m.outerStride() + m.cols();  // one past the end
    return std::pair<std::uintptr_t, std::uintptr_t>(reinterpret_cast<std::uintptr_t>(first),
                                                     reinterpret_cast<std::uintptr_t>(last));
  };
  const auto [a0, a1] = span(a);
  const auto [b0, b1] = span(b);
  return a0 < b1 && b0 < a1;
}

/// "Owner::function" in messages, e.g. {"Favor", "forward"}: streamed only when a check fails, so
/// naming the caller costs nothing per call. Every check below takes a `const char*` or this.
struct FunctionName {
  const char* owner;
  const char* function;
};
inline std::ostream& operator<<(std::ostream& os, FunctionName name) {
  return os << name.owner << "::" << name.function;
}

/// Validates opt.scale and opt.alibi_slope: finite, the slope >= 0, and both representable in T
/// (a double scale of 1e300 would become inf in float and every logit with it).
template <class T, class Name>
void check_scale_and_slope(const Name& method, const AttentionOptions& opt) {
  constexpr double t_max = static_cast<double>(std::numeric_limits<T>::max());
  FASTATTN_CHECK(
      std::isfinite(opt.scale) && std::abs(opt.scale) <= t_max,
      method << ": scale must be finite and within the range of the element type (|scale| <= "
             << t_max << "; 0 selects 1/sqrt(D)), got " << opt.scale);
  FASTATTN_CHECK(std::isfinite(opt.alibi_slope) && opt.alibi_slope >= 0 && opt.alibi_slope <= t_max,
                 method << ": alibi_slope must be finite, >= 0 and within the range of the element "
                           "type, got "
                        << opt.alibi_slope);
}

/// Validates the arguments every method shares: q [Nq, D], k [Nk, D], v [Nk, Dv], out [Nq, Dv],
/// D >= 1, a key mask of length Nk (or empty), a finite scale, and an output that does not alias
/// an input. `method` names the caller in messages, e.g. "Exact::forward". Any row-major views
/// (e.g. bfloat16 inputs with a float output); T is the type the scale and slope must fit.
template <class T, class Name, class In, class Out>
void check_qkv_views(const Name& method, const In& q, const In& k, const In& v, const Out& out,
                     const AttentionOptions& opt) {
  FASTATTN_CHECK(q.cols() >= 1,
                 method << ": head dimension D of q " << shape(q) << " must be at least 1");
  FASTATTN_CHECK(k.cols() == q.cols(), method << ": k " << shape(k) << " must have D = " << q.cols()
                                              << " columns like q " << shape(q));
  FASTATTN_CHECK(v.rows() == k.rows(), method << ": v " << shape(v) << " must have Nk = "
                                              << k.rows() << " rows like k " << shape(k));
  FASTATTN_CHECK(out.rows() == q.rows() && out.cols() == v.cols(),
                 method << ": out " << shape(out) << " must be [Nq, Dv] = [" << q.rows() << ", "
                        << v.cols() << "] for q " << shape(q) << " and v " << shape(v));
  FASTATTN_CHECK(opt.key_padding.size() == 0 || opt.key_padding.size() == k.rows(),
                 method << ": key_padding has length " << opt.key_padding.size() << " but k "
                        << shape(k) << " has Nk = " << k.rows() << " keys");
  check_scale_and_slope<T>(method, opt);
  FASTATTN_CHECK(!overlaps(out, q) && !overlaps(out, k) && !overlaps(out, v),
                 method << ": out " << shape(out) << " must not share memory with q, k or v");
}

/// check_qkv_views on the element type T of every method.
template <class T, class Name>
void check_qkv(const Name& method, const ConstMatRef<T>& q, const ConstMatRef<T>& k,
               const ConstMatRef<T>& v, const MatRef<T>& out, const AttentionOptions& opt) {
  check_qkv_views<T>(method, q, k, v, out, opt);
}

/// The logit scale: opt.scale, or 1/sqrt(D) when it is 0.
inline double resolve_scale(const AttentionOptions& opt, Index head_dim) {
  return opt.scale != 0 ? opt.scale : 1.0 / std::sqrt(static_cast<double>(head_dim));
}

/// True when key j is padded.
inline bool is_padded(const KeyMask& mask, Index j) { return mask.size() != 0 && mask[j]; }

}  // namespace fastattn::detail
