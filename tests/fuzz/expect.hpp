#pragma once
/// @file expect.hpp
/// The expected output of a call: the independent double reference of tests/reference/ (the
/// values), and around it the error model of a T evaluation (the per-entry tolerances, see
/// fuzz_attention.cpp), for each method. eps and tiny are T's epsilon and smallest normal number.

#include <vector>

#include "../reference/eva.hpp"
#include "../reference/exact.hpp"
#include "../reference/linear.hpp"
#include "harness.hpp"

namespace fastattn::fuzz {

/// Exact attention (expect_softmax.cpp); *lse and *lse_tol receive the log-sum-exps and their
/// tolerances when given.
Expect exact_expect(const MatD& q, const MatD& k, const MatD& v, const ref::ExactSpec& spec,
                    double eps, double tiny, VecD* lse = nullptr, VecD* lse_tol = nullptr);

/// EVA, 1-D (expect_softmax.cpp).
Expect eva_expect(const MatD& q, const MatD& k, const MatD& v, const ref::EvaSpec& spec, double eps,
                  double tiny);

/// Favor (non-compat kernels) with its projection w (expect_linear.cpp). `t_max` is T's largest
/// finite value (the range the library keeps the rescaling in).
Expect favor_expect(const FavorOptions& o, const MatD& w, const MatD& q, const MatD& k,
                    const MatD& v, const AttentionOptions& opt, bool causal, double eps,
                    double tiny, double t_max);

/// Rfa with its projection w, gated when log_gates is given (expect_linear.cpp).
Expect rfa_expect(const RfaOptions& o, const MatD& w, const MatD& q, const MatD& k, const MatD& v,
                  const KeyMask& pad, bool causal, const std::vector<double>* log_gates, double eps,
                  double tiny);

/// Bound on the relative weight error of a float-vs-double comparison of the same method.
double instance_gamma(const MatD& q, const MatD& k, double s, double extra, double eps);

/// Loose comparison of a float result with the double instantiation of the same method (used
/// where an independent reference would duplicate the library; see fuzz_attention.cpp).
Expect from_double_instance(const MatD& ref, double gamma, double vmax, double tiny, Index count);

}  // namespace fastattn::fuzz
