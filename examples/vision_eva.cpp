// vision_eva: EVA in its 2-D grid mode, the paper's ViT setting: image patches on an H x W grid,
// square local windows computed exactly and square chunks summarized. DeiT with 16 x 16 patches of
// a 224 x 224 image has a 14 x 14 grid; with 8 x 8 patches, 28 x 28.
//
//   ./vision_eva
#include <fastattn/fastattn.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>

using fastattn::Index;
using fastattn::RowMatrix;

/// Patch tokens of a smooth synthetic "image": features vary slowly across the grid, so nearby
/// patches are alike (as in real images), row-major over the grid.
RowMatrix<float> patches(Index side, Index d, std::uint64_t seed) {
  const RowMatrix<float> basis = fastattn::gaussian_projection<float>(4, d, seed);
  RowMatrix<float> x(side * side, d);
  for (Index r = 0; r < side; ++r)
    for (Index c = 0; c < side; ++c) {
      const float u = float(r) / float(side), v = float(c) / float(side);
      x.row(r * side + c) = std::sin(3 * u) * basis.row(0) + std::cos(4 * v) * basis.row(1) +
                            u * v * basis.row(2) + 0.3f * basis.row(3) * std::sin(7 * (u + v));
    }
  return x;
}

void run(Index side, Index window, Index ext) {
  const Index d = 64, n = side * side;
  const RowMatrix<float> q = patches(side, d, 1), k = patches(side, d, 2), v = patches(side, d, 3);
  fastattn::EvaOptions options;
  options.grid_height = options.grid_width = side;   // 2-D mode: tokens are row-major patches
  options.window = window;                           // window tiles of window x window patches
  options.ext = ext;                                 // keys extend ext patches around each tile
  options.num_chunks = 49;                           // the paper's setting: chunk side sqrt(n/49)
  const fastattn::Eva<float> reference(d, options);  // the official code's formulation
  options.semantics = fastattn::EvaSemantics::Disjoint;
  options.num_chunks = 0;
  options.chunk_size = window;  // Disjoint partitions the keys: chunks must align with windows,
  options.ext = 0;              // and with the window's key range (ext 3 would not)
  const fastattn::Eva<float> disjoint(d, options);

  const RowMatrix<float> exact = fastattn::Exact<float>()(q, k, v);
  for (const auto* method : {&reference, &disjoint}) {
    const auto start = std::chrono::steady_clock::now();
    const RowMatrix<float> out = (*method)(q, k, v);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "%2ldx%-2ld grid (n = %3ld), window %ldx%ld, ext %ld, %-9s: %6.2f ms, relative "
        "error vs exact %.3f\n",
        long(side), long(side), long(n), long(window), long(window),
        long(method == &reference ? ext : 0), method == &reference ? "Reference" : "Disjoint", ms,
        fastattn::relative_error<float>(out, exact));
  }
}

int main() {
  run(14, 7, 0);  // DeiT p16: 2 x 2 tiles of 7 x 7 patches
  run(28, 7, 3);  // DeiT p8: 4 x 4 tiles, keys extended by 3 patches around each tile
  return 0;
}
