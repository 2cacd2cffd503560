// The measurements behind ClusteredEva's defaults (docs/spec/eva.md §10.8): the proposal centres
// and mass corrections on the real-attention fixture and on the synthetic regimes, the (C, r)
// trade-off, the Lloyd iterations, and the speed against Exact<float> (one thread, interleaved).
// Methods run in float; references in double. Prints markdown tables.
//
// Usage: fastattn_clustered_eva_study [--part real|synthetic|timing|all] [--seeds S]
//                                     [--rounds R] [--real-dir DIR]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "baselines.hpp"
#include "common.hpp"
#include "fastattn/fastattn.hpp"
#include "real_attention.hpp"
#include "regimes.hpp"

namespace fastattn::bench {
namespace {

using MatD = RowMatrix<double>;
using MatF = RowMatrix<float>;

const char* centre_name(ClusterCentre c) {
  switch (c) {
    case ClusterCentre::KeyMean:
      return "KeyMean";
    case ClusterCentre::TokenMean:
      return "TokenMean";
    case ClusterCentre::AttendingQueries:
      return "AttendingQueries";
  }
  return "?";
}
const char* correction_name(ClusterMassCorrection c) {
  switch (c) {
    case ClusterMassCorrection::None:
      return "None";
    case ClusterMassCorrection::Isotropic:
      return "Isotropic";
    case ClusterMassCorrection::Diagonal:
      return "Diagonal";
  }
  return "?";
}
const char* summary_name(ClusterSummary s) {
  return s == ClusterSummary::SingleSample ? "SingleSample" : "RepresentativeQuery";
}
const ClusterSummary kSummaries[] = {ClusterSummary::SingleSample,
                                     ClusterSummary::RepresentativeQuery};
const ClusterCentre kCentres[] = {ClusterCentre::KeyMean, ClusterCentre::TokenMean,
                                  ClusterCentre::AttendingQueries};
const ClusterMassCorrection kCorrections[] = {
    ClusterMassCorrection::None, ClusterMassCorrection::Isotropic, ClusterMassCorrection::Diagonal};

/// Pooled relative error sqrt(sum |a - e|^2 / sum |e|^2) over the rows that count.
struct PooledError {
  double num = 0, den = 0;
  void add(const MatD& approx, const MatD& exact, Index rows) {
    num += (approx.topRows(rows) - exact.topRows(rows)).squaredNorm();
    den += exact.topRows(rows).squaredNorm();
  }
  double value() const { return den > 0 ? std::sqrt(num / den) : 0; }
};

bool padded(const KeyMask& m, Index j) { return m.size() != 0 && m[j]; }

/// Dot products per query of EVA-Disjoint (W = L, ext 0): the visible window keys plus one score
/// per non-empty chunk outside the window.
double eva_disjoint_cost(const KeyMask& pad, Index nk, Index w, Index nq) {
  double total = 0;
  for (Index i = 0; i < nq; ++i) {
    const Index win = i / w;
    for (Index c = 0; c * w < nk; ++c) {
      Index visible = 0;
      for (Index j = c * w; j < std::min(nk, c * w + w); ++j) visible += !padded(pad, j);
      total += c == win ? double(visible) : (visible > 0 ? 1.0 : 0.0);
    }
  }
  return total / double(nq);
}

// ------------------------------------------------------------------------------------------------
// Real attention

struct RealHead {
  MatD q, k, v, exact;
  MatF qf, kf, vf;
  KeyMask pad;
  Index length = 0;
  double scale = 0;
};

struct LayerHeads {
  std::string name;
  Index head_dim = 0;
  std::vector<RealHead> heads;
};

std::vector<LayerHeads> load_real(const std::string& dir) {
  const RealAttention<double> data = load_real_attention<double>(dir);
  std::vector<LayerHeads> layers;
  for (Index l = 0; l < Index(data.layers.size()); ++l) {
    LayerHeads lh;
    lh.name = data.layers[size_t(l)].name;
    lh.head_dim = data.layers[size_t(l)].head_dim;
    for (Index s = 0; s < Index(data.sequences.size()); ++s)
      for (Index h = 0; h < data.layers[size_t(l)].num_heads; ++h) {
        const auto& x = data.head(s, l, h);
        RealHead r;
        r.q = x.q;
        r.k = x.k;
        r.v = x.v;
        r.qf = x.q.cast<float>();
        r.kf = x.k.cast<float>();
        r.vf = x.v.cast<float>();
        r.pad = data.key_padding(s);
        r.length = data.sequences[size_t(s)].length;
        r.scale = data.layers[size_t(l)].scale;
        AttentionOptions opt;
        opt.scale = r.scale;
        opt.key_padding = r.pad;
        r.exact = Exact<double>()(r.q, r.k, r.v, opt);
        lh.heads.push_back(std::move(r));
      }
    layers.push_back(std::move(lh));
  }
  return layers;
}

/// One ClusteredEva configuration on one layer: pooled error, mean exact keys and dot products
/// per (valid) query, and the oracle top-k with the same number of exact keys per head.
struct RealResult {
  double error = 0, exact_keys = 0, cost = 0, exact_fraction = 0, oracle = 0, clusters = 0;
};

RealResult run_real(const LayerHeads& layer, const ClusteredEvaOptions& o, bool with_oracle) {
  PooledError err, oracle;
  double keys = 0, cost = 0, frac = 0, clusters = 0, queries = 0;
  const ClusteredEva<float> method(layer.head_dim, o);
  for (const RealHead& h : layer.heads) {
    AttentionOptions opt;
    opt.scale = h.scale;
    opt.key_padding = h.pad;
    MatF out(h.qf.rows(), h.vf.cols());
    ClusteredEvaStats st;
    method.forward(h.qf, h.kf, h.vf, out, opt, st);
    err.add(out.cast<double>(), h.exact, h.length);
    const double exact_keys = st.exact_fraction * double(h.length);  // per query (all rows)
    const double scores = double(st.num_clusters) *
                          (o.mass_correction == ClusterMassCorrection::Diagonal ? 2.0 : 1.0);
    keys += exact_keys * double(h.length);
    cost += (exact_keys + scores) * double(h.length);
    frac += st.exact_fraction * double(h.length);
    clusters += double(st.num_clusters) * double(h.length);
    queries += double(h.length);
    if (with_oracle) {
      const Index top = std::max<Index>(1, Index(std::lround(exact_keys)));
      oracle.add(oracle_topk_attention<double>(h.q, h.k, h.v, top, opt), h.exact, h.length);
    }
  }
  return {err.value(), keys / queries, cost / queries, frac / queries, oracle.value(),
          clusters / queries};
}

void real_part(const std::string& dir) {
  const std::vector<LayerHeads> layers = load_real(dir);
  std::printf("\n## Real attention (fixture %s): pooled relative error over valid query rows\n",
              dir.c_str());
  // Reference lines.
  std::printf("\n| reference | %s | %s |\n|---|---|---|\n", layers[0].name.c_str(),
              layers[1].name.c_str());
  {
    std::string row_u = "| uniform (mean of values) |", row_e = "| EVA-Disjoint W = L = 64 |",
                row_w = "| window only W = 64 |", row_o32 = "| oracle top-32 |",
                row_c = "| EVA-Disjoint dot products / query |";
    for (const LayerHeads& l : layers) {
      PooledError u, e, w, o32;
      double cost = 0, queries = 0;
      EvaOptions eo;
      eo.window = 64;
      eo.chunk_size = 64;
      eo.semantics = EvaSemantics::Disjoint;
      const Eva<float> eva(l.head_dim, eo);
      for (const RealHead& h : l.heads) {
        AttentionOptions opt;
        opt.scale = h.scale;
        opt.key_padding = h.pad;
        u.add(uniform_attention<double>(h.q.rows(), h.v, opt), h.exact, h.length);
        MatF out(h.qf.rows(), h.vf.cols());
        eva.forward(h.qf, h.kf, h.vf, out, opt);
        e.add(out.cast<double>(), h.exact, h.length);
        w.add(window_only_attention<double>(h.q, h.k, h.v, 64, 0, opt), h.exact, h.length);
        o32.add(oracle_topk_attention<double>(h.q, h.k, h.v, 32, opt), h.exact, h.length);
        cost += eva_disjoint_cost(h.pad, h.k.rows(), 64, h.length) * double(h.length);
        queries += double(h.length);
      }
      char buf[64];
      std::snprintf(buf, sizeof buf, " %.3f |", u.value());
      row_u += buf;
      std::snprintf(buf, sizeof buf, " %.3f |", e.value());
      row_e += buf;
      std::snprintf(buf, sizeof buf, " %.3f |", w.value());
      row_w += buf;
      std::snprintf(buf, sizeof buf, " %.3f |", o32.value());
      row_o32 += buf;
      std::snprintf(buf, sizeof buf, " %.1f |", cost / queries);
      row_c += buf;
    }
    std::printf("%s\n%s\n%s\n%s\n%s\n", row_u.c_str(), row_e.c_str(), row_c.c_str(),
                row_w.c_str(), row_o32.c_str());
  }

  // Centres x summaries x corrections at a few (C, r).
  std::printf(
      "\n### Summary centre, weights and mass correction (I = 3, seed 0); oracle = top-k with the "
      "same exact keys per head; cost = dot products per query\n\n| C | r | centre | summary | "
      "correction | err L0 | err L1 | oracle L0 | oracle L1 | keys L0 | keys L1 | cost L0 | cost "
      "L1 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  const std::pair<Index, Index> grid[] = {{16, 3}, {32, 5}};
  for (const auto& [c, r] : grid)
    for (ClusterCentre centre : kCentres)
      for (ClusterSummary summary : kSummaries)
        for (ClusterMassCorrection corr : kCorrections) {
          ClusteredEvaOptions o;
          o.num_clusters = c;
          o.exact_clusters = r;
          o.centre = centre;
          o.summary = summary;
          o.mass_correction = corr;
          const RealResult a = run_real(layers[0], o, true), b = run_real(layers[1], o, true);
          std::printf("| %ld | %ld | %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f | %.1f "
                      "| %.1f |\n",
                      long(c), long(r), centre_name(centre), summary_name(summary),
                      correction_name(corr), a.error, b.error, a.oracle, b.oracle, a.exact_keys,
                      b.exact_keys, a.cost, b.cost);
        }

  // The (C, r) trade-off with the defaults' summary and correction, for KeyMean (the default) and
  // AttendingQueries.
  for (ClusterCentre centre : {ClusterCentre::KeyMean, ClusterCentre::AttendingQueries}) {
    std::printf("\n### (C, r), centre %s, other options default; targets: exact fraction <= 0.25, "
                "dot products <= 64\n\n| C | r | err L0 | err L1 | oracle L0 | oracle L1 | frac "
                "L0 | frac L1 | cost L0 | cost L1 |\n|---|---|---|---|---|---|---|---|---|---|\n",
                centre_name(centre));
    for (Index c : {0, 8, 12, 16, 24, 32})
      for (Index r : {0, 1, 2, 3, 4, 5, 6}) {
        if ((c == 0) != (r == 0)) continue;
        ClusteredEvaOptions o;
        o.num_clusters = c;
        o.exact_clusters = r;
        o.centre = centre;
        const RealResult a = run_real(layers[0], o, true), b = run_real(layers[1], o, true);
        std::printf("| %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %.1f |\n",
                    c == 0 ? "default" : std::to_string(c).c_str(),
                    r == 0 ? "default" : std::to_string(r).c_str(), a.error, b.error, a.oracle,
                    b.oracle, a.exact_fraction, b.exact_fraction, a.cost, b.cost);
      }
  }

  // Lloyd iterations and seeds at the defaults.
  std::printf("\n### Lloyd iterations (defaults otherwise)\n\n| I | err L0 | err L1 |\n|---|---|"
              "---|\n");
  for (int it : {1, 2, 3, 4, 8, 16}) {
    ClusteredEvaOptions o;
    o.iterations = it;
    std::printf("| %d | %.3f | %.3f |\n", it, run_real(layers[0], o, false).error,
                run_real(layers[1], o, false).error);
  }
  std::printf("\n### Seeds (defaults otherwise)\n\n| seed | err L0 | err L1 |\n|---|---|---|\n");
  for (std::uint64_t seed : {0, 1, 2, 3}) {
    ClusteredEvaOptions o;
    o.seed = seed;
    std::printf("| %lu | %.3f | %.3f |\n", static_cast<unsigned long>(seed),
                run_real(layers[0], o, false).error, run_real(layers[1], o, false).error);
  }
}

// ------------------------------------------------------------------------------------------------
// Synthetic regimes

void synthetic_part(int seeds) {
  const Index n = 4096, d = 64;
  const char* regimes[] = {"small-norm", "large-norm", "smooth", "clustered"};
  std::printf("\n## Synthetic regimes, N = %ld, D = %ld, %d seeds (1000 + 17 s + N, as the "
              "accuracy sweep): mean relative error\n",
              long(n), long(d), seeds);
  struct Config {
    std::string name;
    ClusteredEvaOptions o;
  };
  std::vector<Config> configs;
  configs.push_back({"defaults", {}});
  for (ClusterCentre centre : kCentres)
    for (ClusterSummary summary : kSummaries)
      for (ClusterMassCorrection corr : kCorrections) {
        ClusteredEvaOptions o;
        o.centre = centre;
        o.summary = summary;
        o.mass_correction = corr;
        configs.push_back({std::string(centre_name(centre)) + " / " + summary_name(summary) +
                               " / " + correction_name(corr),
                           o});
      }
  for (Index r : {2, 3, 6, 8}) {
    ClusteredEvaOptions o;
    o.exact_clusters = r;
    configs.push_back({"r = " + std::to_string(r), o});
  }
  for (int it : {1, 2, 4}) {
    ClusteredEvaOptions o;
    o.iterations = it;
    configs.push_back({"I = " + std::to_string(it), o});
  }
  std::printf("\n| configuration | %s | %s | %s | %s | exact fraction (clustered) |\n|---|---|---"
              "|---|---|---|\n",
              regimes[0], regimes[1], regimes[2], regimes[3]);
  std::vector<std::vector<double>> errors(configs.size() + 1, std::vector<double>(4, 0));
  std::vector<double> frac(configs.size(), 0);
  for (int ri = 0; ri < 4; ++ri)
    for (int s = 0; s < seeds; ++s) {
      const RegimeInputs x = draw_regime(regimes[ri], n, d, 1000 + 17 * std::uint64_t(s) + n);
      const MatD exact = Exact<double>()(x.q, x.k, x.v);
      const MatF qf = x.q.cast<float>(), kf = x.k.cast<float>(), vf = x.v.cast<float>();
      errors[configs.size()][size_t(ri)] +=
          relative_error<double>(uniform_attention<double>(n, x.v), exact) / seeds;
      for (size_t c = 0; c < configs.size(); ++c) {
        MatF out(n, d);
        ClusteredEvaStats st;
        ClusteredEva<float>(d, configs[c].o).forward(qf, kf, vf, out, {}, st);
        errors[c][size_t(ri)] += relative_error<double>(out.cast<double>(), exact) / seeds;
        if (ri == 3) frac[c] += st.exact_fraction / seeds;
      }
    }
  for (size_t c = 0; c <= configs.size(); ++c)
    std::printf("| %s | %.3f | %.3f | %.3f | %.3f | %s |\n",
                c < configs.size() ? configs[c].name.c_str() : "uniform", errors[c][0],
                errors[c][1], errors[c][2], errors[c][3],
                c < configs.size() ? std::to_string(frac[c]).substr(0, 5).c_str() : "");
}

// ------------------------------------------------------------------------------------------------
// Timing

/// Wall-clock and this thread's CPU seconds of f() (CPU time excludes the time the shared machine
/// spends running other processes instead of this one).
struct Seconds {
  double wall, cpu;
};
double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}
template <class F>
Seconds seconds_of(F&& f) {
  const double c0 = thread_cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  f();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {wall, thread_cpu_seconds() - c0};
}

void timing_part(int rounds) {
  const Index n = 4096, d = 64;
  const RegimeInputs x = draw_regime("clustered", n, d, 1000 + n);
  const MatF q = x.q.cast<float>(), k = x.k.cast<float>(), v = x.v.cast<float>();
  MatF out(n, d);
  const Exact<float> exact;
  struct Timed {
    std::string name;
    ClusteredEvaOptions o;
    std::vector<double> wall, cpu;
  };
  std::vector<Timed> methods;
  methods.push_back({"defaults (C = 64, r = 4)", {}, {}, {}});
  {
    ClusteredEvaOptions o;
    o.centre = ClusterCentre::AttendingQueries;
    methods.push_back({"AttendingQueries", o, {}, {}});
    o = {};
    o.mass_correction = ClusterMassCorrection::Diagonal;
    methods.push_back({"Diagonal correction", o, {}, {}});
    o = {};
    o.exact_clusters = 3;
    methods.push_back({"r = 3", o, {}, {}});
    o.exact_clusters = 8;
    methods.push_back({"r = 8", o, {}, {}});
  }
  std::vector<double> exact_wall, exact_cpu;
  const double peak = fma_peak_gflops<float>();
  for (int r = 0; r < rounds; ++r) {  // interleaved: each round times every method once
    const Seconds e = seconds_of([&] { exact.forward(q, k, v, out); });
    exact_wall.push_back(e.wall);
    exact_cpu.push_back(e.cpu);
    for (Timed& m : methods) {
      const ClusteredEva<float> method(d, m.o);
      const Seconds t = seconds_of([&] { method.forward(q, k, v, out); });
      m.wall.push_back(t.wall);
      m.cpu.push_back(t.cpu);
    }
  }
  auto median = [](std::vector<double> t) {
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  };
  auto best = [](const std::vector<double>& t) { return *std::min_element(t.begin(), t.end()); };
  const double flops = 4.0 * double(n) * double(n) * double(d);
  std::printf("\n## Timing, N = %ld, D = %ld, float, one thread, %d interleaved rounds\n\n"
              "FMA peak (float, this process): %.1f GFLOP/s. Exact at its best CPU time: %.1f%% of "
              "it (flop model 4 N^2 D).\n\n| method | median wall ms | best CPU ms | Exact / "
              "method (median wall) | Exact / method (best CPU) |\n|---|---|---|---|---|\n",
              long(n), long(d), rounds, peak, 100 * flops / best(exact_cpu) * 1e-9 / peak);
  std::printf("| Exact<float> | %.2f | %.2f | 1.00 | 1.00 |\n", 1e3 * median(exact_wall),
              1e3 * best(exact_cpu));
  for (const Timed& m : methods)
    std::printf("| ClusteredEva<float> %s | %.2f | %.2f | %.2f | %.2f |\n", m.name.c_str(),
                1e3 * median(m.wall), 1e3 * best(m.cpu), median(exact_wall) / median(m.wall),
                best(exact_cpu) / best(m.cpu));
}

int run(int argc, char** argv) {
  std::string part = "all";
  std::string dir = FASTATTN_REAL_ATTENTION_DIR;
  int seeds = 4, rounds = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--part" && i + 1 < argc)
      part = argv[++i];
    else if (a == "--real-dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--seeds" && i + 1 < argc)
      seeds = std::atoi(argv[++i]);
    else if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: fastattn_clustered_eva_study [--part real|synthetic|timing|all] "
                   "[--seeds S] [--rounds R] [--real-dir DIR]\n");
      return 2;
    }
  }
  if (part == "real" || part == "all") real_part(dir);
  if (part == "synthetic" || part == "all") synthetic_part(seeds);
  if (part == "timing" || part == "all") timing_part(rounds);
  return 0;
}

}  // namespace
}  // namespace fastattn::bench

int main(int argc, char** argv) { return fastattn::bench::run(argc, argv); }
