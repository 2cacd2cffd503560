// quickstart: exact softmax attention, FAVOR+ and EVA on one head; error against exact and time.
//
//   ./quickstart [N] [D]      (defaults 4096 64)
#include <fastattn/fastattn.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>

using fastattn::Index;
using fastattn::RowMatrix;

// Smooth inputs (neighbouring tokens alike), the kind of sequence EVA's chunk summaries suit.
RowMatrix<float> smooth_sequence(Index n, Index d, std::uint64_t seed) {
  fastattn::Rng rng(seed);
  RowMatrix<float> x(n, d);
  for (Index t = 0; t < n; ++t)
    for (Index j = 0; j < d; ++j)
      x(t, j) = float((t ? 0.98 * x(t - 1, j) : 0.0) + (t ? 0.199 : 1.0) * rng.normal());
  return x;
}

template <class Method>
void run(const char* name, const Method& method, const RowMatrix<float>& q,
         const RowMatrix<float>& k, const RowMatrix<float>& v, const RowMatrix<float>& exact) {
  RowMatrix<float> out(q.rows(), v.cols());
  method.forward(q, k, v, out);  // warm-up (first touch of the buffers)
  const auto start = std::chrono::steady_clock::now();
  method.forward(q, k, v, out);  // one head: q, k [N, D], v [N, Dv] -> out [N, Dv]
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("%-14s %9.2f ms   relative error vs exact %.3f\n", name, ms,
              fastattn::relative_error<float>(out, exact));
}

int main(int argc, char** argv) {
  const Index n = argc > 1 ? std::atol(argv[1]) : 4096;  // tokens
  const Index d = argc > 2 ? std::atol(argv[2]) : 64;    // head dimension
  const RowMatrix<float> q = smooth_sequence(n, d, 1), k = smooth_sequence(n, d, 2),
                         v = smooth_sequence(n, d, 3);

  const fastattn::Exact<float> exact;  // blocked online softmax: the baseline
  const RowMatrix<float> reference = exact(q, k, v);

  // FAVOR+: 256 orthogonal random features (the default); drawn once from the seed.
  const fastattn::Favor<float> favor(d);

  // EVA: exact attention inside 64-token windows, one control-variate summary per chunk
  // elsewhere. Disjoint is the paper's estimator without learned parameters (docs/spec/eva.md §5.3).
  fastattn::EvaOptions eva_options;
  eva_options.window = std::min<Index>(64, n);
  eva_options.chunk_size = eva_options.window;
  eva_options.semantics = fastattn::EvaSemantics::Disjoint;
  const fastattn::Eva<float> eva(d, eva_options);

  std::printf("one head, N = %ld tokens, D = %ld, float\n", long(n), long(d));
  run("Exact", exact, q, k, v, reference);
  run("FAVOR+ (256)", favor, q, k, v, reference);
  run("EVA-Disjoint", eva, q, k, v, reference);

  // The bar an approximation must clear: ignoring the keys and averaging the values.
  const RowMatrix<float> mean_of_values = v.colwise().mean().replicate(n, 1);
  std::printf("%-14s %12s   relative error vs exact %.3f\n", "mean of V", "",
              fastattn::relative_error<float>(mean_of_values, reference));
  return 0;
}
