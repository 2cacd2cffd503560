#pragma once
/// @file detail/parallel/ring_attention.hpp
/// Exact attention over ranks by a ring exchange of K/V blocks (Liu et al., "Ring Attention with
/// Blockwise Transformers", 2023). Every rank keeps its queries; the K/V blocks travel the ring
/// rank r -> r + 1. At each step a rank posts the receive of the next block and the send of the
/// block it holds (non-blocking, double-buffered), attends its queries to the held block, and
/// merges the partial result into its output by log-sum-exp. Causal: blocks from later ranks are
/// never needed, so the ring becomes a pipeline (rank r computes r + 1 blocks, the last rank sends
/// nothing); the diagonal block is computed causally.

#include <mpi.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <ctime>
#include <limits>

#include "fastattn/detail/parallel/agreement.hpp"
#include "fastattn/detail/parallel/mpi.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/options.hpp"
#include "fastattn/sequence_parallel_options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Phase timings of one ring call, in seconds (the benchmark's breakdown).
struct RingTimings {
  double compute = 0;      // attention of the local queries to the held blocks, and the merges
  double wait = 0;         // waiting for transfers after the compute: communication not hidden
  double compute_cpu = 0;  // CPU time of the compute (std::clock): the work, whatever the load
  int steps = 0;           // blocks computed on this rank
};

/// One attention call of a ring step: local query rows [q0, q0 + qn) against rows [k0, k0 + kn)
/// of the held block; causal = bottom-right aligned (query i sees keys j <= i + kn - qn).
struct BlockPair {
  Index q0 = 0, qn = 0, k0 = 0, kn = 0;
  bool causal = false;
};

/// The (at most two) query/key row pairs of this rank that see each other when it holds the
/// block of rank `origin`.
inline int ring_pairs(const SequenceLayout& layout, int origin, bool causal, TokenLayout tokens,
                      std::array<BlockPair, 2>& pairs) {
  const int r = layout.rank;
  const Index nr = layout.length(r), ns = layout.length(origin);
  if (!causal) {
    pairs[0] = {0, nr, 0, ns, false};
    return 1;
  }
  if (tokens == TokenLayout::Contiguous) {
    if (origin > r) return 0;  // the future
    pairs[0] = {0, nr, 0, ns, origin == r};
    return 1;
  }
  // Zig-zag: rank r holds chunks A_r = rows [0, nr/2) and B_r = the rest; sequence order is
  // A_0 .. A_{P-1}, B_{P-1} .. B_0.
  const Index ar = nr / 2, as = ns / 2;
  if (origin == r) {  // A_r sees A_r causally; B_r sees A_r whole and B_r causally
    pairs[0] = {0, ar, 0, ar, true};
    pairs[1] = {ar, nr - ar, 0, nr, true};
    return 2;
  }
  if (origin < r) {  // A_s precedes both of our chunks; B_s follows both
    pairs[0] = {0, nr, 0, as, false};
    return 1;
  }
  pairs[0] = {ar, nr - ar, 0, ns, false};  // origin > r: only B_r sees it, and sees all of it
  return 1;
}

/// Merges a partial result (part [n, Dv], part_lse [n]) into the running one (out, lse) by
/// log-sum-exp; -inf marks a row with no visible key so far.
template <class T, class Out, class Lse, class Part, class PartLse>
void merge_partial(Out&& out, Lse&& lse, const Part& part, const PartLse& part_lse) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  for (Index i = 0; i < out.rows(); ++i) {
    const T b = part_lse[i];
    if (b == neg_inf) continue;
    const T a = lse[i];
    if (a == neg_inf) {
      out.row(i) = part.row(i);
      lse[i] = b;
      continue;
    }
    const T m = std::max(a, b);
    const T wa = std::exp(a - m), wb = std::exp(b - m);
    const T sum = wa + wb;
    out.row(i) = (wa / sum) * out.row(i) + (wb / sum) * part.row(i);
    lse[i] = m + std::log(sum);
  }
}

/// Ring attention of this rank's queries q [n_r, D] over every rank's keys and values (k [n_r,
/// D], v [n_r, Dv] here) -> out [n_r, Dv]. Arguments were agreed on (agree_on_call); `comm` is
/// a private communicator. opt.key_padding is this rank's mask.
template <class T>
void ring_attention(const Exact<T>& method, MPI_Comm comm, const SequenceLayout& layout,
                    const ConstMatRef<T>& q, const ConstMatRef<T>& k, const ConstMatRef<T>& v,
                    MatRef<T>& out, const AttentionOptions& opt, TokenLayout tokens,
                    RingTimings* timings) {
  constexpr T neg_inf = -std::numeric_limits<T>::infinity();
  const int ranks = layout.ranks, r = layout.rank;
  const Index n = layout.length(r), d = q.cols(), dv = v.cols();
  // A token row of a travelling block: [k, v] and, when any rank pads, a 0/1 padding flag.
  const Index width = d + dv + (layout.any_padding ? 1 : 0);
  MpiTypeOwner token;
  token.contiguous(static_cast<int>(width), mpi_type<T>());

  // Contiguous causal needs only earlier blocks: a pipeline. Otherwise a full ring.
  const bool pipeline = opt.causal && tokens == TokenLayout::Contiguous;
  const int steps = pipeline ? r + 1 : ranks;
  const int next = (r + 1) % ranks, prev = (r + ranks - 1) % ranks;
  const bool sends = pipeline ? r + 1 < ranks : ranks > 1;

  std::array<RowMatrix<T>, 2> held;
  held[0].resize(steps > 1 ? layout.max_length() : n, width);
  if (steps > 1) held[1].resize(layout.max_length(), width);
  held[0].topLeftCorner(n, d) = k;
  held[0].block(0, d, n, dv) = v;
  if (layout.any_padding)
    for (Index j = 0; j < n; ++j) held[0](j, d + dv) = is_padded(opt.key_padding, j) ? T(1) : T(0);

  out.setZero();
  Vector<T> lse = Vector<T>::Constant(n, neg_inf);
  RowMatrix<T> part(n, dv);
  Vector<T> part_lse(n);
  const RowMatrix<T> no_bias;
  // Progress: without an asynchronous progress thread MPI moves a large (rendezvous) message
  // only inside MPI calls, so the compute is cut into query slices with an MPI_Testall between
  // them. The exact kernel works on 64-row query blocks anyway, so slicing costs nothing.
  const Index slice = std::max<Index>(128, (n / 8 + 63) / 64 * 64);

  for (int t = 0; t < steps; ++t) {
    const int origin = (r - t + ranks) % ranks;
    const Index ns = layout.length(origin);
    RowMatrix<T>& cur = held[static_cast<std::size_t>(t % 2)];
    RowMatrix<T>& nxt = held[static_cast<std::size_t>((t + 1) % 2)];
    std::array<MPI_Request, 2> requests{MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (t + 1 < steps) {  // the block we compute on at the next step
      const int from = (r - t - 1 + 2 * ranks) % ranks;
      mpi_check(MPI_Irecv(nxt.data(), static_cast<int>(layout.length(from)), token.get(), prev,
                          0, comm, &requests[0]),
                "MPI_Irecv");
    }
    if (sends && (pipeline || t + 1 < ranks))
      mpi_check(MPI_Isend(cur.data(), static_cast<int>(ns), token.get(), next, 0, comm,
                          &requests[1]),
                "MPI_Isend");

    const double t0 = mpi_now();
    const std::clock_t c0 = std::clock();
    std::array<BlockPair, 2> pairs;
    const int count = ring_pairs(layout, origin, opt.causal, tokens, pairs);
    KeyMask held_mask;
    if (layout.any_padding) held_mask = cur.col(d + dv).head(ns).array() != T(0);
    for (int p = 0; p < count; ++p) {
      const BlockPair& pair = pairs[static_cast<std::size_t>(p)];
      if (pair.qn == 0 || pair.kn == 0) continue;
      for (Index i0 = 0; i0 < pair.qn; i0 += slice) {
        const Index m = std::min(slice, pair.qn - i0);
        // Causal: the slice's last query sees keys up to i0 + m + (kn - qn) of the pair.
        const Index kk = pair.causal ? i0 + m + pair.kn - pair.qn : pair.kn;
        AttentionOptions o;
        o.scale = opt.scale;
        o.causal = pair.causal;
        if (layout.any_padding) o.key_padding = held_mask.segment(pair.k0, kk);
        const Index row = pair.q0 + i0;
        method.forward(q.middleRows(row, m), cur.block(pair.k0, 0, kk, d),
                       cur.block(pair.k0, d, kk, dv), part.topRows(m), o, no_bias,
                       part_lse.head(m));
        merge_partial<T>(out.middleRows(row, m), lse.segment(row, m), part.topRows(m),
                         part_lse.head(m));
        int done = 0;
        mpi_check(MPI_Testall(2, requests.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
      }
    }
    const double t1 = mpi_now();
    const std::clock_t c1 = std::clock();
    mpi_check(MPI_Waitall(2, requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
    if (timings) {
      timings->compute += t1 - t0;
      timings->compute_cpu += double(c1 - c0) / CLOCKS_PER_SEC;
      timings->wait += mpi_now() - t1;
      timings->steps += count > 0 && n > 0 && ns > 0;
    }
  }
}

}  // namespace fastattn::detail
