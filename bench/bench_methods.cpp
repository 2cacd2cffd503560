// Throughput of every method against exact attention: N sweeps (non-causal and causal), m and D
// sweeps, decode-step latency, multi-head thread scaling and GQA. Parameters are JSON counters
// (N, D, m, causal, ...) and the method is the label, so the report reads them directly.
//
// FASTATTN_BENCH_FULL=1 runs the full sweep (N up to 65536, every D x m); the default finishes in
// a few minutes on 2 cores.

#include <chrono>
#include <cstdlib>

#include "common.hpp"
#include "methods.hpp"

namespace fastattn::bench {
namespace {

bool full_sweep() {
  const char* env = std::getenv("FASTATTN_BENCH_FULL");
  return env != nullptr && std::string(env) == "1";
}

template <class T>
void run_forward(benchmark::State& state, const std::string& name, Index n, Index d, Index m,
                 bool causal) {
  const auto method = make_method<T>(name, d, m, n, causal);
  const RowMatrix<T> q = random_input<T>(n, d, 1, 0.5), k = random_input<T>(n, d, 2, 0.5),
                     v = random_input<T>(n, d, 3);
  RowMatrix<T> out(n, d);
  AttentionOptions opt;
  opt.causal = causal;
  for (auto _ : state) {
    method(q, k, v, out, opt);
    benchmark::DoNotOptimize(out.data());
  }
  set_counters<T>(state, model_flops(name, n, d, m, causal), double(n));
  state.counters["N"] = double(n);
  state.counters["D"] = double(d);
  state.counters["m"] = double(m);
  state.counters["causal"] = causal;
  state.counters["float"] = std::is_same_v<T, float>;
  state.SetLabel(name);
}

/// Decode-step latency at a context of `context` tokens: each measured batch of kSteps steps starts
/// from the state after the prefix (Exact: the KV cache truncated back; others: an untimed copy),
/// so the context does not grow with the iteration count.
template <class T, class Method>
void run_decode(benchmark::State& state, const std::string& name, const Method& method,
                Index context, Index d) {
  constexpr Index kSteps = 32;
  const RowMatrix<T> x = random_input<T>(context + kSteps, d, 4, 0.5);
  auto prefix = method.make_state(d);
  if constexpr (std::is_same_v<Method, Exact<T>>) prefix.reserve(context + kSteps);
  RowMatrix<T> out(1, d);
  for (Index t = 0; t < context; ++t) method.step(prefix, x.row(t), x.row(t), x.row(t), out);
  constexpr bool rollback = std::is_same_v<Method, Exact<T>>;  // KV cache: truncate, don't copy
  auto s = prefix;
  for (auto _ : state) {
    if constexpr (rollback)
      s.truncate(context);
    else
      s = prefix;
    const auto start = std::chrono::steady_clock::now();
    for (Index t = context; t < context + kSteps; ++t)
      method.step(s, x.row(t), x.row(t), x.row(t), out);
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    benchmark::DoNotOptimize(out.data());
    state.SetIterationTime(elapsed.count() / kSteps);  // time per step
  }
  state.counters["context"] = double(context);
  state.counters["D"] = double(d);
  state.counters["float"] = std::is_same_v<T, float>;
  state.SetLabel(name);
}

/// One multihead call, B = 1, H heads (Hkv kv heads), N tokens, D = 64, on `threads` threads.
template <class T>
void run_multihead(benchmark::State& state, const std::string& name, Index heads, Index kv_heads,
                   Index n, int threads) {
  const Index d = 64;
  const RowMatrix<T> q = random_input<T>(n, heads * d, 1, 0.5);
  const RowMatrix<T> kv = random_input<T>(n, kv_heads * d, 2, 0.5);
  RowMatrix<T> out(n, heads * d);
  MultiheadOptions opt;
  opt.threads = threads;
  auto qv = TensorView<const T>::bnhd(q.data(), 1, n, heads, d);
  auto kvv = TensorView<const T>::bnhd(kv.data(), 1, n, kv_heads, d);
  auto ov = TensorView<T>::bnhd(out.data(), 1, n, heads, d);
  auto run = [&](const auto& method) {
    for (auto _ : state) {
      multihead(method, qv, kvv, kvv, ov, opt);
      benchmark::DoNotOptimize(out.data());
    }
  };
  if (name == "Exact") run(Exact<T>());
  if (name == "FAVOR+") run(Favor<T>(d));
  if (name == "RFA") run(Rfa<T>(d));
  if (name == "EVA-Reference") run(Eva<T>(d, eva_options(false, n, false)));
  state.counters["heads"] = double(heads);
  state.counters["kv_heads"] = double(kv_heads);
  state.counters["threads"] = threads;
  state.counters["N"] = double(n);
  state.SetLabel(name);
}

template <class T>
void register_all() {
  const std::string type = std::is_same_v<T, float> ? "float" : "double";
  const bool full = full_sweep();
  const std::vector<Index> ns = full ? std::vector<Index>{256, 1024, 4096, 16384, 65536}
                                     : std::vector<Index>{256, 1024, 4096, 16384};
  const Index exact_max = full ? 65536 : 16384;
  auto add = [&](const std::string& name, Index n, Index d, Index m, bool causal) {
    const std::string id = "forward/" + name + "/" + type + (causal ? "/causal" : "/noncausal") +
                           "/N:" + std::to_string(n) + "/D:" + std::to_string(d) +
                           "/m:" + std::to_string(m);
    benchmark::RegisterBenchmark(
        id.c_str(), [=](benchmark::State& s) { run_forward<T>(s, name, n, d, m, causal); })
        ->Unit(benchmark::kMillisecond)
        ->MinTime(n >= 16384 ? 0.01 : 0.2);
  };
  for (const std::string& name : method_names()) {
    for (int causal = 0; causal < 2; ++causal)
      for (Index n : ns) {
        if (causal && !method_info(name).causal) continue;
        if (name == "Exact" && n > exact_max) continue;
        if (name == "EVA-Disjoint" && n > 16384) continue;  // O(N^2/64)
        if (type == "double" && n > 4096 && !full) continue;
        add(name, n, 64, 256, causal);
      }
  }
  // EVA's linear scaling at a fixed chunk count (time(2N) / time(N)), 4K to 32K, non-causal.
  if (type == "float")
    for (Index n : {8192, 32768}) add("EVA-Reference", n, 64, 256, false);

  // Feature count and head dimension sweeps at N = 4096, non-causal.
  const std::vector<Index> ds = {32, 64, 128};
  for (std::string name : {"FAVOR+", "FAVOR-hyp", "FAVOR++", "RFA"})
    for (Index m : {64, 128, 256})
      for (Index d : ds) {
        if (type == "double" && !full) continue;
        if (!full && d != 64 && m != 256) continue;
        if (m == 256 && d == 64) continue;  // already in the N sweep
        add(name, 4096, d, m, false);
      }
  for (Index d : ds)
    if (d != 64 && type == "float") {
      add("Exact", 4096, d, 256, false);
      add("EVA-Reference", 4096, d, 256, false);
    }
  add("Exact-reference", 1024, 64, 256, false);

  // Decode-step latency (float only; D = 64, m = 256).
  if (type == "float") {
    for (Index context : {1024, 4096}) {
      auto reg = [&](const std::string& name, auto make) {
        const std::string id =
            "decode/" + name + "/" + type + "/context:" + std::to_string(context);
        benchmark::RegisterBenchmark(
            id.c_str(), [=](benchmark::State& s) { run_decode<T>(s, name, make(), context, 64); })
            ->Unit(benchmark::kMicrosecond)
            ->UseManualTime();
      };
      reg("Exact", [] { return Exact<T>(); });
      reg("FAVOR+", [] { return Favor<T>(64); });
      reg("RFA", [] { return Rfa<T>(64); });
      EvaOptions eo;
      eo.window = 64;
      eo.chunk_size = 64;
      reg("EVA-Reference", [eo] { return Eva<T>(64, eo); });
    }
    // Multi-head: 8 heads, N = 4096, 1 and 2 threads; GQA with 2 kv heads for FAVOR+.
    for (std::string name : {"Exact", "FAVOR+", "RFA", "EVA-Reference"})
      for (int threads : {1, 2}) {
        const std::string id =
            "multihead/" + name + "/" + type + "/H:8/Hkv:8/threads:" + std::to_string(threads);
        benchmark::RegisterBenchmark(
            id.c_str(),
            [=](benchmark::State& s) { run_multihead<T>(s, name, 8, 8, 4096, threads); })
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    benchmark::RegisterBenchmark(
        "multihead/FAVOR+/float/H:8/Hkv:2/threads:1",
        [](benchmark::State& s) { run_multihead<T>(s, "FAVOR+", 8, 2, 4096, 1); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
}

const bool registered = [] {
  register_all<float>();
  register_all<double>();
  return true;
}();

}  // namespace
}  // namespace fastattn::bench
