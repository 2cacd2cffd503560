#pragma once
/// @file exact.hpp
/// Exact softmax attention, the baseline every approximation is measured against.
/// Semantics: spec/exact.md (bottom-right causal alignment, key padding, empty rows -> 0, bias,
/// ALiBi, log-sum-exp).

#include <cmath>
#include <type_traits>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/detail/checks.hpp"
#include "fastattn/detail/exact_reference.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// Which implementation Exact<T> runs. Both compute the same function.
enum class ExactKernel {
  /// One query row at a time with the row's logits materialized; simple and obviously right.
  Reference,
};

/// Configuration of Exact<T>.
struct ExactOptions {
  ExactKernel kernel = ExactKernel::Reference;
};

/// Exact softmax attention: out_i = sum_j softmax_j(s q_i.k_j + b_ij) v_j over the visible keys.
///
/// Thread safety: const member functions may be called concurrently on one object.
template <class T>
class Exact {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "fastattn::Exact<T>: T must be float or double");

 public:
  explicit Exact(ExactOptions options = {}) : options_(options) {}

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
    detail::exact_reference<T>(q, k, v, out, opt, bias, lse);
  }

  /// q [Nq, D], k [Nk, D], v [Nk, Dv] -> a new [Nq, Dv] matrix.
  RowMatrix<T> operator()(ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v,
                          const AttentionOptions& opt = {}) const {
    RowMatrix<T> out(q.rows(), v.cols());
    forward(q, k, v, out, opt);
    return out;
  }

 private:
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
