# Script mode (cmake -DSOURCE_DIR=... -DCONSUMER_DIR=... -DWORK=... -DEIGEN_INCLUDE_DIR=...
# -DGENERATOR=... -P): configures, builds and runs tests/consumer_vendored, then installs it into
# an empty prefix and checks that nothing of fastattn's was installed.
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()
file(REMOVE_RECURSE ${WORK})
run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${WORK}/build -G ${GENERATOR}
    -DCMAKE_BUILD_TYPE=Release -DFASTATTN_SOURCE_DIR=${SOURCE_DIR}
    -DEIGEN_INCLUDE_DIR=${EIGEN_INCLUDE_DIR})
run(${CMAKE_COMMAND} --build ${WORK}/build)
run(${WORK}/build/consumer)
run(${CMAKE_COMMAND} --install ${WORK}/build --prefix ${WORK}/prefix)
file(GLOB_RECURSE installed RELATIVE ${WORK}/prefix ${WORK}/prefix/*)
foreach(f ${installed})
  if(f MATCHES "fastattn")
    message(FATAL_ERROR "a vendored fastattn installed ${f}; FASTATTN_INSTALL should be OFF")
  endif()
endforeach()
if(NOT installed)
  message(FATAL_ERROR "the consumer's own install rule installed nothing")
endif()
