// Accuracy sweep: how close each approximation comes to exact attention, per input regime, as a
// function of the feature count m and the sequence length N; mean and spread over seeds. Writes
// JSON with the method metadata of method_info.hpp (read by bench/report/). Methods run in float
// (what users run); exact attention in double.
//
// Usage: fastattn_accuracy [--full] [--out accuracy.json]

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "build_info.hpp"
#include "fastattn/fastattn.hpp"
#include "json_writer.hpp"
#include "methods.hpp"

namespace fastattn::bench {
namespace {

using MatD = RowMatrix<double>;

/// An input regime: how q, k, v are drawn.
struct Regime {
  std::string name, description;
};

const std::vector<Regime>& regimes() {
  static const std::vector<Regime> list = {
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
  return list;
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

/// RFA estimates softmax over sigma^2 cos(q, k): its exact target. sigma^2 is set to the regime's
/// typical logit scale, mean|q| mean|k| / sqrt(D), so the target is as peaked as the regime.
double rfa_sigma(const Inputs& x) {
  const double d = double(x.q.cols());
  return std::sqrt(x.q.rowwise().norm().mean() * x.k.rowwise().norm().mean() / std::sqrt(d));
}

struct Errors {
  double rel, max_abs, cosine;
};

struct Stats {
  std::vector<double> rel, max_abs, cosine;
  void add(const Errors& e) {
    rel.push_back(e.rel);
    max_abs.push_back(e.max_abs);
    cosine.push_back(e.cosine);
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

/// One method on one input: errors against exact attention (RFA: against its own target).
Errors evaluate(const std::string& method, const Inputs& x, Index m, bool causal,
                std::uint64_t seed, const MatD& exact) {
  const Index n = x.q.rows(), d = x.q.cols();
  AttentionOptions opt;
  opt.causal = causal;
  const RowMatrix<float> q = x.q.cast<float>(), k = x.k.cast<float>(), v = x.v.cast<float>();
  RowMatrix<float> out(n, d);
  MatD target = exact;
  if (method == "uniform") {  // ignore the keys: the mean of the visible values
    MatD mean_v(n, d);
    for (Index i = 0; i < n; ++i) mean_v.row(i) = x.v.topRows(causal ? i + 1 : n).colwise().mean();
    out = mean_v.cast<float>();
  } else if (method == "RFA") {
    const double sigma = rfa_sigma(x);
    RfaOptions ro;
    ro.num_features = m / 2;
    ro.sigma = sigma;
    ro.seed = seed;
    Rfa<float>(d, ro).forward(q, k, v, out, opt);
    AttentionOptions target_opt = opt;
    target_opt.scale = sigma * sigma;
    const MatD qh = x.q.rowwise().normalized(), kh = x.k.rowwise().normalized();
    target = Exact<double>()(qh, kh, x.v, target_opt);
  } else {
    make_method<float>(method, d, m, n, causal, seed)(q, k, v, out, opt);
  }
  const MatD o = out.cast<double>();
  return {relative_error<double>(o, target), max_abs_error<double>(o, target),
          mean_row_cosine<double>(o, target)};
}

int run(int argc, char** argv) {
  bool full = false;
  std::string path = "accuracy.json";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--full")
      full = true;
    else if (a == "--out" && i + 1 < argc)
      path = argv[++i];
    else {
      std::cerr << "usage: fastattn_accuracy [--full] [--out accuracy.json]\n";
      return 2;
    }
  }
  const Index d = 64;
  const int seeds = full ? 8 : 4;
  const std::vector<Index> ms =
      full ? std::vector<Index>{16, 32, 64, 128, 256, 512} : std::vector<Index>{32, 64, 128, 256};
  const std::vector<Index> ns =
      full ? std::vector<Index>{256, 1024, 4096, 8192} : std::vector<Index>{256, 1024, 4096};
  // The m sweep runs at N = 1024 (docs/spec/eva.md §8's protocol) and at N = 4096 (where the throughput
  // benchmarks sweep m, so the report can put error and time side by side); causal at N = 1024.
  const Index m_default = 256, n_default = 1024, n_timed = 4096;
  // Every swept method but exact attention (the reference): those with features at each m.
  std::vector<std::string> rf, others;
  for (const MethodInfo& info : method_table()) {
    if (!info.swept || info.role == Role::Exact) continue;
    const bool uses_m = std::find(info.params.begin(), info.params.end(), "m") != info.params.end();
    (uses_m ? rf : others).push_back(info.name);
  }

  std::ofstream json(path);
  if (!json) {
    std::cerr << "fastattn_accuracy: cannot write " << path << "\n";
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  json << "{\n  \"schema\": \"fastattn-accuracy-1\",\n  \"build\": {";
  bool first = true;
  for (const auto& [key, value] : build_info()) {
    json << (first ? "" : ",") << "\n    " << json_string(key) << ": " << json_string(value);
    first = false;
  }
  json << "\n  },\n  \"config\": {\"D\": " << d << ", \"seeds\": " << seeds
       << ", \"precision\": \"float (exact reference in double)\", \"m_default\": " << m_default
       << ", \"N_default\": " << n_default << ", \"N_timed\": " << n_timed
       << ", \"m_meaning\": " << json_string(feature_count_meaning())
       << "},\n  \"methods\": " << methods_json() << ",\n  \"regimes\": [";
  for (std::size_t r = 0; r < regimes().size(); ++r)
    json << (r ? "," : "") << "\n    {\"name\": " << json_string(regimes()[r].name)
         << ", \"description\": " << json_string(regimes()[r].description) << "}";
  json << "\n  ],\n  \"results\": [";

  bool first_result = true;
  auto emit = [&](const std::string& regime, const std::string& method, Index m, Index n,
                  bool causal, const Stats& s) {
    json << (first_result ? "" : ",") << "\n    {\"regime\": " << json_string(regime)
         << ", \"method\": " << json_string(method) << ", \"m\": " << m << ", \"N\": " << n
         << ", \"D\": " << d << ", \"causal\": " << (causal ? "true" : "false")
         << ", \"seeds\": " << s.rel.size() << ", \"target\": "
         << json_string(method_info(method).target)
         << ", \"rel_error\": {\"mean\": " << json_number(mean(s.rel))
         << ", \"std\": " << json_number(stddev(s.rel))
         << ", \"min\": " << json_number(*std::min_element(s.rel.begin(), s.rel.end()))
         << ", \"max\": " << json_number(*std::max_element(s.rel.begin(), s.rel.end()))
         << "}, \"max_abs_error\": " << json_number(mean(s.max_abs))
         << ", \"row_cosine\": " << json_number(mean(s.cosine)) << "}";
    first_result = false;
  };

  for (const Regime& regime : regimes()) {
    for (Index n : ns)
      for (int causal = 0; causal < 2; ++causal) {
        if (causal && n != n_default) continue;  // causal: one length
        // Which (method, m) points to evaluate at this N: the m sweep at N_default, m_default else.
        std::vector<std::pair<std::string, Index>> points;
        for (const auto& name : rf)
          for (Index m : ms)
            if (m == m_default || ((n == n_default || n == n_timed) && !causal))
              points.emplace_back(name, m);
        for (const auto& name : others) points.emplace_back(name, 0);
        std::vector<Stats> stats(points.size());
        for (int s = 0; s < seeds; ++s) {
          const Inputs x = draw(regime.name, n, d, 1000 + 17 * std::uint64_t(s) + std::uint64_t(n));
          AttentionOptions opt;
          opt.causal = causal;
          const MatD exact = Exact<double>()(x.q, x.k, x.v, opt);
          for (std::size_t p = 0; p < points.size(); ++p)
            stats[p].add(evaluate(points[p].first, x, points[p].second, causal,
                                  5000 + std::uint64_t(s), exact));
        }
        for (std::size_t p = 0; p < points.size(); ++p)
          emit(regime.name, points[p].first, points[p].second, n, causal, stats[p]);
        std::fprintf(stderr, "accuracy: %-10s N=%-5ld %s done\n", regime.name.c_str(), long(n),
                     causal ? "causal" : "non-causal");
      }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  json << "\n  ],\n  \"seconds\": " << json_number(seconds) << "\n}\n";
  std::fprintf(stderr, "accuracy: wrote %s in %.1f s\n", path.c_str(), seconds);
  return 0;
}

}  // namespace
}  // namespace fastattn::bench

int main(int argc, char** argv) { return fastattn::bench::run(argc, argv); }
