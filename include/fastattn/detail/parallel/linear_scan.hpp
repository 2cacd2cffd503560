#pragma once
/// @file detail/parallel/linear_scan.hpp
/// Linear attention (Favor, Rfa) over ranks: the key-side carry (sums [M, Dv + 1], the running
/// key shift, the count of contributing keys, the gated log-gate sum) is all a rank needs from
/// the others (Sun et al., "Linear Attention Sequence Parallelism", 2024).
///   Non-causal: every rank accumulates its own keys' carry, one MPI_Allreduce composes them, and
///   each rank reads out its queries.
///   Causal: every rank but the last folds its own keys into a carry (no outputs), one MPI_Exscan
///   gives rank r the composition of the carries of ranks 0..r-1, and rank r runs the chunked
///   causal pass over its block starting from that carry.
/// Both collectives use one user-defined operation, compose_carry (detail/linear/block_carry.hpp):
/// the shifts merge as the running max does before the sums add, and the later block's gates decay
/// the earlier sums (gated RFA), which makes the operation non-commutative; MPI applies it in rank
/// order.

#include <mpi.h>

#include <cstdint>
#include <cstring>
#include <ctime>
#include <vector>

#include "fastattn/detail/linear/block_carry.hpp"
#include "fastattn/detail/linear/chunk.hpp"
#include "fastattn/detail/linear/random_feature_method.hpp"
#include "fastattn/detail/parallel/agreement.hpp"
#include "fastattn/detail/parallel/mpi.hpp"
#include "fastattn/linear.hpp"
#include "fastattn/options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Phase timings of one linear call, in seconds (the benchmark's breakdown).
struct LinearScanTimings {
  double own_carry = 0;   // folding this rank's keys (causal: the extra work of parallelism)
  double exchange = 0;    // the all-reduce or exclusive scan, including waiting for other ranks
  double local_pass = 0;  // the read-out (non-causal) or the causal pass from the prefix carry
  double work_cpu = 0;    // CPU time (std::clock) of the fold and the local pass: the work
};

/// A LinearCarry<T> laid out for MPI: [int64 contributing][T shift][T log_gate_sum][T sums...],
/// described by a struct datatype, so the count stays exact and the sums travel as T.
template <class T>
class PackedCarry {
 public:
  static constexpr std::size_t kHeader = sizeof(std::int64_t) + 2 * sizeof(T);

  explicit PackedCarry(Index sums_size)
      : sums_size_(sums_size),
        words_((kHeader + static_cast<std::size_t>(sums_size) * sizeof(T) + 7) / 8) {
    const int lengths[3] = {1, 2, static_cast<int>(sums_size)};
    const MPI_Aint displacements[3] = {0, sizeof(std::int64_t), static_cast<MPI_Aint>(kHeader)};
    const MPI_Datatype types[3] = {MPI_INT64_T, mpi_type<T>(), mpi_type<T>()};
    type_.structure(3, lengths, displacements, types);
  }

  void* data() { return words_.data(); }
  MPI_Datatype type() const { return type_.get(); }

  void pack(const LinearCarry<T>& carry) {
    auto* bytes = reinterpret_cast<unsigned char*>(words_.data());
    const std::int64_t count = carry.contributing;
    std::memcpy(bytes, &count, sizeof count);
    std::memcpy(bytes + sizeof count, &carry.shift, sizeof(T));
    std::memcpy(bytes + sizeof count + sizeof(T), &carry.log_gate_sum, sizeof(T));
    std::memcpy(bytes + kHeader, carry.sums.data(), static_cast<std::size_t>(sums_size_) * sizeof(T));
  }
  void unpack(LinearCarry<T>& carry) const {
    const auto* bytes = reinterpret_cast<const unsigned char*>(words_.data());
    std::int64_t count;
    std::memcpy(&count, bytes, sizeof count);
    carry.contributing = static_cast<Index>(count);
    std::memcpy(&carry.shift, bytes + sizeof count, sizeof(T));
    std::memcpy(&carry.log_gate_sum, bytes + sizeof count + sizeof(T), sizeof(T));
    std::memcpy(carry.sums.data(), bytes + kHeader, static_cast<std::size_t>(sums_size_) * sizeof(T));
  }

  /// The MPI_User_function of the scan: inout <- in composed with inout (in = the earlier ranks),
  /// for each of *len packed carries of *type.
  static void compose(void* in, void* inout, int* len, MPI_Datatype* type) {
    int size = 0;
    MPI_Aint lower = 0, extent = 0;
    MPI_Type_size(*type, &size);
    MPI_Type_get_extent(*type, &lower, &extent);
    const Index sums = (static_cast<Index>(size) - static_cast<Index>(kHeader)) / Index(sizeof(T));
    for (int e = 0; e < *len; ++e) {
      auto* a = static_cast<unsigned char*>(in) + e * extent;
      auto* b = static_cast<unsigned char*>(inout) + e * extent;
      View earlier = View::read(a, sums), later = View::read(b, sums);
      compose_carry(earlier, later);
      later.write(b);
    }
  }

 private:
  /// A packed carry as compose_carry sees it (header copied out, sums mapped in place; the sums
  /// start kHeader bytes in, a multiple of sizeof(T)).
  struct View {
    T shift, log_gate_sum;
    std::int64_t contributing;
    Eigen::Map<Vector<T>> sums;

    static View read(unsigned char* p, Index n) {
      View v{T(0), T(0), 0, Eigen::Map<Vector<T>>(reinterpret_cast<T*>(p + kHeader), n)};
      std::memcpy(&v.contributing, p, sizeof v.contributing);
      std::memcpy(&v.shift, p + sizeof v.contributing, sizeof(T));
      std::memcpy(&v.log_gate_sum, p + sizeof v.contributing + sizeof(T), sizeof(T));
      return v;
    }
    void write(unsigned char* p) const {
      std::memcpy(p, &contributing, sizeof contributing);
      std::memcpy(p + sizeof contributing, &shift, sizeof(T));
      std::memcpy(p + sizeof contributing + sizeof(T), &log_gate_sum, sizeof(T));
    }
  };

  Index sums_size_;
  std::vector<std::int64_t> words_;
  MpiTypeOwner type_;
};

/// Linear attention of this rank's queries q [n_r, D] over the keys of every rank (k [n_r, D],
/// v [n_r, Dv] here) -> out [n_r, Dv], with the method's maps and options in `call`. Arguments
/// were agreed on (agree_on_call); `comm` is a private communicator; opt.key_padding is this
/// rank's mask. Gating: Ungated, or Gated with this rank's log-gates (causal only).
template <class T, class Gating>
void linear_sequence_parallel(const LinearCall<T>& call, MPI_Comm comm,
                              const SequenceLayout& layout, const ConstMatRef<T>& q,
                              const ConstMatRef<T>& k, const ConstMatRef<T>& v, MatRef<T>& out,
                              const AttentionOptions& opt, const Gating& gating,
                              LinearScanTimings* timings) {
  const FeatureMap<T>& query_map = *call.query_map;
  const FeatureMap<T>& key_map = *call.key_map;
  const Index m = key_map.feature_dim(), dv = v.cols();
  const Index key_chunk = linear_chunk(call.options, false);
  SingleHead<T> head(q, out);
  LinearCarry<T> carry(m, dv);
  PackedCarry<T> sent(carry.sums.size()), received(carry.sums.size());
  MpiOpOwner op(&PackedCarry<T>::compose, false);
  const double t0 = mpi_now();
  const std::clock_t c0 = std::clock();

  if (!opt.causal) {
    fold_keys(key_map, k, v, opt.key_padding, Ungated{}, key_chunk, carry, call.input_factor);
    const double t1 = mpi_now();
    const std::clock_t c1 = std::clock();
    sent.pack(carry);
    mpi_check(MPI_Allreduce(sent.data(), received.data(), 1, sent.type(), op.get(), comm),
              "MPI_Allreduce");
    received.unpack(carry);
    const double t2 = mpi_now();
    const std::clock_t c2 = std::clock();
    SerialEigenScope serial_eigen;
    LinearWorkspace<T> ws(std::min(key_chunk, q.rows()) + 1, m, dv, false);
    read_out_queries(query_map, head.heads(), carry, key_chunk,
                     static_cast<T>(call.options.den_eps), ws, call.input_factor);
    if (timings) {
      timings->own_carry += t1 - t0;
      timings->exchange += t2 - t1;
      timings->local_pass += mpi_now() - t2;
      timings->work_cpu += double(c1 - c0 + std::clock() - c2) / CLOCKS_PER_SEC;
    }
    return;
  }

  // The last rank's own carry reaches no one (an exclusive scan stops before it): skip its fold.
  if (layout.rank + 1 < layout.ranks)
    fold_keys(key_map, k, v, opt.key_padding, gating, key_chunk, carry, call.input_factor);
  const double t1 = mpi_now();
  const std::clock_t c1 = std::clock();
  sent.pack(carry);
  mpi_check(MPI_Exscan(sent.data(), received.data(), 1, sent.type(), op.get(), comm),
            "MPI_Exscan");
  LinearCarry<T> prefix(m, dv);  // rank 0: no earlier keys (its Exscan output is undefined)
  if (layout.rank > 0) received.unpack(prefix);
  const double t2 = mpi_now();
  const std::clock_t c2 = std::clock();
  linear_causal(query_map, key_map, head.heads(), k, v, opt.key_padding, gating, call.options,
                prefix, call.input_factor);
  if (timings) {
    timings->own_carry += t1 - t0;
    timings->exchange += t2 - t1;
    timings->local_pass += mpi_now() - t2;
    timings->work_cpu += double(c1 - c0 + std::clock() - c2) / CLOCKS_PER_SEC;
  }
}

}  // namespace fastattn::detail
