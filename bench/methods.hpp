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

/// EVA's default window: the throughput benchmarks and the synthetic regimes' default setting.
inline constexpr Index kEvaWindow = 64;

/// EVA settings: window W (default 64), and chunks of length W: Disjoint needs chunk boundaries
/// on window boundaries, so it uses chunk_size = W (N/W chunks, O(N^2/W)); Reference uses
/// min(64, N/W) chunks (at most 64, so linear in N), which is also chunk length W up to N = 64 W.
inline EvaOptions eva_options(bool disjoint, Index n, bool causal, Index window = kEvaWindow) {
  EvaOptions o;
  o.window = std::min<Index>(window, std::max<Index>(n, 1));
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

/// The number of chunks EVA uses with these options on n tokens.
inline Index eva_chunks(const EvaOptions& o, Index n) {
  return o.num_chunks > 0 ? o.num_chunks : (n + o.chunk_size - 1) / o.chunk_size;
}

/// One setting of a method: the values of its parameters (MethodInfo::params; 0 = unused).
struct Setting {
  Index m = 0;          ///< features (random-feature methods)
  Index window = 0;     ///< EVA's window W (EVA, window only)
  Index k = 0;          ///< keys kept (oracle top-k)
  double sigma = 1.0;   ///< RFA's sigma (the accuracy sweep sets it from the data)
};

/// How many keys per query a setting computes exactly, or how many features it uses: the
/// number the oracle top-k is matched to (random features: k = m; EVA and window only: the
/// window's key slots W + 2 ext, ext = 0 here; oracle: k). 0 for methods without a parameter.
inline Index budget(const MethodInfo& info, const Setting& s) {
  if (info.params.empty()) return 0;
  const std::string& p = info.params.front();
  return p == "m" ? s.m : p == "window" ? s.window : p == "k" ? s.k : 0;
}

/// The setting in words for the report ("m = 64", "W = 32, 4 chunks", "k = 32").
inline std::string setting_text(const MethodInfo& info, const Setting& s, Index n, bool causal) {
  if (info.params.empty()) return "";
  const std::string& p = info.params.front();
  if (p == "m") return "m = " + std::to_string(s.m);
  if (p == "k") return "k = " + std::to_string(s.k);
  if (p == "window" && info.cost == CostModel::Eva) {
    const EvaOptions o = eva_options(info.name == "EVA-Disjoint", n, causal, s.window);
    return "W = " + std::to_string(o.window) + ", " + std::to_string(eva_chunks(o, n)) + " chunks";
  }
  return "W = " + std::to_string(s.window);
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

/// A callable running `name` on one head at setting s (m for random features, window for EVA).
template <class T>
std::function<void(ConstMatRef<T>, ConstMatRef<T>, ConstMatRef<T>, MatRef<T>,
                   const AttentionOptions&)>
make_method(const std::string& name, Index d, const Setting& s, Index n, bool causal,
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
    fo.num_features = projections(method_info(name), s.m);
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
    ro.num_features = projections(method_info(name), s.m);
    ro.sigma = s.sigma;
    return wrap(Rfa<T>(d, ro));
  }
  if (name == "EVA-Reference" || name == "EVA-Disjoint")
    return wrap(
        Eva<T>(d, eva_options(name == "EVA-Disjoint", n, causal, s.window ? s.window : kEvaWindow)));
  FASTATTN_CHECK(false, "make_method: no factory for method \"" << name << "\"");
  return {};
}

/// make_method with feature count m and EVA's default window (the throughput benchmarks).
template <class T>
std::function<void(ConstMatRef<T>, ConstMatRef<T>, ConstMatRef<T>, MatRef<T>,
                   const AttentionOptions&)>
make_method(const std::string& name, Index d, Index m, Index n, bool causal,
            std::uint64_t seed = 0) {
  Setting s;
  s.m = m;
  s.window = kEvaWindow;
  return make_method<T>(name, d, s, n, causal, seed);
}

/// Flop model of one forward pass at setting s (the numbers the GFLOP/s counters use; D = Dv),
/// as stated by cost_text() in method_info.hpp. EVA: per query 2 (W + C) (2 D), W window, C
/// chunks.
inline double model_flops(const std::string& name, Index n, Index d, const Setting& s,
                          bool causal) {
  const MethodInfo& info = method_info(name);
  const double N = double(n), D = double(d), M = double(s.m);
  switch (info.cost) {
    case CostModel::Quadratic:
    case CostModel::Oracle: return (causal ? 2.0 : 4.0) * N * N * D;
    case CostModel::Eva: {
      const EvaOptions o =
          eva_options(name == "EVA-Disjoint", n, causal, s.window ? s.window : kEvaWindow);
      const double chunks = double(eva_chunks(o, n));
      return 4.0 * N * D * (double(o.window) + (causal ? chunks / 2 : chunks));
    }
    case CostModel::Window: return 4.0 * N * D * double(std::min(s.window, n));
    case CostModel::RandomFeatures: {
      double f = 4.0 * N * double(projections(info, s.m)) * D + 4.0 * N * M * (D + 1);
      if (causal) f += 2.0 * N * 32 * (M + D + 1);
      return f;
    }
    case CostModel::Mean: return N * D;
  }
  return 0;
}

/// model_flops with feature count m and EVA's default window (the throughput benchmarks).
inline double model_flops(const std::string& name, Index n, Index d, Index m, bool causal) {
  Setting s;
  s.m = m;
  s.window = kEvaWindow;
  return model_flops(name, n, d, s, causal);
}

}  // namespace fastattn::bench
