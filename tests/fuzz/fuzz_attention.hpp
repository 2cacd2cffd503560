#pragma once
/// @file fuzz_attention.hpp
/// The fastattn property/fuzz harness (tests/fuzz/, see fuzz_attention.cpp), shared by the
/// libFuzzer target (tests/fuzz/libfuzzer_main.cpp) and the corpus replay test
/// (tests/test_fuzz_replay.cpp).

#include <cstddef>
#include <cstdint>

/// Decodes `data` into one random configuration (method, precision, shapes, options, data regime;
/// single-head forward, decoding step sequences, multihead() and BatchedDecoder) and checks the
/// library's contract on it: every call either throws std::invalid_argument with a non-empty
/// "fastattn: ..." message or returns finite output that matches the method's reference within a
/// tolerance derived from the inputs. Any violation prints a description to stderr and calls
/// std::abort(). Returns 0 (libFuzzer's convention). Deterministic; safe to call repeatedly.
int fastattn_fuzz_one(const std::uint8_t* data, std::size_t size);
