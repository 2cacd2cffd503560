// libFuzzer entry point of the fastattn fuzz harness (built by -DFASTATTN_FUZZ=ON with clang; see
// docs/reliability.md). All the logic is in fuzz_attention.cpp, shared with test_fuzz_replay.

#include <cstddef>
#include <cstdint>

#include "fuzz_attention.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fastattn_fuzz_one(data, size);
}
