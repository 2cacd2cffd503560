#pragma once
// The benchmarked methods' metadata, in one place: name, one-line label, role, what the error is
// measured against, which parameters change a method, its flop model, how the report draws it.
//
// Why here, in C++, and not in a data file both sides read: the benchmarks are what produce the
// numbers, and the metadata describes those numbers, so it travels with them. fastattn_bench
// (JSON context key "fastattn_methods") and fastattn_accuracy (top-level "methods") both write
// methods_json(); the report (bench/report/) reads it from the JSON and has no table of its own.
// A JSON file is then self-describing: the report draws any run, old or new, with the methods as
// that build defined them, and a method added here reaches the page without touching Python. The
// flop model has to be code on this side anyway (the GFLOP/s counters), and the benchmarks need
// no file lookup at run time nor a JSON parser.

#include <stdexcept>
#include <string>
#include <vector>

#include "json_writer.hpp"

namespace fastattn::bench {

/// Exact: error 0 by definition; Approximation: compared with exact attention; Baseline: a
/// reference line (uniform: ignore the keys; oracle top-k: selection alone; window only: EVA's
/// window without its chunk terms; bench/baselines.hpp computes them).
enum class Role { Exact, Approximation, Baseline };

/// Which flop model applies (model_flops in methods.hpp computes it; cost_text states it).
enum class CostModel { Quadratic, RandomFeatures, Eva, Mean, Oracle, Window };

struct MethodInfo {
  std::string name;                 ///< as in benchmark names, labels and accuracy results
  std::string label;                ///< one line for the report's method table
  Role role;
  bool swept;                       ///< in the standard sweeps (false: one reference point)
  std::string target;               ///< what its error is measured against
  /// Sweep parameters that change it ("m", "window", "k"); the first is the one the accuracy
  /// sweep varies, and its value is the setting's budget (methods.hpp: budget()).
  std::vector<std::string> params;
  double projections_per_feature;   ///< m' = this * m projections for m features (0: none)
  CostModel cost;
  std::string color;                ///< the report's colour (Okabe-Ito: colour-blind safe)
  std::string marker;               ///< circle, square, diamond, triangle, triangle-down, cross,
                                    ///< circle-open
  std::string spec;                 ///< its page in docs/spec ("" for a baseline)
};

/// Every method, in the report's display order.
inline const std::vector<MethodInfo>& method_table() {
  static const std::vector<MethodInfo> table = {
      {"Exact", "exact softmax attention (blocked online softmax)", Role::Exact, true, "softmax",
       {}, 0, CostModel::Quadratic, "#000000", "circle", "docs/spec/exact.md"},
      {"FAVOR+", "positive random features exp(w.x - |x|^2/2), m projections",
       Role::Approximation, true, "softmax", {"m"}, 1, CostModel::RandomFeatures, "#0072B2",
       "square", "docs/spec/favor.md"},
      {"FAVOR-hyp", "hyperbolic positive random features (pairs for w and -w), m/2 projections",
       Role::Approximation, true, "softmax", {"m"}, 0.5, CostModel::RandomFeatures, "#56B4E9",
       "diamond", "docs/spec/favor.md"},
      {"FAVOR++", "optimal positive random features (FAVOR++), m projections",
       Role::Approximation, true, "softmax", {"m"}, 1, CostModel::RandomFeatures, "#009E73",
       "triangle", "docs/spec/favor.md"},
      {"RFA", "random Fourier features (sin/cos pairs) of l2-normalized q, k, m/2 projections",
       Role::Approximation, true,
       "cosine-softmax (RFA's own target) on synthetic inputs; softmax on real attention", {"m"},
       0.5,
       CostModel::RandomFeatures, "#E69F00", "triangle-down", "docs/spec/rfa.md"},
      {"EVA-Reference", "EVA: exact local window plus control-variate chunk estimates",
       Role::Approximation, true, "softmax", {"window", "chunks"}, 0, CostModel::Eva, "#D55E00",
       "circle", "docs/spec/eva.md"},
      {"EVA-Disjoint", "EVA with chunks aligned to the windows (disjoint semantics)",
       Role::Approximation, true, "softmax", {"window", "chunks"}, 0, CostModel::Eva, "#CC79A7",
       "cross", "docs/spec/eva.md"},
      {"Exact-reference", "exact attention, the plain reference kernel", Role::Exact, false,
       "softmax", {}, 0, CostModel::Quadratic, "#777777", "circle-open", "docs/spec/exact.md"},
      {"oracle top-k",
       "selection alone: exact softmax over each query's k largest logits among its visible keys, "
       "renormalized (k = m for random features, k = W for EVA)",
       Role::Baseline, true, "softmax", {"k"}, 0, CostModel::Oracle, "#332288", "circle", ""},
      {"window only",
       "EVA's exact local window without its chunk terms: softmax over the keys of the query's "
       "window",
       Role::Baseline, true, "softmax", {"window"}, 0, CostModel::Window, "#882255", "circle",
       "docs/spec/eva.md"},
      {"uniform", "ignore the keys: every query gets the mean of the visible values",
       Role::Baseline, true, "softmax", {}, 0, CostModel::Mean, "#999999", "circle", ""},
  };
  return table;
}

/// The metadata of `name`; std::invalid_argument naming it if there is none.
inline const MethodInfo& method_info(const std::string& name) {
  for (const MethodInfo& info : method_table())
    if (info.name == name) return info;
  throw std::invalid_argument("method_info: unknown method name \"" + name + "\"");
}

/// The flop model of one forward pass in words (D = Dv; the numbers the GFLOP/s counters use).
inline std::string cost_text(CostModel cost) {
  switch (cost) {
    case CostModel::Quadratic: return "4 N^2 D (causal: 2 N^2 D)";
    case CostModel::RandomFeatures:
      return "4 N m' D for the features (m' projections) + 4 N m (D + 1) for the two "
             "contractions; causal: + 2 N C (m + D + 1) for the intra-chunk products, C = 32";
    case CostModel::Eva: return "4 N D (W + C) for window W and C chunks (causal: C/2)";
    case CostModel::Mean: return "N D";
    case CostModel::Oracle:
      return "a reference, not a fast method: it needs every logit (4 N^2 D) to find the k "
             "largest";
    case CostModel::Window: return "4 N D W (W + 2e key slots per query; e = 0 here)";
  }
  return "";
}

inline const char* role_name(Role role) {
  switch (role) {
    case Role::Exact: return "exact";
    case Role::Approximation: return "approximation";
    case Role::Baseline: return "baseline";
  }
  return "";
}

/// What the feature count m means for each random-feature method, e.g. "number of features M
/// (FAVOR+, FAVOR++: m projections; FAVOR-hyp, RFA: m/2 projections, two features each)".
inline std::string feature_count_meaning() {
  std::string full, half;
  for (const MethodInfo& info : method_table()) {
    if (info.projections_per_feature == 1) full += (full.empty() ? "" : ", ") + info.name;
    if (info.projections_per_feature == 0.5) half += (half.empty() ? "" : ", ") + info.name;
  }
  return "number of features M (" + full + ": m projections; " + half +
         ": m/2 projections, two features each)";
}

/// The table as a JSON array (what both benchmark programs write and the report reads).
inline std::string methods_json() {
  std::string out = "[";
  bool first = true;
  for (const MethodInfo& m : method_table()) {
    out += std::string(first ? "" : ",") + "\n    {\"name\": " + json_string(m.name) +
           ", \"label\": " + json_string(m.label) + ", \"role\": \"" + role_name(m.role) +
           "\", \"target\": " + json_string(m.target) +
           ", \"params\": " + json_string_array(m.params) +
           ", \"projections_per_feature\": " + json_number(m.projections_per_feature) +
           ", \"cost\": " + json_string(cost_text(m.cost)) + ", \"color\": " +
           json_string(m.color) + ", \"marker\": " + json_string(m.marker) +
           ", \"spec\": " + json_string(m.spec) + "}";
    first = false;
  }
  return out + "\n  ]";
}

}  // namespace fastattn::bench
