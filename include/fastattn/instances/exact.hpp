#pragma once
/// @file instances/exact.hpp
/// Explicit instantiation definitions of Exact<float> and Exact<double> (with their decoding
/// State). Include in one translation unit only; see fastattn/instances.hpp.

#include "fastattn/exact.hpp"

namespace fastattn {
template class Exact<float>;
template class Exact<double>;
}  // namespace fastattn
