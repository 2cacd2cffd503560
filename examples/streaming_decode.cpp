// streaming_decode: autoregressive decoding with make_state()/step() for Exact (KV cache),
// FAVOR+, gated RFA and EVA. Prints the per-token latency as the context grows and the size of
// each decoding state: flat and constant for the linear methods, growing for Exact (and slowly,
// by one chunk summary per chunk, for EVA).
//
//   ./streaming_decode [tokens]      (default 8192)
#include <fastattn/fastattn.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

using fastattn::Index;
using fastattn::RowMatrix;

constexpr Index kDim = 64;

/// Decodes `x` token by token (q = k = v = x_t here; a model would project them) and prints the
/// mean step latency in the window ending at each checkpoint. `step(t, out)` does one token.
template <class Step>
void decode(const char* name, Index tokens, Step step, const std::vector<Index>& checkpoints,
            std::vector<double>& latency_us) {
  RowMatrix<float> out(1, kDim);
  latency_us.clear();
  auto window_start = std::chrono::steady_clock::now();
  Index window_tokens = 0;
  std::size_t next = 0;
  for (Index t = 0; t < tokens; ++t) {
    step(t, out);
    ++window_tokens;
    if (next < checkpoints.size() && t + 1 == checkpoints[next]) {
      const std::chrono::duration<double, std::micro> dt =
          std::chrono::steady_clock::now() - window_start;
      latency_us.push_back(dt.count() / double(window_tokens));
      window_start = std::chrono::steady_clock::now();
      window_tokens = 0;
      ++next;
    }
  }
  std::printf("%-10s", name);
  for (double us : latency_us) std::printf(" %9.2f", us);
}

int main(int argc, char** argv) {
  const Index tokens = argc > 1 ? std::atol(argv[1]) : 8192;
  std::vector<Index> checkpoints;
  for (Index c = 256; c <= tokens; c *= 4) checkpoints.push_back(c);
  if (checkpoints.empty() || checkpoints.back() != tokens) checkpoints.push_back(tokens);
  const RowMatrix<float> x = fastattn::gaussian_projection<float>(tokens, kDim, 1) * 0.5f;

  std::printf("mean step latency (us) in the window ending at token:\n%-10s", "");
  for (Index c : checkpoints) std::printf(" %9ld", long(c));
  std::printf("   state after %ld tokens\n", long(tokens));
  std::vector<double> us;

  // Exact: the KV cache grows by one key and value per token; reserve once, no allocation later.
  const fastattn::Exact<float> exact;
  auto kv = exact.make_state(kDim, fastattn::AttentionOptions{}, tokens);
  decode(
      "Exact", tokens,
      [&](Index t, RowMatrix<float>& out) { exact.step(kv, x.row(t), x.row(t), x.row(t), out); },
      checkpoints, us);
  std::printf("   %8.1f KiB (KV cache)\n", double(kv.size() * 2 * kDim * sizeof(float)) / 1024);

  // FAVOR+: the key sums [M, Dv + 1] are the whole state.
  const fastattn::Favor<float> favor(kDim);
  auto fs = favor.make_state(kDim);
  decode(
      "FAVOR+", tokens,
      [&](Index t, RowMatrix<float>& out) { favor.step(fs, x.row(t), x.row(t), x.row(t), out); },
      checkpoints, us);
  std::printf("   %8.1f KiB (key sums)\n",
              double(fs.linear().sums().size() * sizeof(float)) / 1024);

  // Gated RFA: a per-token gate g_t in (0, 1) decays the memory; a model computes it from the
  // layer input (sigmoid(w_g . x_t + b_g)); here w_g is random.
  const fastattn::Rfa<float> rfa(kDim);
  auto rs = rfa.make_state(kDim);
  const RowMatrix<float> w_gate = fastattn::gaussian_projection<float>(kDim, 1, 2) * 0.1f;
  decode(
      "RFA-Gate", tokens,
      [&](Index t, RowMatrix<float>& out) {
        const float gate = 1 / (1 + std::exp(-(x.row(t) * w_gate)(0, 0) - 3.0f));  // around 0.95
        rfa.step(rs, x.row(t), x.row(t), x.row(t), gate, out);
      },
      checkpoints, us);
  std::printf("   %8.1f KiB (key sums)\n",
              double(rs.linear().sums().size() * sizeof(float)) / 1024);

  // EVA: a window of recent keys plus one summary (k~, beta) per completed 64-token chunk.
  fastattn::EvaOptions eo;
  eo.window = 64;
  eo.chunk_size = 64;
  const fastattn::Eva<float> eva(kDim, eo);
  auto es = eva.make_state(kDim);
  es.reserve(tokens);
  decode(
      "EVA", tokens,
      [&](Index t, RowMatrix<float>& out) { eva.step(es, x.row(t), x.row(t), x.row(t), out); },
      checkpoints, us);
  std::printf("   %8.1f KiB (window + %ld chunk summaries)\n",
              double((2 * eo.window + es.published_chunks()) * 2 * kDim * sizeof(float)) / 1024,
              long(es.published_chunks()));
  return 0;
}
