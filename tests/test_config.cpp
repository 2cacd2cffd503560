// Tests of config.hpp and version.hpp.

#include "fastattn/config.hpp"
#include "fastattn/version.hpp"

#include <gtest/gtest.h>

#include <string>

namespace {

TEST(Check, ThrowsInvalidArgumentWithThePrefixedMessage) {
  try {
    FASTATTN_CHECK(1 + 1 == 3, "x has " << 2 << " rows");
    FAIL() << "FASTATTN_CHECK did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "fastattn: x has 2 rows");
  }
}

TEST(Check, DoesNotEvaluateTheMessageWhenTheConditionHolds) {
  int evaluations = 0;
  auto count = [&] { return ++evaluations; };
  FASTATTN_CHECK(true, "never built " << count());
  EXPECT_EQ(evaluations, 0);
}

TEST(Version, HeaderMatchesTheCMakeProjectVersion) {
  const std::string header = std::to_string(FASTATTN_VERSION_MAJOR) + "." +
                             std::to_string(FASTATTN_VERSION_MINOR) + "." +
                             std::to_string(FASTATTN_VERSION_PATCH);
  EXPECT_EQ(header, FASTATTN_CMAKE_PROJECT_VERSION);
  EXPECT_EQ(FASTATTN_VERSION,
            FASTATTN_VERSION_MAJOR * 10000 + FASTATTN_VERSION_MINOR * 100 + FASTATTN_VERSION_PATCH);
}

}  // namespace
