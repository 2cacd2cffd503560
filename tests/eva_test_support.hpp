#pragma once
// What the EVA test files (test_eva.cpp, test_eva_reference.cpp, test_eva_rejections.cpp) share:
// the typed fixture and tolerances, row-wise comparison, and the generators of random EVA
// configurations, inputs and learned parameters with their reference output.

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastattn/eva.hpp"
#include "reference/eva.hpp"
#include "support.hpp"

namespace fastattn::test {

using Mat = RowMatrix<double>;

// ---- tolerances ---------------------------------------------------------------------------------
// Against the official outputs (README of eva_cases): independent float64 ports agree to ~2e-15,
// so 1e-12 leaves room for a different summation order; the official code run in float32 differs
// from its own float64 output by up to 1.4e-6, so a float port is held to 5e-6 absolute.
// Against the double reference (tests/reference/eva.hpp), outputs are O(1) convex combinations of
// O(1) values, and the same bounds apply (float: ~50 unit roundoffs through the logits, LayerNorm
// and two softmaxes).
template <class T>
constexpr double kParityTol = std::is_same_v<T, float> ? 5e-6 : 1e-12;

template <class T>
class EvaTest : public ::testing::Test {};
using EvaTypes = ::testing::Types<float, double>;

// Max |a - b| over the rows i with keep[i] (all rows when keep is empty).
template <class A, class B>
double max_abs_rows(const A& a, const B& b, const std::vector<bool>& keep = {}) {
  double worst = 0;
  for (Index i = 0; i < a.rows(); ++i) {
    if (!keep.empty() && !keep[static_cast<std::size_t>(i)]) continue;
    const double e =
        (a.row(i).template cast<double>() - b.row(i).template cast<double>()).cwiseAbs().maxCoeff();
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

inline std::vector<bool> unpadded_rows(const KeyMask& pad, Index n) {
  std::vector<bool> keep(static_cast<std::size_t>(n), true);
  for (Index i = 0; i < pad.size(); ++i) keep[static_cast<std::size_t>(i)] = !pad[i];
  return keep;
}

// ---- random configurations ----------------------------------------------------------------------

struct Config {
  EvaOptions o;
  bool causal = false;
  Index n = 0, d = 0, dv = 0;
  KeyMask pad;
  std::string describe() const {
    std::ostringstream s;
    s << (o.semantics == EvaSemantics::Disjoint ? "Disjoint" : "Reference")
      << (causal ? " causal" : " non-causal") << " n=" << n << " d=" << d << " dv=" << dv
      << " W=" << o.window << " e=" << o.ext << " C=" << o.num_chunks << " L=" << o.chunk_size
      << " mu=" << o.mu_scale;
    if (o.grid_height > 0) s << " grid " << o.grid_height << "x" << o.grid_width;
    s << " padded " << (pad.size() ? pad.count() : 0);
    return s.str();
  }
};

inline KeyMask random_padding(DataRng& rng, Index n) {
  KeyMask pad = KeyMask::Constant(n, false);
  switch (rng.index(4)) {
    case 0:
      return KeyMask();  // none
    case 1: {            // a tail of any length, possibly the whole sequence
      const Index tail = rng.index(n + 1);
      for (Index j = n - tail; j < n; ++j) pad[j] = true;
      return pad;
    }
    default: {  // scattered
      const double p = rng.index(2) ? 0.2 : 0.6;
      for (Index j = 0; j < n; ++j) pad[j] = rng.uniform() < p;
      return pad;
    }
  }
}

// Disjoint, aligned: L | W and L | e (so every window's key range ends on chunk boundaries).
inline Config random_disjoint(DataRng& rng) {
  Config c;
  c.o.semantics = EvaSemantics::Disjoint;
  if (rng.index(4) == 0) {  // 2-D, non-causal
    const Index side = 1 + rng.index(2);
    c.o.window = side * (1 + rng.index(2));
    c.o.ext = side * rng.index(3);
    c.o.grid_height = c.o.window * (1 + rng.index(3));
    c.o.grid_width = c.o.window * (1 + rng.index(3));
    c.n = c.o.grid_height * c.o.grid_width;
    c.o.chunk_size = side;
  } else {
    const Index len = 1 + rng.index(3);
    c.o.window = len * (1 + rng.index(3));
    c.o.ext = rng.index(3) == 0 ? c.o.window : len * rng.index(3);
    c.causal = rng.index(2) == 1;
    c.n = 1 + rng.index(48);
    const Index n_p = (c.n + c.o.window - 1) / c.o.window * c.o.window;
    if (rng.index(2))
      c.o.chunk_size = len;
    else
      c.o.num_chunks = n_p / len;  // floor(n_p / C) = L since L | n_p
  }
  return c;
}

// Reference, inside the official domain (§5.2).
inline Config random_reference(DataRng& rng) {
  Config c;
  c.o.semantics = EvaSemantics::Reference;
  auto divisors = [](Index x) {
    std::vector<Index> out;
    for (Index j = 1; j <= x; ++j)
      if (x % j == 0) out.push_back(j);
    return out;
  };
  const Index kind = rng.index(4);
  if (kind == 0) {  // 2-D
    c.o.window = 1 + rng.index(3);
    c.o.grid_height = c.o.window * (1 + rng.index(3));
    c.o.grid_width = c.o.window * (1 + rng.index(3));
    c.n = c.o.grid_height * c.o.grid_width;
    c.o.ext = rng.index(3);
    Index g = c.o.grid_height, h = c.o.grid_width;
    while (h != 0) std::swap(g, h), h %= g;  // g = gcd
    const auto ds = divisors(g);
    const Index side = ds[static_cast<std::size_t>(rng.index(Index(ds.size())))];
    if (rng.index(2))
      c.o.chunk_size = side;
    else
      c.o.num_chunks = (c.o.grid_height / side) * (c.o.grid_width / side);  // isqrt(n/C) = side
  } else {
    c.causal = kind >= 2;
    for (;;) {
      c.o.window = 1 + rng.index(6);
      c.n = 1 + rng.index(48);
      const Index n_p = (c.n + c.o.window - 1) / c.o.window * c.o.window;
      c.o.ext = rng.index(3) == 0 ? (c.causal ? c.o.window : std::max<Index>(1, c.o.window / 2))
                                  : rng.index(4);
      auto ds = divisors(n_p);
      if (c.causal) {
        ds.pop_back();  // L < n_p
        if (ds.empty()) continue;
      }
      const Index len = ds[static_cast<std::size_t>(rng.index(Index(ds.size())))];
      const bool chunk_size_ok = !c.causal || (len <= c.o.window && c.o.window % len == 0);
      if (chunk_size_ok && rng.index(2)) {
        c.o.chunk_size = len;
      } else {
        c.o.num_chunks = n_p / len;  // floor(n_p / C) = L
      }
      break;
    }
  }
  return c;
}

// Random inputs, projections (absent, Linear, Linear + LayerNorm), mu_scale and local bias.
template <class T>
struct Instance {
  RowMatrix<T> q, k, v;
  EvaParams<T> params;
};

template <class T>
EvaProjection<T> random_projection(Index d, bool ln, std::uint64_t seed) {
  EvaProjection<T> p;
  p.weight = random_matrix<T>(d, d, seed, 1 / std::sqrt(double(d)));
  p.bias = random_matrix<T>(d, 1, seed + 1, 0.1).col(0);
  if (ln) {
    p.ln_gamma = (random_matrix<T>(d, 1, seed + 2, 0.1).array() + T(1)).matrix().col(0);
    p.ln_beta = random_matrix<T>(d, 1, seed + 3, 0.1).col(0);
  }
  return p;
}

template <class T>
Instance<T> random_instance(DataRng& rng, Config& c, std::uint64_t seed, bool with_bias) {
  Instance<T> x;
  c.d = 1 + rng.index(6);
  c.dv = 1 + rng.index(5);
  c.pad = random_padding(rng, c.n);
  const double mus[] = {-1, 0, 0.7};
  c.o.mu_scale = mus[rng.index(3)];
  x.q = random_matrix<T>(c.n, c.d, seed);
  x.k = random_matrix<T>(c.n, c.d, seed + 1);
  x.v = random_matrix<T>(c.n, c.dv, seed + 2);
  const Index proj = rng.index(3);
  if (proj > 0) {
    x.params.mu_q = random_projection<T>(c.d, proj == 2, seed + 3);
    x.params.mu_k = random_projection<T>(c.d, proj == 2, seed + 7);
  }
  if (with_bias && rng.index(2)) {
    const Index W = c.o.window, e = c.o.ext;
    const bool two_d = c.o.grid_height > 0;
    const Index rows = two_d ? W * W : W;
    const Index cols = two_d ? (W + 2 * e) * (W + 2 * e) : (c.causal ? W + e : W + 2 * e);
    x.params.local_bias = random_matrix<T>(rows, cols, seed + 11, 0.5);
  }
  return x;
}

/// The reference (tests/reference/eva.hpp) of a configuration and instance, for scale s (0 =
/// default).
template <class T>
Mat reference_of(const Config& c, const Instance<T>& x, double scale = 0) {
  ref::EvaSpec spec;
  spec.options = c.o;
  spec.mu_q = ref::eva_map(x.params.mu_q);
  spec.mu_k = ref::eva_map(x.params.mu_k);
  spec.local_bias = x.params.local_bias.template cast<double>();
  spec.causal = c.causal;
  spec.padding = c.pad;
  spec.scale = scale;
  return ref::eva_attention(x.q.template cast<double>(), x.k.template cast<double>(),
                            x.v.template cast<double>(), spec)
      .out;
}

inline AttentionOptions attention_options(const Config& c) {
  AttentionOptions opt;
  opt.causal = c.causal;
  opt.key_padding = c.pad;
  return opt;
}

}  // namespace fastattn::test
