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
// References (all in double, from the T inputs converted exactly):
//  * Exact (both kernels): a materialized softmax written here; blocked and Reference kernels are
//    also compared with each other.
//  * Favor (non-compat kernels) and Rfa (trig, arccos, gated): the random-feature estimator
//    evaluated directly from the method's own projection W (projection()), with the feature maps,
//    FAVOR++'s A*, the rescaling psi and the gated decay written here from docs/spec/favor.md and
//    docs/spec/rfa.md. This checks the library's stabilization, chunking, causal alignment,
//    padding, gating and guards, not the randomness of W (the statistical tests in
//    test_favor/test_rfa do).
//  * Favor compat modes: the double instantiation Favor<double> (float inputs), plus the
//    sub-convexity bound. Justification: detail/favor_compat.hpp already evaluates the reference
//    implementations' formulas plainly in double; test_favor checks them against those
//    implementations, and an independent copy here would duplicate it line by line.
//  * Eva 1-D: docs/spec/eva.md §5.2 (Reference) and §5.3 (Disjoint) evaluated directly; a single
//    Disjoint window (W >= n) is also compared with exact attention. Eva 2-D: a single Disjoint
//    window vs exact attention; other 2-D geometries vs Eva<double> (same justification: the 2-D
//    reference is covered by the official reference cases in test_eva).
//  * step() sequences: the causal reference of the whole sequence (so step == causal forward);
//    Exact's chunked prefill and truncate() rollbacks included.
//  * multihead() and BatchedDecoder: a per-head loop of forward()/step() on the same head views,
//    bitwise (the library promises determinism for any thread count and any layout).
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

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "../data_rng.hpp"
#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/multihead.hpp"
#include "fastattn/rfa.hpp"

namespace fastattn {
namespace {

using MatD = RowMatrix<double>;
using VecD = Eigen::VectorXd;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// FavorOptions::optimal_a as a number: NaN when empty (the per-call optimum).
double optimal_a_or_nan(const FavorOptions& o) { return o.optimal_a.value_or(kNaN); }

// ------------------------------------------------------------------------------------------------
// Failure reporting: a running description of the input, printed with the failure.

std::string g_input;
std::string g_last_rejection;

template <class... A>
void note(const A&... a) {
  static const bool verbose = std::getenv("FASTATTN_FUZZ_VERBOSE") != nullptr;
  std::ostringstream os;
  (os << ... << a);
  g_input += os.str();
  g_input += ' ';
  if (verbose) std::fprintf(stderr, "[fuzz] %s\n", os.str().c_str());
}

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "\n==fastattn-fuzz== CONTRACT VIOLATION: %s\n==fastattn-fuzz== input: %s\n",
               what.c_str(), g_input.c_str());
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_REQUIRE(cond, message)     \
  do {                                  \
    if (!(cond)) {                      \
      std::ostringstream fuzz_os_;      \
      fuzz_os_ << message;              \
      ::fastattn::fail(fuzz_os_.str()); \
    }                                   \
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
KeyMask make_padding(Reader& r, Rng& rng, Index nk) {
  KeyMask m;
  const unsigned mode = r.pick(10);
  switch (mode) {
    case 3:
    case 4:
      m = KeyMask(nk);
      for (Index j = 0; j < nk; ++j) m[j] = rng.uniform() < 0.3;
      break;
    case 5:
      m = KeyMask::Constant(nk, true);
      break;
    case 6:
      m = KeyMask::Constant(nk, true);
      if (nk > 0) m[rng.index(nk)] = false;
      break;
    case 7:
      m = KeyMask::Constant(nk, false);
      m.head(nk / 2).setConstant(true);
      break;
    case 8:
      m = KeyMask::Constant(nk, false);
      break;
    case 9:
      m = KeyMask(nk);
      for (Index j = 0; j < nk; ++j) m[j] = rng.uniform() < 0.8;
      break;
    default:
      break;
  }
  if (m.size() != 0) note("padding(mode=", mode, " padded=", m.count(), "/", nk, ")");
  return m;
}

bool padded_at(const KeyMask& m, Index j) { return m.size() != 0 && m[j]; }

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

void judge(const char* what, Result r, const Validity& v) {
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

/// One entry of a softmax: logit with its error bound, value row with its error bound.
struct Entry {
  double logit, dlogit;
  const double* value;
  double dvalue;
};

/// Row i of `x` = softmax(entries) . values, with the tolerance of a T evaluation.
void softmax_row(const std::vector<Entry>& es, Index dv, double eps, double tiny, Expect& x,
                 Index i, double* lse = nullptr, double* lse_tol = nullptr) {
  if (es.empty()) {
    x.out.row(i).setZero();
    x.tol.row(i).setZero();
    if (x.lo.size()) x.lo.row(i).setZero(), x.hi.row(i).setZero();
    if (lse) *lse = -kInf, *lse_tol = 0;
    return;
  }
  double mx = -kInf, dmax = 0, vmax = 0, dval = 0;
  for (const Entry& e : es) {
    mx = std::max(mx, e.logit);
    dmax = std::max(dmax, e.dlogit);
    dval = std::max(dval, e.dvalue);
    for (Index d = 0; d < dv; ++d) vmax = std::max(vmax, std::abs(e.value[d]));
  }
  double sum = 0;
  VecD acc = VecD::Zero(dv);
  for (const Entry& e : es) {
    const double p = std::exp(e.logit - mx);
    sum += p;
    for (Index d = 0; d < dv; ++d) acc[d] += p * e.value[d];
  }
  const double n = double(es.size());
  const double gamma = 2 * dmax + (n + 16) * eps;    // relative error of each weight
  const double under = (n + 8) * tiny * (1 + vmax);  // weights and products below FLT/DBL_MIN
  if (gamma > 0.25) x.check[std::size_t(i)] = 0;
  for (Index d = 0; d < dv; ++d) {
    const double o = acc[d] / sum;
    x.out(i, d) = o;
    x.tol(i, d) = 4 * gamma * vmax + 2 * dval + under + 4 * eps * std::abs(o);
    if (x.lo.size()) {
      double lo = kInf, hi = -kInf;
      for (const Entry& e : es) lo = std::min(lo, e.value[d]), hi = std::max(hi, e.value[d]);
      const double slack = (n + 16) * eps * vmax * 8 + 2 * dval + under;
      x.lo(i, d) = lo - slack;
      x.hi(i, d) = hi + slack;
    }
  }
  if (lse) {
    *lse = mx + std::log(sum);
    *lse_tol = 2 * gamma + 4 * eps * std::abs(*lse) + (n + 8) * tiny;
  }
}

// ------------------------------------------------------------------------------------------------
// Exact attention in double.

struct ExactCall {
  double scale = 0;  // resolved
  bool causal = false;
  KeyMask padding;
  const MatD* bias = nullptr;  // [Nq, Nk], [1, Nk] or null
  double alibi = 0;
};

template <class T>
Expect exact_expect(const MatD& q, const MatD& k, const MatD& v, const ExactCall& c,
                    VecD* lse = nullptr, VecD* lse_tol = nullptr) {
  const Index nq = q.rows(), nk = k.rows(), d = q.cols(), dv = v.cols(), delta = nk - nq;
  const double eps = eps_of<T>(), tiny = tiny_of<T>(), s = c.scale;
  Expect x(nq, dv, true);
  if (lse) lse->resize(nq), lse_tol->resize(nq);
  std::vector<Entry> es;
  for (Index i = 0; i < nq; ++i) {
    es.clear();
    for (Index j = 0; j < nk; ++j) {
      if (padded_at(c.padding, j) || (c.causal && j > i + delta)) continue;
      double b = 0;
      if (c.bias) b = (*c.bias)(c.bias->rows() == 1 ? 0 : i, j);
      if (b == -kInf) continue;
      double dot = 0, adot = 0;
      for (Index l = 0; l < d; ++l) dot += q(i, l) * k(j, l), adot += std::abs(q(i, l) * k(j, l));
      const double dist = std::abs(double(i + delta - j));
      const double logit = s * dot + b - c.alibi * dist;
      const double dl = eps * ((d + 4) * std::abs(s) * adot + 4 * std::abs(b) + 4 * c.alibi * dist +
                               4 * std::abs(logit));
      es.push_back({logit, dl, dv ? &v(j, 0) : nullptr, 0});
    }
    double l = 0, lt = 0;
    softmax_row(es, dv, eps, tiny, x, i, lse ? &l : nullptr, &lt);
    if (lse) (*lse)[i] = l, (*lse_tol)[i] = lt;
  }
  return x;
}

// ------------------------------------------------------------------------------------------------
// The random-feature estimator in double, with error bounds of a T evaluation.

/// Features in the library's units [n, M] and absolute error bounds of their T values.
struct Features {
  MatD f, e;
};

/// Log-feature exponents of FAVOR's exponential kernels (docs/spec/favor.md §3-§4) for rows x [n,
/// D]: y = dim_scale o x, u = B W y, h = |y|^2 / 2; Positive/Smreg u - h, Hyperbolic [u - h, -u -
/// h], Optimal A |w_r|^2 + u - h with B = sqrt(1 - 4A).
void favor_exponents(const MatD& x, const MatD& w, const VecD& dim_scale, FavorKernel kernel,
                     double a, double eps, MatD& ell, MatD& dell) {
  const Index n = x.rows(), m = w.rows(), d = x.cols();
  const bool hyp = kernel == FavorKernel::Hyperbolic, opt = kernel == FavorKernel::Optimal;
  const double b = opt ? std::sqrt(1 - 4 * a) : 1.0;
  ell.resize(n, hyp ? 2 * m : m);
  dell.resize(n, ell.cols());
  for (Index i = 0; i < n; ++i) {
    const VecD y = dim_scale.cwiseProduct(x.row(i).transpose());
    const double h = 0.5 * y.squaredNorm();
    for (Index r = 0; r < m; ++r) {
      double u = 0, au = 0;
      for (Index l = 0; l < d; ++l) u += w(r, l) * y[l], au += std::abs(w(r, l) * y[l]);
      u *= b;
      au *= b;
      const double off = opt ? a * w.row(r).squaredNorm() : 0.0;
      const double base = eps * (d + 6) * (au + h + std::abs(off));
      ell(i, r) = off + u - h;
      dell(i, r) = base + 4 * eps * std::abs(ell(i, r));
      if (hyp) {
        ell(i, m + r) = -u - h;
        dell(i, m + r) = base + 4 * eps * std::abs(ell(i, m + r));
      }
    }
  }
}

/// exp of the exponents with the library's shifts: per row (queries) or one shift over the rows
/// with use[j] (keys).
Features shifted_exp(const MatD& ell, const MatD& dell, const std::vector<char>* use, double eps,
                     double tiny) {
  Features f{MatD::Zero(ell.rows(), ell.cols()), MatD::Zero(ell.rows(), ell.cols())};
  double global = -kInf;
  if (use)
    for (Index j = 0; j < ell.rows(); ++j)
      if ((*use)[std::size_t(j)]) global = std::max(global, ell.row(j).maxCoeff());
  for (Index i = 0; i < ell.rows(); ++i) {
    if (use && !(*use)[std::size_t(i)]) continue;
    const double shift = use ? global : ell.row(i).maxCoeff();
    for (Index r = 0; r < ell.cols(); ++r) {
      const double v = std::exp(ell(i, r) - shift);
      f.f(i, r) = v;
      f.e(i, r) = v * (dell(i, r) + 8 * eps * std::abs(shift) + 8 * eps) + tiny;
    }
  }
  return f;
}

/// relu(c W x) + eps_relu (Favor Relu) or relu(W x_hat) (Rfa Arccos).
Features relu_features(const MatD& x, const MatD& w, double c, double relu_eps, bool normalize,
                       double eps, double tiny) {
  const Index n = x.rows(), m = w.rows(), d = x.cols();
  Features f{MatD::Zero(n, m), MatD::Zero(n, m)};
  for (Index i = 0; i < n; ++i) {
    VecD y = c * x.row(i).transpose();
    if (normalize) {
      const double norm = y.stableNorm();
      y = norm > 0 ? VecD(y / norm) : VecD(VecD::Zero(d));
    }
    for (Index r = 0; r < m; ++r) {
      double u = 0, au = 0;
      for (Index l = 0; l < d; ++l) u += w(r, l) * y[l], au += std::abs(w(r, l) * y[l]);
      f.f(i, r) = std::max(u, 0.0) + relu_eps;
      f.e(i, r) = eps * (d + 8) * au + 4 * eps * f.f(i, r) + tiny;
    }
  }
  return f;
}

/// Rfa's trig features [cos(W x_hat), sin(W x_hat)] (a zero row stays zero).
Features trig_features_ref(const MatD& x, const MatD& w, double eps, double tiny) {
  const Index n = x.rows(), m = w.rows(), d = x.cols();
  Features f{MatD::Zero(n, 2 * m), MatD::Zero(n, 2 * m)};
  for (Index i = 0; i < n; ++i) {
    const double norm = x.row(i).stableNorm();
    const VecD y = norm > 0 ? VecD(x.row(i).transpose() / norm) : VecD(VecD::Zero(d));
    for (Index r = 0; r < m; ++r) {
      double u = 0, au = 0;
      for (Index l = 0; l < d; ++l) u += w(r, l) * y[l], au += std::abs(w(r, l) * y[l]);
      const double e = eps * (d + 8) * au + 8 * eps * (std::abs(u) + 4) + tiny;
      f.f(i, r) = std::cos(u);
      f.f(i, m + r) = std::sin(u);
      f.e(i, r) = f.e(i, m + r) = e;
    }
  }
  return f;
}

/// out_i = sum_j w_ij v_j / sum_j w_ij over visible keys, w_ij = phi(q_i).phi(k_j) (times the gated
/// decay), with the library's guard (den <= den_eps * mass -> N / (den_eps * mass), or 0 when
/// den_eps = 0) and empty-row rule.
Expect linear_expect(const Features& fq, const Features& fk, const MatD& v, const KeyMask& pad,
                     bool causal, const std::vector<double>* log_gates, double den_eps, bool nonneg,
                     double eps, double tiny) {
  const Index nq = fq.f.rows(), nk = fk.f.rows(), dv = v.cols(), m = fq.f.cols();
  const Index delta = nk - nq;
  Expect x(nq, dv, nonneg);
  // Cumulative log gates over non-padded keys (padded keys act as g = 1).
  std::vector<double> g(std::size_t(nk), 0.0);
  for (Index j = 0, run = 0; j < nk; ++j) {
    (void)run;
    const double lg = (log_gates && !padded_at(pad, j)) ? (*log_gates)[std::size_t(j)] : 0.0;
    g[std::size_t(j)] = (j > 0 ? g[std::size_t(j - 1)] : 0.0) + lg;
  }
  const double acc_err = double(nk + m + 16) * eps;
  VecD num(dv), enum_(dv);
  for (Index i = 0; i < nq; ++i) {
    const Index last = causal ? std::min(i + delta, nk - 1) : nk - 1;
    double den = 0, eden = 0, vmax = 0;
    num.setZero();
    enum_.setZero();
    VecD lo = VecD::Constant(dv, 0.0), hi = VecD::Constant(dv, 0.0);  // hull incl. 0 (guards)
    Index seen = 0;
    for (Index j = 0; j <= last; ++j) {
      if (padded_at(pad, j)) continue;
      double fac = 1, dfac = 0;
      if (log_gates) {
        const double weight = -std::expm1((*log_gates)[std::size_t(j)]);
        if (!(weight > 0)) continue;
        fac = weight * std::exp(g[std::size_t(last)] - g[std::size_t(j)]);
        dfac = eps * (8 * (std::abs(g[std::size_t(last)]) + std::abs(g[std::size_t(j)])) + nk + 16);
      }
      ++seen;
      double w = 0, aw = 0, e = 0;
      for (Index r = 0; r < m; ++r) {
        const double a = fq.f(i, r), b = fk.f(j, r), ea = fq.e(i, r), eb = fk.e(j, r);
        w += a * b;
        aw += std::abs(a * b);
        e += std::abs(a) * eb + ea * std::abs(b) + ea * eb;
      }
      e += double(m + 4) * eps * aw + double(m) * tiny;
      w *= fac;
      aw *= fac;
      e = e * fac + aw * dfac;
      den += w;
      eden += e + acc_err * aw;
      for (Index d = 0; d < dv; ++d) {
        const double vd = v(j, d);
        num[d] += w * vd;
        enum_[d] += (e + acc_err * aw) * std::abs(vd) + double(m + 4) * tiny;
        vmax = std::max(vmax, std::abs(vd));
        lo[d] = std::min(lo[d], vd);
        hi[d] = std::max(hi[d], vd);
      }
    }
    const double mass =
        log_gates ? (seen > 0 ? -std::expm1(g[std::size_t(std::max<Index>(last, 0))]) : 0.0)
                  : double(seen);
    if (nonneg) x.lo.row(i) = lo.transpose(), x.hi.row(i) = hi.transpose();
    if (seen == 0 || last < 0 || !(mass > 0)) {  // no visible key: exactly 0
      x.out.row(i).setZero();
      if (nonneg) x.lo.row(i).setZero(), x.hi.row(i).setZero();
      continue;
    }
    const double floor = den_eps * mass, band = eden + floor * eps * double(nk + 16);
    if (den > floor + band && eden < 0.5 * den) {
      for (Index d = 0; d < dv; ++d) {
        const double o = num[d] / den;
        x.out(i, d) = o;
        x.tol(i, d) = 2 * (enum_[d] + std::abs(o) * eden) / (den - eden) + 8 * eps * std::abs(o);
      }
    } else if (floor > 0 && den < floor - band) {
      for (Index d = 0; d < dv; ++d) {
        const double o = num[d] / floor;
        x.out(i, d) = o;
        x.tol(i, d) = 2 * enum_[d] / floor + eps * double(nk + 16) * std::abs(o);
      }
    } else if (floor == 0 && den < -band) {
      x.out.row(i).setZero();
    } else {
      x.check[std::size_t(i)] = 0;  // the guard's branch is decided by rounding
    }
    if (nonneg) {
      // The hull holds for the library's rows too, up to rounding, whenever the row is resolved.
      if (!x.check[std::size_t(i)]) {
        x.lo.row(i).setConstant(-kInf);
        x.hi.row(i).setConstant(kInf);
      } else {
        for (Index d = 0; d < dv; ++d) {
          x.lo(i, d) -= x.tol(i, d) + 16 * eps * vmax;
          x.hi(i, d) += x.tol(i, d) + 16 * eps * vmax;
        }
      }
    }
  }
  return x;
}

// ------------------------------------------------------------------------------------------------
// EVA in double (1-D; docs/spec/eva.md §5.2 Reference and §5.3 Disjoint).

struct EvaCall {
  Index window = 1, ext = 0, chunk = 1;  // L resolved
  bool causal = false, disjoint = false;
  double scale = 1, mu_scale = 0.5;
  KeyMask padding;
};

template <class T>
Expect eva_expect(const MatD& q, const MatD& k, const MatD& v, const EvaCall& c) {
  const Index n = q.rows(), d = q.cols(), dv = v.cols(), w = c.window, e = c.ext, len = c.chunk;
  const double eps = eps_of<T>(), tiny = tiny_of<T>(), s = c.scale;
  if (n == 0) return Expect(0, dv, true);
  const Index n_p = (n + w - 1) / w * w;
  auto valid = [&](Index t) { return t >= 0 && t < n && !padded_at(c.padding, t); };
  const Index nc = c.disjoint ? (n + len - 1) / len : n_p / len;
  struct Chunk {
    VecD kt, beta;
    double offset = 0, ekt = 0, dbeta = 0;
    bool exists = true;
    Index begin = 0, end = 0;  // Disjoint P_c
  };
  std::vector<Chunk> chunks(static_cast<std::size_t>(nc));
  double kabs = 0, qabs = 0, vabs = 0;
  for (Index t = 0; t < n; ++t)
    if (valid(t)) {
      kabs = std::max(kabs, k.row(t).cwiseAbs().maxCoeff());
      qabs = std::max(qabs, q.row(t).cwiseAbs().maxCoeff());
      vabs = std::max(vabs, dv ? v.row(t).cwiseAbs().maxCoeff() : 0.0);
    }
  for (Index ci = 0; ci < nc; ++ci) {
    Chunk& ch = chunks[std::size_t(ci)];
    Index b0, b1;
    double divisor;
    if (c.disjoint) {
      b0 = ci * len;
      b1 = std::min((ci + 1) * len, n_p);
      ch.begin = b0;
      ch.end = b1;
      divisor = 0;
    } else {
      b0 = c.causal ? ci * len : ci * len - e;
      b1 = c.causal ? ci * len + len : ci * len + len + e;
      divisor = double(b1 - b0);
    }
    VecD qs = VecD::Zero(d), ks = VecD::Zero(d);
    Index count = 0;
    for (Index t = b0; t < b1; ++t)
      if (valid(t)) qs += q.row(t).transpose(), ks += k.row(t).transpose(), ++count;
    if (c.disjoint) {
      if (count == 0) {
        ch.exists = false;
        continue;
      }
      divisor = double(count);
    }
    const VecD kbar = ks / divisor, qbar = qs / divisor;
    ch.kt = kbar;
    const VecD mu = c.mu_scale * (qbar + kbar);
    ch.offset = c.disjoint ? std::log(double(count)) : 0.0;
    const double span = double(b1 - b0 + 8);
    ch.ekt = eps * span * kabs;
    const double dmu = eps * span * std::abs(c.mu_scale) * (qabs + kabs);
    ch.beta = VecD::Zero(dv);
    if (count == 0) continue;
    std::vector<double> a;
    double amax = -kInf, da = 0, vmax = 0;
    for (Index t = b0; t < b1; ++t) {
      if (!valid(t)) continue;
      double dot = 0, adot = 0;
      for (Index l = 0; l < d; ++l)
        dot += mu[l] * k(t, l), adot += std::abs(mu[l] * k(t, l)) + dmu * std::abs(k(t, l));
      const double sq = k.row(t).squaredNorm();
      const double at = s * (dot - 0.5 * sq);
      a.push_back(at);
      amax = std::max(amax, at);
      da = std::max(da, eps * (d + 6) * std::abs(s) * (adot + sq) + 4 * eps * std::abs(at));
      if (dv) vmax = std::max(vmax, v.row(t).cwiseAbs().maxCoeff());
    }
    double sum = 0;
    std::size_t idx = 0;
    for (Index t = b0; t < b1; ++t) {
      if (!valid(t)) continue;
      const double p = std::exp(a[idx++] - amax);
      sum += p;
      ch.beta += p * v.row(t).transpose();
    }
    ch.beta /= sum;
    const double gamma = 2 * da + double(count + 16) * eps;
    ch.dbeta = gamma > 0.25 ? kInf : 4 * gamma * vmax + double(count + 8) * tiny * (1 + vmax);
  }
  Expect x(n, dv, true);
  std::vector<Entry> es;
  for (Index i = 0; i < n; ++i) {
    es.clear();
    const Index win = i / w, ks = win * w - e, ke = c.causal ? win * w + w : win * w + w + e;
    const Index kb = std::max<Index>(0, ks), kend = std::min(n_p, ke);
    const bool masked_row = !c.disjoint && c.causal && padded_at(c.padding, i);
    for (Index t = kb; t < kend && !masked_row; ++t) {
      if (!valid(t) || (c.causal && t > i)) continue;
      double dot = 0, adot = 0;
      for (Index l = 0; l < d; ++l) dot += q(i, l) * k(t, l), adot += std::abs(q(i, l) * k(t, l));
      const double logit = s * dot;
      es.push_back({logit, eps * (d + 6) * std::abs(s) * adot + 4 * eps * std::abs(logit),
                    dv ? &v(t, 0) : nullptr, 0});
    }
    for (Index ci = 0; ci < nc; ++ci) {
      const Chunk& ch = chunks[std::size_t(ci)];
      if (!ch.exists) continue;
      if (c.causal && ci >= i / len) continue;
      if (c.disjoint && !(ch.end <= kb || ch.begin >= kend)) continue;
      double dot = 0, adot = 0, aq = 0;
      for (Index l = 0; l < d; ++l)
        dot += q(i, l) * ch.kt[l], adot += std::abs(q(i, l) * ch.kt[l]), aq += std::abs(q(i, l));
      const double logit = s * dot + ch.offset;
      const double dl = eps * (d + 6) * std::abs(s) * adot + std::abs(s) * aq * ch.ekt +
                        4 * eps * (std::abs(logit) + std::abs(ch.offset));
      es.push_back({logit, dl, dv ? ch.beta.data() : nullptr, ch.dbeta});
    }
    softmax_row(es, dv, eps, tiny, x, i);
    if (!c.disjoint && padded_at(c.padding, i)) x.ignore[std::size_t(i)] = 1;  // unspecified
    bool finite_values = true;
    for (const Entry& en : es) finite_values = finite_values && std::isfinite(en.dvalue);
    if (!finite_values) {
      x.check[std::size_t(i)] = 0;
      x.lo.row(i).setConstant(-kInf);
      x.hi.row(i).setConstant(kInf);
    }
  }
  (void)vabs;
  return x;
}

/// Loose comparison of a float result with the double instantiation of the same method (used
/// where an independent reference would duplicate the library; see the file comment).
Expect from_double_instance(const MatD& ref, double gamma, double vmax, double tiny, Index count) {
  Expect x(ref.rows(), ref.cols(), false);
  x.out = ref;
  for (Index i = 0; i < ref.rows(); ++i) {
    if (gamma > 0.25) x.check[std::size_t(i)] = 0;
    for (Index d = 0; d < ref.cols(); ++d)
      x.tol(i, d) =
          4 * gamma * vmax + double(count + 8) * tiny * (1 + vmax) + 1e-6 * std::abs(ref(i, d));
  }
  return x;
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

bool is_exact(Kind k) { return k == Kind::ExactBlocked || k == Kind::ExactReference; }

Kind decode_kind(Reader& r) {
  switch (r.pick(9)) {
    case 0:
      return Kind::ExactBlocked;
    case 1:
      return Kind::ExactReference;
    case 2:
    case 3:
    case 4:
      return Kind::Favor;
    case 5:
    case 6:
      return Kind::Rfa;
    default:
      return Kind::Eva;
  }
}

/// Decodes the method's constructor arguments for head dimension d. `decoding` restricts Eva to
/// 1-D (grids are non-causal).
Spec decode_spec(Reader& r, Rng& rng, Kind kind, Index d, bool decoding) {
  Spec s;
  s.kind = kind;
  s.head_dim = r.one_in(24) ? d + 1 : d;  // a mismatch is rejected by the call, not the ctor
  if (s.head_dim < 1) s.ctor.invalid("head_dim < 1");
  switch (kind) {
    case Kind::ExactBlocked:
    case Kind::ExactReference: {
      constexpr Index blocks[] = {0, 0, 1, 2, 3, 5, 8, 64, -1};
      s.exact.kernel = kind == Kind::ExactBlocked ? ExactKernel::Blocked : ExactKernel::Reference;
      s.exact.block_q = r.choose(blocks);
      s.exact.block_k = r.choose(blocks);
      s.ctor = Validity{};
      if (s.exact.block_q < 0 || s.exact.block_k < 0) s.ctor.invalid("block < 0");
      note("Exact(kernel=", kind == Kind::ExactBlocked ? "blocked" : "reference",
           " bq=", s.exact.block_q, " bk=", s.exact.block_k, ")");
      break;
    }
    case Kind::Favor: {
      constexpr Index feats[] = {1, 2, 3, 4, 4, 5, 8, 8, 16, 0, -1};
      constexpr double as[] = {kNaN, kNaN, kNaN, -0.5, -0.1, 0, 0.05, 0.12, 0.125, 0.3, -kInf};
      constexpr double reps[] = {1e-3, 1e-3, 0, 0.5, -1, kNaN};
      constexpr Index chunks[] = {0, 0, 1, 2, 3, 4, 7, 8, 64, -1};
      FavorOptions& o = s.favor;
      o.num_features = r.choose(feats);
      o.kernel = static_cast<FavorKernel>(r.pick(5));
      o.projection = static_cast<Projection>(r.pick(3));
      o.seed = r.byte();
      o.optimal_a = r.choose(as);
      o.rescale = r.one_in(4);
      o.relu_eps = r.pick(4) != 0 ? 1e-3 : r.choose(reps);
      o.chunk_size = r.choose(chunks);
      o.compat = r.pick(4) != 0 ? FavorCompat::None : static_cast<FavorCompat>(r.pick(5));
      s.caller_projection = r.one_in(8);
      note("Favor(m=", o.num_features, " kernel=", int(o.kernel), " proj=", int(o.projection),
           " seed=", o.seed, " A=", optimal_a_or_nan(o), " rescale=", o.rescale, " relu_eps=", o.relu_eps,
           " chunk=", o.chunk_size, " compat=", int(o.compat), " caller=", s.caller_projection,
           ")");
      Validity& v = s.ctor;
      if (o.num_features < 0) v.invalid("num_features < 0");
      if (o.chunk_size < 0) v.invalid("chunk_size < 0");
      const double a = optimal_a_or_nan(o);
      if (!(std::isnan(a) || a < 0.125)) v.invalid("optimal_a >= 1/8");
      if (o.kernel == FavorKernel::Optimal && std::isinf(a)) v.invalid("optimal_a inf");
      if (o.kernel == FavorKernel::Smreg && o.projection != Projection::Orthogonal)
        v.invalid("Smreg projection");
      if (o.rescale && o.kernel != FavorKernel::Positive && o.kernel != FavorKernel::Hyperbolic &&
          o.kernel != FavorKernel::Optimal)
        v.invalid("rescale kernel");
      switch (o.compat) {
        case FavorCompat::None:
          break;
        case FavorCompat::PerformerPytorch:
          if (o.kernel != FavorKernel::Positive && o.kernel != FavorKernel::Relu)
            v.invalid("compat kernel");
          break;
        case FavorCompat::FastTransformers:
          if (o.kernel != FavorKernel::Hyperbolic) v.invalid("compat kernel");
          break;
        default:
          if (o.kernel != FavorKernel::Positive) v.invalid("compat kernel");
      }
      if (o.compat != FavorCompat::None && o.rescale) v.invalid("compat rescale");
      if (!s.caller_projection && o.projection == Projection::Simplex && s.head_dim < 2 &&
          o.kernel != FavorKernel::Smreg)
        v.invalid("simplex with D = 1");
      if (!(std::isfinite(o.relu_eps) && o.relu_eps >= 0)) v.invalid("relu_eps");
      if (s.caller_projection) {
        const Index rows = o.num_features > 0 ? o.num_features : (r.flag() ? 3 : 0);
        const Index cols = r.one_in(16) ? 0 : s.head_dim;
        if (o.num_features == 0 && rows == 0) v.invalid("empty projection");
        if (cols == 0) v.invalid("empty projection");
        s.projection = MatD(std::max<Index>(rows, 0), cols);
        for (Index i = 0; i < s.projection.rows(); ++i)
          for (Index j = 0; j < cols; ++j) s.projection(i, j) = double(float(rng.normal()));
        if (s.projection.size() && r.one_in(16)) {
          s.projection(0, 0) = kNaN;
          v.invalid("non-finite projection");
        }
      } else if (s.head_dim < 1) {
        v.invalid("head_dim");
      }
      break;
    }
    case Kind::Rfa: {
      constexpr Index feats[] = {1, 2, 3, 4, 4, 6, 8, 16, 0};
      constexpr double sigmas[] = {1, 1, 1, 0.5, 2, 4, 1e-3, 30, 0, -1, kNaN};
      constexpr double den_epss[] = {1e-6, 1e-6, 1e-2, 1, 0, -1, kNaN};
      constexpr Index chunks[] = {0, 0, 1, 2, 3, 5, 8, 64, -1};
      RfaOptions& o = s.rfa;
      o.num_features = r.choose(feats);
      o.sigma = r.pick(3) != 0 ? 1.0 : r.choose(sigmas);
      o.kernel = r.flag() ? RfaKernel::Arccos : RfaKernel::Trig;
      o.projection = static_cast<Projection>(r.pick(3));
      o.seed = r.byte();
      o.den_eps = r.pick(3) != 0 ? 1e-6 : r.choose(den_epss);
      o.chunk_size = r.choose(chunks);
      s.caller_projection = r.one_in(8);
      s.sigma_per_dim = !s.caller_projection && r.one_in(6);
      note("Rfa(m=", o.num_features, " sigma=", o.sigma, " kernel=", int(o.kernel),
           " proj=", int(o.projection), " seed=", o.seed, " den_eps=", o.den_eps,
           " chunk=", o.chunk_size, " caller=", s.caller_projection, " per_dim=", s.sigma_per_dim,
           ")");
      Validity& v = s.ctor;
      if (o.num_features < 0) v.invalid("num_features");
      if (!(std::isfinite(o.sigma) && o.sigma > 0)) v.invalid("sigma");
      if (!(std::isfinite(o.den_eps) && o.den_eps > 0)) v.invalid("den_eps");
      if (o.chunk_size < 0) v.invalid("chunk_size");
      if (!s.caller_projection && o.projection == Projection::Simplex && s.head_dim < 2)
        v.invalid("simplex with D = 1");
      if (s.caller_projection) {
        const Index rows = o.num_features > 0 ? o.num_features : 4;
        s.projection = MatD(rows, s.head_dim);
        for (Index i = 0; i < rows; ++i)
          for (Index j = 0; j < s.head_dim; ++j) s.projection(i, j) = double(float(rng.normal()));
        if (o.sigma != 1.0) v.invalid("sigma with caller projection");
      }
      if (s.sigma_per_dim) {
        const Index len = r.one_in(8) ? s.head_dim + 1 : s.head_dim;
        s.sigma = VecD(len);
        for (Index j = 0; j < len; ++j) s.sigma[j] = double(float(0.25 + 2 * rng.uniform()));
        if (len != s.head_dim) v.invalid("sigma_per_dim size");
        if (o.sigma != 1.0) v.invalid("sigma and sigma_per_dim");
        if (len > 0 && r.one_in(8)) {
          s.sigma[0] = r.flag() ? 0.0 : -1.0;
          v.invalid("sigma_per_dim <= 0");
        }
      }
      break;
    }
    case Kind::Eva: {
      constexpr Index windows[] = {1, 2, 2, 3, 4, 4, 5, 8, 16, 40, 0};
      constexpr Index exts[] = {0, 0, 1, 2, 3, 4, 8, -1};
      constexpr Index lens[] = {1, 2, 2, 3, 4, 8};
      constexpr double mus[] = {-1, -1, -1, 0, 0.5, 1, 2, kNaN};
      EvaOptions& o = s.eva;
      o.window = r.choose(windows);
      o.ext = r.choose(exts);
      switch (r.pick(12)) {
        case 10:
          o.num_chunks = r.choose(lens);
          o.chunk_size = r.choose(lens);
          break;
        case 11:
          break;
        default:
          if (r.flag())
            o.num_chunks = r.choose(lens);
          else
            o.chunk_size = r.choose(lens);
      }
      o.semantics = r.flag() ? EvaSemantics::Disjoint : EvaSemantics::Reference;
      o.mu_scale = r.choose(mus);
      if (!decoding && r.one_in(4)) {
        constexpr Index sides[] = {1, 2, 2, 3, 4, 4, 6, 8};
        o.grid_height = r.choose(sides);
        o.grid_width = r.one_in(3) ? o.grid_height : r.choose(sides);
      }
      note("Eva(W=", o.window, " e=", o.ext, " C=", o.num_chunks, " L=", o.chunk_size,
           " disjoint=", o.semantics == EvaSemantics::Disjoint, " mu=", o.mu_scale,
           " grid=", o.grid_height, "x", o.grid_width, ")");
      Validity& v = s.ctor;
      if (o.window < 1) v.invalid("window");
      if (o.ext < 0) v.invalid("ext");
      if ((o.num_chunks > 0) == (o.chunk_size > 0)) v.invalid("chunks");
      if (!std::isfinite(o.mu_scale)) v.invalid("mu_scale");
      if (o.grid_height > 0 && o.window >= 1 &&
          (o.grid_height % o.window != 0 || o.grid_width % o.window != 0))
        v.invalid("grid % window");
      break;
    }
  }
  return s;
}

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

double resolved_scale(double scale, Index d) {
  return scale != 0 ? scale : 1.0 / std::sqrt(double(d));
}

/// A scale that is finite as a double but overflows T (1e300 with float) must be rejected.
template <class T>
bool scale_overflows(double scale) {
  return std::isfinite(scale) && !std::isfinite(static_cast<double>(static_cast<T>(scale)));
}

/// Per-call scale: default, ordinary, negative, tiny, huge, non-finite.
double decode_scale(Reader& r) {
  constexpr double scales[] = {0,   0,   0,    0,     1,      0.5,    0.125, -1,   -0.25, 1e-3,
                               1e3, 1e6, 1e30, 1e300, 1e-300, 5e-324, kNaN,  kInf, -kInf};
  return r.pick(3) != 0 ? 0.0 : r.choose(scales);
}

// ------------------------------------------------------------------------------------------------
// References of the random-feature methods for one call.

/// FAVOR++'s per-call A* and the rescaling psi (docs/spec/favor.md §4-§5) from q, k (valid keys
/// only), for the logit scale s.
/// psi_range: the library keeps s psi^2 and s / psi^2 within T's normal range (FavorOptions::
/// rescale); [psi2_lo, psi2_hi] bounds psi^2 accordingly (empty: psi = 1).
void favor_fit(const MatD& q, const MatD& k, const KeyMask& pad, double s, bool rescale,
               bool auto_a, double t_lo, double t_hi, VecD& psi, double& a) {
  const Index d = q.cols();
  VecD sx2 = VecD::Zero(d), sy2 = VecD::Zero(d), mx = VecD::Zero(d), my = VecD::Zero(d);
  Index valid = 0;
  for (Index i = 0; i < q.rows(); ++i)
    sx2 += q.row(i).transpose().cwiseAbs2(), mx += q.row(i).transpose();
  for (Index j = 0; j < k.rows(); ++j) {
    if (padded_at(pad, j)) continue;
    sy2 += k.row(j).transpose().cwiseAbs2();
    my += k.row(j).transpose();
    ++valid;
  }
  psi = VecD::Ones(d);
  const double psi2_lo = std::max(s / t_hi, t_lo / s), psi2_hi = std::min(t_hi / s, s / t_lo);
  if (rescale && psi2_lo <= psi2_hi)
    for (Index l = 0; l < d; ++l)
      if (sx2[l] > 0 && sy2[l] > 0 && std::isfinite(sy2[l] / sx2[l]))
        psi[l] = std::sqrt(std::clamp(std::sqrt(sy2[l] / sx2[l]), psi2_lo, psi2_hi));
  if (auto_a) {
    const double nq = double(std::max<Index>(q.rows(), 1)), nk = double(std::max<Index>(valid, 1));
    // x' = sqrt(s) psi o q, y' = sqrt(s) k / psi.
    const double ex2 = s * (sx2.array() * psi.array().square()).sum() / nq;
    const double ey2 = s * (sy2.array() / psi.array().square()).sum() / nk;
    const double cross =
        s * ((mx.array() * psi.array() / nq) * (my.array() / psi.array() / nk)).sum();
    const double rho = (ex2 + ey2 + 2 * cross) / double(d);
    a = (1 - 2 * rho - std::sqrt((2 * rho + 1) * (2 * rho + 1) + 8 * rho)) / 16;
  }
}

std::vector<char> key_use(const KeyMask& pad, Index nk) {
  std::vector<char> use(std::size_t(nk), 1);
  for (Index j = 0; j < nk; ++j) use[std::size_t(j)] = !padded_at(pad, j);
  return use;
}

template <class T>
Expect favor_expect(const Favor<T>& f, const MatD& q, const MatD& k, const MatD& v,
                    const AttentionOptions& opt, bool causal) {
  const double eps = eps_of<T>(), tiny = tiny_of<T>();
  const FavorOptions& o = f.options();
  const MatD w = f.projection().template cast<double>();
  const Index d = q.cols();
  const double s = resolved_scale(opt.scale, d), c = std::sqrt(s);
  if (o.kernel == FavorKernel::Relu) {
    const Features fq = relu_features(q, w, c, o.relu_eps, false, eps, tiny);
    const Features fk = relu_features(k, w, c, o.relu_eps, false, eps, tiny);
    return linear_expect(fq, fk, v, opt.key_padding, causal, nullptr, 0.0, true, eps, tiny);
  }
  VecD psi = VecD::Ones(d);
  double a = std::isnan(optimal_a_or_nan(o)) ? 0.0 : optimal_a_or_nan(o);
  const bool auto_a = o.kernel == FavorKernel::Optimal && std::isnan(optimal_a_or_nan(o));
  if (o.rescale || auto_a)
    favor_fit(q, k, opt.key_padding, s, o.rescale, auto_a, 1e4 * tiny,
              static_cast<double>(std::numeric_limits<T>::max()) / 4, psi, a);
  MatD lq, dq, lk, dk;
  favor_exponents(q, w, VecD(c * psi), o.kernel, a, eps, lq, dq);
  favor_exponents(k, w, VecD(c * psi.cwiseInverse()), o.kernel, a, eps, lk, dk);
  const std::vector<char> use = key_use(opt.key_padding, k.rows());
  const Features fq = shifted_exp(lq, dq, nullptr, eps, tiny);
  const Features fk = shifted_exp(lk, dk, &use, eps, tiny);
  return linear_expect(fq, fk, v, opt.key_padding, causal, nullptr, 0.0, true, eps, tiny);
}

template <class T>
Expect rfa_expect(const Rfa<T>& f, const MatD& q, const MatD& k, const MatD& v, const KeyMask& pad,
                  bool causal, const std::vector<double>* log_gates) {
  const double eps = eps_of<T>(), tiny = tiny_of<T>();
  const MatD w = f.projection().template cast<double>();
  const bool arccos = f.options().kernel == RfaKernel::Arccos;
  const Features fq =
      arccos ? relu_features(q, w, 1.0, 0.0, true, eps, tiny) : trig_features_ref(q, w, eps, tiny);
  const Features fk =
      arccos ? relu_features(k, w, 1.0, 0.0, true, eps, tiny) : trig_features_ref(k, w, eps, tiny);
  const double den_eps = f.options().den_eps * double(w.rows());
  return linear_expect(fq, fk, v, pad, causal, log_gates, den_eps, arccos, eps, tiny);
}

/// Bound on the relative weight error of a float-vs-double comparison of the same method.
double instance_gamma(const MatD& q, const MatD& k, double s, double extra, double eps) {
  const double qa = q.size() ? q.cwiseAbs().maxCoeff() : 0.0;
  const double ka = k.size() ? k.cwiseAbs().maxCoeff() : 0.0;
  const double d = double(q.cols());
  return eps * (d + 16) * (std::abs(s) * d * (qa * ka + ka * ka + qa * qa) + extra) +
         eps * double(q.rows() + k.rows() + 16);
}

/// The EvaCall of forward() (1-D) for n tokens.
EvaCall eva_call(const EvaOptions& o, Index n, const AttentionOptions& opt, Index d) {
  EvaCall c;
  c.window = o.window;
  c.ext = o.ext;
  const Index n_p = (n + o.window - 1) / o.window * o.window;
  c.chunk = o.chunk_size > 0 ? o.chunk_size : n_p / o.num_chunks;
  c.causal = opt.causal;
  c.disjoint = o.semantics == EvaSemantics::Disjoint;
  c.scale = resolved_scale(opt.scale, d);
  c.mu_scale = o.mu_scale < 0 ? (opt.causal ? 1.0 : 0.5) : o.mu_scale;
  c.padding = opt.key_padding;
  return c;
}

// ------------------------------------------------------------------------------------------------
// Scenario 1: one forward call.

/// q [Nq, D] etc. as views: either the matrices themselves or blocks of bigger ones (outer
/// strides), so that strided inputs are exercised too.
template <class T>
struct Strided {
  RowMatrix<T> storage;
  Index r0 = 0, c0 = 0, rows = 0, cols = 0;
  Strided(const RowMatrix<T>& m, bool strided, Rng& rng)
      : r0(strided ? 1 : 0), c0(strided ? 2 : 0), rows(m.rows()), cols(m.cols()) {
    storage = RowMatrix<T>(rows + (strided ? 2 : 0), cols + (strided ? 3 : 0));
    for (Index i = 0; i < storage.rows(); ++i)
      for (Index j = 0; j < storage.cols(); ++j) storage(i, j) = static_cast<T>(rng.normal());
    storage.block(r0, c0, rows, cols) = m;
  }
  auto view() { return storage.block(r0, c0, rows, cols); }
  auto view() const { return storage.block(r0, c0, rows, cols); }
};

/// Eva is self-attention: Nk = Nq, and in 2-D mode both are the grid's token count.
void fit_eva_sizes(const Spec& spec, Index& nq, Index& nk) {
  if (spec.kind != Kind::Eva) return;
  nk = nq;
  if (spec.eva.grid_height > 0) nq = nk = spec.eva.grid_height * spec.eva.grid_width;
}

template <class T>
void forward_case(Reader& r) {
  const Kind kind = decode_kind(r);
  Index nq = r.choose(kSizes), nk = r.choose(kSizes), d = r.choose(kDims),
        dv = r.choose(kValueDims);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  Spec spec = decode_spec(r, rng, kind, d, false);
  fit_eva_sizes(spec, nq, nk);
  AttentionOptions opt;
  opt.scale = decode_scale(r);
  opt.causal = r.flag();
  const DataSpec ds = decode_data<T>(r);

  // Invalid-argument injections (one at a time).
  Validity call;
  const unsigned inject = r.pick(20);
  Index q_cols = d, k_cols = d, v_rows = nk, out_rows = nq, out_cols = dv, q_rows = nq;
  bool alias = false;
  switch (inject) {
    case 0:
      out_rows = nq + 1;
      call.invalid("out rows");
      break;
    case 1:
      k_cols = d + 1;
      call.invalid("k cols");
      break;
    case 2:
      v_rows = nk + 1;
      call.invalid("v rows");
      break;
    case 3:
      q_cols = k_cols = 0;
      call.invalid("D = 0");
      break;
    case 4:
      if (nq >= 1 && d >= 1) {
        alias = true;
        out_cols = dv = d;
        call.invalid("out aliases q");
      }
      break;
    case 5:
      out_cols = dv + 1;
      call.invalid("out cols");
      break;
    case 6:
      if (kind == Kind::Eva) {
        q_rows = nq + 1;
        out_rows = q_rows;
        call.invalid("Nq != Nk for Eva");
      }
      break;
    default:
      break;
  }
  if (!is_exact(kind) && spec.head_dim != q_cols && !call.must_throw) call.invalid("D != head_dim");
  note("forward(Nq=", q_rows, " Nk=", nk, " D=", q_cols, " Dv=", out_cols, " scale=", opt.scale,
       " causal=", opt.causal, " inject=", inject, ")");

  RowMatrix<T> q = make_rows<T>(rng, q_rows, q_cols, ds.sq, ds.pq);
  RowMatrix<T> k = make_rows<T>(rng, nk, k_cols, ds.sk, ds.pk);
  RowMatrix<T> v = make_rows<T>(rng, v_rows, dv, ds.sv, ds.pv);
  opt.key_padding = make_padding(r, rng, nk);
  if (inject == 7) {
    opt.key_padding = KeyMask::Constant(nk + 1, false);
    call.invalid("key_padding length");
  }
  const bool poison = r.one_in(4) && inject != 7;
  if (poison && opt.key_padding.size() == nk && v_rows == nk) {
    note("poisoned-padding");
    poison_padded(k, v, opt.key_padding, !is_exact(kind));
  }
  if (!std::isfinite(opt.scale)) call.invalid("scale not finite");
  if (scale_overflows<T>(opt.scale)) call.invalid("scale beyond T's range");
  // ALiBi: Exact only; a non-zero slope is rejected by the random-feature methods and Eva.
  if (r.one_in(4)) {
    constexpr double slopes[] = {0.25, 1, 8, 1e3, -1, kNaN, kInf};
    opt.alibi_slope = r.choose(slopes);
    note("alibi=", opt.alibi_slope);
    if (!(std::isfinite(opt.alibi_slope) && opt.alibi_slope >= 0)) call.invalid("alibi");
    if (!is_exact(kind) && opt.alibi_slope != 0) call.invalid("alibi for a non-exact method");
  }
  // Exact's bias and lse.
  const unsigned bias_mode = is_exact(kind) ? r.pick(6) : 0;
  const bool want_lse = is_exact(kind) && r.flag();
  RowMatrix<T> bias;
  if (bias_mode >= 3) {
    const Index rows = bias_mode == 3 ? nq : bias_mode == 4 ? 1 : nq + 2;
    constexpr double bscales[] = {1, 10, 1e4};
    const double bs = r.choose(bscales);
    bias = RowMatrix<T>(rows, nk);
    for (Index i = 0; i < rows; ++i)
      for (Index j = 0; j < nk; ++j)
        bias(i, j) = rng.index(5) == 0 ? -std::numeric_limits<T>::infinity()
                                       : static_cast<T>(bs * rng.normal());
    if (bias_mode == 5 && bias.size() != 0) call.invalid("bias shape");
    note("bias(rows=", rows, " scale=", bs, ")");
  }
  Vector<T> lse;
  if (want_lse) {
    lse =
        Vector<T>::Constant(r.one_in(8) ? q_rows + 1 : q_rows, std::numeric_limits<T>::quiet_NaN());
    if (lse.size() != q_rows) call.invalid("lse size");
  }
  // Rfa gating.
  const unsigned gate_mode = kind == Kind::Rfa ? r.pick(6) : 0;  // 4: gates, 5: log gates
  std::vector<double> log_gates;
  Vector<T> gates;
  if (gate_mode >= 4) {
    constexpr double gvals[] = {1, 0.999, 0.9, 0.5, 0.1, 1e-3, 1e-30, 0, 1.5, kNaN};
    constexpr double lvals[] = {0, -1e-7, -0.01, -0.7, -3, -50, -1e3, 0.5, kNaN, -kInf};
    const Index len = r.one_in(16) ? nk + 1 : nk;
    if (len != nk) call.invalid("gates size");
    gates = Vector<T>(len);
    log_gates.resize(std::size_t(len));
    const unsigned spread = r.pick(4);
    for (Index j = 0; j < len; ++j) {
      const unsigned idx = spread == 0 ? 0 : unsigned(rng.index(spread == 3 ? 10 : 7));
      if (gate_mode == 4) {
        gates[j] = static_cast<T>(gvals[idx]);
        if (!(gates[j] > 0 && gates[j] <= 1)) call.invalid("gate");
        log_gates[std::size_t(j)] = std::log(double(gates[j]));
      } else {
        gates[j] = static_cast<T>(lvals[idx]);
        if (!(std::isfinite(double(gates[j])) && gates[j] <= 0)) call.invalid("log gate");
        log_gates[std::size_t(j)] = double(gates[j]);
      }
    }
    note(gate_mode == 4 ? "gates" : "log_gates", "(spread=", spread, ")");
  }
  const bool strided = r.one_in(4);

  with_method<T>(spec, [&](const auto& method) {
    using M = std::decay_t<decltype(method)>;
    Validity v_call = call;
    if constexpr (std::is_same_v<M, Favor<T>>) {
      const FavorOptions& o = method.options();
      const bool data_dependent =
          o.rescale || (o.kernel == FavorKernel::Optimal && std::isnan(optimal_a_or_nan(o)));
      if (o.compat != FavorCompat::None && opt.scale != 0) v_call.invalid("compat scale");
      if (o.compat == FavorCompat::None && opt.causal && data_dependent)
        v_call.invalid("causal with data-dependent features");
      if (o.compat == FavorCompat::None && opt.scale < 0) v_call.invalid("negative scale");
      // Extreme scales or data: A* or the folded input scale may leave T's range (allowed to
      // reject or not).
      if (std::abs(opt.scale) > 1e6 || ds.sq > 30 || ds.sk > 30) v_call.unknown = true;
    }
    if constexpr (std::is_same_v<M, Eva<T>>) v_call.unknown = true;  // geometry domain

    Strided<T> qs(q, strided, rng), ks(k, strided, rng), vs(v, strided, rng);
    RowMatrix<T> out_store = RowMatrix<T>::Constant(alias ? 0 : out_rows + (strided ? 1 : 0),
                                                    alias ? 0 : out_cols + (strided ? 2 : 0),
                                                    std::numeric_limits<T>::quiet_NaN());
    RowMatrix<T> out;
    Result res;
    if (alias) {
      res = attempt("forward (aliased out)", [&] {
        MatRef<T> o(qs.storage.block(qs.r0, qs.c0, qs.rows, qs.cols));
        method.forward(qs.view(), ks.view(), vs.view(), o, opt);
      });
      judge("forward (aliased out)", res, v_call);
      return;
    }
    auto out_view = out_store.block(strided ? 1 : 0, 0, out_rows, out_cols);
    if constexpr (std::is_same_v<M, Exact<T>>) {
      res = attempt("Exact::forward", [&] {
        if (want_lse)
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt, bias, lse);
        else if (bias_mode >= 3)
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt, bias);
        else
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt);
      });
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      res = attempt("Rfa::forward", [&] {
        if (gate_mode == 4)
          method.forward_gated(qs.view(), ks.view(), vs.view(), gates, out_view, opt);
        else if (gate_mode == 5)
          method.forward_gated_log(qs.view(), ks.view(), vs.view(), gates, out_view, opt);
        else
          method.forward(qs.view(), ks.view(), vs.view(), out_view, opt);
      });
    } else {
      res = attempt("forward",
                    [&] { method.forward(qs.view(), ks.view(), vs.view(), out_view, opt); });
    }
    judge("forward", res, v_call);
    if (res != Result::Ok) return;
    out = out_view;

    // kd_raw/vd_raw may hold garbage at padded keys (the library must ignore it); the references
    // and the tolerance estimates use cleaned copies.
    const MatD qd = q.template cast<double>(), kd_raw = k.template cast<double>();
    const MatD vd_raw = v.template cast<double>();
    MatD kd = kd_raw, vd = vd_raw;
    for (Index j = 0; j < opt.key_padding.size(); ++j)
      if (opt.key_padding[j]) kd.row(j).setZero(), vd.row(j).setZero();
    const double eps = eps_of<T>(), tiny = tiny_of<T>();

    if constexpr (std::is_same_v<M, Exact<T>>) {
      ExactCall c;
      c.scale = resolved_scale(opt.scale, d);
      c.causal = opt.causal;
      c.padding = opt.key_padding;
      c.alibi = opt.alibi_slope;
      MatD bd = bias.template cast<double>();
      if (bias_mode >= 3) c.bias = &bd;
      VecD lse_ref, lse_tol;
      const Expect x = exact_expect<T>(qd, kd, vd, c, want_lse ? &lse_ref : nullptr, &lse_tol);
      compare("Exact::forward", out, x);
      if (want_lse)
        for (Index i = 0; i < nq; ++i) {
          const double got = double(lse[i]);
          if (lse_ref[i] == -kInf) {
            FUZZ_REQUIRE(got == -kInf, "Exact lse of an empty row " << i << " is " << got);
          } else if (x.check[std::size_t(i)]) {
            FUZZ_REQUIRE(std::isfinite(got) && std::abs(got - lse_ref[i]) <= lse_tol[i],
                         "Exact lse row " << i << ": " << got << " vs " << lse_ref[i]);
          }
        }
      // Blocked vs the Reference kernel.
      ExactOptions other = method.options();
      other.kernel =
          other.kernel == ExactKernel::Blocked ? ExactKernel::Reference : ExactKernel::Blocked;
      const Exact<T> twin(other);
      RowMatrix<T> out2 = RowMatrix<T>::Constant(nq, dv, std::numeric_limits<T>::quiet_NaN());
      const Result r2 = attempt("Exact::forward (other kernel)", [&] {
        if (bias_mode >= 3)
          twin.forward(q, k, v, out2, opt, bias);
        else
          twin.forward(q, k, v, out2, opt);
      });
      FUZZ_REQUIRE(r2 == Result::Ok,
                   "the other Exact kernel rejected what this one accepted: " << g_last_rejection);
      compare("Exact::forward (other kernel)", out2, x);
      compare_pair("Exact blocked vs reference kernel", out, out2, x);
    } else if constexpr (std::is_same_v<M, Favor<T>>) {
      const FavorOptions& o = method.options();
      if (o.compat == FavorCompat::None) {
        compare("Favor::forward", out, favor_expect<T>(method, qd, kd, vd, opt, opt.causal));
      } else {
        // Sub-convexity: non-negative weights that sum to at most 1.
        Expect x(nq, dv, true);
        for (Index i = 0; i < nq; ++i) {
          x.check[std::size_t(i)] = 0;
          const Index last = opt.causal ? std::min(i + nk - nq, nk - 1) : nk - 1;
          double vmax = 0;
          for (Index dd = 0; dd < dv; ++dd) {
            double lo = 0, hi = 0;
            for (Index j = 0; j <= last; ++j)
              if (!padded_at(opt.key_padding, j))
                lo = std::min(lo, vd(j, dd)), hi = std::max(hi, vd(j, dd)),
                vmax = std::max(vmax, std::abs(vd(j, dd)));
            x.lo(i, dd) = lo - 64 * eps * (vmax + 1) * double(nk + 8);
            x.hi(i, dd) = hi + 64 * eps * (vmax + 1) * double(nk + 8);
          }
        }
        compare("Favor::forward (compat bounds)", out, x);
        if constexpr (std::is_same_v<T, float>) {
          Spec sd = spec;
          with_method<double>(sd, [&](const auto& md) {
            if constexpr (std::is_same_v<std::decay_t<decltype(md)>, Favor<double>>) {
              MatD ref(nq, dv);
              const Result rd = attempt("Favor<double>::forward",
                                        [&] { md.forward(qd, kd_raw, vd_raw, ref, opt); });
              FUZZ_REQUIRE(rd == Result::Ok, "Favor<double> rejected what Favor<float> accepted");
              const double s = resolved_scale(opt.scale, d);
              const double wa = md.projection().cwiseAbs().maxCoeff();
              const double gamma = instance_gamma(qd * wa, kd * wa, std::sqrt(s), 0, eps) * 4;
              const double vmax = vd.size() ? vd.cwiseAbs().maxCoeff() : 0.0;
              compare("Favor<float> compat vs Favor<double>", out,
                      from_double_instance(ref, gamma, vmax, tiny, nk));
            }
          });
        }
      }
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      const bool gated = gate_mode >= 4;
      compare("Rfa::forward", out,
              rfa_expect<T>(method, qd, kd, vd, opt.key_padding, opt.causal || gated,
                            gated ? &log_gates : nullptr));
    } else if constexpr (std::is_same_v<M, Eva<T>>) {
      const EvaOptions& o = method.options();
      const bool single =
          o.semantics == EvaSemantics::Disjoint &&
          (o.grid_height > 0 ? (o.window == o.grid_height && o.window == o.grid_width)
                             : o.window >= nq);
      if (single) {
        ExactCall c;
        c.scale = resolved_scale(opt.scale, d);
        c.causal = opt.causal;
        c.padding = opt.key_padding;
        compare("Eva Disjoint (one window) vs exact", out, exact_expect<T>(qd, kd, vd, c));
      }
      if (o.grid_height == 0) {
        compare("Eva::forward", out, eva_expect<T>(qd, kd, vd, eva_call(o, nq, opt, d)));
      } else if (!single) {
        Expect x(nq, dv, true);
        double lo = 0, hi = 0;
        for (Index j = 0; j < nk; ++j)
          if (!padded_at(opt.key_padding, j) && dv > 0)
            lo = std::min(lo, vd.row(j).minCoeff()), hi = std::max(hi, vd.row(j).maxCoeff());
        const double vmax = std::max(-lo, hi);
        const double slack = 64 * eps * (vmax + 1) * double(nk + 8) + double(nk + 8) * tiny;
        x.lo.setConstant(lo - slack);
        x.hi.setConstant(hi + slack);
        for (auto& c : x.check) c = 0;
        if constexpr (std::is_same_v<T, float>) {
          const Eva<double> twin(o.grid_height > 0 ? d : d, o);
          MatD ref(nq, dv);
          const Result rd =
              attempt("Eva<double>::forward", [&] { twin.forward(qd, kd_raw, vd_raw, ref, opt); });
          FUZZ_REQUIRE(rd == Result::Ok,
                       "Eva<double> rejected what Eva<float> accepted: " << g_last_rejection);
          const Index side = o.chunk_size > 0 ? o.chunk_size : 8;
          const double gamma =
              instance_gamma(qd, kd, resolved_scale(opt.scale, d), double(side * side), eps) * 4;
          Expect y = from_double_instance(ref, gamma, vmax, tiny, nk);
          y.lo = x.lo;
          y.hi = x.hi;
          compare("Eva<float> 2-D vs Eva<double>", out, y);
        } else {
          compare("Eva 2-D bounds", out, x);
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------
// Scenario 2: decoding step sequences against the causal reference of the whole sequence.

template <class T>
void step_case(Reader& r) {
  const Kind kind = decode_kind(r);
  const Index n = r.choose(kSizes) + 1, d = r.choose(kDims), dv = r.choose(kValueDims);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  const Spec spec = decode_spec(r, rng, kind, d, true);
  AttentionOptions opt;
  opt.scale = decode_scale(r);
  const DataSpec ds = decode_data<T>(r);
  const bool pad_some = r.flag();
  const bool gated = kind == Kind::Rfa && r.flag();
  const unsigned bad_step = r.pick(12);  // 0: a rejected step mid-sequence; 1: bad first q_t
  note("step(n=", n, " D=", d, " Dv=", dv, " scale=", opt.scale, " gated=", gated,
       " bad_step=", bad_step, ")");
  if (is_exact(kind) && r.one_in(4)) {
    constexpr double slopes[] = {0.25, 1, 8, -1};
    opt.alibi_slope = r.choose(slopes);
    note("alibi=", opt.alibi_slope);
  }
  const unsigned eva_len = r.pick(3);  // seq_len: 0 (unbounded), n, n + 3
  const unsigned capacity = r.pick(3);

  with_method<T>(spec, [&](const auto& method) {
    using M = std::decay_t<decltype(method)>;
    using State = typename M::State;
    Validity mk;
    if (!std::isfinite(opt.scale)) mk.invalid("scale");
    if (scale_overflows<T>(opt.scale)) mk.invalid("scale beyond T's range");
    std::optional<State> state;
    Result res;
    if constexpr (std::is_same_v<M, Exact<T>>) {
      if (!(opt.alibi_slope >= 0)) mk.invalid("alibi");
      res = attempt("Exact::make_state", [&] {
        state.emplace(method.make_state(dv, opt, capacity == 0 ? 0 : capacity == 1 ? 1 : n));
      });
    } else if constexpr (std::is_same_v<M, Favor<T>>) {
      const FavorOptions& o = method.options();
      if (o.compat != FavorCompat::None) mk.invalid("compat decoding");
      if (o.rescale || (o.kernel == FavorKernel::Optimal && std::isnan(optimal_a_or_nan(o))))
        mk.invalid("data-dependent decoding");
      if (opt.scale < 0) mk.invalid("negative scale");
      if (std::abs(opt.scale) > 1e6) mk.unknown = true;
      res = attempt("Favor::make_state", [&] { state.emplace(method.make_state(dv, opt)); });
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      mk = Validity{};
      res = attempt("Rfa::make_state", [&] { state.emplace(method.make_state(dv)); });
    } else {
      mk.unknown = true;
      const Index seq_len = eva_len == 0 ? 0 : eva_len == 1 ? n : n + 3;
      if (seq_len == 0 && method.options().num_chunks > 0) mk.invalid("num_chunks unbounded");
      res = attempt("Eva::make_state", [&] {
        if (seq_len > 0)
          state.emplace(method.make_state(dv, opt, EvaSequenceLength{seq_len}));
        else
          state.emplace(method.make_state(dv, opt));
      });
    }
    judge("make_state", res, mk);
    if (res != Result::Ok) return;

    // The sequence (final positions), each position's query and output.
    RowMatrix<T> qa = make_rows<T>(rng, n + 8, d, ds.sq, ds.pq);
    RowMatrix<T> ka = make_rows<T>(rng, n + 8, d, ds.sk, ds.pk);
    RowMatrix<T> va = make_rows<T>(rng, n + 8, dv, ds.sv, ds.pv);
    RowMatrix<T> out = RowMatrix<T>::Constant(n + 8, dv, std::numeric_limits<T>::quiet_NaN());
    KeyMask pad = KeyMask::Constant(n + 8, false);
    std::vector<double> log_gates(std::size_t(n + 8), 0.0);
    Index size = 0, fed = 0;

    auto bad_call = [&](const char* what, auto&& f) {
      Validity must;
      must.invalid(what);
      judge(what, attempt(what, f), must);
    };
    // A rejected first step must leave the state usable. Not probed for Exact: its state takes D
    // from the first call before validating it (reported; ExactBugs.RejectedFirstStepPoisonsState
    // in test_extremes.cpp).
    if (bad_step == 1 && d >= 1 && !std::is_same_v<M, Exact<T>>) {
      // q_t one column wider than k_t (Exact takes D from the first step).
      RowMatrix<T> q_bad = RowMatrix<T>::Zero(1, d + 1), o_bad(1, dv);
      bad_call("step with a wrong-width first query",
               [&] { method.step(*state, q_bad, ka.topRows(1), va.topRows(1), o_bad, false); });
    }
    while (fed < n) {
      Index chunk = 1;
      if constexpr (std::is_same_v<M, Exact<T>>) {
        const unsigned op = r.pick(8);
        if (op == 6 && size > 0) {  // rollback
          const Index keep = rng.index(size + 1);
          state->truncate(keep);
          size = keep;
          const Index rest = qa.rows() - keep;  // new tokens after the rollback
          qa.bottomRows(rest) = make_rows<T>(rng, rest, d, ds.sq, ds.pq);
          ka.bottomRows(rest) = make_rows<T>(rng, rest, d, ds.sk, ds.pk);
          va.bottomRows(rest) = make_rows<T>(rng, rest, dv, ds.sv, ds.pv);
          note("truncate(", keep, ")");
          continue;
        }
        if (op == 7) {
          bad_call("Exact::State::truncate beyond size", [&] { state->truncate(size + 1); });
          bad_call("Exact::State::reserve(-1)", [&] { state->reserve(-1); });
        }
        constexpr Index chunks[] = {1, 1, 1, 1, 2, 3, 4, 1};
        chunk = std::min(chunks[op], n - fed);
      }
      const Index p = size;
      if (p + chunk > qa.rows()) break;
      const bool padded = pad_some && rng.index(3) == 0;
      T gate = T(1);
      if (gated) {
        constexpr double gvals[] = {1, 0.999, 0.9, 0.5, 0.1, 1e-3};
        gate = static_cast<T>(gvals[rng.index(6)]);
      }
      if (bad_step == 0 && fed == n / 2) {
        RowMatrix<T> v_bad = RowMatrix<T>::Zero(chunk, dv + 1), o_bad(chunk, dv);
        bad_call("step with a wrong-width value", [&] {
          method.step(*state, qa.middleRows(p, chunk), ka.middleRows(p, chunk), v_bad, o_bad,
                      false);
        });
        if constexpr (std::is_same_v<M, Rfa<T>>)
          bad_call("Rfa::step with gate 0", [&] {
            RowMatrix<T> o1(1, dv);
            method.step(*state, qa.row(p), ka.row(p), va.row(p), T(0), o1, false);
          });
      }
      auto o = out.middleRows(p, chunk);
      Result sr;
      if constexpr (std::is_same_v<M, Rfa<T>>) {
        sr = attempt("step", [&] {
          if (gated)
            method.step(*state, qa.middleRows(p, 1), ka.middleRows(p, 1), va.middleRows(p, 1), gate,
                        o, padded);
          else
            method.step(*state, qa.middleRows(p, 1), ka.middleRows(p, 1), va.middleRows(p, 1), o,
                        padded);
        });
      } else {
        sr = attempt("step", [&] {
          method.step(*state, qa.middleRows(p, chunk), ka.middleRows(p, chunk),
                      va.middleRows(p, chunk), o, padded);
        });
      }
      Validity sv;
      if constexpr (std::is_same_v<M, Eva<T>>) sv.unknown = true;  // seq_len exhausted
      if (!is_exact(kind) && spec.head_dim != d) sv.invalid("D != head_dim");
      judge("step", sr, sv);
      if (sr != Result::Ok) return;
      pad.segment(p, chunk).setConstant(padded);
      for (Index j = p; j < p + chunk; ++j)
        log_gates[std::size_t(j)] = gated ? std::log(double(gate)) : 0.0;
      size += chunk;
      fed += chunk;
    }
    if (size == 0) return;
    const MatD qd = qa.topRows(size).template cast<double>();
    const MatD kd = ka.topRows(size).template cast<double>();
    const MatD vd = va.topRows(size).template cast<double>();
    const KeyMask padding = pad.head(size);
    const RowMatrix<T> got = out.topRows(size);
    AttentionOptions copt = opt;
    copt.causal = true;
    copt.key_padding = padding;
    if constexpr (std::is_same_v<M, Exact<T>>) {
      ExactCall c;
      c.scale = resolved_scale(opt.scale, d);
      c.causal = true;
      c.padding = padding;
      c.alibi = opt.alibi_slope;
      compare("Exact::step sequence vs causal reference", got, exact_expect<T>(qd, kd, vd, c));
    } else if constexpr (std::is_same_v<M, Favor<T>>) {
      compare("Favor::step sequence vs causal reference", got,
              favor_expect<T>(method, qd, kd, vd, copt, true));
    } else if constexpr (std::is_same_v<M, Rfa<T>>) {
      std::vector<double> lg(log_gates.begin(), log_gates.begin() + size);
      compare("Rfa::step sequence vs causal reference", got,
              rfa_expect<T>(method, qd, kd, vd, padding, true, gated ? &lg : nullptr));
    } else {
      const EvaOptions& o = method.options();
      EvaCall c;
      c.window = o.window;
      c.ext = o.ext;
      c.chunk = state->chunk_length();
      c.causal = true;
      c.disjoint = o.semantics == EvaSemantics::Disjoint;
      c.scale = resolved_scale(opt.scale, d);
      c.mu_scale = o.mu_scale < 0 ? 1.0 : o.mu_scale;
      c.padding = padding;
      Expect x = eva_expect<T>(qd, kd, vd, c);
      for (Index i = 0; i < size; ++i)
        if (padding[i]) x.ignore[std::size_t(i)] = 1;  // a padded token's own output: unspecified
      compare("Eva::step sequence vs causal reference", got, x);
    }
  });
}

// ------------------------------------------------------------------------------------------------
// Scenario 3: multihead() against a per-head loop (bitwise), random layouts, GQA, threads.

/// A 4-D tensor in its own exactly-sized buffer (so ASan sees any access outside the view).
template <class T>
struct Tensor {
  std::vector<T> mem;
  TensorView<T> view;
};

template <class T>
Tensor<T> make_tensor(Rng& rng, Index b, Index n, Index h, Index d, unsigned layout,
                      double stddev) {
  Tensor<T> t;
  Index sb, sn, sh;
  switch (layout) {
    case 1:  // [B, H, N, D]
      sh = n * d, sn = d, sb = h * n * d;
      break;
    case 2:  // padded everywhere
      sh = d + 3, sn = h * (d + 3) + 1, sb = n * (h * (d + 3) + 1) + 5;
      break;
    case 3:  // [N, B, H, D]
      sh = d, sb = h * d, sn = b * h * d;
      break;
    case 4:  // heads and batch reversed (negative strides)
      sh = -d, sn = h * d, sb = -(n * h * d);
      break;
    default:  // [B, N, H, D]
      sh = d, sn = h * d, sb = n * h * d;
  }
  Index lo = 0, hi = 0;
  const Index ext[3] = {b, n, h}, str[3] = {sb, sn, sh};
  for (int i = 0; i < 3; ++i)
    if (ext[i] > 1) (str[i] < 0 ? lo : hi) += str[i] * (ext[i] - 1);
  const Index total = b * n * h * d == 0 ? 0 : hi - lo + d;
  // Empty views get a valid (never dereferenced) pointer rather than the nullptr check_view
  // allows: TensorView::head() does pointer arithmetic on it, which is UB on nullptr (reported;
  // reproduced by TensorViewBugs.HeadOfAnEmptyViewWithNullData in test_extremes.cpp).
  t.mem.resize(std::size_t(std::max<Index>(total, 1)));
  for (auto& x : t.mem) x = static_cast<T>(stddev * rng.normal());
  t.view = TensorView<T>{t.mem.data() - lo, b, n, h, d, sb, sn, sh, 1};
  return t;
}

void two_threads(Index count, const std::function<void(Index)>& task) {
  std::atomic<Index> next{0};
  std::exception_ptr error;
  std::mutex mu;
  auto worker = [&] {
    for (Index i; (i = next++) < count;) {
      try {
        task(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::thread helper(worker);
  worker();
  helper.join();
  if (error) std::rethrow_exception(error);
}

template <class A, class B>
bool bitwise_equal(const A& a, const B& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Index i = 0; i < a.rows(); ++i)
    for (Index j = 0; j < a.cols(); ++j) {
      const auto x = a(i, j), y = b(i, j);
      if (std::memcmp(&x, &y, sizeof(x)) != 0) return false;
    }
  return true;
}

template <class T>
void multihead_case(Reader& r) {
  const Kind kind = decode_kind(r);
  constexpr Index batches[] = {1, 1, 2, 3, 0};
  const Index b = r.choose(batches), hkv = 1 + r.pick(3), group = 1 + r.pick(3);
  Index hq = hkv * group;
  Index nq = r.choose(kSmallSizes) + r.pick(6), nk = r.choose(kSmallSizes) + r.pick(6);
  const Index d = r.choose(kDims), dv = r.choose(kValueDims);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  Spec spec = decode_spec(r, rng, kind, d, false);
  fit_eva_sizes(spec, nq, nk);
  MultiheadOptions opt;
  opt.scale = decode_scale(r);
  opt.causal = r.flag();
  const DataSpec ds = decode_data<T>(r);
  Validity views;  // rules of multihead() itself
  if (r.one_in(16)) {
    hq += 1;
    if (hq % hkv != 0) views.invalid("Hq % Hkv");
  }
  unsigned lq = r.pick(5), lk = r.pick(5), lv = r.pick(5), lo = r.pick(5);
  const bool fused = r.one_in(6) && nq == nk && hq == hkv && d == dv;
  if (r.flag()) {
    opt.key_lengths.resize(std::size_t(r.one_in(16) ? b + 1 : b));
    for (auto& len : opt.key_lengths) len = rng.index(nk + 1);
    if (Index(opt.key_lengths.size()) != b) views.invalid("key_lengths size");
    if (r.one_in(16) && !opt.key_lengths.empty()) {
      opt.key_lengths[0] = nk + 1;
      views.invalid("key_lengths entry");
    }
  }
  opt.key_padding = make_padding(r, rng, nk);
  if (is_exact(kind) && r.one_in(3)) opt.alibi_slopes = alibi_slopes(std::max<Index>(hq, 1));
  if (hq == 0) opt.alibi_slopes.clear();
  if (!opt.alibi_slopes.empty() && Index(opt.alibi_slopes.size()) != hq)
    views.invalid("alibi_slopes size");
  constexpr int threads[] = {1, 1, 2, 0};
  opt.threads = r.choose(threads);
  const bool hook = r.flag();
  if (hook) opt.parallel_for = two_threads;
#if !FASTATTN_HAS_OPENMP
  if (opt.threads > 1 && !hook) views.invalid("threads without OpenMP or hook");
#endif
  const bool alias_out = r.one_in(20) && lq == lo && nq >= 1 && dv == d && b * hq * d > 0;
  if (alias_out) views.invalid("out aliases q");
  note("multihead(B=", b, " Hq=", hq, " Hkv=", hkv, " Nq=", nq, " Nk=", nk, " D=", d, " Dv=", dv,
       " layouts=", lq, lk, lv, lo, " fused=", fused, " threads=", opt.threads, " hook=", hook,
       " lengths=", opt.key_lengths.size(), " alibi_heads=", opt.alibi_slopes.size(),
       " scale=", opt.scale, " causal=", opt.causal, ")");

  Tensor<T> qt, kt, vt, ot;
  if (fused) {  // q, k, v interleaved in one [B, N, 3, H, D] buffer (a fused QKV projection)
    const Index row = 3 * hq * d;
    qt.mem.resize(std::size_t(std::max<Index>(b * nq * row, 3 * hq * d + 1)));
    for (auto& x : qt.mem) x = static_cast<T>(ds.sq * rng.normal());
    T* base = qt.mem.data();
    qt.view = TensorView<T>{base, b, nq, hq, d, nq * row, row, d, 1};
    kt.view = TensorView<T>{base + hq * d, b, nk, hkv, d, nq * row, row, d, 1};
    vt.view = TensorView<T>{base + 2 * hq * d, b, nk, hkv, dv, nq * row, row, d, 1};
  } else {
    qt = make_tensor<T>(rng, b, nq, hq, d, lq, ds.sq);
    kt = make_tensor<T>(rng, b, nk, hkv, d, lk, ds.sk);
    vt = make_tensor<T>(rng, b, nk, hkv, dv, lv, ds.sv);
  }
  ot = make_tensor<T>(rng, b, nq, hq, dv, lo, 0.0);
  // Empty views have degenerate strides (a zero extent makes e.g. bnhd's batch stride 0), which
  // multihead() rejects (reported; MultiheadBugs.EmptyOutputIsRejected in test_extremes.cpp).
  for (const auto* t : {&qt.view, &kt.view, &vt.view, &ot.view})
    if (t->batch * t->seq * t->heads * t->dim == 0) views.unknown = true;
  for (auto& x : ot.mem) x = std::numeric_limits<T>::quiet_NaN();
  TensorView<T> out_view = ot.view;
  if (alias_out) out_view.data = qt.view.data;  // same layout and size as q

  with_method<T>(spec, [&](const auto& method) {
    const TensorView<const T> q = qt.view, k = kt.view, v = vt.view;
    const Result res = attempt("multihead", [&] { multihead(method, q, k, v, out_view, opt); });
    if (alias_out) {
      judge("multihead (aliased out)", res, views);
      return;
    }
    if (views.must_throw) {
      judge("multihead", res, views);
      return;
    }
    // The per-head loop on the same head views.
    const Index grp = hkv > 0 ? hq / hkv : 1;
    bool loop_ok = true;
    std::string loop_rejection;
    std::vector<RowMatrix<T>> expected;
    for (Index bb = 0; bb < b; ++bb)
      for (Index h = 0; h < hq; ++h) {
        AttentionOptions o = static_cast<const AttentionOptions&>(opt);
        if (!opt.key_lengths.empty()) {
          if (o.key_padding.size() == 0) o.key_padding = KeyMask::Constant(nk, false);
          o.key_padding.tail(nk - opt.key_lengths[std::size_t(bb)]).setConstant(true);
        }
        if (!opt.alibi_slopes.empty()) o.alibi_slope = opt.alibi_slopes[std::size_t(h)];
        RowMatrix<T> e = RowMatrix<T>::Constant(nq, dv, std::numeric_limits<T>::quiet_NaN());
        const Result hr = attempt("forward (per-head loop)", [&] {
          method.forward(q.head(bb, h), k.head(bb, h / grp), v.head(bb, h / grp), e, o);
        });
        if (hr != Result::Ok) {
          loop_ok = false;
          loop_rejection = g_last_rejection;
        }
        expected.push_back(std::move(e));
      }
    if (res == Result::Ok) {
      FUZZ_REQUIRE(loop_ok, "multihead accepted a call that forward() rejects on some head: "
                                << loop_rejection);
      for (Index bb = 0; bb < b; ++bb)
        for (Index h = 0; h < hq; ++h) {
          const RowMatrix<T> got = out_view.head(bb, h);
          FUZZ_REQUIRE(got.allFinite(),
                       "multihead wrote non-finite output to head (" << bb << ", " << h << ")");
          FUZZ_REQUIRE(bitwise_equal(got, expected[std::size_t(bb * hq + h)]),
                       "multihead head ("
                           << bb << ", " << h << ") differs from forward() on the same views by "
                           << (got - expected[std::size_t(bb * hq + h)]).cwiseAbs().maxCoeff());
        }
    } else {
      FUZZ_REQUIRE(
          !loop_ok || views.unknown,
          "multihead rejected a call that forward() accepts on every head: " << g_last_rejection);
    }
  });
}

// ------------------------------------------------------------------------------------------------
// Scenario 4: BatchedDecoder against one state per (batch, head), bitwise.

template <class T>
void decoder_case(Reader& r) {
  const Kind kind = decode_kind(r);
  const Index b = r.pick(3), hkv = 1 + r.pick(2), group = 1 + r.pick(3), hq = hkv * group;
  const Index d = r.choose(kDims), dv = r.choose(kValueDims), steps = 1 + r.pick(10);
  const std::uint64_t seed = r.u64();
  Rng rng(seed);
  Spec spec = decode_spec(r, rng, kind, d, true);
  const DataSpec ds = decode_data<T>(r);
  MultiheadOptions mopt;
  constexpr int threads[] = {1, 2, 0};
  mopt.threads = r.choose(threads);
  if (r.flag()) mopt.parallel_for = two_threads;
  const bool use_pad = r.flag();
  note("decoder(B=", b, " Hq=", hq, " Hkv=", hkv, " D=", d, " Dv=", dv, " steps=", steps,
       " threads=", mopt.threads, ")");
  with_method<T>(spec, [&](const auto& method) {
    using M = std::decay_t<decltype(method)>;
    std::optional<BatchedDecoder<M, T>> dec;
    const Result res = attempt("BatchedDecoder", [&] { dec.emplace(method, b, hq, hkv, dv); });
    std::vector<typename M::State> states;
    const Result res2 = attempt("make_state", [&] {
      for (Index i = 0; i < b * hq; ++i) states.push_back(method.make_state(dv));
    });
    FUZZ_REQUIRE(
        (res == Result::Ok) == (res2 == Result::Ok || b * hq == 0),
        "BatchedDecoder and make_state disagree on the configuration: " << g_last_rejection);
    if (res != Result::Ok) return;
    for (Index t = 0; t < steps; ++t) {
      Tensor<T> q = make_tensor<T>(rng, b, 1, hq, d, 0, ds.sq);
      Tensor<T> k = make_tensor<T>(rng, b, 1, hkv, d, 0, ds.sk);
      Tensor<T> v = make_tensor<T>(rng, b, 1, hkv, dv, 0, ds.sv);
      Tensor<T> o = make_tensor<T>(rng, b, 1, hq, dv, 0, 0.0);
      std::vector<bool> padded;
      if (use_pad)
        for (Index bb = 0; bb < b; ++bb) padded.push_back(rng.index(3) == 0);
      Validity sv;
#if !FASTATTN_HAS_OPENMP
      if (mopt.threads > 1 && !mopt.parallel_for) sv.invalid("threads without OpenMP or hook");
#endif
      if constexpr (std::is_same_v<M, Eva<T>>) sv.unknown = true;
      if (!is_exact(kind) && spec.head_dim != d && b * hq > 0) sv.invalid("D != head_dim");
      const Result sr = attempt("BatchedDecoder::step",
                                [&] { dec->step(q.view, k.view, v.view, o.view, padded, mopt); });
      judge("BatchedDecoder::step", sr, sv);
      if (sr != Result::Ok) return;
      for (Index bb = 0; bb < b; ++bb)
        for (Index h = 0; h < hq; ++h) {
          RowMatrix<T> e(1, dv);
          const bool pad = use_pad && padded[std::size_t(bb)];
          const Result er = attempt("step (per-state loop)", [&] {
            method.step(states[std::size_t(bb * hq + h)], q.view.head(bb, h),
                        k.view.head(bb, h / group), v.view.head(bb, h / group), e, pad);
          });
          FUZZ_REQUIRE(er == Result::Ok,
                       "step rejected what BatchedDecoder accepted: " << g_last_rejection);
          const RowMatrix<T> got = o.view.head(bb, h);
          FUZZ_REQUIRE(got.allFinite(), "BatchedDecoder produced non-finite output");
          FUZZ_REQUIRE(bitwise_equal(got, e), "BatchedDecoder (" << bb << ", " << h << ") step "
                                                                 << t << " differs from step()");
        }
    }
  });
}

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
}  // namespace fastattn

int fastattn_fuzz_one(const std::uint8_t* data, std::size_t size) {
  // FASTATTN_FUZZ_VERBOSE=1 prints each input's description (to reproduce sanitizer reports,
  // which abort before the harness can describe the input).
  static const bool verbose = std::getenv("FASTATTN_FUZZ_VERBOSE") != nullptr;
  struct Describe {
    ~Describe() {
      if (verbose) std::fprintf(stderr, "[fuzz] done: %s\n", fastattn::g_input.c_str());
    }
  } describe;
  fastattn::g_input.clear();
  fastattn::Reader reader(data, size);
  if (reader.flag()) {
    fastattn::note("T=double");
    fastattn::run<double>(reader);
  } else {
    fastattn::note("T=float");
    fastattn::run<float>(reader);
  }
  return 0;
}
