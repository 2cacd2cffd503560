#pragma once
/// @file instances.hpp
/// Explicit instantiation definitions of fastattn's method classes for float and double (Exact,
/// Favor, Rfa, Eva, ClusteredEva, their decoding states, FeatureMap), for programs that compile
/// fastattn in many translation units: with FASTATTN_EXTERN_TEMPLATES=1 defined everywhere, the
/// other translation units only call these instances instead of compiling them again
/// (docs/instances.md).
///
/// Include this header in exactly one translation unit of the program (or each of the four headers
/// of fastattn/instances/ in its own, to compile them in parallel). Function templates that are
/// not class members (multihead(), the linear-attention functions of linear.hpp) and member
/// templates (the bfloat16 overloads) are still instantiated where they are used.

#include "fastattn/instances/clustered_eva.hpp"
#include "fastattn/instances/eva.hpp"
#include "fastattn/instances/exact.hpp"
#include "fastattn/instances/linear.hpp"
