// Tests of eva.hpp: EVA (docs/spec/eva.md). Reference parity with the official code's outputs, the
// Disjoint semantics against an independent per-query implementation and against exact attention,
// the decoding state against the parallel forward, the training-free quality protocol (§8), and
// every rejection.

// Lets a test forbid Eigen heap allocations at run time (decoding must not allocate).
#define EIGEN_RUNTIME_NO_MALLOC

#include "fastattn/eva.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "eva_cases.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/metrics.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::DataRng;
using test::near;
using test::random_matrix;
using Mat = RowMatrix<double>;

// ---- tolerances ---------------------------------------------------------------------------------
// Against the official outputs (README of eva_cases): independent float64 ports agree to ~2e-15,
// so 1e-12 leaves room for a different summation order; the official code run in float32 differs
// from its own float64 output by up to 1.4e-6, so a float port is held to 5e-6 absolute.
// Against the double reference below, outputs are O(1) convex combinations of O(1) values, and the
// same bounds apply (float: ~50 unit roundoffs through the logits, LayerNorm and two softmaxes).
template <class T>
constexpr double kParityTol = std::is_same_v<T, float> ? 5e-6 : 1e-12;

template <class T>
class EvaTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(EvaTest, Types);

template <class T>
RowMatrix<T> cast(const Mat& m) {
  return m.template cast<T>();
}

// Max |a - b| over the rows i with keep[i] (all rows when keep is empty).
template <class A, class B>
double max_abs_rows(const A& a, const B& b, const std::vector<bool>& keep = {}) {
  double worst = 0;
  for (Index i = 0; i < a.rows(); ++i) {
    if (!keep.empty() && !keep[static_cast<std::size_t>(i)]) continue;
    const double e =
        (a.row(i).template cast<double>() - b.row(i).template cast<double>()).cwiseAbs().maxCoeff();
    if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
  }
  return worst;
}

std::vector<bool> unpadded_rows(const KeyMask& pad, Index n) {
  std::vector<bool> keep(static_cast<std::size_t>(n), true);
  for (Index i = 0; i < pad.size(); ++i) keep[static_cast<std::size_t>(i)] = !pad[i];
  return keep;
}

// ---- an independent double reference (spec §5.2 and §5.3, literally, one query at a time) ------

struct RefProjection {  // x -> LN?(W x + b); identity when absent
  bool present = false, ln = false;
  Mat weight;
  Eigen::VectorXd bias, gamma, beta;
  Eigen::VectorXd operator()(const Eigen::VectorXd& x) const {
    if (!present) return x;
    Eigen::VectorXd y = weight * x + bias;
    if (!ln) return y;
    const double mean = y.mean();
    double var = 0;
    for (Index j = 0; j < y.size(); ++j) var += (y[j] - mean) * (y[j] - mean);
    var /= static_cast<double>(y.size());
    for (Index j = 0; j < y.size(); ++j)
      y[j] = (y[j] - mean) / std::sqrt(var + 1e-5) * gamma[j] + beta[j];
    return y;
  }
};

template <class T>
RefProjection ref_projection(const std::optional<EvaProjection<T>>& p) {
  RefProjection r;
  if (!p) return r;
  r.present = true;
  r.weight = p->weight.template cast<double>();
  r.bias = p->bias.template cast<double>();
  if (p->ln_gamma.size() != 0) {
    r.ln = true;
    r.gamma = p->ln_gamma.template cast<double>();
    r.beta = p->ln_beta.template cast<double>();
  }
  return r;
}

struct RefCall {
  EvaOptions o;
  RefProjection fq, fk;
  Mat bias;  // local bias or empty
  bool causal = false;
  KeyMask pad;
  double scale = 0;
};

Mat eva_reference(const Mat& q, const Mat& k, const Mat& v, const RefCall& c) {
  const Index n = q.rows(), d = q.cols(), dv = v.cols();
  const double s = c.scale != 0 ? c.scale : 1 / std::sqrt(double(d));
  const bool disjoint = c.o.semantics == EvaSemantics::Disjoint, two_d = c.o.grid_height > 0;
  const double mu_scale = c.o.mu_scale < 0 ? (c.causal ? 1.0 : 0.5) : c.o.mu_scale;
  const Index W = c.o.window, e = c.o.ext;
  const Index n_p = two_d ? n : (n + W - 1) / W * W;
  const Index R = two_d ? c.o.grid_height : 1, Cn = two_d ? c.o.grid_width : n_p;
  Index L = c.o.chunk_size;
  if (L == 0) {
    L = two_d ? static_cast<Index>(std::floor(std::sqrt(double(n / c.o.num_chunks))))
              : n_p / c.o.num_chunks;
  }
  auto token_of = [&](Index r, Index col) -> Index {  // -1: out of range or internal padding
    if (r < 0 || r >= R || col < 0 || col >= Cn) return -1;
    const Index t = r * Cn + col;
    return t < n ? t : -1;
  };
  auto valid = [&](Index t) { return t >= 0 && !(c.pad.size() != 0 && c.pad[t]); };
  using Pos = std::pair<Index, Index>;

  // Chunks: their slots (Reference) or tiles (Disjoint), as grid positions.
  std::vector<std::vector<Pos>> chunks;
  if (!disjoint) {
    const Index ce = c.causal ? 0 : e;
    for (Index ca = 0; ca < (two_d ? R / L : 1); ++ca)
      for (Index cb = 0; cb < Cn / L; ++cb) {
        std::vector<Pos> slots;
        const Index r0 = two_d ? ca * L - ce : 0, r1 = two_d ? ca * L + L + ce : 1;
        for (Index r = r0; r < r1; ++r)
          for (Index col = cb * L - ce; col < cb * L + L + ce; ++col) slots.push_back({r, col});
        chunks.push_back(slots);
      }
  } else {
    for (Index ca = 0; ca < (two_d ? (R + L - 1) / L : 1); ++ca)
      for (Index cb = 0; cb < (Cn + L - 1) / L; ++cb) {
        std::vector<Pos> tile;
        const Index r0 = two_d ? ca * L : 0, r1 = two_d ? std::min(R, ca * L + L) : 1;
        for (Index r = r0; r < r1; ++r)
          for (Index col = cb * L; col < std::min(Cn, cb * L + L); ++col) tile.push_back({r, col});
        chunks.push_back(tile);
      }
  }
  const Index nc = static_cast<Index>(chunks.size());
  Mat kt = Mat::Zero(nc, d), beta = Mat::Zero(nc, dv);
  std::vector<Index> count(static_cast<std::size_t>(nc), 0);
  for (Index ci = 0; ci < nc; ++ci) {
    const auto& slots = chunks[static_cast<std::size_t>(ci)];
    Eigen::VectorXd qsum = Eigen::VectorXd::Zero(d), ksum = Eigen::VectorXd::Zero(d);
    std::vector<Index> members;
    for (const Pos& p : slots) {
      const Index t = token_of(p.first, p.second);
      if (!valid(t)) continue;
      members.push_back(t);
      qsum += q.row(t).transpose();
      ksum += k.row(t).transpose();
    }
    count[static_cast<std::size_t>(ci)] = static_cast<Index>(members.size());
    if (disjoint && members.empty()) continue;
    const double div = disjoint ? double(members.size()) : double(slots.size());
    const Eigen::VectorXd ktc = c.fk(ksum / div);
    const Eigen::VectorXd mu = mu_scale * (c.fq(qsum / div) + ktc);
    kt.row(ci) = ktc.transpose();
    if (members.empty()) continue;  // beta = 0
    std::vector<double> a;
    double amax = -INFINITY;
    for (Index t : members) {
      a.push_back(s * (mu.dot(k.row(t).transpose()) - 0.5 * k.row(t).squaredNorm()));
      amax = std::max(amax, a.back());
    }
    double z = 0;
    for (std::size_t j = 0; j < members.size(); ++j) {
      const double p = std::exp(a[j] - amax);
      z += p;
      beta.row(ci) += p * v.row(members[j]);
    }
    beta.row(ci) /= z;
  }

  Mat out = Mat::Zero(n, dv);
  for (Index i = 0; i < n; ++i) {
    const Index r = two_d ? i / Cn : 0, col = two_d ? i % Cn : i;
    const Index a0 = two_d ? r / W * W : 0, b0 = col / W * W;
    const Index r_lo = two_d ? a0 - e : 0, r_hi = two_d ? a0 + W + e : 1;
    const Index c_lo = b0 - e, c_hi = b0 + W + (c.causal ? 0 : e);
    const Index qrow = two_d ? (r - a0) * W + (col - b0) : col - b0;
    std::vector<double> logit;
    std::vector<Eigen::RowVectorXd> value;
    std::set<Pos> span;  // K̄_w: the window's slot positions inside [0, R) x [0, Cn)
    Index slot = 0;
    for (Index rr = r_lo; rr < r_hi; ++rr)
      for (Index cc = c_lo; cc < c_hi; ++cc, ++slot) {
        if (rr >= 0 && rr < R && cc >= 0 && cc < Cn) span.insert({rr, cc});
        const Index t = token_of(rr, cc);
        bool masked = !valid(t);
        if (c.causal && !masked) masked = t > i || (!disjoint && c.pad.size() != 0 && c.pad[i]);
        if (masked) continue;
        double l = s * q.row(i).dot(k.row(t));
        if (c.bias.size() != 0) l += c.bias(qrow, slot);
        logit.push_back(l);
        value.push_back(v.row(t));
      }
    for (Index ci = 0; ci < nc; ++ci) {
      if (c.causal && !(ci < i / L)) continue;
      double extra = 0;
      if (disjoint) {
        const Index cnt = count[static_cast<std::size_t>(ci)];
        if (cnt == 0) continue;
        bool inside = false;
        for (const Pos& p : chunks[static_cast<std::size_t>(ci)]) inside = inside || span.count(p);
        if (inside) continue;
        extra = std::log(double(cnt));
      }
      logit.push_back(s * q.row(i).dot(kt.row(ci)) + extra);
      value.push_back(beta.row(ci));
    }
    if (logit.empty()) continue;
    const double m = *std::max_element(logit.begin(), logit.end());
    double z = 0;
    for (std::size_t j = 0; j < logit.size(); ++j) {
      const double p = std::exp(logit[j] - m);
      z += p;
      out.row(i) += p * value[j];
    }
    out.row(i) /= z;
  }
  return out;
}

// ---- random configurations ----------------------------------------------------------------------

struct Config {
  EvaOptions o;
  bool causal = false;
  Index n = 0, d = 0, dv = 0;
  KeyMask pad;
  std::string describe() const {
    std::ostringstream s;
    s << (o.semantics == EvaSemantics::Disjoint ? "Disjoint" : "Reference")
      << (causal ? " causal" : " non-causal") << " n=" << n << " d=" << d << " dv=" << dv
      << " W=" << o.window << " e=" << o.ext << " C=" << o.num_chunks << " L=" << o.chunk_size
      << " mu=" << o.mu_scale;
    if (o.grid_height > 0) s << " grid " << o.grid_height << "x" << o.grid_width;
    s << " padded " << (pad.size() ? pad.count() : 0);
    return s.str();
  }
};

KeyMask random_padding(DataRng& rng, Index n) {
  KeyMask pad = KeyMask::Constant(n, false);
  switch (rng.index(4)) {
    case 0:
      return KeyMask();  // none
    case 1: {            // a tail of any length, possibly the whole sequence
      const Index tail = rng.index(n + 1);
      for (Index j = n - tail; j < n; ++j) pad[j] = true;
      return pad;
    }
    default: {  // scattered
      const double p = rng.index(2) ? 0.2 : 0.6;
      for (Index j = 0; j < n; ++j) pad[j] = rng.uniform() < p;
      return pad;
    }
  }
}

// Disjoint, aligned: L | W and L | e (so every window's key range ends on chunk boundaries).
Config random_disjoint(DataRng& rng) {
  Config c;
  c.o.semantics = EvaSemantics::Disjoint;
  if (rng.index(4) == 0) {  // 2-D, non-causal
    const Index side = 1 + rng.index(2);
    c.o.window = side * (1 + rng.index(2));
    c.o.ext = side * rng.index(3);
    c.o.grid_height = c.o.window * (1 + rng.index(3));
    c.o.grid_width = c.o.window * (1 + rng.index(3));
    c.n = c.o.grid_height * c.o.grid_width;
    c.o.chunk_size = side;
  } else {
    const Index len = 1 + rng.index(3);
    c.o.window = len * (1 + rng.index(3));
    c.o.ext = rng.index(3) == 0 ? c.o.window : len * rng.index(3);
    c.causal = rng.index(2) == 1;
    c.n = 1 + rng.index(48);
    const Index n_p = (c.n + c.o.window - 1) / c.o.window * c.o.window;
    if (rng.index(2))
      c.o.chunk_size = len;
    else
      c.o.num_chunks = n_p / len;  // floor(n_p / C) = L since L | n_p
  }
  return c;
}

// Reference, inside the official domain (§5.2).
Config random_reference(DataRng& rng) {
  Config c;
  c.o.semantics = EvaSemantics::Reference;
  auto divisors = [](Index x) {
    std::vector<Index> out;
    for (Index j = 1; j <= x; ++j)
      if (x % j == 0) out.push_back(j);
    return out;
  };
  const Index kind = rng.index(4);
  if (kind == 0) {  // 2-D
    c.o.window = 1 + rng.index(3);
    c.o.grid_height = c.o.window * (1 + rng.index(3));
    c.o.grid_width = c.o.window * (1 + rng.index(3));
    c.n = c.o.grid_height * c.o.grid_width;
    c.o.ext = rng.index(3);
    Index g = c.o.grid_height, h = c.o.grid_width;
    while (h != 0) std::swap(g, h), h %= g;  // g = gcd
    const auto ds = divisors(g);
    const Index side = ds[static_cast<std::size_t>(rng.index(Index(ds.size())))];
    if (rng.index(2))
      c.o.chunk_size = side;
    else
      c.o.num_chunks = (c.o.grid_height / side) * (c.o.grid_width / side);  // isqrt(n/C) = side
  } else {
    c.causal = kind >= 2;
    for (;;) {
      c.o.window = 1 + rng.index(6);
      c.n = 1 + rng.index(48);
      const Index n_p = (c.n + c.o.window - 1) / c.o.window * c.o.window;
      c.o.ext = rng.index(3) == 0 ? (c.causal ? c.o.window : std::max<Index>(1, c.o.window / 2))
                                  : rng.index(4);
      auto ds = divisors(n_p);
      if (c.causal) {
        ds.pop_back();  // L < n_p
        if (ds.empty()) continue;
      }
      const Index len = ds[static_cast<std::size_t>(rng.index(Index(ds.size())))];
      const bool chunk_size_ok = !c.causal || (len <= c.o.window && c.o.window % len == 0);
      if (chunk_size_ok && rng.index(2)) {
        c.o.chunk_size = len;
      } else {
        c.o.num_chunks = n_p / len;  // floor(n_p / C) = L
      }
      break;
    }
  }
  return c;
}

// Random inputs, projections (absent, Linear, Linear + LayerNorm), mu_scale and local bias.
template <class T>
struct Instance {
  RowMatrix<T> q, k, v;
  EvaParams<T> params;
};

template <class T>
EvaProjection<T> random_projection(Index d, bool ln, std::uint64_t seed) {
  EvaProjection<T> p;
  p.weight = random_matrix<T>(d, d, seed, 1 / std::sqrt(double(d)));
  p.bias = random_matrix<T>(d, 1, seed + 1, 0.1).col(0);
  if (ln) {
    p.ln_gamma = (random_matrix<T>(d, 1, seed + 2, 0.1).array() + T(1)).matrix().col(0);
    p.ln_beta = random_matrix<T>(d, 1, seed + 3, 0.1).col(0);
  }
  return p;
}

template <class T>
Instance<T> random_instance(DataRng& rng, Config& c, std::uint64_t seed, bool with_bias) {
  Instance<T> x;
  c.d = 1 + rng.index(6);
  c.dv = 1 + rng.index(5);
  c.pad = random_padding(rng, c.n);
  const double mus[] = {-1, 0, 0.7};
  c.o.mu_scale = mus[rng.index(3)];
  x.q = random_matrix<T>(c.n, c.d, seed);
  x.k = random_matrix<T>(c.n, c.d, seed + 1);
  x.v = random_matrix<T>(c.n, c.dv, seed + 2);
  const Index proj = rng.index(3);
  if (proj > 0) {
    x.params.mu_q = random_projection<T>(c.d, proj == 2, seed + 3);
    x.params.mu_k = random_projection<T>(c.d, proj == 2, seed + 7);
  }
  if (with_bias && rng.index(2)) {
    const Index W = c.o.window, e = c.o.ext;
    const bool two_d = c.o.grid_height > 0;
    const Index rows = two_d ? W * W : W;
    const Index cols = two_d ? (W + 2 * e) * (W + 2 * e) : (c.causal ? W + e : W + 2 * e);
    x.params.local_bias = random_matrix<T>(rows, cols, seed + 11, 0.5);
  }
  return x;
}

template <class T>
Mat reference_of(const Config& c, const Instance<T>& x, double scale = 0) {
  RefCall rc;
  rc.o = c.o;
  rc.fq = ref_projection(x.params.mu_q);
  rc.fk = ref_projection(x.params.mu_k);
  rc.bias = x.params.local_bias.template cast<double>();
  rc.causal = c.causal;
  rc.pad = c.pad;
  rc.scale = scale;
  return eva_reference(x.q.template cast<double>(), x.k.template cast<double>(),
                       x.v.template cast<double>(), rc);
}

AttentionOptions attention_options(const Config& c) {
  AttentionOptions opt;
  opt.causal = c.causal;
  opt.key_padding = c.pad;
  return opt;
}

// ---- 1. Reference parity with the official code -------------------------------------------------

// Runs every case, head by head, and returns the max error on the rows that are not don't-care.
template <class T>
double case_error(const test::EvaCase& cs, const EvaParams<T>& params) {
  const Eva<T> eva(cs.d(), cs.options(), params);
  double worst = 0;
  for (Index b = 0; b < cs.batch(); ++b)
    for (Index h = 0; h < cs.heads(); ++h) {
      AttentionOptions opt;
      opt.causal = cs.causal();
      opt.key_padding = cs.padding(b);
      const RowMatrix<T> out =
          eva(cs.head<T>("q", b, h), cs.head<T>("k", b, h), cs.head<T>("v", b, h), opt);
      EXPECT_TRUE(test::all_finite(out)) << cs.name();
      worst = std::max(worst, max_abs_rows(out, cs.head<double>("out_official", b, h),
                                           unpadded_rows(opt.key_padding, cs.n())));
    }
  return worst;
}

TYPED_TEST(EvaTest, ReferenceMatchesOfficialOutputOnEveryCase) {
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    const double err = case_error<T>(cs, cs.template params<T>());
    EXPECT_LE(err, kParityTol<T>) << name;
    std::cout << "[ eva ] " << (sizeof(T) == 4 ? "float " : "double") << " " << name
              << " max |out - out_official| = " << err << "\n";
  }
}

TYPED_TEST(EvaTest, IdentityCasesMatchWithDefaultParams) {
  // The noln-id cases store W = I, b = 0: the library default (absent projections) is the same.
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    if (cs.has("mu_q_ln_gamma")) continue;
    EXPECT_LE(case_error<T>(cs, EvaParams<T>{}), kParityTol<T>) << name;
  }
}

TYPED_TEST(EvaTest, ReferenceChunkIntermediatesMatchTheCases) {
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    const Eva<T> eva(cs.d(), cs.options(), cs.template params<T>());
    for (Index b = 0; b < cs.batch(); ++b)
      for (Index h = 0; h < cs.heads(); ++h) {
        SCOPED_TRACE(name + " b" + std::to_string(b) + " h" + std::to_string(h));
        AttentionOptions opt;
        opt.causal = cs.causal();
        opt.key_padding = cs.padding(b);
        const auto st = eva.chunk_stats(cs.head<T>("q", b, h), cs.head<T>("k", b, h),
                                        cs.head<T>("v", b, h), opt);
        ASSERT_EQ(st.kt.rows(), cs.num_chunks());
        EXPECT_LE(max_abs_rows(st.kt, cs.head<double>("np_kt", b, h)), kParityTol<T>);
        EXPECT_LE(max_abs_rows(st.mu, cs.head<double>("np_mu", b, h)), kParityTol<T>);
        EXPECT_LE(max_abs_rows(st.beta, cs.head<double>("np_beta", b, h)), kParityTol<T>);
        EXPECT_TRUE(st.offset.isZero(0));  // Reference has no ln n_c
      }
  }
}

TYPED_TEST(EvaTest, CausalCasesDecodedTokenByTokenMatchForwardAndOfficial) {
  using T = TypeParam;
  for (const auto& name : test::eva_case_names()) {
    const test::EvaCase cs(name);
    if (!cs.causal()) continue;
    const Eva<T> eva(cs.d(), cs.options(), cs.template params<T>());
    double vs_forward = 0, vs_official = 0;
    for (Index b = 0; b < cs.batch(); ++b)
      for (Index h = 0; h < cs.heads(); ++h) {
        const RowMatrix<T> q = cs.head<T>("q", b, h), k = cs.head<T>("k", b, h),
                           v = cs.head<T>("v", b, h);
        AttentionOptions opt;
        opt.causal = true;
        opt.key_padding = cs.padding(b);
        const RowMatrix<T> parallel = eva(q, k, v, opt);
        auto state = eva.make_state(v.cols());
        RowMatrix<T> decoded(cs.n(), v.cols());
        for (Index t = 0; t < cs.n(); ++t)
          eva.step(state, q.row(t), k.row(t), v.row(t), decoded.row(t), opt.key_padding[t]);
        vs_forward = std::max(vs_forward, max_abs_rows(decoded, parallel));
        vs_official =
            std::max(vs_official, max_abs_rows(decoded, cs.head<double>("out_official", b, h),
                                               unpadded_rows(opt.key_padding, cs.n())));
      }
    // Same arithmetic up to GEMV versus GEMM summation order.
    EXPECT_LE(vs_forward, test::Tol<T>::rel) << name;
    EXPECT_LE(vs_official, kParityTol<T>) << name;
    std::cout << "[ eva ] " << (sizeof(T) == 4 ? "float " : "double") << " " << name
              << " decode: max |step - forward| = " << vs_forward
              << ", max |step - official| = " << vs_official << "\n";
  }
}

// ---- 2. Both semantics against the independent reference ----------------------------------------

TYPED_TEST(EvaTest, DisjointMatchesIndependentReferenceOnRandomConfigurations) {
  using T = TypeParam;
  DataRng rng(2024);
  int two_d = 0, causal = 0, padded = 0, ragged = 0;
  for (int trial = 0; trial < 160; ++trial) {
    Config c = random_disjoint(rng);
    const Instance<T> x = random_instance<T>(rng, c, 1000 + 17 * trial, true);
    SCOPED_TRACE(c.describe());
    const Eva<T> eva(c.d, c.o, x.params);
    const RowMatrix<T> out = eva(x.q, x.k, x.v, attention_options(c));
    const Mat ref = reference_of(c, x);
    EXPECT_LE(max_abs_rows(out, ref), kParityTol<T>);
    two_d += c.o.grid_height > 0;
    causal += c.causal;
    padded += c.pad.size() != 0 && c.pad.any();
    ragged += c.o.grid_height == 0 && c.n % c.o.window != 0;
  }
  // The generator must have covered each kind of configuration.
  EXPECT_GT(two_d, 10);
  EXPECT_GT(causal, 30);
  EXPECT_GT(padded, 50);
  EXPECT_GT(ragged, 30);
}

TYPED_TEST(EvaTest, ReferenceMatchesIndependentReferenceOnRandomConfigurations) {
  // Beyond the five official cases: 2-D, num_chunks in causal mode (L > W), mu_scale, Dv != D,
  // local bias, ragged n. Padded-query rows are don't-care (§5.2) and skipped.
  using T = TypeParam;
  DataRng rng(77);
  for (int trial = 0; trial < 160; ++trial) {
    Config c = random_reference(rng);
    const Instance<T> x = random_instance<T>(rng, c, 5000 + 13 * trial, true);
    SCOPED_TRACE(c.describe());
    const Eva<T> eva(c.d, c.o, x.params);
    const RowMatrix<T> out = eva(x.q, x.k, x.v, attention_options(c));
    ASSERT_TRUE(test::all_finite(out));
    EXPECT_LE(max_abs_rows(out, reference_of(c, x), unpadded_rows(c.pad, c.n)), kParityTol<T>);
  }
}

TYPED_TEST(EvaTest, ExplicitScaleIsUsedInAllThreePlaces) {
  // s enters the local logits, the chunk logits and the proposal log-weights (§3.1).
  using T = TypeParam;
  DataRng rng(5);
  for (int trial = 0; trial < 20; ++trial) {
    Config c = trial % 2 ? random_reference(rng) : random_disjoint(rng);
    const Instance<T> x = random_instance<T>(rng, c, 300 + trial, false);
    SCOPED_TRACE(c.describe());
    AttentionOptions opt = attention_options(c);
    opt.scale = 0.37;
    const RowMatrix<T> out = Eva<T>(c.d, c.o, x.params)(x.q, x.k, x.v, opt);
    EXPECT_LE(max_abs_rows(out, reference_of(c, x, 0.37), unpadded_rows(c.pad, c.n)),
              kParityTol<T>);
  }
}

// ---- 3. Disjoint with one window is exact attention
// ----------------------------------------------

TYPED_TEST(EvaTest, DisjointWithOneWindowEqualsExactAttention) {
  using T = TypeParam;
  DataRng rng(9);
  const Exact<T> exact;
  for (int trial = 0; trial < 40; ++trial) {
    EvaOptions o;
    o.semantics = EvaSemantics::Disjoint;
    AttentionOptions opt;
    Index n;
    if (trial % 4 == 3) {  // 2-D: W = H_g = W_g
      o.window = o.grid_height = o.grid_width = 1 + rng.index(7);
      n = o.window * o.window;
      o.num_chunks = 1 + rng.index(n);
    } else {  // 1-D: W >= n, chunk settings that would not be aligned with several windows
      n = 1 + rng.index(60);
      o.window = n + rng.index(5);
      opt.causal = trial % 2 == 1;
      o.chunk_size = 1 + rng.index(n + 3);
    }
    o.ext = rng.index(4);
    const Index d = 1 + rng.index(8), dv = 1 + rng.index(6);
    opt.key_padding = random_padding(rng, n);
    if (trial % 5 == 0) opt.scale = 0.8;
    const RowMatrix<T> q = random_matrix<T>(n, d, 10 * trial + 1, 1.5);
    const RowMatrix<T> k = random_matrix<T>(n, d, 10 * trial + 2, 1.5);
    const RowMatrix<T> v = random_matrix<T>(n, dv, 10 * trial + 3);
    EvaParams<T> params;
    params.mu_k = random_projection<T>(d, true, 10 * trial + 4);  // irrelevant: no chunk is used
    const Eva<T> eva(d, o, params);
    SCOPED_TRACE(testing::Message() << "n " << n << " W " << o.window << " 2-D "
                                    << (o.grid_height > 0) << " causal " << opt.causal);
    const RowMatrix<T> out = eva(q, k, v, opt);
    EXPECT_TRUE(near(out, exact(q, k, v, opt), test::Tol<T>::rel, test::Tol<T>::abs));
  }
}

TYPED_TEST(EvaTest, ReferenceWithOneWindowIsNotExactAttention) {
  // The contrast to the test above (§5.3 property 2): Reference double-counts every chunk.
  using T = TypeParam;
  EvaOptions o;
  o.window = 64;
  o.num_chunks = 4;
  const RowMatrix<T> q = random_matrix<T>(64, 8, 1), k = random_matrix<T>(64, 8, 2);
  const RowMatrix<T> v = random_matrix<T>(64, 8, 3);
  const double err = relative_error<T>(Eva<T>(8, o)(q, k, v), Exact<T>()(q, k, v));
  EXPECT_GT(err, 1e-3);
}

// ---- 4. Decoding
// ---------------------------------------------------------------------------------

template <class T>
RowMatrix<T> decode_all(const Eva<T>& eva, typename Eva<T>::State& state, const RowMatrix<T>& q,
                        const RowMatrix<T>& k, const RowMatrix<T>& v, const KeyMask& pad) {
  RowMatrix<T> out(q.rows(), v.cols());
  for (Index t = 0; t < q.rows(); ++t)
    eva.step(state, q.row(t), k.row(t), v.row(t), out.row(t), pad.size() != 0 && pad[t]);
  return out;
}

TYPED_TEST(EvaTest, DecodingEqualsCausalForwardForBothSemantics) {
  using T = TypeParam;
  DataRng rng(31);
  struct Geo {
    Index window, ext_factor, chunk;  // ext = ext_factor * W; chunk: L, or -C for num_chunks
    bool disjoint;
  };
  const Geo geos[] = {
      {8, 0, 2, false},  {8, 1, 2, false},  {8, 0, 8, false}, {8, 1, 8, false},  // L < W, L = W
      {4, 0, -3, false}, {4, 1, -2, false},                                      // L > W
      {8, 0, 2, true},   {8, 1, 2, true},   {8, 0, 8, true},  {8, 1, 8, true},
      {6, 1, 3, true},   {5, 0, -1, true},
  };
  for (const Geo& geo : geos)
    for (int rep = 0; rep < 4; ++rep) {
      EvaOptions o;
      o.semantics = geo.disjoint ? EvaSemantics::Disjoint : EvaSemantics::Reference;
      o.window = geo.window;
      o.ext = geo.ext_factor * geo.window;
      Index n = 20 + rng.index(40);
      if (geo.chunk > 0) {
        o.chunk_size = geo.chunk;
      } else {
        o.num_chunks = -geo.chunk;
        if (!geo.disjoint) {  // Reference: n_p must be a multiple of L = floor(n_p / C)
          const Index n_p = (n + o.window - 1) / o.window * o.window;
          if (n_p % (n_p / o.num_chunks) != 0) n = o.window * o.num_chunks * 3;
        } else {
          n = std::min(n, o.window);  // one window: always aligned
        }
      }
      Config c;
      c.o = o;
      c.causal = true;
      c.n = n;
      const Instance<T> x = random_instance<T>(rng, c, 700 + 31 * rep + 7 * geo.window, true);
      SCOPED_TRACE(c.describe());
      const Eva<T> eva(c.d, c.o, x.params);
      const RowMatrix<T> parallel = eva(x.q, x.k, x.v, attention_options(c));
      AttentionOptions dopt;
      auto state = o.num_chunks > 0 ? eva.make_state(c.dv, dopt, EvaSequenceLength{n})
                                    : eva.make_state(c.dv);
      const RowMatrix<T> decoded = decode_all(eva, state, x.q, x.k, x.v, c.pad);
      ASSERT_TRUE(test::all_finite(decoded));
      // Every row, padded or not: both paths apply the same rules. GEMV vs GEMM rounding only.
      EXPECT_TRUE(near(decoded, parallel, test::Tol<T>::rel, test::Tol<T>::abs));
      EXPECT_EQ(state.tokens(), n);
    }
}

TYPED_TEST(EvaTest, DecodingHonoursTheScaleOfMakeState) {
  using T = TypeParam;
  EvaOptions o;
  o.window = 4;
  o.ext = 4;
  o.chunk_size = 2;
  const Eva<T> eva(6, o);
  const RowMatrix<T> q = random_matrix<T>(30, 6, 1), k = random_matrix<T>(30, 6, 2);
  const RowMatrix<T> v = random_matrix<T>(30, 3, 3);
  AttentionOptions opt;
  opt.causal = true;
  opt.scale = 0.6;
  auto state = eva.make_state(3, opt);
  EXPECT_TRUE(near(decode_all(eva, state, q, k, v, KeyMask()), eva(q, k, v, opt), test::Tol<T>::rel,
                   test::Tol<T>::abs));
}

TYPED_TEST(EvaTest, SteadyStateDecodingDoesNotAllocate) {
  using T = TypeParam;
  for (auto semantics : {EvaSemantics::Reference, EvaSemantics::Disjoint}) {
    EvaOptions o;
    o.window = 8;
    o.ext = 8;
    o.chunk_size = 4;
    o.semantics = semantics;
    EvaParams<T> params;
    params.mu_q = random_projection<T>(6, true, 1);
    params.mu_k = random_projection<T>(6, true, 2);
    params.local_bias = random_matrix<T>(8, 16, 3);
    const Eva<T> eva(6, o, params);
    const Index n = 300;
    const RowMatrix<T> q = random_matrix<T>(n, 6, 4), k = random_matrix<T>(n, 6, 5);
    const RowMatrix<T> v = random_matrix<T>(n, 5, 6);
    auto state = eva.make_state(5);
    state.reserve(n);
    const Index capacity = state.chunk_capacity();
    RowMatrix<T> out(1, 5);
    Eigen::internal::set_is_malloc_allowed(false);  // any Eigen heap allocation now aborts
    for (Index t = 0; t < n; ++t) eva.step(state, q.row(t), k.row(t), v.row(t), out, t % 7 == 3);
    Eigen::internal::set_is_malloc_allowed(true);
    EXPECT_EQ(state.chunk_capacity(), capacity);
    EXPECT_EQ(state.published_chunks(), (n - 1) / 4);
  }
}

TYPED_TEST(EvaTest, DecodingChunkStorageGrowsGeometrically) {
  using T = TypeParam;
  EvaOptions o;
  o.window = 2;
  o.chunk_size = 1;
  const Eva<T> eva(3, o);
  auto state = eva.make_state(2);
  const RowMatrix<T> x = random_matrix<T>(1, 3, 1), y = random_matrix<T>(1, 2, 2);
  RowMatrix<T> out(1, 2);
  std::set<Index> capacities;
  for (int t = 0; t < 2000; ++t) {
    eva.step(state, x, x, y, out);
    capacities.insert(state.chunk_capacity());
    ASSERT_GE(state.chunk_capacity(), state.published_chunks());
  }
  EXPECT_LE(capacities.size(), 12u);  // log2(2000 / 4) + 2 reallocations at most
}

// ---- 5. Quality without learned parameters (§8 protocol)
// ------------------------------------------

template <class T>
RowMatrix<T> ar1(Index n, Index d, std::uint64_t seed, double sigma) {
  DataRng rng(seed);
  const double rho = 0.98, innovation = std::sqrt(1 - rho * rho);
  RowMatrix<T> x(n, d);
  Eigen::VectorXd state(d);
  for (Index j = 0; j < d; ++j) state[j] = rng.normal();
  for (Index t = 0; t < n; ++t) {
    if (t > 0)
      for (Index j = 0; j < d; ++j) state[j] = rho * state[j] + innovation * rng.normal();
    x.row(t) = (sigma * state).transpose().template cast<T>();
  }
  return x;
}

TYPED_TEST(EvaTest, DisjointIsAGoodTrainingFreeApproximationOnSmoothData) {
  // spec §8: n = 1024, d = Dv = 64, W = 64, e = 0, C = 16, identity projections, AR(1) data,
  // mean relative error over 3 seeds. Measured: Disjoint 0.207, Reference 1.765.
  using T = TypeParam;
  double disjoint = 0, reference = 0;
  for (std::uint64_t seed : {1, 2, 3}) {
    const RowMatrix<T> q = ar1<T>(1024, 64, 100 * seed + 1, 1),
                       k = ar1<T>(1024, 64, 100 * seed + 2, 1);
    const RowMatrix<T> v = ar1<T>(1024, 64, 100 * seed + 3, 1);
    const RowMatrix<T> exact = Exact<T>()(q, k, v);
    EvaOptions o;
    o.window = 64;
    o.num_chunks = 16;
    reference += relative_error<T>(Eva<T>(64, o)(q, k, v), exact) / 3;
    o.semantics = EvaSemantics::Disjoint;
    disjoint += relative_error<T>(Eva<T>(64, o)(q, k, v), exact) / 3;
  }
  std::cout << "[ eva ] " << (sizeof(T) == 4 ? "float " : "double")
            << " §8 ar x1: Disjoint rel. error " << disjoint << ", Reference " << reference << "\n";
  EXPECT_LT(disjoint, 0.3);
  EXPECT_LT(disjoint, reference);
}

// ---- 6. Masks, empty rows, views --------------------------------------------------------------

TYPED_TEST(EvaTest, AllKeysPaddedGivesZeroRowsNeverNaN) {
  using T = TypeParam;
  const RowMatrix<T> q = random_matrix<T>(20, 4, 1), k = random_matrix<T>(20, 4, 2);
  const RowMatrix<T> v = random_matrix<T>(20, 3, 3);
  for (auto semantics : {EvaSemantics::Reference, EvaSemantics::Disjoint})
    for (bool causal : {false, true}) {
      EvaOptions o;
      o.window = 4;
      o.ext = 4;
      o.chunk_size = 4;
      o.semantics = semantics;
      AttentionOptions opt;
      opt.causal = causal;
      opt.key_padding = KeyMask::Constant(20, true);
      const RowMatrix<T> out = Eva<T>(4, o)(q, k, v, opt);
      EXPECT_TRUE(out.isZero(0)) << int(semantics) << causal;
    }
}

TYPED_TEST(EvaTest, PaddedTokensNeverReachValidOutputs) {
  // NaN / Inf stored at padded positions (in q, k and v) must not leak into any valid row, in the
  // forward (both semantics, causal or not, 1-D and 2-D) and in decoding.
  using T = TypeParam;
  const T nan = std::numeric_limits<T>::quiet_NaN(), inf = std::numeric_limits<T>::infinity();
  for (auto semantics : {EvaSemantics::Reference, EvaSemantics::Disjoint})
    for (int mode = 0; mode < 3; ++mode) {
      EvaOptions o;
      o.semantics = semantics;
      o.window = 4;
      o.ext = 2;
      o.chunk_size = 2;
      const bool causal = mode == 1;
      if (mode == 2) o.grid_height = o.grid_width = 8;
      const Index n = mode == 2 ? 64 : 30;
      const RowMatrix<T> q = random_matrix<T>(n, 5, 1), k = random_matrix<T>(n, 5, 2);
      const RowMatrix<T> v = random_matrix<T>(n, 3, 3);
      AttentionOptions opt;
      opt.causal = causal;
      opt.key_padding = test::random_mask(n, 0.3, 4);
      const Eva<T> eva(5, o);
      const RowMatrix<T> clean = eva(q, k, v, opt);
      RowMatrix<T> qd = q, kd = k, vd = v;
      for (Index j = 0; j < n; ++j)
        if (opt.key_padding[j]) qd(j, 0) = nan, kd(j, 1) = inf, vd(j, 2) = nan, vd(j, 0) = inf;
      const RowMatrix<T> dirty = eva(qd, kd, vd, opt);
      const auto keep = unpadded_rows(opt.key_padding, n);
      EXPECT_EQ(max_abs_rows(dirty, clean, keep), 0) << int(semantics) << " mode " << mode;
      if (causal) {
        auto state = eva.make_state(3);
        const RowMatrix<T> decoded = decode_all(eva, state, qd, kd, vd, opt.key_padding);
        EXPECT_LE(max_abs_rows(decoded, clean, keep), test::Tol<T>::rel);
      }
    }
}

TYPED_TEST(EvaTest, ReferenceCausalPaddedQueryWithoutChunksGivesZeros) {
  // Spec §3.4: a padded query's local row is masked; before any chunk is visible the formula
  // has no unmasked entry, and the library returns zeros (not the official uniform weights).
  using T = TypeParam;
  EvaOptions o;
  o.window = 4;
  o.chunk_size = 4;
  AttentionOptions opt;
  opt.causal = true;
  opt.key_padding = KeyMask::Constant(12, false);
  opt.key_padding[1] = opt.key_padding[9] = true;
  const RowMatrix<T> q = random_matrix<T>(12, 3, 1), k = random_matrix<T>(12, 3, 2);
  const RowMatrix<T> v = random_matrix<T>(12, 2, 3);
  const RowMatrix<T> out = Eva<T>(3, o)(q, k, v, opt);
  EXPECT_TRUE(out.row(1).isZero(0));
  EXPECT_FALSE(out.row(9).isZero(0));  // chunks 0 and 1 are visible: chunk-only attention
  EXPECT_TRUE(test::all_finite(out));
}

TYPED_TEST(EvaTest, BlocksAndMapsBindWithoutCopies) {
  using T = TypeParam;
  const RowMatrix<T> big = random_matrix<T>(40, 30, 1);
  const auto q = big.block(0, 0, 24, 6), k = big.block(5, 8, 24, 6), v = big.block(2, 20, 24, 4);
  for (int two_d = 0; two_d < 2; ++two_d) {
    EvaOptions o;
    o.window = 4;
    o.ext = 2;
    o.num_chunks = 6;
    if (two_d)
      o.window = 2, o.grid_height = 4, o.grid_width = 6, o.num_chunks = 0, o.chunk_size = 2;
    const Eva<T> eva(6, o);
    RowMatrix<T> out_big = RowMatrix<T>::Zero(30, 10);
    eva.forward(q, k, v, out_big.block(3, 2, 24, 4));
    EXPECT_TRUE(near(out_big.block(3, 2, 24, 4),
                     eva(RowMatrix<T>(q), RowMatrix<T>(k), RowMatrix<T>(v)), 0, 0));
    EXPECT_TRUE(out_big.topRows(3).isZero(0));
    EXPECT_TRUE(out_big.block(3, 0, 24, 2).isZero(0));
  }
}

TYPED_TEST(EvaTest, ZeroLengthSequenceGivesEmptyOutput) {
  using T = TypeParam;
  EvaOptions o;
  o.window = 4;
  o.num_chunks = 2;
  const RowMatrix<T> out = Eva<T>(3, o)(RowMatrix<T>(0, 3), RowMatrix<T>(0, 3), RowMatrix<T>(0, 2));
  EXPECT_EQ(out.rows(), 0);
  EXPECT_EQ(out.cols(), 2);
}

// ---- 7. Rejections ------------------------------------------------------------------------------

// Expects `fn` to throw std::invalid_argument whose message contains every fragment.
template <class Fn>
void expect_rejected(Fn&& fn, std::initializer_list<const char*> fragments) {
  const std::string msg = test::invalid_argument_message(fn);
  ASSERT_FALSE(msg.empty()) << "did not throw; expected: " << *fragments.begin();
  for (const char* f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << msg;
}

EvaOptions basic_options() {
  EvaOptions o;
  o.window = 4;
  o.chunk_size = 2;
  return o;
}

TYPED_TEST(EvaTest, ConstructorRejectsBadOptions) {
  using T = TypeParam;
  auto make = [](EvaOptions o, Index d = 4) { return [o, d] { Eva<T>(d, o); }; };
  EvaOptions o = basic_options();
  expect_rejected(make(o, 0), {"head_dim must be at least 1"});
  o.window = 0;
  expect_rejected(make(o), {"options.window must be at least 1, got 0"});
  o = basic_options();
  o.ext = -1;
  expect_rejected(make(o), {"options.ext must be >= 0, got -1"});
  o = basic_options();
  o.num_chunks = 3;
  expect_rejected(make(o), {"exactly one of options.num_chunks and options.chunk_size",
                            "num_chunks = 3, chunk_size = 2"});
  o.num_chunks = o.chunk_size = 0;
  expect_rejected(make(o), {"exactly one of", "num_chunks = 0, chunk_size = 0"});
  o = basic_options();
  o.chunk_size = -2;
  expect_rejected(make(o), {"must be >= 0"});
  o = basic_options();
  o.mu_scale = std::nan("");
  expect_rejected(make(o), {"options.mu_scale must be finite"});
  o = basic_options();
  o.grid_height = 8;
  expect_rejected(make(o), {"grid_height and options.grid_width must both be > 0", "8 x 0"});
  o.grid_width = 6;
  expect_rejected(make(o), {"8 x 6", "divisible by options.window = 4"});
  o.grid_width = -4;
  expect_rejected(make(o), {"must be >= 0"});
}

TYPED_TEST(EvaTest, ConstructorRejectsBadParams) {
  using T = TypeParam;
  const EvaOptions o = basic_options();  // W = 4, e = 0
  auto with = [&](EvaParams<T> p) { return [o, p] { Eva<T>(4, o, p); }; };
  EvaParams<T> p;
  p.mu_q = random_projection<T>(4, false, 1);
  p.mu_q->weight = RowMatrix<T>::Zero(4, 3);
  expect_rejected(with(p), {"params.mu_q.weight [4, 3] must be [D, D] = [4, 4]"});
  p = {};
  p.mu_k = random_projection<T>(4, false, 1);
  p.mu_k->bias = Vector<T>::Zero(5);
  expect_rejected(with(p), {"params.mu_k.bias has size 5", "D = 4"});
  p = {};
  p.mu_k = random_projection<T>(4, true, 1);
  p.mu_k->ln_beta = Vector<T>();
  expect_rejected(with(p), {"params.mu_k.ln_gamma (size 4)", "ln_beta (size 0)"});
  p = {};
  p.local_bias = RowMatrix<T>::Zero(4, 5);
  expect_rejected(with(p), {"params.local_bias [4, 5] must be [W, S_w] = [4, 4]"});
  EvaOptions o2 = o;
  o2.grid_height = o2.grid_width = 8;
  o2.ext = 1;
  p.local_bias = RowMatrix<T>::Zero(16, 25);
  expect_rejected([&] { Eva<T>(4, o2, p); }, {"[16, 25] must be [W^2, (W + 2e)^2] = [16, 36]"});
}

template <class T>
std::string forward_message(const Eva<T>& eva, Index n, const AttentionOptions& opt = {},
                            Index nk = -1, Index d = -1) {
  const Index dd = d < 0 ? eva.head_dim() : d;
  const RowMatrix<T> q = random_matrix<T>(n, dd, 1), k = random_matrix<T>(nk < 0 ? n : nk, dd, 2);
  const RowMatrix<T> v = random_matrix<T>(k.rows(), 3, 3);
  RowMatrix<T> out(n, 3);
  return test::invalid_argument_message([&] { eva.forward(q, k, v, out, opt); });
}

#define EXPECT_MESSAGE(msg, fragment) \
  EXPECT_NE((msg).find(fragment), std::string::npos) << "message: " << (msg)

TYPED_TEST(EvaTest, ForwardRejectsBadCalls) {
  using T = TypeParam;
  const Eva<T> eva(4, basic_options());
  {  // v with the wrong number of rows
    const RowMatrix<T> q = random_matrix<T>(8, 4, 1), v = random_matrix<T>(9, 3, 3);
    RowMatrix<T> out(8, 3);
    EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.forward(q, q, v, out); }),
                   "Eva::forward: v [9, 3] must have Nk = 8");
  }
  EXPECT_MESSAGE(forward_message(eva, 8, {}, -1, 5),
                 "has D = 5 but this Eva was built for head_dim = 4");
  {  // Nq != Nk with consistent k, v
    const RowMatrix<T> q = random_matrix<T>(8, 4, 1), k = random_matrix<T>(10, 4, 2);
    const RowMatrix<T> v = random_matrix<T>(10, 3, 3);
    RowMatrix<T> out(8, 3);
    EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.forward(q, k, v, out); }),
                   "EVA is self-attention: q [8, 4] and k [10, 4] must have Nq = Nk");
  }
  AttentionOptions alibi;
  alibi.alibi_slope = 0.5;
  EXPECT_MESSAGE(forward_message(eva, 8, alibi), "alibi_slope = 0.5 is not supported");
  AttentionOptions bad_mask;
  bad_mask.key_padding = KeyMask::Constant(7, false);
  EXPECT_MESSAGE(forward_message(eva, 8, bad_mask), "key_padding has length 7");
}

TYPED_TEST(EvaTest, ForwardRejectsConfigurationsOutsideTheReferenceDomain) {
  using T = TypeParam;
  AttentionOptions causal;
  causal.causal = true;
  EvaOptions o;
  o.window = 8;
  o.num_chunks = 5;  // n = 64: L = 12, 64 % 12 != 0 (the official code drops the tail)
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64),
                 "n_p = 64 to be a multiple of the chunk length L = 12");
  o.num_chunks = 100;  // L = 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64),
                 "num_chunks = 100 exceeds the padded length n_p = 64");
  o.num_chunks = 1;  // causal, L = n_p
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64, causal),
                 "L = 64 below the padded length n_p = 64");
  o.num_chunks = 0;
  o.chunk_size = 16;  // causal chunk_size > W
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 64, causal),
                 "chunk_size <= window and window % chunk_size == 0");
  o.chunk_size = 3;  // causal W % L != 0 (n_p = 24 is a multiple of 3)
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 24, causal), "options.chunk_size = 3 needs");
  o.chunk_size = 3;  // non-causal n_p % L != 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 60),
                 "n_p = 64 to be a multiple of the chunk length L = 3");
  EvaOptions g;  // 2-D
  g.window = 2;
  g.grid_height = 6;
  g.grid_width = 4;
  g.chunk_size = 4;
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 24),
                 "grid 6 x 4 divisible by the chunk side L2 = 4");
  g.chunk_size = 0;
  g.num_chunks = 3;  // isqrt(24 / 3) = 2: fine; grid has 24 tokens, input 20
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 20),
                 "grid 6 x 4 holds 24 tokens but the input has n = 20");
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 24, causal), "the 2-D mode");
  g.num_chunks = 30;  // floor(24 / 30) = 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 24), "chunk side floor(sqrt(floor(n / C))) = 0");
}

TYPED_TEST(EvaTest, ForwardRejectsNonAlignedDisjointGeometries) {
  using T = TypeParam;
  AttentionOptions causal;
  causal.causal = true;
  EvaOptions o;
  o.semantics = EvaSemantics::Disjoint;
  o.window = 6;
  o.chunk_size = 4;  // window 1 spans [0, 12) non-causal with e = 0... [6, 12): 6 % 4 != 0
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 24),
                 "Disjoint semantics needs every window's key range to start and end on chunk "
                 "boundaries, but window 0 spans [0, 6) and the chunk length is 4");
  o.window = 4;
  o.ext = 2;  // L | W but not L | e
  EXPECT_MESSAGE(forward_message(Eva<T>(4, o), 24, causal), "window 1 spans [2, 8)");
  EvaOptions g = o;
  g.ext = 1;
  g.grid_height = g.grid_width = 8;
  EXPECT_MESSAGE(forward_message(Eva<T>(4, g), 64), "(grid rows)");
  // The same settings are fine when one window covers the sequence.
  EXPECT_EQ(forward_message(Eva<T>(4, o), 4, causal), "");
}

TYPED_TEST(EvaTest, ForwardRejectsLocalBiasOfTheWrongVariant) {
  using T = TypeParam;
  EvaOptions o = basic_options();
  o.ext = 2;
  EvaParams<T> p;
  p.local_bias = RowMatrix<T>::Zero(4, 8);  // [W, W + 2e]: non-causal only
  const Eva<T> eva(4, o, p);
  AttentionOptions causal;
  causal.causal = true;
  EXPECT_EQ(forward_message(eva, 16), "");
  EXPECT_MESSAGE(forward_message(eva, 16, causal),
                 "params.local_bias [4, 8] must be [4, 6] for a causal call");
}

TYPED_TEST(EvaTest, DecodingRejectsBadUse) {
  using T = TypeParam;
  EvaOptions nc = basic_options();
  nc.chunk_size = 0;
  nc.num_chunks = 4;
  const Eva<T> by_count(4, nc);
  EXPECT_MESSAGE(
      test::invalid_argument_message([&] { by_count.make_state(3); }),
      "options.num_chunks = 4 derives the chunk length from the sequence length; pass "
      "EvaSequenceLength{n}");
  AttentionOptions opt;
  auto state = by_count.make_state(3, opt, EvaSequenceLength{16});  // L = 4
  const RowMatrix<T> x = random_matrix<T>(1, 4, 1), y = random_matrix<T>(1, 3, 2);
  RowMatrix<T> out(1, 3);
  for (int t = 0; t < 16; ++t) by_count.step(state, x, x, y, out);
  EXPECT_MESSAGE(test::invalid_argument_message([&] { by_count.step(state, x, x, y, out); }),
                 "made for a sequence of 16 tokens");
  EvaOptions one = nc;
  one.num_chunks = 1;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { Eva<T>(4, one).make_state(3, opt, EvaSequenceLength{3}); }),
                 "Eva::make_state: causal Reference needs the chunk length L = 4 below the padded "
                 "length n_p = 4");

  const Eva<T> eva(4, basic_options());
  auto s = eva.make_state(3);
  RowMatrix<T> wide(1, 5);
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.step(s, x, x, y, wide); }),
                 "v_t [1, 3] and out_t [1, 5] must be [1, Dv] = [1, 3]");
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.step(s, y, x, y, out); }),
                 "q_t [1, 3] and k_t [1, 4] must be [1, D] = [1, 4]");
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.step(state, x, x, y, out); }),
                 "the state was not made by an Eva with these options");
  AttentionOptions padded;
  padded.key_padding = KeyMask::Constant(3, false);
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.make_state(3, padded); }),
                 "opt.key_padding must be empty");
  AttentionOptions alibi;
  alibi.alibi_slope = 1;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { eva.make_state(3, alibi); }),
                 "alibi_slope = 1 is not supported");
  EvaOptions g = basic_options();
  g.grid_height = g.grid_width = 8;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { Eva<T>(4, g).make_state(3); }),
                 "the 2-D mode");
  EvaOptions dj = basic_options();
  dj.semantics = EvaSemantics::Disjoint;
  dj.ext = 3;
  EXPECT_MESSAGE(
      test::invalid_argument_message([&] { Eva<T>(4, dj).make_state(3); }),
      "unbounded Disjoint decoding needs options.chunk_size = 2 to divide window (4) and ext (3)");
  EvaOptions big = basic_options();
  big.chunk_size = 8;
  EXPECT_MESSAGE(test::invalid_argument_message([&] { Eva<T>(4, big).make_state(3); }),
                 "chunk_size <= window");
}

}  // namespace
}  // namespace fastattn
