#pragma once
/// @file version.hpp
/// The library version. CMake reads these three lines, so they are the single source of truth.

#define FASTATTN_VERSION_MAJOR 0
#define FASTATTN_VERSION_MINOR 1
#define FASTATTN_VERSION_PATCH 0

/// The version as one integer, major * 10000 + minor * 100 + patch.
#define FASTATTN_VERSION \
  (FASTATTN_VERSION_MAJOR * 10000 + FASTATTN_VERSION_MINOR * 100 + FASTATTN_VERSION_PATCH)
