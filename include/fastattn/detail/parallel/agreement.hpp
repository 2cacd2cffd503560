#pragma once
/// @file detail/parallel/agreement.hpp
/// The agreement step of a sequence-parallel call: every rank validates its own arguments, then
/// one MPI_Allgather of a fixed-size summary tells every rank what every other rank found, before
/// any data moves. A bad argument on one rank therefore makes every rank throw the same
/// std::invalid_argument (the first failing rank's message, broadcast from it), and ranks that
/// disagree on the call (head dimension, scale, causal, method, element type) all throw too,
/// instead of deadlocking in a later exchange.

#include <mpi.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/detail/parallel/mpi.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Which algorithm a call runs (ranks must agree).
enum class ParallelMethod : std::int64_t { Exact = 1, Favor = 2, Rfa = 3, RfaGated = 4 };

inline const char* parallel_method_name(std::int64_t m) {
  switch (static_cast<ParallelMethod>(m)) {
    case ParallelMethod::Exact:
      return "Exact";
    case ParallelMethod::Favor:
      return "Favor";
    case ParallelMethod::Rfa:
      return "Rfa";
    case ParallelMethod::RfaGated:
      return "Rfa (gated)";
  }
  return "?";
}

/// What one rank states about its call. Plain int64 fields, gathered as MPI_INT64_T.
struct CallSummary {
  std::int64_t failed = 0;        // this rank's own checks threw
  std::int64_t rows = 0;          // tokens of this rank's block
  std::int64_t padded = 0;        // this rank's block has a padded key
  // Fields every rank must agree on:
  std::int64_t method = 0;        // ParallelMethod
  std::int64_t element_size = 0;  // sizeof(T)
  std::int64_t head_dim = 0;      // D
  std::int64_t value_dim = 0;     // Dv
  std::int64_t causal = 0;
  std::int64_t layout = 0;        // token layout (contiguous, zig-zag)
  std::int64_t scale_bits = 0;    // the bits of opt.scale (a double)
  std::int64_t fingerprint = 0;   // hash of the method's configuration (its projection)

  static constexpr int kFields = 11;
  static constexpr int kFirstShared = 3;  // fields from `method` on must agree on every rank
};
static_assert(sizeof(CallSummary) == CallSummary::kFields * sizeof(std::int64_t));

/// Index of a CallSummary field among its int64 fields.
#define FASTATTN_SUMMARY_FIELD(name) \
  static_cast<int>(offsetof(::fastattn::detail::CallSummary, name) / sizeof(std::int64_t))
static_assert(FASTATTN_SUMMARY_FIELD(method) == CallSummary::kFirstShared);

/// The bits of a double as an int64 (exact comparison across ranks).
inline std::int64_t double_bits(double x) {
  std::int64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}
inline double bits_double(std::int64_t bits) {
  double x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

/// FNV-1a over bytes: a cheap fingerprint of a method's configuration, so ranks that drew
/// different projections (e.g. different seeds) are caught instead of mixing estimators.
inline std::uint64_t fnv1a(const void* data, std::size_t bytes,
                           std::uint64_t hash = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  return hash;
}

/// Who holds which tokens: the communicator's size and this rank, every rank's block length and
/// the offset of its first row in the rank-ordered concatenation of the blocks.
struct SequenceLayout {
  int ranks = 1;
  int rank = 0;
  std::vector<Index> lengths, offsets;
  bool any_padding = false;  // some rank has a padded key

  Index length(int r) const { return lengths[static_cast<std::size_t>(r)]; }
  Index max_length() const {
    Index m = 0;
    for (Index n : lengths) m = std::max(m, n);
    return m;
  }
};

/// Local preconditions that need no communication: MPI is running and comm is a communicator.
/// (A null communicator on one rank only cannot be agreed on: it has no one to tell.)
inline void check_mpi_usable(MPI_Comm comm) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  FASTATTN_CHECK(initialized && !finalized,
                 "sequence_parallel: MPI must be initialized (MPI_Init) and not finalized");
  FASTATTN_CHECK(comm != MPI_COMM_NULL, "sequence_parallel: comm is MPI_COMM_NULL");
}

/// The agreement step (collective over comm). `local` holds this rank's summary (failed = 0);
/// `checks()` runs this rank's own validation and throws std::invalid_argument on a bad argument.
/// Protocol: (1) every rank runs its checks, catching the exception; (2) MPI_Allgather of every
/// rank's summary; (3) if some rank failed, the lowest such rank broadcasts its message and every
/// rank throws "sequence_parallel: rank r: <message>"; (4) otherwise the shared fields are
/// compared with rank 0's and every rank throws the same message on a mismatch; (5) the layout is
/// returned. Costs one MPI_Allgather of 88 bytes per rank when the call is valid.
template <class Checks>
SequenceLayout agree_on_call(MPI_Comm comm, CallSummary local, Checks&& checks) {
  check_mpi_usable(comm);
  SequenceLayout layout;
  mpi_check(MPI_Comm_size(comm, &layout.ranks), "MPI_Comm_size");
  mpi_check(MPI_Comm_rank(comm, &layout.rank), "MPI_Comm_rank");

  std::string message;
  try {
    checks();
  } catch (const std::invalid_argument& e) {
    local.failed = 1;
    message = e.what();
    const std::string prefix = "fastattn: ";
    if (message.compare(0, prefix.size(), prefix) == 0) message.erase(0, prefix.size());
  }

  const auto p = static_cast<std::size_t>(layout.ranks);
  std::vector<CallSummary> all(p);
  mpi_check(MPI_Allgather(&local, CallSummary::kFields, MPI_INT64_T, all.data(),
                          CallSummary::kFields, MPI_INT64_T, comm),
            "MPI_Allgather");

  int first_failed = -1, failures = 0;
  for (int r = 0; r < layout.ranks; ++r)
    if (all[static_cast<std::size_t>(r)].failed) {
      if (first_failed < 0) first_failed = r;
      ++failures;
    }
  if (first_failed >= 0) {
    std::int64_t length = static_cast<std::int64_t>(message.size());
    mpi_check(MPI_Bcast(&length, 1, MPI_INT64_T, first_failed, comm), "MPI_Bcast");
    message.resize(static_cast<std::size_t>(length));
    mpi_check(MPI_Bcast(message.data(), static_cast<int>(length), MPI_CHAR, first_failed, comm),
              "MPI_Bcast");
    std::ostringstream os;
    os << "fastattn: sequence_parallel: rank " << first_failed;
    if (failures > 1) os << " (and " << failures - 1 << " other rank(s))";
    os << ": " << message;
    throw std::invalid_argument(os.str());
  }

  // Every rank compares the same gathered data, so every rank throws the same message.
  static const char* const kNames[CallSummary::kFields] = {
      "", "", "", "the method", "the element type T (bytes)", "the head dimension D",
      "the value dimension Dv", "opt.causal", "the token layout", "opt.scale",
      "the method's configuration (projection and options: construct it identically, e.g. "
      "with the same seed, on every rank)"};
  const auto* first = reinterpret_cast<const std::int64_t*>(&all[0]);
  for (int r = 1; r < layout.ranks; ++r) {
    const auto* mine = reinterpret_cast<const std::int64_t*>(&all[static_cast<std::size_t>(r)]);
    for (int f = CallSummary::kFirstShared; f < CallSummary::kFields; ++f) {
      if (mine[f] == first[f]) continue;
      std::ostringstream os;
      os << "fastattn: sequence_parallel: ranks disagree on " << kNames[f] << ": rank 0 has ";
      if (f == FASTATTN_SUMMARY_FIELD(method))
        os << parallel_method_name(first[f]) << ", rank " << r << " has "
           << parallel_method_name(mine[f]);
      else if (f == FASTATTN_SUMMARY_FIELD(scale_bits))
        os << bits_double(first[f]) << ", rank " << r << " has " << bits_double(mine[f]);
      else
        os << first[f] << ", rank " << r << " has " << mine[f];
      throw std::invalid_argument(os.str());
    }
  }

  layout.lengths.resize(p);
  layout.offsets.resize(p);
  Index offset = 0;
  for (std::size_t r = 0; r < p; ++r) {
    layout.lengths[r] = static_cast<Index>(all[r].rows);
    layout.offsets[r] = offset;
    offset += layout.lengths[r];
    layout.any_padding |= all[r].padded != 0;
  }
  return layout;
}

}  // namespace fastattn::detail
