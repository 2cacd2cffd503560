#pragma once
/// @file instances/clustered_eva.hpp
/// Explicit instantiation definitions of ClusteredEva<float> and ClusteredEva<double>. Include
/// in one translation unit only; see fastattn/instances.hpp.

#include "fastattn/clustered_eva.hpp"

namespace fastattn {
template class ClusteredEva<float>;
template class ClusteredEva<double>;
}  // namespace fastattn
