#pragma once
/// @file bfloat16.hpp
/// bfloat16 storage (docs/bfloat16.md): q, k, v (and Exact's KV cache) in Eigen::bfloat16, with
/// float accumulation and float output. bfloat16 keeps float's 8-bit exponent and 8 significant
/// bits (unit roundoff 2^-8 = 3.9e-3), so it halves the bytes of every input at the price of up
/// to 3.9e-3 relative error per element.
///
/// Every method takes bfloat16 through the same overload shape as float:
///   Exact<float>::forward(ConstMatRef<bfloat16> q, k, v, MatRef<float> out, opt [, bias [, lse]])
///   Favor<float>, Rfa<float>, Eva<float>, ClusteredEva<float>::forward(q, k, v, out, opt)
///   multihead(method, TensorView<const bfloat16> q, k, v, TensorView<float> out, opt)
/// and Exact<float>'s decoding state can keep its cache in bfloat16 (ExactOptions::cache).

#include <Eigen/Core>

#include "fastattn/detail/simd/bf16.hpp"
#include "fastattn/types.hpp"

namespace fastattn {

/// The 16-bit brain floating-point type (Eigen's).
using bfloat16 = Eigen::bfloat16;

/// True when this translation unit's exact kernels multiply bfloat16 with vdpbf16ps (compiled with
/// AVX512_BF16, e.g. -march=native on Zen 4 or later, Cooper Lake, Sapphire Rapids); false when
/// they widen bfloat16 to float while packing and run the float kernels (same results up to the
/// rounding of the weights to bfloat16, docs/bfloat16.md).
constexpr bool bfloat16_dot_product() { return FASTATTN_BF16_DOT != 0; }

/// x [rows, cols] rounded to bfloat16 (to nearest, ties to even).
inline RowMatrix<bfloat16> to_bfloat16(ConstMatRef<float> x) { return x.template cast<bfloat16>(); }

/// x [rows, cols] widened to float (exact).
inline RowMatrix<float> to_float(ConstMatRef<bfloat16> x) {
  RowMatrix<float> y(x.rows(), x.cols());
  for (Index i = 0; i < x.rows(); ++i)
    for (Index j = 0; j < x.cols(); ++j) y(i, j) = detail::bf16_to_float(x(i, j));
  return y;
}

}  // namespace fastattn
