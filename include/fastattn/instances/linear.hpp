#pragma once
/// @file instances/linear.hpp
/// Explicit instantiation definitions of the random-feature methods for float and double: Favor,
/// Rfa (with their shared base), FeatureMap and LinearState. Include in one translation unit
/// only; see fastattn/instances.hpp.

#include "fastattn/favor.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear_state.hpp"
#include "fastattn/rfa.hpp"

namespace fastattn {
template class FeatureMap<float>;
template class FeatureMap<double>;
template class LinearState<float>;
template class LinearState<double>;
template class detail::RandomFeatureMethod<Favor<float>, float>;
template class detail::RandomFeatureMethod<Favor<double>, double>;
template class Favor<float>;
template class Favor<double>;
template class detail::RandomFeatureMethod<Rfa<float>, float>;
template class detail::RandomFeatureMethod<Rfa<double>, double>;
template class Rfa<float>;
template class Rfa<double>;
}  // namespace fastattn
