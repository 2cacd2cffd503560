# Settings for fastattn's own targets (tests, benchmarks, examples). Nothing here reaches users of
# the fastattn target.

option(FASTATTN_WERROR "Treat warnings in fastattn's own targets as errors" OFF)
set(FASTATTN_SANITIZE "" CACHE STRING
    "Sanitizers for fastattn's own targets, e.g. address,undefined or thread (empty = none)")
set(FASTATTN_SANITIZE_EXCLUDE "" CACHE STRING
    "Checks left out of FASTATTN_SANITIZE, e.g. null,alignment (-fno-sanitize=...; empty = none)")
option(FASTATTN_NATIVE "Compile fastattn's own targets with -march=native" OFF)

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

# fastattn_configure_target(<target>): warnings, sanitizers and ISA flags for our own targets.
function(fastattn_configure_target target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  if(FASTATTN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(FASTATTN_NATIVE)
    target_compile_options(${target} PRIVATE -march=native)
    # GCC 12 reports false (maybe-)uninitialized warnings inside its own AVX-512 intrinsics
    # headers; builds without FASTATTN_NATIVE keep both warnings.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized -Wno-uninitialized)
    endif()
  endif()
  if(FASTATTN_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${FASTATTN_SANITIZE}
                           -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(${target} PRIVATE -fsanitize=${FASTATTN_SANITIZE})
    if(FASTATTN_SANITIZE_EXCLUDE)  # after -fsanitize=, which would otherwise turn them back on
      target_compile_options(${target} PRIVATE -fno-sanitize=${FASTATTN_SANITIZE_EXCLUDE})
    endif()
  endif()
endfunction()

# fastattn_add_instances(<target>): a static library of the library's float and double class
# instances (fastattn/instances.hpp, docs/instances.md) for our own targets. Its users get
# FASTATTN_EXTERN_TEMPLATES=1 and compile only their calls into the library, not the library
# again: the tests build in 1.7x less CPU time. Four files so that -j2 compiles them in
# parallel; they get the flags of the build (sanitizers, -DEIGEN_DONT_VECTORIZE, -march=native),
# as the targets that call them do. A target with other flags or definitions that change the
# library's code (OpenMP, EIGEN_USE_BLAS) needs its own instance library.
function(fastattn_add_instances target)
  add_library(${target} STATIC ${PROJECT_SOURCE_DIR}/cmake/instances/exact.cpp
                               ${PROJECT_SOURCE_DIR}/cmake/instances/linear.cpp
                               ${PROJECT_SOURCE_DIR}/cmake/instances/eva.cpp
                               ${PROJECT_SOURCE_DIR}/cmake/instances/clustered_eva.cpp)
  target_link_libraries(${target} PUBLIC fastattn::fastattn)
  target_compile_definitions(${target} PUBLIC FASTATTN_EXTERN_TEMPLATES=1)
  fastattn_configure_target(${target})
endfunction()

include(${CMAKE_CURRENT_LIST_DIR}/fastattn_mpi.cmake)
