// main() of the throughput benchmarks: records the build and machine in the JSON context, then
// runs Google Benchmark as usual (all its flags apply).

#include <benchmark/benchmark.h>

#include "build_info.hpp"

int main(int argc, char** argv) {
  fastattn::bench::pin_blas_threads();
  for (const auto& [key, value] : fastattn::bench::build_info())
    benchmark::AddCustomContext("fastattn_" + key, value);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
