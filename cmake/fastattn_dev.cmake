# Settings for fastattn's own targets (tests, benchmarks, examples). Nothing here reaches users of
# the fastattn target.

option(FASTATTN_WERROR "Treat warnings in fastattn's own targets as errors" OFF)
set(FASTATTN_SANITIZE "" CACHE STRING
    "Sanitizers for fastattn's own targets, e.g. address,undefined or thread (empty = none)")
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
  endif()
endfunction()

include(${CMAKE_CURRENT_LIST_DIR}/fastattn_mpi.cmake)
