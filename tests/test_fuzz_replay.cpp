// Replays every input of the fuzz corpus (tests/fuzz/corpus: hand-written seeds plus the inputs
// libFuzzer found interesting, minimized with -merge=1) through the fuzz harness, so the contract
// it checks (tests/fuzz/, described in fuzz_attention.cpp) is re-checked on every CI run, also
// under ASan+UBSan, without clang or libFuzzer. A violation aborts inside the harness with a
// description on stderr; the handler below names the corpus file first.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_attention.hpp"

#ifndef FASTATTN_FUZZ_CORPUS_DIR
#error "FASTATTN_FUZZ_CORPUS_DIR must name tests/fuzz/corpus"
#endif

namespace fastattn {
namespace {

namespace fs = std::filesystem;

std::string g_current;  // the corpus file being replayed, for the abort handler

extern "C" void name_the_input(int sig) {
  std::fprintf(stderr, "\n[test_fuzz_replay] contract violation while replaying %s\n",
               g_current.c_str());
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

std::vector<fs::path> corpus_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(FASTATTN_FUZZ_CORPUS_DIR))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(FuzzReplay, CorpusIsPresent) {
  const auto files = corpus_files();
  EXPECT_GE(files.size(), 100u) << "expected a few hundred inputs in " << FASTATTN_FUZZ_CORPUS_DIR;
  std::uintmax_t total = 0;
  for (const auto& f : files) total += fs::file_size(f);
  EXPECT_LT(total, 300u * 1024u) << "the corpus should stay small";
}

TEST(FuzzReplay, EveryCorpusInputSatisfiesTheContract) {
  const auto files = corpus_files();
  std::signal(SIGABRT, name_the_input);
  const auto start = std::chrono::steady_clock::now();
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    ASSERT_TRUE(in) << path;
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
    g_current = path.string();
    fastattn_fuzz_one(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  std::signal(SIGABRT, SIG_DFL);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[test_fuzz_replay] %zu inputs in %.2f s\n", files.size(), seconds);
}

}  // namespace
}  // namespace fastattn
