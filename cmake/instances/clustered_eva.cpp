// One of the four translation units that compile the library's class instances once for fastattn's
// own tests and benchmarks (fastattn_add_instances in cmake/fastattn_dev.cmake; docs/instances.md).
#include "fastattn/instances/clustered_eva.hpp"
