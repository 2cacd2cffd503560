// Strong and weak scaling of sequence_parallel() (include/fastattn/sequence_parallel.hpp), with
// the parallel efficiency T_1 / (P T_P), in wall-clock time and in CPU time. Run under MPI, e.g.
// on a 2-core machine:
//   mpirun -np 1 bench/bench_sequence_parallel
//   mpirun -np 2 bench/bench_sequence_parallel
//   mpirun -np 2 bench/bench_sequence_parallel --quick        (small sizes, seconds)
// (as root, Open MPI also needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1).
//
// Wall clock and CPU time: on a machine shared with other jobs, a rank's wall time includes the
// time the OS gave to others (and Linux's autogroup scheduling gives all processes of one session
// one share, so P ranks launched from one shell get no more CPU than one rank while other sessions
// keep every core busy). The CPU-time columns C_1, C_P (the largest rank's process CPU time) show
// what the algorithm costs per rank; Open MPI busy-polls while it waits, so a rank's waiting for
// data is CPU time too. %peak is per CPU second.
// T_1 is the single-process forward() on the whole sequence, timed on rank 0 in the same run,
// interleaved with the parallel runs (the other ranks sleep meanwhile, so they do not take a
// core): on a shared, noisy machine both see the same conditions. Each figure is the best of
// --reps repetitions. T_P is the slowest rank's time for the whole call (validation, exchanges,
// compute). Strong scaling keeps N fixed; weak scaling keeps N / P fixed. The breakdown columns
// come from the library's internal phase timers (max over ranks):
//   exact:  compute = attention + merges, wait = transfers not hidden behind the compute;
//   linear: carry = folding the rank's own keys, exch = the all-reduce or scan (including waiting
//           for slower ranks), local = read-out or causal pass; "scan alone" times the bare
//           MPI_Exscan of the carry after a barrier.
// docs/sequence_parallel.md explains the cost model these are compared with.

#include <mpi.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/sequence_parallel.hpp"

namespace fastattn::bench {
namespace {

int rank_ = 0, ranks_ = 1;

/// Waits at a barrier without spinning (MPI_Barrier busy-polls a core, which would steal it from
/// rank 0's single-process baseline on a machine with as many cores as ranks).
void sleeping_barrier() {
  MPI_Request request;
  MPI_Ibarrier(MPI_COMM_WORLD, &request);
  int done = 0;
  while (!done) {
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    if (!done) usleep(200);
  }
}

/// This process's CPU time in seconds (all threads).
double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double max_over_ranks(double x) {
  double m = 0;
  MPI_Allreduce(&x, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return m;
}

/// Rank r's block of a sequence of n tokens split as evenly as possible (remainder first).
std::pair<Index, Index> block_of(Index n) {
  const Index base = n / ranks_, extra = n % ranks_;
  const Index begin = rank_ * base + std::min<Index>(rank_, extra);
  return {begin, base + (rank_ < extra ? 1 : 0)};
}

struct Breakdown {
  double a = 0, b = 0, c = 0;  // exact: compute, wait, -; linear: carry, exchange, local pass
  double work_cpu = 0;         // CPU time of the compute phases only (no waiting, no polling)
};

struct Result {
  double t1 = 1e300, tp = 1e300;          // wall clock
  double c1 = 1e300, cp = 1e300;          // CPU time (parallel: the largest rank's)
  double work_cpu = 1e300;                // CPU time of the compute phases (the largest rank's)
  Breakdown best;  // of the fastest parallel repetition (max over ranks per phase)
};

/// Times `parallel` (every rank) and `single` (rank 0 only), interleaved, best of reps.
Result measure(int reps, const std::function<Breakdown()>& parallel,
               const std::function<void()>& single) {
  Result res;
  for (int rep = 0; rep < reps; ++rep) {
    sleeping_barrier();
    const double t0 = MPI_Wtime(), cpu0 = cpu_seconds();
    Breakdown b = parallel();
    const double tp = max_over_ranks(MPI_Wtime() - t0);
    res.cp = std::min(res.cp, max_over_ranks(cpu_seconds() - cpu0));
    b = {max_over_ranks(b.a), max_over_ranks(b.b), max_over_ranks(b.c), b.work_cpu};
    res.work_cpu = std::min(res.work_cpu, max_over_ranks(b.work_cpu));
    if (tp < res.tp) res.tp = tp, res.best = b;
    sleeping_barrier();
    if (rank_ == 0) {
      const double s0 = MPI_Wtime(), s0_cpu = cpu_seconds();
      single();
      res.t1 = std::min(res.t1, MPI_Wtime() - s0);
      res.c1 = std::min(res.c1, cpu_seconds() - s0_cpu);
    }
  }
  MPI_Bcast(&res.t1, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  MPI_Bcast(&res.c1, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  return res;
}

void print_header() {
  if (rank_ != 0) return;
  std::printf("%-34s %7s %2s %8s %8s %7s %5s %8s %8s %5s %8s %5s %6s  %s\n", "case", "N", "P",
              "T_1 (s)", "T_P (s)", "speedup", "eff", "C_1 (s)", "C_P (s)", "c-eff", "W_P (s)",
              "w-eff", "%peak", "breakdown of T_P (s, max over ranks)");
}

void print_row(const char* name, Index n, const Result& r, double flops, const std::string& extra) {
  if (rank_ != 0) return;
  const double speedup = r.t1 / r.tp, eff = speedup / ranks_;
  const double cpu_eff = r.c1 / r.cp / ranks_, work_eff = r.c1 / r.work_cpu / ranks_;
  const double peak = fma_peak_gflops<float>();
  // % of the FMA peak per rank, per CPU second of work (the wall clock includes time the OS gave
  // to other processes)
  const double pct = flops > 0 ? 100.0 * flops / r.work_cpu / ranks_ * 1e-9 / peak : 0.0;
  std::printf("%-34s %7ld %2d %8.4f %8.4f %7.2f %5.2f %8.4f %8.4f %5.2f %8.4f %5.2f %6.1f  %s\n",
              name, long(n), ranks_, r.t1, r.tp, speedup, eff, r.c1, r.cp, cpu_eff, r.work_cpu,
              work_eff, pct, extra.c_str());
  std::fflush(stdout);
}

std::string fmt(const char* format, double a, double b, double c = 0) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, a, b, c);
  return buf;
}

/// Exact attention over n tokens (D = Dv = 64, float).
void exact_case(const char* name, Index n, bool causal, TokenLayout layout, int reps) {
  const Index d = 64;
  const auto [begin, len] = block_of(n);
  (void)begin;
  const RowMatrix<float> q = random_input<float>(len, d, 11 + rank_),
                         k = random_input<float>(len, d, 23 + rank_),
                         v = random_input<float>(len, d, 37 + rank_);
  RowMatrix<float> out(len, d);
  const Exact<float> exact;
  AttentionOptions opt;
  opt.causal = causal;
  SequenceParallelOptions sp;
  sp.layout = layout;
  RowMatrix<float> qa, ka, va, outa;
  if (rank_ == 0) {
    qa = random_input<float>(n, d, 1), ka = random_input<float>(n, d, 2);
    va = random_input<float>(n, d, 3), outa.resize(n, d);
  }
  const Result r = measure(
      reps,
      [&] {
        detail::RingTimings t;
        MatRef<float> o(out);
        detail::exact_sequence_parallel<float>(exact, MPI_COMM_WORLD, q, k, v, o, opt, sp, &t);
        return Breakdown{t.compute, t.wait, 0, t.compute_cpu};
      },
      [&] { exact.forward(qa, ka, va, outa, opt); });
  const double flops = 2.0 * double(n) * double(n) * double(2 * d) * (causal ? 0.5 : 1.0);
  print_row(name, n, r, flops, fmt("compute %.4f  wait %.4f", r.best.a, r.best.b));
}

/// FAVOR+ over n tokens (D = Dv = 64, M = 256 features, float).
void favor_case(const char* name, Index n, bool causal, int reps, bool scan_alone) {
  const Index d = 64;
  const auto [begin, len] = block_of(n);
  (void)begin;
  const RowMatrix<float> q = random_input<float>(len, d, 11 + rank_, 0.5),
                         k = random_input<float>(len, d, 23 + rank_, 0.5),
                         v = random_input<float>(len, d, 37 + rank_);
  RowMatrix<float> out(len, d);
  const Favor<float> favor(d);
  AttentionOptions opt;
  opt.causal = causal;
  RowMatrix<float> qa, ka, va, outa;
  if (rank_ == 0) {
    qa = random_input<float>(n, d, 1, 0.5), ka = random_input<float>(n, d, 2, 0.5);
    va = random_input<float>(n, d, 3), outa.resize(n, d);
  }
  const Result r = measure(
      reps,
      [&] {
        detail::LinearScanTimings t;
        MatRef<float> o(out);
        detail::linear_method_sequence_parallel<Favor<float>, float>(
            favor, MPI_COMM_WORLD, q, k, v, o, opt, SequenceParallelOptions{}, nullptr, &t);
        return Breakdown{t.own_carry, t.exchange, t.local_pass, t.work_cpu};
      },
      [&] { favor.forward(qa, ka, va, outa, opt); });
  std::string extra = fmt("carry %.4f  exch %.4f", r.best.a, r.best.b) +
                      fmt("  local %.4f", r.best.c, 0);
  if (scan_alone) {
    // The bare exclusive scan of one packed carry [M, Dv + 1], after a barrier: its share of T_P.
    detail::LinearCarry<float> carry(favor.feature_dim(), d);
    carry.sums.setOnes();
    carry.shift = float(rank_);
    detail::PackedCarry<float> sent(carry.sums.size()), received(carry.sums.size());
    sent.pack(carry);
    detail::MpiOpOwner op(&detail::PackedCarry<float>::compose, false);
    double best = 1e300;
    for (int rep = 0; rep < 20; ++rep) {
      MPI_Barrier(MPI_COMM_WORLD);
      const double t0 = MPI_Wtime();
      MPI_Exscan(sent.data(), received.data(), 1, sent.type(), op.get(), MPI_COMM_WORLD);
      best = std::min(best, max_over_ranks(MPI_Wtime() - t0));
    }
    extra += fmt("  scan alone %.2e s = %.3f%% of T_P", best, 100.0 * best / r.tp);
  }
  print_row(name, n, r, 0, extra);
}

}  // namespace
}  // namespace fastattn::bench

int main(int argc, char** argv) {
  using namespace fastattn;
  using namespace fastattn::bench;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks_);
  bool quick = false;
  int reps = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
  }
  if (rank_ == 0) {
    double load[3] = {0, 0, 0};
    if (FILE* f = std::fopen("/proc/loadavg", "r")) {
      if (std::fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3) load[0] = -1;
      std::fclose(f);
    }
    std::printf("# bench_sequence_parallel: %d rank(s), best of %d; FMA peak %.1f GFLOP/s (float, "
                "one core); load average %.2f %.2f %.2f; flags: %s\n",
                ranks_, reps, fma_peak_gflops<float>(), load[0], load[1], load[2],
                FASTATTN_BUILD_FLAGS);
  }
  print_header();
  const Index s = quick ? 8 : 1;  // --quick divides the sizes
  // Strong scaling: N fixed.
  exact_case("strong exact non-causal D=64", 8192 / s, false, TokenLayout::Contiguous, reps);
  exact_case("strong exact causal D=64", 8192 / s, true, TokenLayout::Contiguous, reps);
  exact_case("strong exact causal zig-zag D=64", 8192 / s, true, TokenLayout::ZigZag, reps);
  favor_case("strong favor+ non-causal M=256", 65536 / s, false, reps, false);
  favor_case("strong favor+ causal M=256", 65536 / s, true, reps, true);
  // Weak scaling: N / P fixed.
  exact_case("weak exact non-causal (4096/rank)", 4096 / s * ranks_, false,
             TokenLayout::Contiguous, reps);
  favor_case("weak favor+ causal (32768/rank)", 32768 / s * ranks_, true, reps, false);
  MPI_Finalize();
  return 0;
}
