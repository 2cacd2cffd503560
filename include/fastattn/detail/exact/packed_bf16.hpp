#pragma once
/// @file detail/exact/packed_bf16.hpp
/// The exact forward on bfloat16 q, k, v (docs/bfloat16.md): with FASTATTN_BF16_DOT, K and V are
/// packed as bfloat16 pairs and both products run on vdpbf16ps; otherwise they are widened to
/// float as they are packed and the float kernel runs. Softmax, masks, output and LSE in float.

#include <cstddef>

#include "fastattn/detail/exact/packed_kernel.hpp"
#include "fastattn/detail/exact/packed_kv_bf16.hpp"
#include "fastattn/detail/simd/bf16.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

#if FASTATTN_BF16_DOT
/// Per-thread bfloat16 pair panels of exact_packed_bf16, kept between calls like ExactScratch (and
/// freed above the same size).
inline PackedKvBf16Storage& bf16_scratch_of_this_thread() {
  thread_local PackedKvBf16Storage storage;
  return storage;
}
#endif

/// q [Nq, D], k [Nk, D], v [Nk, Dv] in bfloat16 -> out [Nq, Dv] (and lse [Nq] if non-empty) in
/// float. `bias` is [Nq, Nk], [1, Nk] or empty. Arguments are already validated.
inline void exact_packed_bf16(const ConstMatRef<Eigen::bfloat16>& q,
                              const ConstMatRef<Eigen::bfloat16>& k,
                              const ConstMatRef<Eigen::bfloat16>& v, MatRef<float>& out,
                              const AttentionOptions& opt, const ConstMatRef<float>& bias,
                              VecRef<float>& lse, PackedBlocking blocking) {
#if FASTATTN_BF16_DOT
  const bool full_bias = bias.size() != 0 && bias.rows() == q.rows() && q.rows() != 1;
  PackedKvBf16Storage& kv = bf16_scratch_of_this_thread();
  kv.set_dims(k.cols(), v.cols());
  if (bias.size() != 0 && !full_bias)
    kv.pack(k, v, opt.key_padding, bias.row(0));
  else
    kv.pack(k, v, opt.key_padding, Vector<float>());
  exact_packed_attention<float>(q, kv.view(), out, opt, full_bias ? &bias : nullptr, lse, blocking,
                                ExactScratch<float>::of_this_thread().tiles);
  if (kv.bytes() > ExactScratch<float>::kRetainedBytes) kv.release();
#else
  exact_packed<float, Eigen::bfloat16>(q, k, v, out, opt, bias, lse, blocking);
#endif
}

}  // namespace fastattn::detail
