// transformer_layer: a complete multi-head attention block on a batch of sequences,
//   x [B, N, model_dim] -> Q/K/V projections -> multihead(method) -> output projection,
// with the attention method chosen at run time: swapping exact attention for an approximation
// changes one line.
//
//   ./transformer_layer [exact|favor|rfa|eva] [B] [N]      (defaults: favor 2 1024)
#include <fastattn/fastattn.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

using fastattn::Index;
using fastattn::RowMatrix;
using fastattn::TensorView;

constexpr Index kHeads = 8, kHeadDim = 64, kModel = kHeads * kHeadDim;

/// The layer's learned weights (random here).
struct Weights {
  RowMatrix<float> wq, wk, wv, wo;  // [model, model] each, applied as x W
  explicit Weights(std::uint64_t seed)
      : wq(fastattn::gaussian_projection<float>(kModel, kModel, seed) / std::sqrt(float(kModel))),
        wk(fastattn::gaussian_projection<float>(kModel, kModel, seed + 1) /
           std::sqrt(float(kModel))),
        wv(fastattn::gaussian_projection<float>(kModel, kModel, seed + 2) /
           std::sqrt(float(kModel))),
        wo(fastattn::gaussian_projection<float>(kModel, kModel, seed + 3) /
           std::sqrt(float(kModel))) {}
};

/// One attention block: x [B*N, model] (batch-major rows) -> y [B*N, model]. `method` is any
/// fastattn method; its forward runs once per (batch, head) inside multihead().
template <class Method>
RowMatrix<float> attention_block(const Method& method, const Weights& w, const RowMatrix<float>& x,
                                 Index batch, Index n, const fastattn::MultiheadOptions& opt) {
  // Projections: each [B*N, model] buffer is a [B, N, H, Dh] tensor (heads side by side).
  const RowMatrix<float> q = x * w.wq, k = x * w.wk, v = x * w.wv;
  RowMatrix<float> heads_out(batch * n, kModel);
  using View = TensorView<const float>;
  fastattn::multihead(method, View::bnhd(q.data(), batch, n, kHeads, kHeadDim),
                      View::bnhd(k.data(), batch, n, kHeads, kHeadDim),
                      View::bnhd(v.data(), batch, n, kHeads, kHeadDim),
                      TensorView<float>::bnhd(heads_out.data(), batch, n, kHeads, kHeadDim), opt);
  return heads_out * w.wo;  // merge heads
}

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "favor";
  const Index batch = argc > 2 ? std::atol(argv[2]) : 2, n = argc > 3 ? std::atol(argv[3]) : 1024;
  const Weights w(7);
  const RowMatrix<float> x = fastattn::gaussian_projection<float>(batch * n, kModel, 11);

  fastattn::MultiheadOptions opt;
  opt.causal = true;                                 // a decoder layer
  opt.key_lengths = {n, std::max<Index>(1, n / 2)};  // the second sequence is padded after n/2
  opt.key_lengths.resize(size_t(batch), n);
  opt.threads = 0;  // all cores (with OpenMP), 1 = serial

  const auto start = std::chrono::steady_clock::now();
  RowMatrix<float> y;
  if (which == "exact")
    y = attention_block(fastattn::Exact<float>(), w, x, batch, n, opt);
  else if (which == "favor")
    y = attention_block(fastattn::Favor<float>(kHeadDim), w, x, batch, n, opt);
  else if (which == "rfa")
    y = attention_block(fastattn::Rfa<float>(kHeadDim), w, x, batch, n, opt);
  else if (which == "eva") {
    fastattn::EvaOptions eo;
    eo.window = 64;
    eo.chunk_size = 64;  // causal EVA: chunks of 64 tokens become visible once complete
    y = attention_block(fastattn::Eva<float>(kHeadDim, eo), w, x, batch, n, opt);
  } else {
    std::fprintf(stderr, "usage: transformer_layer [exact|favor|rfa|eva] [B] [N]\n");
    return 2;
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

  // Compare with the same layer using exact attention.
  const RowMatrix<float> y_exact = attention_block(fastattn::Exact<float>(), w, x, batch, n, opt);
  std::printf(
      "%s: [B=%ld, N=%ld, model=%ld] causal, %ld heads: %.1f ms, relative difference "
      "from the exact layer %.3f\n",
      which.c_str(), long(batch), long(n), long(kModel), long(kHeads), ms,
      fastattn::relative_error<float>(y, y_exact));
  return 0;
}
