// The error contract of bfloat16 storage (docs/bfloat16.md): the relative Frobenius error of
// Exact<float> on bfloat16 q, k, v against exact attention in double on the unrounded inputs, for
// the accuracy sweep's regimes (bench/regimes.hpp: small-norm, large-norm, smooth, clustered) and
// the real-attention fixture (bench/data/real_attention), non-causal and causal. Beside it, the
// same error for Exact<float> on float inputs, and for a bfloat16 KV cache decoding the causal
// sequence token by token. Which path ran (vdpbf16ps or widening) depends on the flags this file
// is compiled with and is printed.
//
//   cmake --build <dir> --target fastattn_bfloat16_accuracy &&
//   <dir>/bench/fastattn_bfloat16_accuracy
//
// Prints a Markdown table (the one docs/bfloat16.md quotes).

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "fastattn/bfloat16.hpp"
#include "fastattn/exact.hpp"
#include "real_attention.hpp"
#include "regimes.hpp"

#ifndef FASTATTN_REAL_ATTENTION_DIR
#define FASTATTN_REAL_ATTENTION_DIR "bench/data/real_attention"
#endif

namespace fastattn::bench {
namespace {

using MatD = RowMatrix<double>;
using MatF = RowMatrix<float>;

/// Pooled relative Frobenius error: sqrt(sum |a - e|^2 / sum |e|^2) over everything added.
struct Pooled {
  double err2 = 0, ref2 = 0;
  void add(const MatF& a, const MatD& e, Index rows) {
    err2 += (a.topRows(rows).cast<double>() - e.topRows(rows)).squaredNorm();
    ref2 += e.topRows(rows).squaredNorm();
  }
  double value() const { return ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0; }
};

/// The three errors of one regime and mask.
struct Errors {
  Pooled fp32, bf16, bf16_decode;
};

/// Adds one head: q, k, v in double, `rows` query rows that count (padded queries excluded).
void add_head(Errors& e, const MatD& q, const MatD& k, const MatD& v, const AttentionOptions& opt,
              Index rows) {
  const MatD exact = Exact<double>()(q, k, v, opt);
  const MatF qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
  e.fp32.add(Exact<float>()(qf, kf, vf, opt), exact, rows);
  const RowMatrix<bfloat16> qb = to_bfloat16(qf), kb = to_bfloat16(kf), vb = to_bfloat16(vf);
  e.bf16.add(Exact<float>()(qb, kb, vb, opt), exact, rows);
  if (opt.causal && opt.key_padding.size() == 0) {  // decoding is causal; one token per step
    ExactOptions cache;
    cache.cache = CacheStorage::BFloat16;
    const Exact<float> decoder(cache);
    auto state = decoder.make_state(v.cols(), AttentionOptions{}, q.rows());
    MatF out(q.rows(), v.cols());
    for (Index t = 0; t < q.rows(); ++t)
      decoder.step(state, qf.middleRows(t, 1), kf.middleRows(t, 1), vf.middleRows(t, 1),
                   out.middleRows(t, 1));
    e.bf16_decode.add(out, exact, rows);
  }
}

void print_row(const std::string& regime, Index n, Index d, bool causal, const Errors& e) {
  char decode[16] = "-";
  if (e.bf16_decode.ref2 > 0) std::snprintf(decode, sizeof decode, "%.2e", e.bf16_decode.value());
  std::printf("| %s | %ld | %ld | %s | %.2e | %.2e | %s |\n", regime.c_str(), long(n), long(d),
              causal ? "causal" : "non-causal", e.fp32.value(), e.bf16.value(), decode);
}

}  // namespace
}  // namespace fastattn::bench

int main() {
  using namespace fastattn;
  using namespace fastattn::bench;
  std::printf("bfloat16 path: %s\n\n",
              bfloat16_dot_product() ? "vdpbf16ps (AVX512_BF16)" : "widening to float");
  std::printf(
      "| regime | N | D | mask | float inputs | bfloat16 inputs | bfloat16 cache, decode |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  const Index d = 64;
  for (const char* regime : {"small-norm", "large-norm", "smooth", "clustered"})
    for (Index n : {1024, 4096})
      for (int causal = 0; causal < 2; ++causal) {
        Errors e;
        AttentionOptions opt;
        opt.causal = causal;
        for (std::uint64_t s = 0; s < 2; ++s) {  // the accuracy sweep's seeds
          const RegimeInputs x = draw_regime(regime, n, d, 1000 + 17 * s + std::uint64_t(n));
          add_head(e, x.q, x.k, x.v, opt, n);
        }
        print_row(regime, n, d, causal, e);
      }
  const RealAttention<double> real = load_real_attention<double>(FASTATTN_REAL_ATTENTION_DIR);
  for (Index l = 0; l < Index(real.layers.size()); ++l)
    for (int causal = 0; causal < 2; ++causal) {
      Errors e;
      for (Index s = 0; s < Index(real.sequences.size()); ++s) {
        AttentionOptions opt;
        opt.causal = causal;
        opt.key_padding = real.key_padding(s);
        const Index rows = real.sequences[size_t(s)].length;
        for (Index h = 0; h < real.layers[size_t(l)].num_heads; ++h) {
          const auto& x = real.head(s, l, h);
          add_head(e, x.q, x.k, x.v, opt, rows);
        }
      }
      print_row("real, layer " + std::to_string(l), real.tokens, real.layers[size_t(l)].head_dim,
                causal, e);
    }
  return 0;
}
