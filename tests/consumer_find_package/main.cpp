// A minimal user program: exact attention on one head, checked against a hand-computed value.
#include <fastattn/fastattn.hpp>

#include <cmath>
#include <cstdio>

int main() {
  fastattn::RowMatrix<float> q(1, 2), k(2, 2), v(2, 1);
  q << 1, 0;
  k << 1, 0, 0, 0;
  v << 1, 0;
  fastattn::AttentionOptions opt;
  opt.scale = 1;  // logits 1 and 0
  const fastattn::RowMatrix<float> out = fastattn::Exact<float>()(q, k, v, opt);
  const double expected = std::exp(1.0) / (std::exp(1.0) + 1.0);
  std::printf("fastattn %d.%d.%d: out = %.6f (expected %.6f)\n", FASTATTN_VERSION_MAJOR,
              FASTATTN_VERSION_MINOR, FASTATTN_VERSION_PATCH, out(0, 0), expected);
  return std::abs(out(0, 0) - expected) < 1e-6 ? 0 : 1;
}
