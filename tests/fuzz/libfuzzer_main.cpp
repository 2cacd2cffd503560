// libFuzzer entry point of the fastattn fuzz harness (built by -DFASTATTN_FUZZ=ON with clang; see
// docs/reliability.md). All the logic is in the harness of this folder (fuzz_attention.cpp and the
// files it names), shared with test_fuzz_replay.

#include <cstddef>
#include <cstdint>

#include "fuzz_attention.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fastattn_fuzz_one(data, size);
}
