#pragma once
/// @file detail/parallel/mpi.hpp
/// MPI plumbing of sequence parallelism: the MPI datatype of T, owners of the MPI handles a call
/// creates (freed on every exit path, exceptions included), and return-code checks.

#include <mpi.h>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace fastattn::detail {

/// The MPI datatype of T (float or double).
template <class T>
MPI_Datatype mpi_type() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "fastattn: sequence parallelism takes T = float or double");
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else
    return MPI_DOUBLE;
}

/// Throws std::runtime_error naming the MPI call when it did not succeed. (Under the default
/// error handler MPI_ERRORS_ARE_FATAL a failing call aborts before returning; this matters for
/// communicators the caller set to MPI_ERRORS_RETURN.)
inline void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw std::runtime_error(std::string("fastattn: sequence_parallel: ") + call + " failed: " +
                           std::string(text, static_cast<std::size_t>(length)));
}

/// A private duplicate of the caller's communicator: our point-to-point traffic can never match
/// the caller's own receives (MPI_ANY_SOURCE / MPI_ANY_TAG). Collective to create and free.
class MpiCommDup {
 public:
  explicit MpiCommDup(MPI_Comm comm) { mpi_check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup"); }
  ~MpiCommDup() { MPI_Comm_free(&comm_); }
  MpiCommDup(const MpiCommDup&) = delete;
  MpiCommDup& operator=(const MpiCommDup&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

/// A committed derived datatype, freed on destruction.
class MpiTypeOwner {
 public:
  MpiTypeOwner() = default;
  ~MpiTypeOwner() {
    if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
  }
  MpiTypeOwner(const MpiTypeOwner&) = delete;
  MpiTypeOwner& operator=(const MpiTypeOwner&) = delete;
  /// count contiguous elements of `element` (e.g. one token row of a packed K/V block).
  void contiguous(int count, MPI_Datatype element) {
    mpi_check(MPI_Type_contiguous(count, element, &type_), "MPI_Type_contiguous");
    mpi_check(MPI_Type_commit(&type_), "MPI_Type_commit");
  }
  /// A struct of `n` blocks (see MPI_Type_create_struct).
  void structure(int n, const int* lengths, const MPI_Aint* displacements,
                 const MPI_Datatype* types) {
    mpi_check(MPI_Type_create_struct(n, lengths, displacements, types, &type_),
              "MPI_Type_create_struct");
    mpi_check(MPI_Type_commit(&type_), "MPI_Type_commit");
  }
  MPI_Datatype get() const { return type_; }

 private:
  MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

/// A user-defined reduction operation, freed on destruction.
class MpiOpOwner {
 public:
  MpiOpOwner(MPI_User_function* function, bool commutative) {
    mpi_check(MPI_Op_create(function, commutative ? 1 : 0, &op_), "MPI_Op_create");
  }
  ~MpiOpOwner() { MPI_Op_free(&op_); }
  MpiOpOwner(const MpiOpOwner&) = delete;
  MpiOpOwner& operator=(const MpiOpOwner&) = delete;
  MPI_Op get() const { return op_; }

 private:
  MPI_Op op_ = MPI_OP_NULL;
};

/// Seconds on MPI's clock (for the optional phase timings).
inline double mpi_now() { return MPI_Wtime(); }

}  // namespace fastattn::detail
