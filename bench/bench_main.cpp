// main() of the throughput benchmarks: records the build, the machine and the method metadata in
// the JSON context, then runs Google Benchmark as usual (all its flags apply).

#include <benchmark/benchmark.h>

#include "build_info.hpp"
#include "method_info.hpp"

int main(int argc, char** argv) {
  fastattn::bench::pin_blas_threads();
  for (const auto& [key, value] : fastattn::bench::build_info())
    benchmark::AddCustomContext("fastattn_" + key, value);
  // The method metadata (method_info.hpp) for the report; Google Benchmark's context holds
  // strings only, so it is the JSON array as a string.
  benchmark::AddCustomContext("fastattn_methods", fastattn::bench::methods_json());
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
