// quickstart: exact softmax attention on one head, float against a double-precision run, timed.
//
// Build: cmake --build build --target quickstart && ./build/examples/quickstart [N] [D]
#include <fastattn/fastattn.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  using fastattn::RowMatrix;
  const fastattn::Index n = argc > 1 ? std::atol(argv[1]) : 2048;  // tokens
  const fastattn::Index d = argc > 2 ? std::atol(argv[2]) : 64;    // head dimension

  // One head: q, k, v are [N, D] with tokens as rows.
  const RowMatrix<float> q = RowMatrix<float>::Random(n, d);
  const RowMatrix<float> k = RowMatrix<float>::Random(n, d);
  const RowMatrix<float> v = RowMatrix<float>::Random(n, d);

  fastattn::AttentionOptions opt;  // scale 1/sqrt(D), no mask
  for (bool causal : {false, true}) {
    opt.causal = causal;
    const fastattn::Exact<float> exact;
    const auto start = std::chrono::steady_clock::now();
    const RowMatrix<float> out = exact(q, k, v, opt);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

    // The same computation in double shows the float kernel's rounding error.
    const RowMatrix<double> out64 = fastattn::Exact<double>()(
        q.cast<double>(), k.cast<double>(), v.cast<double>(), opt);
    const double err = fastattn::relative_error<double>(out.cast<double>(), out64);
    std::printf("exact %-10s N=%ld D=%ld: %8.2f ms, relative error of float vs double %.2e\n",
                causal ? "causal" : "non-causal", static_cast<long>(n), static_cast<long>(d), ms,
                err);
  }
  return 0;
}
