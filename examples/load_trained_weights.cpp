// load_trained_weights: running attention with weights trained elsewhere, as when porting a model.
// A FAVOR+ layer takes the trained (or shared) projection matrix instead of drawing one; an EVA
// layer takes its adaptive projections (Linear + LayerNorm, applied to the chunk means).
//
// File format (plain text, written by any script): for each tensor a line "name rows cols" followed
// by `rows` lines of `cols` numbers; vectors are 1-row matrices; '#' starts a comment line.
//   favor.projection   [m, D]  rows w_r; features exp(w_r . x - |x|^2 / 2) with x = D^-1/4 q
//   eva.mu_q.weight    [D, D]  applied as x W^T + b (PyTorch's nn.Linear layout)
//   eva.mu_q.bias      [1, D]
//   eva.mu_q.ln_gamma  [1, D]  LayerNorm affine (eps 1e-5), optional
//   eva.mu_q.ln_beta   [1, D]
//   eva.mu_k.*                 the same for keys
//
//   ./load_trained_weights [weights.txt]     (default: examples/data/tiny_weights.txt)
#include <fastattn/fastattn.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

using fastattn::Index;
using fastattn::RowMatrix;

#ifndef FASTATTN_EXAMPLE_DATA
#define FASTATTN_EXAMPLE_DATA "examples/data"
#endif

/// Reads every tensor of the file into name -> [rows, cols] (double; cast when used).
std::map<std::string, RowMatrix<double>> read_weights(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::map<std::string, RowMatrix<double>> tensors;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream header(line);
    std::string name;
    Index rows = 0, cols = 0;
    if (!(header >> name >> rows >> cols) || rows < 1 || cols < 1)
      throw std::runtime_error(path + ": bad tensor header: " + line);
    RowMatrix<double> t(rows, cols);
    for (Index i = 0; i < rows; ++i)
      for (Index j = 0; j < cols; ++j)
        if (!(in >> t(i, j))) throw std::runtime_error(path + ": too few numbers for " + name);
    tensors[name] = t;
  }
  return tensors;
}

/// The EVA adaptive projection "eva.<side>.*" (LayerNorm if its parameters are present).
fastattn::EvaProjection<float> eva_projection(const std::map<std::string, RowMatrix<double>>& w,
                                              const std::string& side) {
  fastattn::EvaProjection<float> p;
  p.weight = w.at("eva." + side + ".weight").cast<float>();
  p.bias = w.at("eva." + side + ".bias").row(0).transpose().cast<float>();
  if (w.count("eva." + side + ".ln_gamma")) {
    p.ln_gamma = w.at("eva." + side + ".ln_gamma").row(0).transpose().cast<float>();
    p.ln_beta = w.at("eva." + side + ".ln_beta").row(0).transpose().cast<float>();
  }
  return p;
}

int main(int argc, char** argv) {
  const std::string path =
      argc > 1 ? argv[1] : std::string(FASTATTN_EXAMPLE_DATA) + "/tiny_weights.txt";
  const auto weights = read_weights(path);
  const RowMatrix<float> projection = weights.at("favor.projection").cast<float>();
  const Index d = projection.cols(), n = 64;

  // FAVOR+ with the trained projection: no random draw (and redraw() is refused).
  const fastattn::Favor<float> favor(projection);
  // To reproduce a performer-pytorch model bit for bit in its own conventions (its eps and max
  // shifts) rather than the library's exact formulation: FavorOptions::compat = PerformerPytorch.

  // EVA with trained adaptive projections, as the official causal code uses them.
  fastattn::EvaOptions eo;
  eo.window = 16;
  eo.chunk_size = 8;
  fastattn::EvaParams<float> params;
  params.mu_q = eva_projection(weights, "mu_q");
  params.mu_k = eva_projection(weights, "mu_k");
  const fastattn::Eva<float> eva(d, eo, params);

  const RowMatrix<float> x = fastattn::gaussian_projection<float>(n, d, 3) * 0.5f;
  fastattn::AttentionOptions causal;
  causal.causal = true;
  const RowMatrix<float> exact = fastattn::Exact<float>()(x, x, x, causal);
  std::printf("read %zu tensors from %s (D = %ld, FAVOR m = %ld)\n", weights.size(), path.c_str(),
              long(d), long(projection.rows()));
  std::printf("FAVOR+ (trained projection), causal: relative error vs exact %.3f\n",
              fastattn::relative_error<float>(favor(x, x, x, causal), exact));
  std::printf("EVA (trained mu projections), causal: relative error vs exact %.3f\n",
              fastattn::relative_error<float>(eva(x, x, x, causal), exact));
  return 0;
}
