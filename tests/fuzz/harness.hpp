#pragma once
/// @file harness.hpp
/// The fuzz harness's shared pieces (see fuzz_attention.cpp for what it checks): failure
/// reporting, the input decoder and the data it draws, the verdict on each call, the expected
/// output of a call and its comparison, and the decoded method configuration. The scenarios are in
/// scenario_*.cpp, the error model of a T evaluation around the references in expect_*.cpp.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include "../data_rng.hpp"
#include "../reference/exact.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/rfa.hpp"

namespace fastattn::fuzz {

namespace ref = test::ref;
using MatD = RowMatrix<double>;
using VecD = Eigen::VectorXd;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ------------------------------------------------------------------------------------------------
// Failure reporting: a running description of the input, printed with the failure.

inline std::string g_input;
inline std::string g_last_rejection;

template <class... A>
void note(const A&... a) {
  static const bool verbose = std::getenv("FASTATTN_FUZZ_VERBOSE") != nullptr;
  std::ostringstream os;
  (os << ... << a);
  g_input += os.str();
  g_input += ' ';
  if (verbose) std::fprintf(stderr, "[fuzz] %s\n", os.str().c_str());
}

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\n==fastattn-fuzz== CONTRACT VIOLATION: %s\n==fastattn-fuzz== input: %s\n",
               what.c_str(), g_input.c_str());
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_REQUIRE(cond, message)           \
  do {                                        \
    if (!(cond)) {                            \
      std::ostringstream fuzz_os_;            \
      fuzz_os_ << message;                    \
      ::fastattn::fuzz::fail(fuzz_os_.str()); \
    }                                         \
  } while (0)

// ------------------------------------------------------------------------------------------------
// Input decoding and data generation.

class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  unsigned byte() { return pos_ < size_ ? data_[pos_++] : 0u; }
  unsigned pick(unsigned n) { return byte() % n; }
  bool flag() { return (byte() & 1u) != 0; }
  /// True with probability about 1 / n.
  bool one_in(unsigned n) { return pick(n) == n - 1; }
  std::uint64_t u64() {
    std::uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x = (x << 8) | byte();
    return x;
  }
  template <class V, std::size_t N>
  V choose(const V (&table)[N]) {
    return table[pick(static_cast<unsigned>(N))];
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_, pos_ = 0;
};

/// The tests' SplitMix64 generator with Box-Muller normals (portable, deterministic).
using Rng = test::DataRng;

template <class T>
double eps_of() {
  return static_cast<double>(std::numeric_limits<T>::epsilon());
}
template <class T>
double tiny_of() {
  return static_cast<double>(std::numeric_limits<T>::min());
}

constexpr Index kSizes[] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 7, 8, 8, 9, 12, 13, 16, 17, 31, 33};
constexpr Index kSmallSizes[] = {0, 1, 1, 2, 3, 4, 5, 8};
constexpr Index kDims[] = {1, 1, 2, 3, 4, 4, 5, 8, 8, 13, 16, 33};
constexpr Index kValueDims[] = {0, 1, 1, 2, 3, 4, 5, 8, 17};

/// Standard deviation of one tensor's entries: normal, tiny (1e-20), huge (up to ~1e4 logits),
/// denormal, or exactly zero.
template <class T>
double data_scale(Reader& r) {
  switch (r.pick(14)) {
    case 0:
    case 1:
    case 2:
    case 3:
      return 1;
    case 4:
      return 0.3;
    case 5:
      return 3;
    case 6:
      return 10;
    case 7:
      return 30;
    case 8:
      return 100;
    case 9:
      return 1e-3;
    case 10:
      return 1e-20;
    case 11:
      return tiny_of<T>() * 1e-2;  // denormal entries
    case 12:
      return 0;
    default:
      return 1;
  }
}

/// Entry patterns: iid normal, small integers (ties), some zero rows, all rows identical.
template <class T>
RowMatrix<T> make_rows(Rng& rng, Index rows, Index cols, double stddev, unsigned pattern) {
  RowMatrix<T> m(rows, cols);
  for (Index i = 0; i < rows; ++i)
    for (Index j = 0; j < cols; ++j) {
      const double x = pattern == 1 ? std::round(2 * rng.normal()) : rng.normal();
      m(i, j) = static_cast<T>(stddev * x);
    }
  if (pattern == 2)
    for (Index i = 0; i < rows; ++i)
      if (rng.index(3) == 0) m.row(i).setZero();
  if (pattern == 3 && rows > 1)
    for (Index i = 1; i < rows; ++i) m.row(i) = m.row(0);
  return m;
}

struct DataSpec {
  double sq = 1, sk = 1, sv = 1;
  unsigned pq = 0, pk = 0, pv = 0;
};

template <class T>
DataSpec decode_data(Reader& r) {
  DataSpec s;
  s.sq = data_scale<T>(r);
  s.sk = r.one_in(3) ? s.sq : data_scale<T>(r);
  s.sv = r.one_in(2) ? 1.0 : data_scale<T>(r);
  const unsigned p = r.byte();
  s.pq = (p & 3) == 3 ? 0 : p & 3;
  s.pk = (p >> 2) & 3;
  s.pv = ((p >> 4) & 3) == 2 ? 2 : 0;
  note("data(sq=", s.sq, " sk=", s.sk, " sv=", s.sv, " pat=", s.pq, s.pk, s.pv, ")");
  return s;
}

/// Key padding: none, random, all, all but one, a prefix, or an explicit all-false mask.
KeyMask make_padding(Reader& r, Rng& rng, Index nk);

/// Non-finite garbage in the keys and values of padded positions: they must not reach any output.
/// Keys are poisoned only when `keys` is set: Exact's blocked kernel lets a non-finite padded key
/// zero whole output rows (reported; ExactBugs.NonFinitePaddedKeyZeroesBlockedRows in
/// test_extremes.cpp), so the harness poisons only Exact's values until that is fixed.
template <class T>
void poison_padded(RowMatrix<T>& k, RowMatrix<T>& v, const KeyMask& pad, bool keys) {
  const T bad[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                   -std::numeric_limits<T>::infinity()};
  for (Index j = 0; j < pad.size(); ++j)
    if (pad[j]) {
      if (keys) k.row(j).setConstant(bad[j % 3]);
      v.row(j).setConstant(bad[(j + 1) % 3]);
    }
}

/// Per-call scale: default, ordinary, negative, tiny, huge, non-finite.
double decode_scale(Reader& r);

/// A scale that is finite as a double but overflows T (1e300 with float) must be rejected.
template <class T>
bool scale_overflows(double scale) {
  return std::isfinite(scale) && !std::isfinite(static_cast<double>(static_cast<T>(scale)));
}

// ------------------------------------------------------------------------------------------------
// Calls and verdicts.

enum class Result { Ok, Rejected };

template <class F>
Result attempt(const char* what, F&& f) {
  try {
    f();
    return Result::Ok;
  } catch (const std::invalid_argument& e) {
    const std::string msg = e.what();
    FUZZ_REQUIRE(msg.rfind("fastattn: ", 0) == 0 && msg.size() > 10,
                 what << " threw std::invalid_argument with a malformed message \"" << msg << "\"");
    g_last_rejection = msg;
    return Result::Rejected;
  } catch (const std::exception& e) {
    fail(std::string(what) + " threw " + typeid(e).name() +
         " (not std::invalid_argument): " + e.what());
  } catch (...) {
    fail(std::string(what) + " threw a non-standard exception");
  }
}

/// What the documented rules say about a call: definitely invalid, not predicted, or valid.
struct Validity {
  bool must_throw = false;
  bool unknown = false;
  void invalid(const char* why) {
    if (!must_throw) note("INVALID[", why, "]");
    must_throw = true;
  }
};

inline void judge(const char* what, Result r, const Validity& v) {
  if (r == Result::Ok)
    FUZZ_REQUIRE(!v.must_throw, what << " accepted an argument that the documented rules reject");
  else
    FUZZ_REQUIRE(
        v.must_throw || v.unknown,
        what << " rejected arguments that the documented rules accept: " << g_last_rejection);
}

// ------------------------------------------------------------------------------------------------
// Expected outputs and their comparison.

struct Expect {
  MatD out, tol;             // reference [Nq, Dv] and per-entry absolute tolerance
  MatD lo, hi;               // per-entry bounds (convex hull + slack); empty = none
  std::vector<char> check;   // per row: 1 = compare within tol; 0 = finiteness (and bounds) only
  std::vector<char> ignore;  // per row: 1 = unspecified output (finiteness only)
  Expect() = default;
  Expect(Index nq, Index dv, bool bounds)
      : out(MatD::Zero(nq, dv)),
        tol(MatD::Zero(nq, dv)),
        check(std::size_t(nq), 1),
        ignore(std::size_t(nq), 0) {
    if (bounds) {
      lo = MatD::Constant(nq, dv, -kInf);
      hi = MatD::Constant(nq, dv, kInf);
    }
  }
};

template <class M>
void compare(const char* what, const M& got_in, const Expect& e) {
  const MatD got = got_in.template cast<double>();
  FUZZ_REQUIRE(got.rows() == e.out.rows() && got.cols() == e.out.cols(),
               what << ": output shape [" << got.rows() << ", " << got.cols() << "] vs reference ["
                    << e.out.rows() << ", " << e.out.cols() << "]");
  for (Index i = 0; i < got.rows(); ++i)
    for (Index d = 0; d < got.cols(); ++d) {
      const double g = got(i, d), x = e.out(i, d);
      FUZZ_REQUIRE(std::isfinite(g), what << ": non-finite output " << g << " at (" << i << ", "
                                          << d << "); reference " << x);
      if (e.ignore[std::size_t(i)]) continue;
      if (e.lo.size() != 0)
        FUZZ_REQUIRE(g >= e.lo(i, d) && g <= e.hi(i, d),
                     what << ": output " << g << " at (" << i << ", " << d
                          << ") outside the convex hull bound [" << e.lo(i, d) << ", " << e.hi(i, d)
                          << "]; reference " << x);
      if (!e.check[std::size_t(i)]) continue;
      FUZZ_REQUIRE(std::abs(g - x) <= e.tol(i, d), what << ": output " << g << " at (" << i << ", "
                                                        << d << ") differs from the reference " << x
                                                        << " by " << std::abs(g - x)
                                                        << " > tolerance " << e.tol(i, d));
    }
}

/// Two library results that each approximate the same reference.
template <class A, class B>
void compare_pair(const char* what, const A& a_in, const B& b_in, const Expect& e) {
  const MatD a = a_in.template cast<double>(), b = b_in.template cast<double>();
  for (Index i = 0; i < a.rows(); ++i) {
    if (e.ignore[std::size_t(i)] || !e.check[std::size_t(i)]) continue;
    for (Index d = 0; d < a.cols(); ++d)
      FUZZ_REQUIRE(std::abs(a(i, d) - b(i, d)) <= 2 * e.tol(i, d),
                   what << ": " << a(i, d) << " vs " << b(i, d) << " at (" << i << ", " << d
                        << "), tolerance " << 2 * e.tol(i, d));
  }
}

// ------------------------------------------------------------------------------------------------
// Methods: decoding a configuration and constructing it.

enum class Kind { ExactBlocked, ExactReference, Favor, Rfa, Eva };

struct Spec {
  Kind kind = Kind::ExactBlocked;
  Index head_dim = 1;
  ExactOptions exact;
  FavorOptions favor;
  RfaOptions rfa;
  EvaOptions eva;
  bool caller_projection = false;  // Favor/Rfa from a projection matrix
  MatD projection;                 // float-representable entries
  bool sigma_per_dim = false;      // Rfa
  VecD sigma;
  Validity ctor;
};

inline bool is_exact(Kind k) { return k == Kind::ExactBlocked || k == Kind::ExactReference; }

Kind decode_kind(Reader& r);

/// Decodes the method's constructor arguments for head dimension d. `decoding` restricts Eva to
/// 1-D (grids are non-causal).
Spec decode_spec(Reader& r, Rng& rng, Kind kind, Index d, bool decoding);

/// Constructs the method of `s` (the constructor may reject it), judges the verdict, and calls
/// use(method) when it was accepted. Returns whether it was.
template <class T, class F>
bool with_method(const Spec& s, F&& use) {
  switch (s.kind) {
    case Kind::ExactBlocked:
    case Kind::ExactReference: {
      std::optional<Exact<T>> m;
      judge("Exact()", attempt("Exact()", [&] { m.emplace(s.exact); }), s.ctor);
      if (m) use(*m);
      return m.has_value();
    }
    case Kind::Favor: {
      std::optional<Favor<T>> m;
      const Result res = attempt("Favor()", [&] {
        if (s.caller_projection)
          m.emplace(RowMatrix<T>(s.projection.template cast<T>()), s.favor);
        else
          m.emplace(s.head_dim, s.favor);
      });
      judge("Favor()", res, s.ctor);
      if (m) use(*m);
      return m.has_value();
    }
    case Kind::Rfa: {
      std::optional<Rfa<T>> m;
      const Result res = attempt("Rfa()", [&] {
        if (s.caller_projection)
          m.emplace(RowMatrix<T>(s.projection.template cast<T>()), s.rfa);
        else if (s.sigma_per_dim)
          m.emplace(s.head_dim, s.rfa, Vector<T>(s.sigma.template cast<T>()));
        else
          m.emplace(s.head_dim, s.rfa);
      });
      judge("Rfa()", res, s.ctor);
      if (m) use(*m);
      return m.has_value();
    }
    case Kind::Eva: {
      std::optional<Eva<T>> m;
      judge("Eva()", attempt("Eva()", [&] { m.emplace(s.head_dim, s.eva); }), s.ctor);
      if (m) use(*m);
      return m.has_value();
    }
  }
  return false;
}

/// Eva is self-attention: Nk = Nq, and in 2-D mode both are the grid's token count.
inline void fit_eva_sizes(const Spec& spec, Index& nq, Index& nk) {
  if (spec.kind != Kind::Eva) return;
  nk = nq;
  if (spec.eva.grid_height > 0) nq = nk = spec.eva.grid_height * spec.eva.grid_width;
}

// ------------------------------------------------------------------------------------------------
// The scenarios (each decodes the rest of the input and checks one configuration).

/// One forward call (scenario_forward.cpp).
template <class T>
void forward_case(Reader& r);
/// A decoding step sequence against the causal reference (scenario_step.cpp).
template <class T>
void step_case(Reader& r);
/// multihead() against a per-head loop (scenario_multihead.cpp).
template <class T>
void multihead_case(Reader& r);
/// BatchedDecoder against one state per (batch, head) (scenario_multihead.cpp).
template <class T>
void decoder_case(Reader& r);

}  // namespace fastattn::fuzz
