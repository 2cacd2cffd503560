// sequence_parallel() (include/fastattn/sequence_parallel.hpp) over MPI. Run under mpirun with
// 1, 2, 3 or 4 ranks (ctest does all four). Every rank generates its own block; rank 0 gathers the
// whole sequence, runs the method's single-process forward() on it (the reference: forward() is
// tested against independent references in the single-process suite) and scatters each rank's
// rows back; every rank compares its sequence_parallel() output with them, and the ranks agree on
// the verdict (so a failure on any rank fails the test on all of them).

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "fastattn/fastattn.hpp"
#include "fastattn/sequence_parallel.hpp"

namespace fastattn {
namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  return p;
}

/// Block lengths of the P ranks (times `factor`), unequal on purpose. Pattern 0: all non-empty; 1: the second rank
/// empty; 2: the first rank empty (so the scan and the ring start from an empty block).
std::vector<Index> block_lengths(int ranks, int pattern, Index factor = 1) {
  static const Index base[4] = {37, 21, 50, 9};
  std::vector<Index> n(static_cast<std::size_t>(ranks), 0);
  for (int r = 0; r < ranks; ++r) n[std::size_t(r)] = factor * (base[r % 4] + 3 * (r / 4));
  if (ranks >= 2 && pattern == 1) n[1] = 0;
  if (ranks >= 2 && pattern == 2) n[0] = 0;
  return n;
}

/// Which keys this rank pads. 0: none; 1: ~30% at random; 2: as 1, and every key of the first
/// non-empty block padded (queries that see nothing, and a leading run of padded keys).
KeyMask block_padding(Index n, int mode, bool first_nonempty, std::uint64_t seed) {
  if (mode == 0) return KeyMask();
  KeyMask mask(n);
  const RowMatrix<double> u = gaussian_projection<double>(std::max<Index>(n, 1), 1, seed);
  for (Index j = 0; j < n; ++j) mask[j] = u(j, 0) < -0.5;  // P(N(0,1) < -0.5) ~ 0.31
  if (mode == 2 && first_nonempty) mask.setConstant(true);
  return mask;
}

/// Global sequence position of each row of the rank-ordered concatenation of the blocks.
std::vector<Index> global_positions(const std::vector<Index>& lengths, TokenLayout layout) {
  const int ranks = int(lengths.size());
  Index total = 0;
  for (Index n : lengths) total += n;
  std::vector<Index> pos(static_cast<std::size_t>(total));
  if (layout == TokenLayout::Contiguous) {
    for (Index i = 0; i < total; ++i) pos[std::size_t(i)] = i;
    return pos;
  }
  // Zig-zag: sequence order A_0, ..., A_{P-1}, B_{P-1}, ..., B_0 with A_r = the first n_r / 2
  // rows of rank r and B_r the rest.
  const auto p = static_cast<std::size_t>(ranks);
  std::vector<Index> a_start(p), b_start(p);
  Index at = 0;
  for (int r = 0; r < ranks; ++r) a_start[std::size_t(r)] = at, at += lengths[std::size_t(r)] / 2;
  for (int r = ranks - 1; r >= 0; --r) {
    b_start[std::size_t(r)] = at;
    at += lengths[std::size_t(r)] - lengths[std::size_t(r)] / 2;
  }
  Index row = 0;
  for (int r = 0; r < ranks; ++r) {
    const Index n = lengths[std::size_t(r)], a = n / 2;
    for (Index i = 0; i < n; ++i, ++row)
      pos[std::size_t(row)] = i < a ? a_start[std::size_t(r)] + i : b_start[std::size_t(r)] + i - a;
  }
  return pos;
}

template <class T>
MPI_Datatype mpi_type() {
  return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

/// Rank 0 receives the rows of every rank's x [n_r, c] in rank order (empty on other ranks).
template <class T>
RowMatrix<T> gather_rows(const RowMatrix<T>& x, const std::vector<Index>& lengths, Index cols) {
  const int ranks = int(lengths.size());
  const auto p = static_cast<std::size_t>(ranks);
  std::vector<int> counts(p), displs(p);
  Index total = 0;
  for (int r = 0; r < ranks; ++r) {
    counts[std::size_t(r)] = int(lengths[std::size_t(r)] * cols);
    displs[std::size_t(r)] = int(total * cols);
    total += lengths[std::size_t(r)];
  }
  RowMatrix<T> all(world_rank() == 0 ? total : 0, cols);
  MPI_Gatherv(x.data(), int(x.size()), mpi_type<T>(), all.data(), counts.data(), displs.data(),
              mpi_type<T>(), 0, MPI_COMM_WORLD);
  return all;
}

/// Each rank receives its rows [n_r, c] of rank 0's `all`.
template <class T>
RowMatrix<T> scatter_rows(const RowMatrix<T>& all, const std::vector<Index>& lengths, Index cols) {
  const int ranks = int(lengths.size());
  const auto p = static_cast<std::size_t>(ranks);
  std::vector<int> counts(p), displs(p);
  Index total = 0;
  for (int r = 0; r < ranks; ++r) {
    counts[std::size_t(r)] = int(lengths[std::size_t(r)] * cols);
    displs[std::size_t(r)] = int(total * cols);
    total += lengths[std::size_t(r)];
  }
  RowMatrix<T> mine(lengths[std::size_t(world_rank())], cols);
  MPI_Scatterv(all.data(), counts.data(), displs.data(), mpi_type<T>(), mine.data(),
               int(mine.size()), mpi_type<T>(), 0, MPI_COMM_WORLD);
  return mine;
}

/// One sequence-parallel case: this rank's block and the rows of the single-process reference.
template <class T>
struct Case {
  std::vector<Index> lengths;
  RowMatrix<T> q, k, v;  // this rank's block
  KeyMask padding;        // this rank's mask
  Vector<T> log_gates;    // this rank's log-gates (gated RFA)
};

/// [n, cols] with iid N(0, stddev^2) entries (n may be 0).
template <class T>
RowMatrix<T> normal_rows(Index n, Index cols, std::uint64_t seed, double stddev) {
  const RowMatrix<double> x = gaussian_projection<double>(std::max<Index>(n, 1), cols, seed);
  return (x.topRows(n) * stddev).template cast<T>();
}

/// Generates this rank's block: q, k [n_r, d] with entries N(0, qk_std^2), v [n_r, dv] N(0, 1).
template <class T>
Case<T> make_case(int pattern, int padding_mode, Index d, Index dv, double qk_std,
                  std::uint64_t seed, Index length_factor = 1) {
  const int ranks = world_size(), rank = world_rank();
  Case<T> c;
  c.lengths = block_lengths(ranks, pattern, length_factor);
  const Index n = c.lengths[std::size_t(rank)];
  const std::uint64_t s = seed * 7919 + 101 * std::uint64_t(rank);
  c.q = normal_rows<T>(n, d, s + 1, qk_std);
  c.k = normal_rows<T>(n, d, s + 2, qk_std);
  c.v = normal_rows<T>(n, dv, s + 3, 1.0);
  int first_nonempty = 0;
  while (c.lengths[std::size_t(first_nonempty)] == 0) ++first_nonempty;
  c.padding = block_padding(n, padding_mode, rank == first_nonempty, s + 4);
  // log g in [-0.1, -0.001]: over a block of ~20-50 tokens the state decays by exp(-1) to
  // exp(-2.5), so the gates of later ranks visibly scale the carries of earlier ones (stronger
  // gates would decay them to nothing and hide a wrong composition).
  const RowMatrix<double> u = normal_rows<double>(n, 1, s + 5, 1.0);
  c.log_gates = (-0.1 * u.col(0).array().abs().min(1.0).max(0.01)).cast<T>().matrix();
  return c;
}

/// The reference rows of this rank: rank 0 gathers the blocks, puts them in sequence order
/// (`layout`), runs `forward(q, k, v, padding, log_gates, out)` on the whole sequence and scatters
/// each rank's rows back.
template <class T, class Forward>
RowMatrix<T> reference_rows(const Case<T>& c, TokenLayout layout, Forward&& forward) {
  const Index d = c.q.cols(), dv = c.v.cols();
  const RowMatrix<T> q = gather_rows(c.q, c.lengths, d), k = gather_rows(c.k, c.lengths, d),
                     v = gather_rows(c.v, c.lengths, dv);
  RowMatrix<T> mask_local(c.q.rows(), 1), gates_local(c.q.rows(), 1);
  for (Index j = 0; j < c.q.rows(); ++j) {
    mask_local(j, 0) = c.padding.size() && c.padding[j] ? T(1) : T(0);
    gates_local(j, 0) = c.log_gates[j];
  }
  const RowMatrix<T> mask = gather_rows(mask_local, c.lengths, 1),
                     gates = gather_rows(gates_local, c.lengths, 1);
  RowMatrix<T> ref_rank_order;
  if (world_rank() == 0) {
    const std::vector<Index> pos = global_positions(c.lengths, layout);
    const Index total = q.rows();
    RowMatrix<T> gq(total, d), gk(total, d), gv(total, dv);
    KeyMask gmask(total);
    Vector<T> glog(total);
    for (Index i = 0; i < total; ++i) {
      const Index p = pos[std::size_t(i)];
      gq.row(p) = q.row(i);
      gk.row(p) = k.row(i);
      gv.row(p) = v.row(i);
      gmask[p] = mask(i, 0) != T(0);
      glog[p] = gates(i, 0);
    }
    RowMatrix<T> gout(total, dv);
    forward(gq, gk, gv, c.padding.size() || gmask.any() ? gmask : KeyMask(), glog, gout);
    ref_rank_order.resize(total, dv);
    for (Index i = 0; i < total; ++i) ref_rank_order.row(i) = gout.row(pos[std::size_t(i)]);
  }
  return scatter_rows(ref_rank_order, c.lengths, dv);
}

/// Largest |out - ref| over every rank (the same value on every rank).
template <class T>
double max_error_all_ranks(const RowMatrix<T>& out, const RowMatrix<T>& ref) {
  double local = out.size() ? (out - ref).cwiseAbs().maxCoeff() : 0.0;
  if (!out.allFinite()) local = INFINITY;
  double global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return global;
}

/// The tolerance of a comparison against the single-process forward: both compute the same
/// function in the same T, differing only in how sums are grouped (key blocks, log-sum-exp merges
/// of at most 4 partials, the composition of carries in the scan), so the difference is rounding.
/// Outputs here are O(1) (weighted averages of N(0, 1) values, |v| <= ~4). Estimate: each merge
/// or shift change rounds exp(a - b) with |a|, |b| <~ 10 (relative <~ 10 eps, at most 4 times),
/// and regrouping a blocked sum of positive terms changes it by a few eps relative: <~ 50 eps *
/// |v| ~ 200 eps, hence 256 eps (3e-5 float, 6e-14 double). Observed on 1-4 ranks: at most 12 eps
/// (float 1.4e-6, double 9e-16); a wrong composition, pairing or gate decay gives errors > 0.1.
template <class T>
double tolerance() {
  return 256 * double(std::numeric_limits<T>::epsilon());
}

template <class T>
class SequenceParallel : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(SequenceParallel, Types);

/// Runs `run(case, out, layout)` and compares with the reference for every pattern of block
/// lengths, padding mode and causal flag.
template <class T, class Make, class Run, class Forward>
void check_all_configurations(const char* what, Make&& make, Run&& run, Forward&& forward,
                              bool try_zigzag = false) {
  for (int causal = 0; causal <= 1; ++causal)
    for (int pattern = 0; pattern <= 2; ++pattern)
      for (int padding = 0; padding <= 2; ++padding)
        for (int zigzag = 0; zigzag <= int(try_zigzag && causal); ++zigzag) {
          const TokenLayout layout = zigzag ? TokenLayout::ZigZag : TokenLayout::Contiguous;
          const Case<T> c = make(pattern, padding, std::uint64_t(1 + pattern + 3 * padding));
          AttentionOptions opt;
          opt.causal = causal != 0;
          opt.key_padding = c.padding;
          RowMatrix<T> out(c.q.rows(), c.v.cols());
          out.setConstant(T(12345));  // every row must be written
          run(c, opt, layout, out);
          const RowMatrix<T> ref = reference_rows<T>(
              c, layout,
              [&](const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
                  const KeyMask& mask, const Vector<T>& lg, RowMatrix<T>& o) {
                AttentionOptions whole = opt;
                whole.key_padding = mask;
                forward(q, k, v, whole, lg, o);
              });
          const double err = max_error_all_ranks(out, ref);
          EXPECT_LE(err, tolerance<T>())
              << what << ": ranks " << world_size() << ", causal " << causal << ", lengths pattern "
              << pattern << ", padding mode " << padding << ", zig-zag " << zigzag;
        }
}

TYPED_TEST(SequenceParallel, ExactEqualsSingleProcessForward) {
  using T = TypeParam;
  const Exact<T> exact;
  check_all_configurations<T>(
      "Exact",
      [](int pattern, int padding, std::uint64_t seed) {
        return make_case<T>(pattern, padding, 16, 8, 1.0, seed);
      },
      [&](const Case<T>& c, const AttentionOptions& opt, TokenLayout layout, RowMatrix<T>& out) {
        SequenceParallelOptions sp;
        sp.layout = layout;
        sequence_parallel<Exact<T>, T>(exact, MPI_COMM_WORLD, c.q, c.k, c.v, out, opt, sp);
      },
      [&](const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
          const AttentionOptions& opt, const Vector<T>&, RowMatrix<T>& out) {
        exact.forward(q, k, v, out, opt);
      },
      true);
}

TYPED_TEST(SequenceParallel, ExactLongBlocksSmallTiles) {
  // Blocks of 54-300 tokens, so the ring cuts each block's queries into several 128-row slices
  // (the diagonal block's causal slices included), over kernel tiles smaller than a block.
  using T = TypeParam;
  ExactOptions eo;
  eo.block_q = 16;
  eo.block_k = 32;
  const Exact<T> exact(eo);
  check_all_configurations<T>(
      "Exact (long blocks, 16 x 32 tiles)",
      [](int pattern, int padding, std::uint64_t seed) {
        return make_case<T>(pattern, padding, 8, 5, 1.5, seed, 6);
      },
      [&](const Case<T>& c, const AttentionOptions& opt, TokenLayout layout, RowMatrix<T>& out) {
        SequenceParallelOptions sp;
        sp.layout = layout;
        sequence_parallel<Exact<T>, T>(exact, MPI_COMM_WORLD, c.q, c.k, c.v, out, opt, sp);
      },
      [&](const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
          const AttentionOptions& opt, const Vector<T>&, RowMatrix<T>& out) {
        exact.forward(q, k, v, out, opt);
      },
      true);
}

template <class T>
void check_favor(FavorKernel kernel) {
  FavorOptions fo;
  fo.kernel = kernel;
  fo.num_features = 32;
  fo.seed = 7;
  fo.chunk_size = 8;  // several causal chunks per block
  const Favor<T> favor(16, fo);
  check_all_configurations<T>(
      kernel == FavorKernel::Positive ? "Favor (FAVOR+)" : "Favor (hyperbolic)",
      [](int pattern, int padding, std::uint64_t seed) {
        return make_case<T>(pattern, padding, 16, 8, 0.7, seed);
      },
      [&](const Case<T>& c, const AttentionOptions& opt, TokenLayout, RowMatrix<T>& out) {
        sequence_parallel<Favor<T>, T>(favor, MPI_COMM_WORLD, c.q, c.k, c.v, out, opt);
      },
      [&](const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
          const AttentionOptions& opt, const Vector<T>&, RowMatrix<T>& out) {
        favor.forward(q, k, v, out, opt);
      });
}

TYPED_TEST(SequenceParallel, FavorPositiveEqualsSingleProcessForward) {
  check_favor<TypeParam>(FavorKernel::Positive);
}

TYPED_TEST(SequenceParallel, FavorHyperbolicEqualsSingleProcessForward) {
  check_favor<TypeParam>(FavorKernel::Hyperbolic);
}

TYPED_TEST(SequenceParallel, FavorNonDefaultScale) {
  // A scale other than 1/sqrt(D) reaches the features through the call's input factor.
  using T = TypeParam;
  FavorOptions fo;
  fo.num_features = 32;
  const Favor<T> favor(16, fo);
  check_all_configurations<T>(
      "Favor (scale 0.1)",
      [](int pattern, int padding, std::uint64_t seed) {
        return make_case<T>(pattern, padding, 16, 8, 1.0, seed);
      },
      [&](const Case<T>& c, AttentionOptions opt, TokenLayout, RowMatrix<T>& out) {
        opt.scale = 0.1;
        sequence_parallel<Favor<T>, T>(favor, MPI_COMM_WORLD, c.q, c.k, c.v, out, opt);
      },
      [&](const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
          AttentionOptions opt, const Vector<T>&, RowMatrix<T>& out) {
        opt.scale = 0.1;
        favor.forward(q, k, v, out, opt);
      });
}

/// RFA with sigma = 0.5: random Fourier features of a smooth kernel, whose estimated denominators
/// stay far from 0 on these inputs, so the ratio does not amplify rounding.
template <class T>
Rfa<T> test_rfa() {
  RfaOptions ro;
  ro.num_features = 32;
  ro.sigma = 0.5;
  ro.seed = 3;
  ro.chunk_size = 8;
  return Rfa<T>(16, ro);
}

TYPED_TEST(SequenceParallel, RfaEqualsSingleProcessForward) {
  using T = TypeParam;
  const Rfa<T> rfa = test_rfa<T>();
  check_all_configurations<T>(
      "Rfa",
      [](int pattern, int padding, std::uint64_t seed) {
        return make_case<T>(pattern, padding, 16, 8, 1.0, seed);
      },
      [&](const Case<T>& c, const AttentionOptions& opt, TokenLayout, RowMatrix<T>& out) {
        sequence_parallel<Rfa<T>, T>(rfa, MPI_COMM_WORLD, c.q, c.k, c.v, out, opt);
      },
      [&](const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
          const AttentionOptions& opt, const Vector<T>&, RowMatrix<T>& out) {
        rfa.forward(q, k, v, out, opt);
      });
}

TYPED_TEST(SequenceParallel, GatedRfaEqualsSingleProcessForward) {
  using T = TypeParam;
  const Rfa<T> rfa = test_rfa<T>();
  check_all_configurations<T>(
      "Rfa (gated)",
      [](int pattern, int padding, std::uint64_t seed) {
        return make_case<T>(pattern, padding, 16, 8, 1.0, seed);
      },
      [&](const Case<T>& c, const AttentionOptions& opt, TokenLayout, RowMatrix<T>& out) {
        // (causal is implied by the gated overload; the non-causal passes check that too)
        sequence_parallel<T>(rfa, MPI_COMM_WORLD, c.q, c.k, c.v, c.log_gates, out, opt);
      },
      [&](const RowMatrix<T>& q, const RowMatrix<T>& k, const RowMatrix<T>& v,
          const AttentionOptions& opt, const Vector<T>& log_gates, RowMatrix<T>& out) {
        rfa.forward_gated_log(q, k, v, log_gates, out, opt);
      });
}

/// Runs `call` on every rank, expecting every rank to throw std::invalid_argument with the same
/// message (compared across ranks) containing `needle`.
void expect_all_ranks_throw(const std::function<void()>& call, const std::string& needle) {
  std::string message;
  int threw = 0;
  try {
    call();
  } catch (const std::invalid_argument& e) {
    threw = 1;
    message = e.what();
  }
  int all_threw = 0;
  MPI_Allreduce(&threw, &all_threw, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  EXPECT_EQ(all_threw, 1) << "some rank did not throw std::invalid_argument";
  // Same message on every rank: compare each rank's with rank 0's.
  int length = int(message.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string first(std::size_t(length), ' ');
  if (world_rank() == 0) first = message;
  MPI_Bcast(first.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
  int same = first == message, all_same = 0;
  MPI_Allreduce(&same, &all_same, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  EXPECT_EQ(all_same, 1) << "rank " << world_rank() << " threw \"" << message
                         << "\" but rank 0 threw \"" << first << "\"";
  EXPECT_NE(message.find(needle), std::string::npos) << message;
}

TYPED_TEST(SequenceParallel, BadArgumentOnOneRankMakesEveryRankThrow) {
  using T = TypeParam;
  const int last = world_size() - 1;
  const Case<T> c = make_case<T>(0, 0, 16, 8, 1.0, 11);
  const Exact<T> exact;
  // The last rank's output has the wrong width.
  RowMatrix<T> out(c.q.rows(), world_rank() == last ? 7 : 8);
  expect_all_ranks_throw(
      [&] { sequence_parallel<Exact<T>, T>(exact, MPI_COMM_WORLD, c.q, c.k, c.v, out); },
      "rank " + std::to_string(last) + ": sequence_parallel(Exact): out");
  // The last rank's key mask has the wrong length (Favor).
  const Favor<T> favor(16);
  RowMatrix<T> out8(c.q.rows(), 8);
  AttentionOptions opt;
  if (world_rank() == last) opt.key_padding = KeyMask::Constant(c.k.rows() + 1, false);
  expect_all_ranks_throw(
      [&] { sequence_parallel<Favor<T>, T>(favor, MPI_COMM_WORLD, c.q, c.k, c.v, out8, opt); },
      "key_padding has length");
  // The first rank passes a positive log-gate (gated RFA, whose other ranks are fine).
  const Rfa<T> rfa = test_rfa<T>();
  Vector<T> lg = c.log_gates;
  if (world_rank() == 0) lg[0] = T(0.5);  // (pattern 0: no block is empty)
  expect_all_ranks_throw(
      [&] { sequence_parallel<T>(rfa, MPI_COMM_WORLD, c.q, c.k, c.v, lg, out8); },
      "log_gates must be finite and <= 0");
  // Blocks whose q and k cover different tokens (Nq != Nk) on the last rank.
  const RowMatrix<T> k_short = c.k.topRows(c.k.rows() - (world_rank() == last ? 1 : 0));
  const RowMatrix<T> v_short = c.v.topRows(k_short.rows());
  expect_all_ranks_throw(
      [&] { sequence_parallel<Exact<T>, T>(exact, MPI_COMM_WORLD, c.q, k_short, v_short, out8); },
      "must hold the same tokens");
}

TYPED_TEST(SequenceParallel, RanksThatDisagreeAllThrow) {
  using T = TypeParam;
  const Case<T> c = make_case<T>(0, 0, 16, 8, 1.0, 12);
  RowMatrix<T> out(c.q.rows(), 8);
  if (world_size() > 1) {
    // A different seed on the last rank: a different projection, caught by the fingerprint.
    FavorOptions fo;
    fo.seed = world_rank() == world_size() - 1 ? 99 : 1;
    const Favor<T> favor(16, fo);
    expect_all_ranks_throw(
        [&] { sequence_parallel<Favor<T>, T>(favor, MPI_COMM_WORLD, c.q, c.k, c.v, out); },
        "ranks disagree on the method's configuration");
    // A different causal flag on rank 0.
    AttentionOptions opt;
    opt.causal = world_rank() == 0;
    const Exact<T> exact;
    expect_all_ranks_throw(
        [&] { sequence_parallel<Exact<T>, T>(exact, MPI_COMM_WORLD, c.q, c.k, c.v, out, opt); },
        "ranks disagree on opt.causal");
  }
  // Rejected everywhere, whatever the ranks: ALiBi, a data-dependent Favor, zig-zag for Favor.
  AttentionOptions alibi;
  alibi.alibi_slope = 0.5;
  const Exact<T> exact;
  expect_all_ranks_throw(
      [&] { sequence_parallel<Exact<T>, T>(exact, MPI_COMM_WORLD, c.q, c.k, c.v, out, alibi); },
      "ALiBi");
  FavorOptions rescaled;
  rescaled.rescale = true;
  const Favor<T> fitted(16, rescaled);
  expect_all_ranks_throw(
      [&] { sequence_parallel<Favor<T>, T>(fitted, MPI_COMM_WORLD, c.q, c.k, c.v, out); },
      "fits its features to each call's data");
  SequenceParallelOptions zigzag;
  zigzag.layout = TokenLayout::ZigZag;
  const Favor<T> favor(16);
  expect_all_ranks_throw(
      [&] {
        sequence_parallel<Favor<T>, T>(favor, MPI_COMM_WORLD, c.q, c.k, c.v, out, {}, zigzag);
      },
      "zig-zag");
}

TYPED_TEST(SequenceParallel, EvaIsRejectedOnEveryRank) {
  using T = TypeParam;
  const Case<T> c = make_case<T>(0, 0, 16, 8, 1.0, 13);
  RowMatrix<T> out(c.q.rows(), 8);
  EvaOptions eo;
  eo.window = 4;
  eo.num_chunks = 2;
  const Eva<T> eva(16, eo);
  expect_all_ranks_throw(
      [&] { sequence_parallel<Eva<T>, T>(eva, MPI_COMM_WORLD, c.q, c.k, c.v, out); },
      "Eva has no sequence-parallel form");
}

/// Prints only failures, prefixed with the rank (ranks other than 0 stay quiet otherwise).
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (result.failed())
      std::cerr << "[rank " << rank_ << "] " << (result.file_name() ? result.file_name() : "")
                << ":" << result.line_number() << ": " << result.summary() << "\n";
  }

 private:
  int rank_;
};

}  // namespace
}  // namespace fastattn

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = fastattn::world_rank();
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new fastattn::RankFailurePrinter(rank));
  }
  const int local = RUN_ALL_TESTS();
  int global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0 && global != local)
    std::cerr << "test_sequence_parallel: a test failed on another rank (see its [rank r] lines)\n";
  MPI_Finalize();
  return global;
}
