#pragma once
/// @file config.hpp
/// User-facing configuration macros and the argument-check macro.
///
/// Macros a user may define before including any fastattn header:
///   FASTATTN_NO_OPENMP   never use OpenMP, even when the translation unit is compiled with it.

#include <sstream>
#include <stdexcept>

#if defined(_OPENMP) && !defined(FASTATTN_NO_OPENMP)
#define FASTATTN_HAS_OPENMP 1
#include <omp.h>
#else
#define FASTATTN_HAS_OPENMP 0
#endif

/// FASTATTN_EXTERN_TEMPLATES = 1 (default 0) makes the method headers declare their float and
/// double class instances `extern template`: translation units then compile only calls into them,
/// and exactly one translation unit of the program defines them by including
/// fastattn/instances.hpp (docs/instances.md). Define it the same way in every translation unit.
#ifndef FASTATTN_EXTERN_TEMPLATES
#define FASTATTN_EXTERN_TEMPLATES 0
#endif

/// Throws std::invalid_argument("fastattn: " + message) when `cond` is false.
/// `message` is a stream expression, e.g. `"k [" << k.rows() << ", " << k.cols() << "] ..."`; it is
/// only evaluated on failure. Checks are cheap and always on (they do not depend on NDEBUG).
#define FASTATTN_CHECK(cond, message)                            \
  do {                                                           \
    if (!(cond)) {                                               \
      std::ostringstream fastattn_check_stream_;                 \
      fastattn_check_stream_ << "fastattn: " << message;         \
      throw std::invalid_argument(fastattn_check_stream_.str()); \
    }                                                            \
  } while (0)
