#pragma once
/// @file fastattn.hpp
/// Umbrella header: includes every public fastattn header.

#include "fastattn/bfloat16.hpp"
#include "fastattn/clustered_eva.hpp"
#include "fastattn/config.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear.hpp"
#include "fastattn/metrics.hpp"
#include "fastattn/multihead.hpp"
#include "fastattn/options.hpp"
#include "fastattn/random.hpp"
#include "fastattn/rfa.hpp"
#include "fastattn/types.hpp"
#include "fastattn/version.hpp"
