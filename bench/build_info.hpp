#pragma once
// What a benchmark result depends on besides the code: CPU, compiler, flags, the ISA Eigen
// vectorizes for, OpenMP and BLAS. Recorded in every JSON the benchmarks write.

#include <Eigen/Core>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#if defined(EIGEN_USE_BLAS)
extern "C" char* openblas_get_corename();
extern "C" void openblas_set_num_threads(int);
#endif
#if defined(_OPENMP)
#include <omp.h>
#endif

#ifndef FASTATTN_BUILD_FLAGS
#define FASTATTN_BUILD_FLAGS "unknown"
#endif

namespace fastattn::bench {

inline std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

/// Key-value pairs describing the machine and the build.
inline std::vector<std::pair<std::string, std::string>> build_info() {
  std::vector<std::pair<std::string, std::string>> info;
  info.emplace_back("cpu", cpu_model());
  info.emplace_back("hardware_threads", std::to_string(std::thread::hardware_concurrency()));
#if defined(__clang__)
  info.emplace_back("compiler", std::string("clang ") + __clang_version__);
#elif defined(__GNUC__)
  info.emplace_back("compiler", std::string("g++ ") + __VERSION__);
#endif
  info.emplace_back("flags", FASTATTN_BUILD_FLAGS);
  info.emplace_back("eigen", std::to_string(EIGEN_WORLD_VERSION) + "." +
                                 std::to_string(EIGEN_MAJOR_VERSION) + "." +
                                 std::to_string(EIGEN_MINOR_VERSION));
  info.emplace_back("simd", Eigen::SimdInstructionSetsInUse());
#if defined(_OPENMP)
  info.emplace_back("openmp", "yes, max threads " + std::to_string(omp_get_max_threads()));
#else
  info.emplace_back("openmp", "no");
#endif
#if defined(EIGEN_USE_BLAS)
  info.emplace_back("gemm",
                    std::string("OpenBLAS (core ") + openblas_get_corename() + ", 1 thread)");
#else
  info.emplace_back("gemm", "Eigen's built-in GEMM");
#endif
  return info;
}

/// Call once before measuring: BLAS GEMMs run single-threaded like everything else here.
inline void pin_blas_threads() {
#if defined(EIGEN_USE_BLAS)
  openblas_set_num_threads(1);
#endif
}

}  // namespace fastattn::bench
