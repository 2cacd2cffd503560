// Peer worker for fastattn itself: fastattn::multihead(Exact<float>(), ...) on the shared
// [B, N, H*D] input files (bnhd views), threads = 1; also measures this machine's FMA peak with
// bench/common.hpp's fma_chains, in the same run as the peers.
//
// Protocol (README.md in this directory): one command per line on stdin, one JSON line on stdout.
//   info | run exact CAUSAL IN OUT | time exact CAUSAL IN REPS | peak | quit

#include <dirent.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"  // bench/common.hpp: fma_chains
#include "fastattn/exact.hpp"
#include "fastattn/multihead.hpp"
#include "fastattn/version.hpp"

#ifndef PEERS_BUILD_FLAGS
#define PEERS_BUILD_FLAGS "unknown"
#endif

namespace {

struct Inputs {
  std::string path;
  std::int64_t b = 0, n = 0, h = 0, hkv = 0, d = 0;
  std::vector<float> q, k, v;
};

// "FAPEERS1", int64 B, N, H, HKV, D, then float32 q [B,N,H*D], k and v [B,N,HKV*D].
Inputs read_inputs(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  Inputs in;
  in.path = path;
  char magic[8];
  std::int64_t hdr[5];
  bool ok = std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, "FAPEERS1", 8) == 0 &&
            std::fread(hdr, sizeof(std::int64_t), 5, f) == 5;
  if (ok) {
    in.b = hdr[0], in.n = hdr[1], in.h = hdr[2], in.hkv = hdr[3], in.d = hdr[4];
    in.q.resize(std::size_t(in.b * in.n * in.h * in.d));
    in.k.resize(std::size_t(in.b * in.n * in.hkv * in.d));
    in.v.resize(in.k.size());
    ok = std::fread(in.q.data(), sizeof(float), in.q.size(), f) == in.q.size() &&
         std::fread(in.k.data(), sizeof(float), in.k.size(), f) == in.k.size() &&
         std::fread(in.v.data(), sizeof(float), in.v.size(), f) == in.v.size();
  }
  std::fclose(f);
  if (!ok) throw std::runtime_error(path + ": not a complete FAPEERS1 input file");
  return in;
}

double seconds(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

int count_threads() {
  DIR* d = opendir("/proc/self/task");
  if (!d) return -1;
  int n = 0;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

std::string json_string(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      r += '\\';
      r += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      r += buf;
    } else {
      r += c;
    }
  }
  return r + "\"";
}

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.9g", x);
  return buf;
}

class Worker {
 public:
  void run_once(bool causal, const std::string& in, const std::string& out_path) {
    load(in);
    const double t0 = seconds(CLOCK_MONOTONIC);
    forward(causal);
    const double t = seconds(CLOCK_MONOTONIC) - t0;
    std::FILE* f = std::fopen(out_path.c_str(), "wb");
    if (!f || std::fwrite(out_.data(), sizeof(float), out_.size(), f) != out_.size()) {
      if (f) std::fclose(f);
      throw std::runtime_error("cannot write " + out_path);
    }
    std::fclose(f);
    std::cout << "{\"ok\":true,\"seconds\":" << num(t) << "}" << std::endl;
  }

  void time(bool causal, const std::string& in, int reps) {
    load(in);
    // Wall time per run, and the process CPU time per run (what the run cost when the machine is
    // shared: time spent descheduled is not in it).
    std::vector<double> times, cpu_times;
    for (int r = 0; r < reps; ++r) {
      const double c0 = seconds(CLOCK_PROCESS_CPUTIME_ID), t0 = seconds(CLOCK_MONOTONIC);
      forward(causal);
      times.push_back(seconds(CLOCK_MONOTONIC) - t0);
      cpu_times.push_back(seconds(CLOCK_PROCESS_CPUTIME_ID) - c0);
    }
    std::ostringstream os;
    os << "{\"ok\":true,\"times_s\":[";
    for (std::size_t i = 0; i < times.size(); ++i) os << (i ? "," : "") << num(times[i]);
    os << "],\"cpu_times_s\":[";
    for (std::size_t i = 0; i < cpu_times.size(); ++i) os << (i ? "," : "") << num(cpu_times[i]);
    os << "],\"threads\":" << count_threads() << "}";
    std::cout << os.str() << std::endl;
  }

 private:
  void load(const std::string& path) {
    if (in_.path == path) return;
    in_ = read_inputs(path);
    out_.assign(in_.q.size(), 0.0f);
  }

  void forward(bool causal) {
    using View = fastattn::TensorView<const float>;
    fastattn::MultiheadOptions opt;
    opt.threads = 1;
    opt.causal = causal;
    fastattn::multihead(fastattn::Exact<float>(), View::bnhd(in_.q.data(), in_.b, in_.n, in_.h, in_.d),
                        View::bnhd(in_.k.data(), in_.b, in_.n, in_.hkv, in_.d),
                        View::bnhd(in_.v.data(), in_.b, in_.n, in_.hkv, in_.d),
                        fastattn::TensorView<float>::bnhd(out_.data(), in_.b, in_.n, in_.h, in_.d),
                        opt);
  }

  Inputs in_;
  std::vector<float> out_;
};

// Best of 10 timed runs of bench/common.hpp's independent FMA chains on Eigen's widest float
// packet, by wall time and by this thread's CPU time (the latter excludes time spent
// descheduled on a shared machine). Measured afresh on every call, unlike fma_peak_gflops, so the
// orchestrator can sample the peak between the timing rounds.
std::string fma_peak_now() {
  double best_wall = 0, best_cpu = 0;
  for (int rep = 0; rep < 10; ++rep) {
    const double c0 = seconds(CLOCK_THREAD_CPUTIME_ID), t0 = seconds(CLOCK_MONOTONIC);
    const double flops = fastattn::bench::fma_chains<float>(5'000'000);
    const double wall = seconds(CLOCK_MONOTONIC) - t0, cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - c0;
    best_wall = std::max(best_wall, flops / wall * 1e-9);
    best_cpu = std::max(best_cpu, flops / cpu * 1e-9);
  }
  return "{\"ok\":true,\"gflops\":" + num(best_wall) + ",\"gflops_cpu_time\":" + num(best_cpu) +
         "}";
}

}  // namespace

int main() {
  Worker worker;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream is(line);
    std::string cmd, impl, path, out;
    int causal = 0, reps = 0;
    if (!(is >> cmd)) continue;
    if (cmd == "quit") break;
    try {
      if (cmd == "info") {
        const int lanes = Eigen::internal::packet_traits<float>::size;
        std::cout << "{\"ok\":true,\"fastattn_version\":\"" << FASTATTN_VERSION_MAJOR << "."
                  << FASTATTN_VERSION_MINOR << "." << FASTATTN_VERSION_PATCH
                  << "\",\"eigen_version\":\"" << EIGEN_WORLD_VERSION << "." << EIGEN_MAJOR_VERSION
                  << "." << EIGEN_MINOR_VERSION << "\",\"simd\":" << json_string(Eigen::SimdInstructionSetsInUse())
                  << ",\"float_packet_lanes\":" << lanes
                  << ",\"build_flags\":" << json_string(PEERS_BUILD_FLAGS)
                  << ",\"threads\":" << count_threads() << "}" << std::endl;
      } else if (cmd == "peak") {
        std::cout << fma_peak_now() << std::endl;
      } else if (cmd == "run" && (is >> impl >> causal >> path >> out) && impl == "exact") {
        worker.run_once(causal != 0, path, out);
      } else if (cmd == "time" && (is >> impl >> causal >> path >> reps) && impl == "exact") {
        worker.time(causal != 0, path, reps);
      } else {
        std::cout << "{\"ok\":false,\"error\":" << json_string("bad command: " + line) << "}"
                  << std::endl;
      }
    } catch (const std::exception& e) {
      std::cout << "{\"ok\":false,\"error\":" << json_string(e.what()) << "}" << std::endl;
    }
  }
  return 0;
}
