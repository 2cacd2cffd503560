// The fastattn property/fuzz harness: one input -> one random configuration -> the contract of
// DESIGN.md §4 checked on it. See docs/reliability.md for how to run it.
//
// Decoding. The first bytes choose the precision, the scenario (single-head forward, decoding step
// sequence, multihead(), BatchedDecoder), the method and its options, shapes (0 and 1 included),
// per-call options (scale 0/negative/tiny/huge/NaN/inf, causal, key padding, ALiBi, Exact's bias,
// gates), the data regime (tiny, normal, huge norms up to ~1e4 logits, denormals, zero rows,
// identical keys, ties) and an 8-byte seed from which the data themselves are drawn. Missing bytes
// read as 0, so every input is valid and short inputs are the simplest configurations.
//
// Contract checked on every call:
//  * it either throws std::invalid_argument whose message starts with "fastattn: ", or returns;
//    any other exception, a crash or UB (under the sanitizers) is a failure;
//  * arguments that are invalid by the documented rules must be rejected, and (for Exact, Favor and
//    Rfa, whose domain is fully documented) valid ones must be accepted;
//  * every output entry is written and finite (outputs are pre-filled with NaN);
//  * outputs match the reference within a tolerance derived from the inputs (below).
//
// References (all in double, from the T inputs converted exactly; the values come from the
// independent references of tests/reference/, shared with the unit tests):
//  * Exact (both kernels): reference/exact.hpp; blocked and Reference kernels are also compared
//    with each other.
//  * Favor (non-compat kernels) and Rfa (trig, arccos, gated): the random-feature estimator
//    evaluated directly from the method's own projection W (projection()), with the feature maps,
//    FAVOR++'s A*, the rescaling psi and the gated decay of reference/features.hpp, favor.hpp and
//    linear.hpp (docs/spec/favor.md, docs/spec/rfa.md). This checks the library's stabilization,
//    chunking, causal alignment, padding, gating and guards, not the randomness of W (the
//    statistical tests in test_favor/test_rfa do).
//  * Favor compat modes: the double instantiation Favor<double> (float inputs), plus the
//    sub-convexity bound. Justification: detail/favor/compat.hpp already evaluates the reference
//    implementations' formulas plainly in double; test_favor checks them against those
//    implementations, and an independent copy here would duplicate it line by line.
//  * Eva 1-D: reference/eva.hpp (docs/spec/eva.md §5.2 Reference and §5.3 Disjoint); a single
//    Disjoint window (W >= n) is also compared with exact attention. Eva 2-D: a single Disjoint
//    window vs exact attention; other 2-D geometries vs Eva<double> (same justification: the 2-D
//    reference is covered by the official reference cases in test_eva).
//  * ClusteredEva (forward and multihead scenarios only: it has no causal form; kind bytes
//    252-255): the convex hull of the visible values for every configuration, and exact
//    attention when r >= C (docs/spec/eva.md §10.6). The estimator for a given partition is
//    checked against a brute-force double reference in test_clustered_eva; here the point is
//    the contract (validation, padding, extreme shapes and data, no NaN) under the sanitizers.
//  * step() sequences: the causal reference of the whole sequence (so step == causal forward);
//    Exact's chunked prefill and truncate() rollbacks included.
//  * multihead() and BatchedDecoder: a per-head loop of forward()/step() on the same head views,
//    bitwise (the library promises determinism for any thread count and any layout).
//
// Files: harness.hpp (reporting, input decoding, verdicts, comparison), decode.cpp (the method
// and its options), expect_softmax.cpp and expect_linear.cpp (the error model of a T evaluation
// around the references), scenario_forward.cpp, scenario_step.cpp, scenario_multihead.cpp
// (multihead() and BatchedDecoder), and this file (the entry point).
//
// Tolerances. The reference carries, per entry, a bound on the error of a T evaluation: logits and
// log-features get eps * (D + 4) * sum|terms| (+ the shifts), weights then have relative error
// gamma = 2 * max logit error + (count + 16) eps, and a softmax-weighted output is off by at most
// 4 gamma max|v| (+ underflow terms of size FLT_MIN/DBL_MIN per operation). For the signed
// features of RFA the numerator and denominator errors are propagated separately, and rows whose
// denominator is within its error of the guard threshold (or of 0) are only checked for
// finiteness: there the library's branch is legitimately decided by rounding. Rows whose gamma
// exceeds 1/4 (logits far beyond what T resolves, e.g. a scale of 1e30) are only checked for
// finiteness and, where the method's weights are non-negative, for the convex-hull bound.

#include "fuzz_attention.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "harness.hpp"

namespace fastattn::fuzz {
namespace {

template <class T>
void run(Reader& r) {
  switch (r.pick(8)) {
    case 0:
    case 1:
    case 2:
    case 3:
      note("scenario=forward");
      forward_case<T>(r);
      break;
    case 4:
    case 5:
      note("scenario=step");
      step_case<T>(r);
      break;
    case 6:
      note("scenario=multihead");
      multihead_case<T>(r);
      break;
    default:
      note("scenario=decoder");
      decoder_case<T>(r);
      break;
  }
}

}  // namespace
}  // namespace fastattn::fuzz

int fastattn_fuzz_one(const std::uint8_t* data, std::size_t size) {
  // FASTATTN_FUZZ_VERBOSE=1 prints each input's description (to reproduce sanitizer reports,
  // which abort before the harness can describe the input).
  static const bool verbose = std::getenv("FASTATTN_FUZZ_VERBOSE") != nullptr;
  struct Describe {
    ~Describe() {
      if (verbose) std::fprintf(stderr, "[fuzz] done: %s\n", fastattn::fuzz::g_input.c_str());
    }
  } describe;
  fastattn::fuzz::g_input.clear();
  fastattn::fuzz::Reader reader(data, size);
  if (reader.flag()) {
    fastattn::fuzz::note("T=double");
    fastattn::fuzz::run<double>(reader);
  } else {
    fastattn::fuzz::note("T=float");
    fastattn::fuzz::run<float>(reader);
  }
  return 0;
}
