#pragma once
/// @file detail/common/eigen_threads.hpp
/// Keeps Eigen's own GEMM threading off inside fastattn kernels.
///
/// Why: when the user compiles with OpenMP, Eigen parallelizes any product with more than about
/// 50k multiply-adds by forking an OpenMP team, which includes every attention tile. Forking per
/// tile is slow (measured here: 50-200x slower inside threaded code), and the blocking it picks
/// depends on the thread count, so results would too. fastattn threads over (batch, head) itself.

#include "fastattn/config.hpp"

#if defined(_OPENMP)
#include <omp.h>  // Eigen forks OpenMP teams whenever _OPENMP is set, even with FASTATTN_NO_OPENMP
#endif

namespace fastattn::detail {

/// While alive, OpenMP regions opened by Eigen on this thread get one thread. Restores the
/// thread's previous setting on exit. Only touches the calling thread's OpenMP state, so it is
/// safe when several threads run kernels at once. (If the user fixed Eigen's thread count with
/// Eigen::setNbThreads(n), that explicit choice wins; see the README.)
class SerialEigenScope {
 public:
#if defined(_OPENMP)
  SerialEigenScope() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SerialEigenScope() { omp_set_num_threads(saved_); }
#else
  SerialEigenScope() {}  // user-provided, so a scope object is not an "unused variable"
#endif
  SerialEigenScope(const SerialEigenScope&) = delete;
  SerialEigenScope& operator=(const SerialEigenScope&) = delete;

#if defined(_OPENMP)
 private:
  int saved_;
#endif
};

}  // namespace fastattn::detail
