#pragma once
/// @file detail/common/widen_inputs.hpp
/// bfloat16 inputs for the methods that compute in float throughout (random features, EVA;
/// docs/bfloat16.md): the inputs are widened to float once and the float forward runs. Their
/// features, sums and states are float anyway; only Exact has bfloat16 kernels.

#include "fastattn/bfloat16.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// method.forward on q [Nq, D], k [Nk, D], v [Nk, Dv] widened to float -> out [Nq, Dv]. Checks
/// the caller's views first (the widened copies could not alias out); `fn` names the caller.
template <class Method>
void forward_widened(const Method& method, const char* fn, const ConstMatRef<bfloat16>& q,
                     const ConstMatRef<bfloat16>& k, const ConstMatRef<bfloat16>& v,
                     MatRef<float>& out, const AttentionOptions& opt) {
  check_qkv_views<float>(fn, q, k, v, out, opt);
  method.forward(to_float(q), to_float(k), to_float(v), out, opt);
}

}  // namespace fastattn::detail
