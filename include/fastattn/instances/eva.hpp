#pragma once
/// @file instances/eva.hpp
/// Explicit instantiation definitions of Eva<float>, Eva<double> and their decoding states.
/// Include in one translation unit only; see fastattn/instances.hpp.

#include "fastattn/eva.hpp"
#include "fastattn/eva_state.hpp"

namespace fastattn {
template class EvaState<float>;
template class EvaState<double>;
template class Eva<float>;
template class Eva<double>;
}  // namespace fastattn
