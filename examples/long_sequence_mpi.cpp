// One long sequence split across MPI ranks: causal attention of one head over N tokens, each rank
// holding a contiguous block of N / P tokens (include/fastattn/sequence_parallel.hpp).
//
//   mpirun -np 2 ./long_sequence_mpi favor 1048576     causal FAVOR+ over 1M tokens
//   mpirun -np 4 ./long_sequence_mpi exact 32768       causal exact (ring) attention
//   mpirun -np 2 ./long_sequence_mpi favor 4096 --check   also compare with one process
//
// (Open MPI as root also needs OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; add
// --oversubscribe for more ranks than cores.) Each rank only ever holds its own block: the memory
// per rank is O(N / P) for both methods. docs/sequence_parallel.md has the cost model.

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/random.hpp"
#include "fastattn/sequence_parallel.hpp"

using namespace fastattn;

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, ranks = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const std::string method = argc > 1 ? argv[1] : "favor";
  const Index n = argc > 2 ? std::stol(argv[2]) : (method == "exact" ? 16384 : 262144);
  const bool check = argc > 3 && !std::strcmp(argv[3], "--check");
  if (method != "exact" && method != "favor") {
    if (rank == 0) std::fprintf(stderr, "usage: long_sequence_mpi [exact|favor] [N] [--check]\n");
    MPI_Finalize();
    return 2;
  }

  // This rank's block of the sequence: tokens [begin, begin + len).
  const Index base = n / ranks, extra = n % ranks;
  const Index len = base + (rank < extra ? 1 : 0);
  const Index begin = rank * base + std::min<Index>(rank, extra);
  const Index d = 64;
  // Inputs of this block only (in a model they come from the previous layer on this rank).
  const RowMatrix<float> q = gaussian_projection<float>(std::max<Index>(len, 1), d, 1000 + rank)
                                 .topRows(len) * 0.5f;
  const RowMatrix<float> k = gaussian_projection<float>(std::max<Index>(len, 1), d, 2000 + rank)
                                 .topRows(len) * 0.5f;
  const RowMatrix<float> v =
      gaussian_projection<float>(std::max<Index>(len, 1), d, 3000 + rank).topRows(len);
  RowMatrix<float> out(len, d);

  AttentionOptions opt;
  opt.causal = true;
  const Exact<float> exact;
  const Favor<float> favor(d);  // every rank draws the same features (same default seed)
  MPI_Barrier(MPI_COMM_WORLD);
  const double t0 = MPI_Wtime();
  if (method == "exact")
    sequence_parallel<Exact<float>, float>(exact, MPI_COMM_WORLD, q, k, v, out, opt);
  else
    sequence_parallel<Favor<float>, float>(favor, MPI_COMM_WORLD, q, k, v, out, opt);
  const double mine = MPI_Wtime() - t0;
  double slowest = 0;
  MPI_Reduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  std::printf("rank %d: tokens [%ld, %ld), %.3f s\n", rank, long(begin), long(begin + len), mine);
  std::fflush(stdout);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0)
    std::printf("%s causal, N = %ld over %d rank(s): %.3f s, %.0f tokens/s\n", method.c_str(),
                long(n), ranks, slowest, double(n) / slowest);

  int status = 0;
  if (check) {  // gather everything on rank 0 and compare with the single-process forward
    std::vector<int> counts(static_cast<std::size_t>(ranks)), displs(counts.size());
    for (int r = 0; r < ranks; ++r) {
      const Index lr = base + (r < extra ? 1 : 0);
      counts[std::size_t(r)] = int(lr * d);
      displs[std::size_t(r)] = int((r * base + std::min<Index>(r, extra)) * d);
    }
    RowMatrix<float> qa(rank == 0 ? n : 0, d), ka(qa.rows(), d), va(qa.rows(), d),
        outa(qa.rows(), d);
    const RowMatrix<float>* local[4] = {&q, &k, &v, &out};
    RowMatrix<float>* all[4] = {&qa, &ka, &va, &outa};
    for (int i = 0; i < 4; ++i)
      MPI_Gatherv(local[i]->data(), int(local[i]->size()), MPI_FLOAT, all[i]->data(),
                  counts.data(), displs.data(), MPI_FLOAT, 0, MPI_COMM_WORLD);
    if (rank == 0) {
      RowMatrix<float> ref(n, d);
      if (method == "exact")
        exact.forward(qa, ka, va, ref, opt);
      else
        favor.forward(qa, ka, va, ref, opt);
      const double err = (outa - ref).cwiseAbs().maxCoeff();
      std::printf("max |parallel - single process| = %.3g\n", err);
      status = err <= 1e-4 ? 0 : 1;  // float rounding of the same sums in another order
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
  }
  MPI_Finalize();
  return status;
}
