#pragma once
// The methods as the benchmarks and the accuracy sweep configure them, by name. "m" is the number
// of features M for every random-feature method, so they are compared at equal cost: FAVOR+ and
// FAVOR++ use m projections, hyperbolic FAVOR and RFA (sin/cos) use m/2.

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "fastattn/fastattn.hpp"

namespace fastattn::bench {

/// EVA settings used everywhere: window 64, 64 chunks (Reference, linear in N); Disjoint needs
/// chunk boundaries on window boundaries, so it uses chunk_size = window = 64 (O(N^2/64)).
inline EvaOptions eva_options(bool disjoint, Index n, bool causal) {
  EvaOptions o;
  o.window = std::min<Index>(64, std::max<Index>(n, 1));
  if (disjoint) {
    o.semantics = EvaSemantics::Disjoint;
    o.chunk_size = o.window;
  } else if (causal) {
    o.chunk_size = o.window;  // causal Reference needs L <= W, W % L == 0
  } else {
    o.num_chunks = std::min<Index>(64, std::max<Index>(n / o.window, 1));
  }
  return o;
}

/// The names of the benchmarked methods, in report order.
inline std::vector<std::string> method_names() {
  return {"Exact", "FAVOR+", "FAVOR-hyp", "FAVOR++", "RFA", "EVA-Reference", "EVA-Disjoint"};
}

/// A callable running `name` on one head with feature count m (ignored by non-random methods).
template <class T>
std::function<void(ConstMatRef<T>, ConstMatRef<T>, ConstMatRef<T>, MatRef<T>,
                   const AttentionOptions&)>
make_method(const std::string& name, Index d, Index m, Index n, bool causal,
            std::uint64_t seed = 0) {
  using Fn = std::function<void(ConstMatRef<T>, ConstMatRef<T>, ConstMatRef<T>, MatRef<T>,
                                const AttentionOptions&)>;
  auto wrap = [](auto method) -> Fn {
    return [method](ConstMatRef<T> q, ConstMatRef<T> k, ConstMatRef<T> v, MatRef<T> out,
                    const AttentionOptions& opt) { method.forward(q, k, v, out, opt); };
  };
  if (name == "Exact") return wrap(Exact<T>());
  if (name == "Exact-reference") return wrap(Exact<T>(ExactOptions{ExactKernel::Reference}));
  if (name == "FAVOR+" || name == "FAVOR-hyp" || name == "FAVOR++") {
    FavorOptions fo;
    fo.seed = seed;
    fo.num_features = m;
    if (name == "FAVOR-hyp") fo.kernel = FavorKernel::Hyperbolic, fo.num_features = m / 2;
    if (name == "FAVOR++") {
      fo.kernel = FavorKernel::Optimal;
      if (causal) fo.optimal_a = -0.05;  // causal needs a fixed A (a typical A* at |x|^2 ~ 1)
    }
    return wrap(Favor<T>(d, fo));
  }
  if (name == "RFA") {
    RfaOptions ro;
    ro.seed = seed;
    ro.num_features = m / 2;
    return wrap(Rfa<T>(d, ro));
  }
  if (name == "EVA-Reference" || name == "EVA-Disjoint")
    return wrap(Eva<T>(d, eva_options(name == "EVA-Disjoint", n, causal)));
  FASTATTN_CHECK(false, "unknown method " << name);
  return {};
}

/// Flop model of one forward pass (the numbers the GFLOP/s counters use; D = Dv):
/// exact 4 N^2 D (causal 2 N^2 D); random features 4 N m' D for the features (m' projections)
/// plus 4 N M (D + 1) for the two contractions, plus causal intra-chunk 2 N C (M + D + 1), C = 32;
/// EVA per query 2 (S_w + C') (2 D) with S_w = W (+ e), C' chunks.
inline double model_flops(const std::string& name, Index n, Index d, Index m, bool causal) {
  const double N = double(n), D = double(d), M = double(m);
  if (name.rfind("Exact", 0) == 0) return (causal ? 2.0 : 4.0) * N * N * D;
  if (name.rfind("EVA", 0) == 0) {
    const EvaOptions o = eva_options(name == "EVA-Disjoint", n, causal);
    const double w = double(o.window);
    const double chunks = o.num_chunks > 0 ? double(o.num_chunks) : N / double(o.chunk_size);
    return 4.0 * N * D * (w + (causal ? chunks / 2 : chunks));
  }
  const double projections = (name == "FAVOR-hyp" || name == "RFA") ? M / 2 : M;
  double f = 4.0 * N * projections * D + 4.0 * N * M * (D + 1);
  if (causal) f += 2.0 * N * 32 * (M + D + 1);
  return f;
}

}  // namespace fastattn::bench
