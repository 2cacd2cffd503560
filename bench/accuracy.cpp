// Accuracy sweep: how close each approximation comes to exact attention, per input regime, as a
// function of its budget (features m, EVA's window W) and of the sequence length N, next to the
// reference lines of bench/baselines.hpp (uniform, oracle top-k, window only). Writes JSON with
// the method metadata of method_info.hpp (read by bench/report/). Methods run in float (what
// users run); exact attention and the reference lines in double.
//
// Regimes: four synthetic ones (seeded random inputs, mean and spread over seeds) and two of real
// attention: the per-head q, k, v of the two attention layers of a trained transformer encoder
// (bench/data/real_attention/, PROVENANCE.md there), with key padding from the texts' true
// lengths, padded query rows excluded, and the error pooled over every valid row of every
// (sequence, head) with its spread over the (sequence, head) pairs.
//
// A method's settings come from its metadata (MethodInfo::params, first entry): "m" sweeps the
// feature counts, "window" EVA's windows, "k" the oracle's k (matched to the budgets of the other
// methods at that point), none: one setting. A new method is one entry in method_info.hpp and one
// case in make_method() (methods.hpp).
//
// Usage: fastattn_accuracy [--full] [--out accuracy.json] [--real-dir DIR]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "baselines.hpp"
#include "build_info.hpp"
#include "fastattn/fastattn.hpp"
#include "json_writer.hpp"
#include "methods.hpp"
#include "real_attention.hpp"

#ifndef FASTATTN_REAL_ATTENTION_DIR
#define FASTATTN_REAL_ATTENTION_DIR "bench/data/real_attention"
#endif

namespace fastattn::bench {
namespace {

using MatD = RowMatrix<double>;

/// An input regime: how q, k, v are obtained, and the default setting its headline cells use.
struct Regime {
  std::string name, description;
  bool real = false;   // real attention (the fixture) rather than seeded random inputs
  Index layer = 0;     // real: the fixture's layer
  Index n_sweep = 0;   // the N of its budget sweep
  Index d = 0;         // head dimension
  Setting defaults;    // m, W, k of its headline cells
  std::string samples; // what the spread is over
};

/// The synthetic regimes: seeded random inputs (N, D and defaults are set by run()).
std::vector<Regime> synthetic_regimes() {
  const std::vector<std::pair<std::string, std::string>> list = {
      {"small-norm",
       "q, k, v iid N(0, 1), q and k scaled by 0.3 (|x|^2 ~ 0.7 after the 1/sqrt(D) "
       "split): flat attention, the benign case for random features"},
      {"large-norm", "q, k, v iid N(0, 1) (|x|^2 ~ 8): peaked attention"},
      {"smooth",
       "q, k, v independent AR(1) sequences x_t = 0.98 x_{t-1} + sqrt(1 - 0.98^2) e_t "
       "(docs/spec/eva.md §8): neighbouring tokens are alike"},
      {"clustered",
       "keys and queries near one of 8 random centres (N(0,1) centres, N(0, 0.3^2) "
       "offsets), values iid N(0,1): attention concentrates on a cluster"},
  };
  std::vector<Regime> out;
  for (const auto& [name, description] : list) {
    Regime r;
    r.name = name;
    r.description = description;
    out.push_back(r);
  }
  return out;
}

struct Inputs {
  MatD q, k, v;
};

Inputs draw(const std::string& regime, Index n, Index d, std::uint64_t seed) {
  Rng rng(seed);
  auto gaussian = [&](Index rows, Index cols, double sd) {
    MatD m(rows, cols);
    for (Index i = 0; i < rows; ++i)
      for (Index j = 0; j < cols; ++j) m(i, j) = sd * rng.normal();
    return m;
  };
  Inputs x;
  if (regime == "smooth") {
    const double rho = 0.98, innovation = std::sqrt(1 - rho * rho);
    for (MatD* m : {&x.q, &x.k, &x.v}) {
      *m = gaussian(n, d, 1.0);
      for (Index t = 1; t < n; ++t) m->row(t) = rho * m->row(t - 1) + innovation * m->row(t);
    }
    return x;
  }
  if (regime == "clustered") {
    const MatD centres = gaussian(8, d, 1.0);
    x.q = gaussian(n, d, 0.3);
    x.k = gaussian(n, d, 0.3);
    for (Index t = 0; t < n; ++t) {
      x.q.row(t) += centres.row(Index(rng.next_u64() % 8));
      x.k.row(t) += centres.row(Index(rng.next_u64() % 8));
    }
    x.v = gaussian(n, d, 1.0);
    return x;
  }
  const double sd = regime == "small-norm" ? 0.3 : 1.0;
  x.q = gaussian(n, d, sd);
  x.k = gaussian(n, d, sd);
  x.v = gaussian(n, d, 1.0);
  return x;
}

/// RFA's sigma: RFA estimates softmax over sigma^2 cos(q, k), so sigma^2 is set to the typical
/// logit scale mean|q| mean|k| / sqrt(D) of the rows it attends with (the first `rows`), so that
/// its target is as peaked as the inputs' attention.
double rfa_sigma(const MatD& q, const MatD& k, Index rows) {
  const double d = double(q.cols());
  return std::sqrt(q.topRows(rows).rowwise().norm().mean() *
                   k.topRows(rows).rowwise().norm().mean() / std::sqrt(d));
}

/// RFA's own target: softmax attention over sigma^2 cos(q_i, k_j).
MatD rfa_target(const MatD& q, const MatD& k, const MatD& v, const AttentionOptions& opt,
                double sigma) {
  AttentionOptions target_opt = opt;
  target_opt.scale = sigma * sigma;
  return Exact<double>()(q.rowwise().normalized(), k.rowwise().normalized(), v, target_opt);
}

/// The output of `method` at setting s: approximations in float (methods.hpp's make_method), the
/// reference lines in double (baselines.hpp).
MatD run_method(const std::string& method, const Setting& s, const MatD& q, const MatD& k,
                const MatD& v, const AttentionOptions& opt, std::uint64_t seed) {
  if (method == "uniform") return uniform_attention<double>(q.rows(), v, opt);
  if (method == "oracle top-k") return oracle_topk_attention<double>(q, k, v, s.k, opt);
  if (method == "window only") return window_only_attention<double>(q, k, v, s.window, 0, opt);
  const RowMatrix<float> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
  RowMatrix<float> out(q.rows(), v.cols());
  make_method<float>(method, q.cols(), s, q.rows(), opt.causal, seed)(qf, kf, vf, out, opt);
  return out.cast<double>();
}

/// The errors of one output against its target, over the first `rows` rows (the valid queries).
struct Stats {
  std::vector<double> rel, max_abs, cosine;
  double diff2 = 0, target2 = 0;  // pooled squared Frobenius norms
  void add(const MatD& out, const MatD& target, Index rows) {
    const auto o = out.topRows(rows), t = target.topRows(rows);
    rel.push_back(relative_error<double>(o, t));
    max_abs.push_back(max_abs_error<double>(o, t));
    cosine.push_back(mean_row_cosine<double>(o, t));
    diff2 += (o - t).squaredNorm();
    target2 += t.squaredNorm();
  }
};

double mean(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  return x.empty() ? 0 : s / double(x.size());
}
double stddev(const std::vector<double>& x) {
  if (x.size() < 2) return 0;
  const double m = mean(x);
  double s = 0;
  for (double v : x) s += (v - m) * (v - m);
  return std::sqrt(s / double(x.size() - 1));
}
/// The p-quantile (0 <= p <= 1), linear between order statistics.
double quantile(std::vector<double> x, double p) {
  if (x.empty()) return NAN;
  std::sort(x.begin(), x.end());
  const double pos = p * double(x.size() - 1);
  const std::size_t lo = std::size_t(std::floor(pos)), hi = std::min(lo + 1, x.size() - 1);
  return x[lo] + (pos - double(lo)) * (x[hi] - x[lo]);
}

/// One (method, setting) of a point and its errors.
struct Point {
  std::string method;
  Setting setting;
  Stats stats;
};

/// The settings of `method` at one point: its first parameter over `values` (m, window or k),
/// one setting without parameters.
std::vector<Setting> settings_for(const MethodInfo& info, const std::vector<Index>& ms,
                                  const std::vector<Index>& windows, const std::vector<Index>& ks) {
  std::vector<Setting> out;
  const std::string param = info.params.empty() ? "" : info.params.front();
  auto each = [&](const std::vector<Index>& values, Index Setting::*field) {
    for (Index value : values) {
      Setting s;
      s.*field = value;
      out.push_back(s);
    }
  };
  if (param == "m")
    each(ms, &Setting::m);
  else if (param == "window")
    each(windows, &Setting::window);
  else if (param == "k")
    each(ks, &Setting::k);
  else if (param.empty())
    out.push_back({});
  else
    throw std::invalid_argument("fastattn_accuracy: method " + info.name +
                                " sweeps parameter \"" + param + "\", which the sweep does not know");
  return out;
}

/// Every swept method but exact attention at one point: features ms, windows, and the oracle at
/// the budgets of the others below n (k >= n visible keys is exact attention).
std::vector<Point> plan(const std::vector<Index>& ms, const std::vector<Index>& windows, Index n) {
  std::set<Index> budgets;
  for (Index m : ms) budgets.insert(m);
  for (Index w : windows) budgets.insert(w);
  std::vector<Index> ks, ws;
  for (Index b : budgets)
    if (b < n) ks.push_back(b);
  for (Index w : windows)
    if (w < n) ws.push_back(w);
  std::vector<Point> points;
  for (const MethodInfo& info : method_table()) {
    if (!info.swept || info.role == Role::Exact) continue;
    const bool eva = info.cost == CostModel::Eva;
    for (const Setting& s : settings_for(info, ms, eva ? windows : ws, ks))
      points.push_back({info.name, s, {}});
  }
  return points;
}

/// What each result's error is measured against.
std::string target_of(const std::string& method, bool real) {
  return method == "RFA" && !real ? "cosine-softmax (RFA's own target)" : "softmax";
}

class Writer {
 public:
  explicit Writer(std::ostream& out) : out_(out) {}

  void result(const Regime& regime, const Point& p, Index n, bool causal) {
    const MethodInfo& info = method_info(p.method);
    const Stats& s = p.stats;
    const double value = regime.real ? std::sqrt(s.diff2 / s.target2) : mean(s.rel);
    out_ << (first_ ? "" : ",") << "\n    {\"regime\": " << json_string(regime.name)
         << ", \"method\": " << json_string(p.method)
         << ", \"setting\": " << json_string(setting_text(info, p.setting, n, causal))
         << ", \"budget\": " << budget(info, p.setting) << ", \"m\": " << p.setting.m
         << ", \"window\": " << p.setting.window << ", \"k\": " << p.setting.k << ", \"N\": " << n
         << ", \"D\": " << regime.d << ", \"causal\": " << (causal ? "true" : "false")
         << ", \"samples\": " << s.rel.size()
         << ", \"target\": " << json_string(target_of(p.method, regime.real))
         << ", \"model_flops\": " << json_number(model_flops(p.method, n, regime.d, p.setting, causal))
         << ", \"rel_error\": {\"value\": " << json_number(value) << ", \"statistic\": "
         << json_string(regime.real ? "pooled" : "mean") << ", \"mean\": " << json_number(mean(s.rel))
         << ", \"std\": " << json_number(stddev(s.rel))
         << ", \"min\": " << json_number(*std::min_element(s.rel.begin(), s.rel.end()))
         << ", \"max\": " << json_number(*std::max_element(s.rel.begin(), s.rel.end()))
         << ", \"median\": " << json_number(quantile(s.rel, 0.5))
         << ", \"p10\": " << json_number(quantile(s.rel, 0.1))
         << ", \"p90\": " << json_number(quantile(s.rel, 0.9))
         << "}, \"max_abs_error\": " << json_number(mean(s.max_abs))
         << ", \"row_cosine\": " << json_number(mean(s.cosine)) << "}";
    first_ = false;
  }

 private:
  std::ostream& out_;
  bool first_ = true;
};

int run(int argc, char** argv) {
  bool full = false;
  std::string path = "accuracy.json", real_dir = FASTATTN_REAL_ATTENTION_DIR;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--full")
      full = true;
    else if (a == "--out" && i + 1 < argc)
      path = argv[++i];
    else if (a == "--real-dir" && i + 1 < argc)
      real_dir = argv[++i];
    else {
      std::cerr << "usage: fastattn_accuracy [--full] [--out accuracy.json] [--real-dir DIR]\n";
      return 2;
    }
  }
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const RealAttention<double> real = load_real_attention<double>(real_dir);

  const Index d = 64;
  const int seeds = full ? 8 : 4;
  const std::vector<Index> ms =
      full ? std::vector<Index>{16, 32, 64, 128, 256, 512} : std::vector<Index>{32, 64, 128, 256};
  const std::vector<Index> windows =
      full ? std::vector<Index>{16, 32, 64, 128, 256} : std::vector<Index>{32, 64, 128};
  const std::vector<Index> ns =
      full ? std::vector<Index>{256, 1024, 4096, 8192} : std::vector<Index>{256, 1024, 4096};
  // The budget sweep runs at N = 1024 (docs/spec/eva.md §8's protocol); the feature sweep also at
  // N = 4096 (where the throughput benchmarks sweep m, so the report can put error and time side
  // by side); causal at N = 1024. Elsewhere each method runs at its default setting.
  const Index m_default = 256, n_default = 1024, n_timed = 4096;
  // Real attention: 128 tokens, so smaller windows; m up to 256 features (more than the tokens,
  // to see whether random features ever catch up). Headline cells at a quarter of the tokens.
  const std::vector<Index> real_ms = {16, 32, 64, 128, 256}, real_windows = {16, 32, 64};

  std::vector<Regime> regimes = synthetic_regimes();
  for (Regime& r : regimes) {
    r.n_sweep = n_default;
    r.d = d;
    r.defaults.m = m_default;
    r.defaults.window = r.defaults.k = kEvaWindow;
    r.samples = std::to_string(seeds) + " seeds";
  }
  for (Index l = 0; l < Index(real.layers.size()); ++l) {
    const auto& layer = real.layers[size_t(l)];
    FASTATTN_CHECK(std::abs(layer.scale * std::sqrt(double(layer.head_dim)) - 1) < 1e-6,
                   "fastattn_accuracy: layer " << l << " of the fixture scales its logits by "
                                               << layer.scale << ", not 1/sqrt(head_dim)");
    Regime r;
    r.name = "real-L" + std::to_string(l);
    r.real = true;
    r.layer = l;
    r.n_sweep = real.tokens;
    r.d = layer.head_dim;
    r.defaults.m = r.defaults.window = r.defaults.k = 32;  // a quarter of the 128 tokens
    r.samples = std::to_string(real.sequences.size()) + " sequences × " +
                std::to_string(layer.num_heads) + " heads";
    r.description = "real attention: layer " + std::to_string(l) +
                    " of Universal Sentence Encoder lite (a trained transformer encoder), " +
                    std::to_string(layer.num_heads) + " heads of dim " +
                    std::to_string(layer.head_dim) + ", " + std::to_string(real.sequences.size()) +
                    " texts of up to " + std::to_string(real.tokens) +
                    " tokens, key padding from their true lengths; every method against the "
                    "model's softmax attention (RFA too)";
    regimes.push_back(r);
  }

  std::ofstream json(path);
  if (!json) {
    std::cerr << "fastattn_accuracy: cannot write " << path << "\n";
    return 1;
  }
  json << "{\n  \"schema\": \"fastattn-accuracy-2\",\n  \"build\": {";
  bool first = true;
  for (const auto& [key, value] : build_info()) {
    json << (first ? "" : ",") << "\n    " << json_string(key) << ": " << json_string(value);
    first = false;
  }
  json << "\n  },\n  \"config\": {\"D\": " << d << ", \"seeds\": " << seeds
       << ", \"precision\": \"float (exact reference and reference lines in double)\""
       << ", \"m_default\": " << m_default << ", \"window_default\": " << kEvaWindow
       << ", \"N_default\": " << n_default << ", \"N_timed\": " << n_timed
       << ", \"m_meaning\": " << json_string(feature_count_meaning())
       << ", \"budget_meaning\": "
       << json_string("keys computed exactly per query, or features: m for random features, "
                      "EVA's window W (W + 2 ext key slots; ext = 0 here), k for the oracle")
       << "},\n  \"methods\": " << methods_json() << ",\n  \"regimes\": [";
  for (std::size_t r = 0; r < regimes.size(); ++r) {
    const Regime& g = regimes[r];
    json << (r ? "," : "") << "\n    {\"name\": " << json_string(g.name)
         << ", \"description\": " << json_string(g.description) << ", \"kind\": "
         << json_string(g.real ? "real" : "synthetic") << ", \"N\": " << g.n_sweep
         << ", \"D\": " << g.d << ", \"samples\": " << json_string(g.samples)
         << ", \"spread\": "
         << json_string(g.real ? "10th-90th percentile over (sequence, head)" : "min-max over seeds")
         << ", \"defaults\": {\"m\": " << g.defaults.m << ", \"window\": " << g.defaults.window
         << ", \"k\": " << g.defaults.k << "}, \"exact_flops\": "
         << json_number(model_flops("Exact", g.n_sweep, g.d, Setting(), false))
         << (g.real ? ", \"source\": \"bench/data/real_attention/PROVENANCE.md\"" : "") << "}";
  }
  json << "\n  ],\n  \"results\": [";
  Writer writer(json);

  for (const Regime& regime : regimes) {
    if (regime.real) {
      // One point: every method at every setting, over every (sequence, head).
      std::vector<Point> points = plan(real_ms, real_windows, real.tokens);
      const auto& layer = real.layers[size_t(regime.layer)];
      for (Index s = 0; s < Index(real.sequences.size()); ++s) {
        AttentionOptions opt;
        opt.key_padding = real.key_padding(s);
        const Index rows = real.sequences[size_t(s)].length;  // rows >= length: padded queries
        for (Index h = 0; h < layer.num_heads; ++h) {
          const auto& x = real.head(s, regime.layer, h);
          const MatD exact = Exact<double>()(x.q, x.k, x.v, opt);
          const double sigma = rfa_sigma(x.q, x.k, rows);
          const std::uint64_t seed = 7000 + std::uint64_t(100 * regime.layer + 4 * s + h);
          for (Point& p : points) {
            p.setting.sigma = sigma;
            p.stats.add(run_method(p.method, p.setting, x.q, x.k, x.v, opt, seed), exact, rows);
          }
        }
      }
      for (const Point& p : points) writer.result(regime, p, real.tokens, false);
      std::fprintf(stderr, "accuracy: %-10s N=%-5ld non-causal done (%.1f s)\n",
                   regime.name.c_str(), long(real.tokens), elapsed());
      continue;
    }
    for (Index n : ns)
      for (int causal = 0; causal < 2; ++causal) {
        if (causal && n != n_default) continue;  // causal: one length
        const bool budget_sweep = n == n_default && !causal;
        const bool feature_sweep = budget_sweep || (n == n_timed && !causal);
        std::vector<Point> points = plan(feature_sweep ? ms : std::vector<Index>{m_default},
                                         budget_sweep ? windows : std::vector<Index>{kEvaWindow},
                                         n);
        if (!budget_sweep)  // elsewhere the oracle at the default k only
          points.erase(std::remove_if(points.begin(), points.end(),
                                      [](const Point& p) {
                                        return p.method == "oracle top-k" &&
                                               p.setting.k != kEvaWindow;
                                      }),
                       points.end());
        for (int s = 0; s < seeds; ++s) {
          const Inputs x = draw(regime.name, n, d, 1000 + 17 * std::uint64_t(s) + std::uint64_t(n));
          AttentionOptions opt;
          opt.causal = causal;
          const MatD exact = Exact<double>()(x.q, x.k, x.v, opt);
          const double sigma = rfa_sigma(x.q, x.k, n);
          const MatD rfa_exact = rfa_target(x.q, x.k, x.v, opt, sigma);
          for (Point& p : points) {
            p.setting.sigma = sigma;
            p.stats.add(run_method(p.method, p.setting, x.q, x.k, x.v, opt, 5000 + std::uint64_t(s)),
                        p.method == "RFA" ? rfa_exact : exact, n);
          }
        }
        for (const Point& p : points) writer.result(regime, p, n, causal);
        std::fprintf(stderr, "accuracy: %-10s N=%-5ld %s done (%.1f s)\n", regime.name.c_str(),
                     long(n), causal ? "causal" : "non-causal", elapsed());
      }
  }
  const double seconds = elapsed();
  json << "\n  ],\n  \"seconds\": " << json_number(seconds) << "\n}\n";
  std::fprintf(stderr, "accuracy: wrote %s in %.1f s\n", path.c_str(), seconds);
  return 0;
}

}  // namespace
}  // namespace fastattn::bench

int main(int argc, char** argv) {
  try {
    return fastattn::bench::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fastattn_accuracy: %s\n", e.what());
    return 1;
  }
}
