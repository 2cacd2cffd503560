# MPI for fastattn's own sequence-parallel targets (tests, benchmark, example); the library itself
# needs nothing here: users of include/fastattn/sequence_parallel.hpp link MPI::MPI_CXX themselves.
#   FASTATTN_MPI = OFF (default: the MPI tool is opt-in, and a default build never looks for MPI);
#                  AUTO: build them when find_package(MPI) finds MPI for C++, else skip them with a
#                  message; ON: require MPI.
# Sets FASTATTN_HAVE_MPI, and FASTATTN_MPIEXEC_FLAGS (the implementation's flags for running more
# ranks than cores: Open MPI needs --oversubscribe).

set(FASTATTN_MPI OFF CACHE STRING
    "Build the MPI (sequence-parallel) tests, benchmark and example: OFF, AUTO or ON")
set_property(CACHE FASTATTN_MPI PROPERTY STRINGS OFF AUTO ON)
set(FASTATTN_HAVE_MPI FALSE)
set(FASTATTN_MPIEXEC_FLAGS "")
if(NOT FASTATTN_MPI STREQUAL "OFF")
  # Only the C API is used; the deprecated C++ bindings of some MPIs do not build warning-free.
  set(MPI_CXX_SKIP_MPICXX TRUE)
  if(FASTATTN_MPI STREQUAL "ON")
    find_package(MPI REQUIRED COMPONENTS CXX)
  else()
    find_package(MPI QUIET COMPONENTS CXX)
  endif()
  if(MPI_CXX_FOUND AND MPIEXEC_EXECUTABLE)
    set(FASTATTN_HAVE_MPI TRUE)
    execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version
                    OUTPUT_VARIABLE _fastattn_mpiexec_version ERROR_QUIET)
    if(_fastattn_mpiexec_version MATCHES "Open MPI|OpenRTE")
      list(APPEND FASTATTN_MPIEXEC_FLAGS --oversubscribe)
    endif()
    message(STATUS "fastattn: MPI found (${MPIEXEC_EXECUTABLE}): building the sequence-parallel "
                   "tests, benchmark and example")
  else()
    message(STATUS "fastattn: MPI for C++ not found: the sequence-parallel tests, benchmark and "
                   "example are skipped (Debian: apt-get install openmpi-bin libopenmpi-dev)")
  endif()
endif()
