#pragma once
// The methods as the benchmarks and the accuracy sweep configure them, by name (their metadata:
// method_info.hpp). "m" is the number of features M for every random-feature method, so they are
// compared at equal cost: FAVOR+ and FAVOR++ use m projections, hyperbolic FAVOR and RFA
// (sin/cos) use m/2 (MethodInfo::projections_per_feature).

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "fastattn/fastattn.hpp"
#include "method_info.hpp"

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

/// The names of the benchmarked methods (swept, not a baseline), in report order.
inline std::vector<std::string> method_names() {
  std::vector<std::string> names;
  for (const MethodInfo& info : method_table())
    if (info.swept && info.role != Role::Baseline) names.push_back(info.name);
  return names;
}

/// The number of projections m' behind m features.
inline Index projections(const MethodInfo& info, Index m) {
  return Index(std::llround(info.projections_per_feature * double(m)));
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
    fo.num_features = projections(method_info(name), m);
    if (name == "FAVOR-hyp") fo.kernel = FavorKernel::Hyperbolic;
    if (name == "FAVOR++") {
      fo.kernel = FavorKernel::Optimal;
      if (causal) fo.optimal_a = -0.05;  // causal needs a fixed A (a typical A* at |x|^2 ~ 1)
    }
    return wrap(Favor<T>(d, fo));
  }
  if (name == "RFA") {
    RfaOptions ro;
    ro.seed = seed;
    ro.num_features = projections(method_info(name), m);
    return wrap(Rfa<T>(d, ro));
  }
  if (name == "EVA-Reference" || name == "EVA-Disjoint")
    return wrap(Eva<T>(d, eva_options(name == "EVA-Disjoint", n, causal)));
  FASTATTN_CHECK(false, "unknown method " << name);
  return {};
}

/// Flop model of one forward pass (the numbers the GFLOP/s counters use; D = Dv), as stated by
/// cost_text() in method_info.hpp. EVA: per query 2 (W + C) (2 D), W window, C chunks.
inline double model_flops(const std::string& name, Index n, Index d, Index m, bool causal) {
  const MethodInfo& info = method_info(name);
  const double N = double(n), D = double(d), M = double(m);
  switch (info.cost) {
    case CostModel::Quadratic: return (causal ? 2.0 : 4.0) * N * N * D;
    case CostModel::Eva: {
      const EvaOptions o = eva_options(name == "EVA-Disjoint", n, causal);
      const double w = double(o.window);
      const double chunks = o.num_chunks > 0 ? double(o.num_chunks) : N / double(o.chunk_size);
      return 4.0 * N * D * (w + (causal ? chunks / 2 : chunks));
    }
    case CostModel::RandomFeatures: {
      double f = 4.0 * N * double(projections(info, m)) * D + 4.0 * N * M * (D + 1);
      if (causal) f += 2.0 * N * 32 * (M + D + 1);
      return f;
    }
    case CostModel::Mean: return N * D;
  }
  return 0;
}

}  // namespace fastattn::bench
