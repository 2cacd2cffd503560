// Tests of bench/real_attention.hpp (the real-attention fixture reader) and bench/sha256.hpp: the
// committed fixture loads with the shapes and lengths of its index, its per-head Q/K/V reproduce
// the model's own attention output within the derived float16 bound (and the generator's float64
// recomputation within double rounding), and every kind of damage to the files gives a clear error.

#include "bench/real_attention.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "bench/sha256.hpp"
#include "support.hpp"

#ifndef FASTATTN_REAL_ATTENTION_DIR
#error "FASTATTN_REAL_ATTENTION_DIR must name bench/data/real_attention"
#endif

namespace fastattn {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Mat = RowMatrix<double>;

const std::string kDir = FASTATTN_REAL_ATTENTION_DIR;

// Loaded once per process (each load checks the SHA-256 and projects every head).
const bench::RealAttentionData& raw() {
  static const bench::RealAttentionData data = bench::read_real_attention_data(kDir);
  return data;
}
template <class T>
const bench::RealAttention<T>& fixture() {
  static const bench::RealAttention<T> f = bench::load_real_attention<T>(kDir);
  return f;
}

Json read_index(const std::string& dir) {
  std::ifstream in(dir + "/real_attention.json");
  return Json::parse(in);
}

// ---- SHA-256 ------------------------------------------------------------------------------------
std::string repeat_a(std::size_t n) { return std::string(n, 'a'); }

TEST(Sha256, KnownDigests) {
  // FIPS 180-2 appendix examples (one block, two blocks, one million 'a'), and 'a' repeated around
  // the padding boundaries (55/56 bytes: length fits / spills; 64, 119, 120 likewise one block on);
  // the latter digests are from Python's hashlib.
  struct Case {
    std::string message;
    const char* digest;
  };
  const Case cases[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
      {repeat_a(55), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {repeat_a(56), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {repeat_a(63), "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {repeat_a(64), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {repeat_a(65), "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {repeat_a(119), "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {repeat_a(120), "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
      {repeat_a(1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
  };
  for (const Case& c : cases)
    EXPECT_EQ(bench::sha256_hex(c.message.data(), c.message.size()), c.digest)
        << "length " << c.message.size();
}

TEST(Sha256, ChunkingDoesNotMatter) {
  std::vector<unsigned char> bytes(10007);
  test::DataRng rng(15);
  for (auto& b : bytes) b = static_cast<unsigned char>(rng.uniform() * 256);
  const std::string one_shot = bench::sha256_hex(bytes.data(), bytes.size());
  for (const std::size_t chunk : {std::size_t(1), std::size_t(7), std::size_t(63), std::size_t(64),
                                  std::size_t(65), std::size_t(4096)}) {
    bench::Sha256 sha;
    for (std::size_t i = 0; i < bytes.size(); i += chunk)
      sha.update(bytes.data() + i, std::min(chunk, bytes.size() - i));
    std::string hex;
    for (const std::uint8_t b : sha.digest()) {
      static constexpr char digits[] = "0123456789abcdef";
      hex += digits[b >> 4];
      hex += digits[b & 15];
    }
    EXPECT_EQ(hex, one_shot) << "chunk " << chunk;
  }
}

// ---- the committed fixture
// ------------------------------------------------------------------------
template <class T>
class RealAttentionFixtureTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(RealAttentionFixtureTest, Types);

TYPED_TEST(RealAttentionFixtureTest, ShapesAndLengthsMatchTheIndex) {
  using T = TypeParam;
  const auto& f = fixture<T>();
  const Json index = read_index(kDir);  // read here independently of the reader
  ASSERT_EQ(f.tokens, index["tokens"].get<Index>());
  ASSERT_EQ(f.sequences.size(), index["sequences"].size());
  ASSERT_EQ(f.layers.size(), index["layers"].size());
  int full = 0, short_ones = 0;
  for (std::size_t s = 0; s < f.sequences.size(); ++s) {
    const Index length = index["sequences"][s]["length"].get<Index>();
    EXPECT_EQ(f.sequences[s].length, length);
    EXPECT_EQ(f.sequences[s].id, index["sequences"][s]["id"].get<std::string>());
    EXPECT_EQ(Index(f.sequences[s].token_ids.size()), length);
    (length == f.tokens ? full : short_ones) += 1;
    const KeyMask pad = f.key_padding(Index(s));
    ASSERT_EQ(pad.size(), f.tokens);
    EXPECT_EQ(pad.count(), f.tokens - length);
    if (length < f.tokens) {
      EXPECT_TRUE(pad[length] && !pad[length - 1]);
    }
  }
  // The minimum: 16 full-length sequences, and short ones so key padding is exercised.
  EXPECT_GE(full, 16);
  EXPECT_GE(short_ones, 1);
  for (std::size_t l = 0; l < f.layers.size(); ++l) {
    const auto& L = f.layers[l];
    const Json& J = index["layers"][l];
    EXPECT_EQ(L.num_heads, J["num_heads"].get<Index>());
    EXPECT_EQ(L.head_dim, J["head_dim"].get<Index>());
    EXPECT_EQ(L.num_heads * L.head_dim, J["model_dim"].get<Index>());
    // The model's scale constant is float32(1/sqrt(head_dim)).
    EXPECT_EQ(L.scale, double(float(1.0 / std::sqrt(double(L.head_dim)))));
    for (std::size_t s = 0; s < f.sequences.size(); ++s)
      for (Index h = 0; h < L.num_heads; ++h) {
        const auto& hd = f.head(Index(s), Index(l), h);
        for (const RowMatrix<T>* m : {&hd.q, &hd.k, &hd.v}) {
          EXPECT_EQ(m->rows(), f.tokens);
          EXPECT_EQ(m->cols(), L.head_dim);
          EXPECT_TRUE(m->allFinite()) << "sequence " << s << " layer " << l << " head " << h;
        }
      }
  }
  // The USE-lite layout the issue describes: 2 layers, 4 heads, head dim 64 then 128.
  ASSERT_EQ(f.layers.size(), 2u);
  EXPECT_EQ(f.layers[0].head_dim, 64);
  EXPECT_EQ(f.layers[1].head_dim, 128);
  EXPECT_EQ(f.layers[0].num_heads, 4);
  EXPECT_EQ(f.layers[1].num_heads, 4);
}

// gamma_n = n u / (1 - n u): the classic bound on the relative rounding error of an n-term sum.
double gamma(double n, double u) { return n * u / (1 - n * u); }

// Per-element bounds on how far the reader's q/k/v (one third of [Q | K | V]) can be from
//  (a) the generator's float64 projection of the same float16 values: both projections are within
//      gamma_{D+1}(2^-53)(sum|X~||W~| + |b|) of the exact one, plus the rounding of the result to
//      T;
//  (b) the model's own float32 values: (a) plus the float16 rounding of X and W (u16 = 2^-11
//      relative, 2^-25 absolute below 2^-14) and the model's float32 projection:
//      rho sum|X~||W~| + gamma_{D+1}(2^-24)|b| + 2^-25 (sum_k|W~_kc| + sum_k|X~_ik|)(1 + 2 u16),
//      rho = (2 u16 + u16^2 + gamma_{D+1}(2^-24)) / (1 - u16)^2.
// The same a-priori bound is evaluated by scripts/real-attention/extract.js (check 4c).
struct InputBounds {
  Mat to_fixture, to_model;  // [tokens, head_dim]
};
template <class T>
InputBounds input_bounds(const bench::RealAttentionData& data, Index s, Index l, Index col0,
                         const RowMatrix<T>& mine) {
  const auto& L = data.layers[size_t(l)];
  const Index D = L.model_dim, dh = L.head_dim, n = data.tokens;
  const double u16 = std::ldexp(1.0, -11), sub16 = std::ldexp(1.0, -25);
  const double u53 = std::ldexp(1.0, -53), u24 = std::ldexp(1.0, -24);
  const double uT = std::is_same_v<T, float> ? u24 : 0.0;
  const Mat X = L.hidden[size_t(s)];
  const Mat W = L.qkv_weight.middleCols(col0, dh);
  const Mat S = X.cwiseAbs() * W.cwiseAbs();
  const Eigen::RowVectorXd b = L.qkv_bias.segment(col0, dh).transpose().cwiseAbs();
  const Eigen::RowVectorXd wcol = W.cwiseAbs().colwise().sum();
  const Eigen::VectorXd xrow = X.cwiseAbs().rowwise().sum();
  const double rho = (2 * u16 + u16 * u16 + gamma(double(D + 1), u24)) / ((1 - u16) * (1 - u16));
  InputBounds out;
  out.to_fixture.resize(n, dh);
  out.to_model.resize(n, dh);
  for (Index i = 0; i < n; ++i)
    for (Index t = 0; t < dh; ++t) {
      const double projection = 2 * gamma(double(D + 1), u53) * (S(i, t) + b[t]);
      const double rounding = uT / (1 - uT) * std::abs(double(mine(i, t)));
      out.to_fixture(i, t) = projection + rounding;
      out.to_model(i, t) = out.to_fixture(i, t) + rho * S(i, t) + gamma(double(D + 1), u24) * b[t] +
                           sub16 * (wcol[t] + xrow[i]) * (1 + 2 * u16);
    }
  return out;
}

// Softmax attention of query rows `rows` over keys [0, len) in double, and a rigorous bound on how
// far an output computed from inputs within (dq, dk, dv) of (q, k, v), elementwise, in arithmetic
// of unit roundoff u can be from it:
//   logits : |s' - s| <= m_i = max_j [scale sum_t (dq|k| + (|q|+dq) dk)
//                               + gamma_{D+1} scale sum_t (|q|+dq)(|k|+dk)] + 4u max_j|s|
//            (the scaling, the dot product, and the max subtraction of a stable softmax);
//   softmax: logits off by <= m change each weight by a factor in [e^-2m, e^2m], and the exp, sum
//            and division add gamma_{len+2}: |P' - P| <= P E_i, E_i = e^{2 m_i}(1 + gamma_{len+2})
//            - 1;
//   P v    : |o' - o| <= E_i A + (1 + E_i) B + gamma_len (1 + E_i)(A + B),
//            A = sum_j P|v|, B = sum_j P dv.
struct RowsAndBound {
  Mat out, bound;  // [rows, dv]
};
RowsAndBound attention_rows(const Mat& q, const Mat& k, const Mat& v, const Mat& dq, const Mat& dk,
                            const Mat& dv, Index len, double scale, double u,
                            const std::vector<Index>& rows) {
  const Index d = q.cols(), n_out = v.cols();
  RowsAndBound r{Mat::Zero(Index(rows.size()), n_out), Mat::Zero(Index(rows.size()), n_out)};
  for (std::size_t ri = 0; ri < rows.size(); ++ri) {
    const Index i = rows[ri];
    std::vector<double> s(static_cast<std::size_t>(len)), p(static_cast<std::size_t>(len));
    double m = 0, smax = -INFINITY, sabs = 0;
    for (Index j = 0; j < len; ++j) {
      double dot = 0, pert = 0, mag = 0;
      for (Index t = 0; t < d; ++t) {
        dot += q(i, t) * k(j, t);
        pert += dq(i, t) * std::abs(k(j, t)) + (std::abs(q(i, t)) + dq(i, t)) * dk(j, t);
        mag += (std::abs(q(i, t)) + dq(i, t)) * (std::abs(k(j, t)) + dk(j, t));
      }
      s[size_t(j)] = scale * dot;
      smax = std::max(smax, s[size_t(j)]);
      sabs = std::max(sabs, std::abs(s[size_t(j)]));
      m = std::max(m, scale * pert + gamma(double(d + 1), u) * scale * mag);
    }
    m += 4 * u * sabs;
    double sum = 0;
    for (Index j = 0; j < len; ++j) sum += (p[size_t(j)] = std::exp(s[size_t(j)] - smax));
    for (double& x : p) x /= sum;
    const double E = std::exp(2 * m) * (1 + gamma(double(len + 2), u)) - 1;
    for (Index t = 0; t < n_out; ++t) {
      double o = 0, A = 0, B = 0;
      for (Index j = 0; j < len; ++j) {
        o += p[size_t(j)] * v(j, t);
        A += p[size_t(j)] * std::abs(v(j, t));
        B += p[size_t(j)] * dv(j, t);
      }
      r.out(Index(ri), t) = o;
      r.bound(Index(ri), t) = E * A + (1 + E) * B + gamma(double(len), u) * (1 + E) * (A + B);
    }
  }
  return r;
}

// Largest |a - b| / bound over all elements.
double worst_ratio(const Mat& a, const Mat& b, const Mat& bound) {
  return ((a - b).cwiseAbs().array() / bound.array()).maxCoeff();
}

TYPED_TEST(RealAttentionFixtureTest, ProjectionIsTheStoredHiddenTimesWeightPlusBias) {
  using T = TypeParam;
  const auto& f = fixture<T>();
  const auto& data = raw();
  // Plain sums over the stored values, per element: q of head h is column h*dh + t of the first
  // third, k and v the same in the second and third. Tolerance: both sums are within
  // gamma_{D+1}(2^-53)(sum|x||w| + |b|) of the exact value, plus T's rounding of the reader's
  // result.
  const double uT = std::is_same_v<T, float> ? std::ldexp(1.0, -24) : 0.0;
  const Index short_seq =
      Index(std::find_if(data.sequences.begin(), data.sequences.end(),
                         [&](const auto& s) { return s.length < data.tokens; }) -
            data.sequences.begin());
  ASSERT_LT(short_seq, Index(data.sequences.size()));
  for (const Index s : {Index(0), short_seq})
    for (Index l = 0; l < Index(data.layers.size()); ++l) {
      const auto& L = data.layers[size_t(l)];
      const Index D = L.model_dim, dh = L.head_dim;
      for (Index h = 0; h < L.num_heads; ++h)
        for (int which = 0; which < 3; ++which) {
          const auto& hd = f.head(s, l, h);
          const RowMatrix<T>& mine = which == 0 ? hd.q : which == 1 ? hd.k : hd.v;
          for (const Index i : {Index(0), data.sequences[size_t(s)].length - 1, data.tokens - 1})
            for (const Index t : {Index(0), dh / 2, dh - 1}) {
              const Index c = which * D + h * dh + t;
              double y = L.qkv_bias[c], mag = std::abs(L.qkv_bias[c]);
              for (Index kk = 0; kk < D; ++kk) {
                y += L.hidden[size_t(s)](i, kk) * L.qkv_weight(kk, c);
                mag += std::abs(L.hidden[size_t(s)](i, kk) * L.qkv_weight(kk, c));
              }
              const double tol = 2 * gamma(double(D + 1), std::ldexp(1.0, -53)) * mag +
                                 uT / (1 - uT) * std::abs(double(mine(i, t)));
              EXPECT_LE(std::abs(double(mine(i, t)) - y), tol)
                  << "sequence " << s << " layer " << l << " head " << h << " part " << which
                  << " row " << i << " col " << t;
            }
        }
    }
}

// The head of one check vector: q, k, v in double, their input bounds, the true length and scale.
struct CheckHead {
  Mat q, k, v;
  InputBounds bq, bk, bv;
  Index len = 0;
  double scale = 0;

  // Attention of `rows` over the first `keys` keys with `scale`, and its bound against either the
  // generator's float64 output (to_model = false: double arithmetic in both programs, u = 2^-52,
  // plus T's rounding) or the model's float32 output (to_model = true: the float16 storage bound
  // and float32 arithmetic, u = 2^-24 + 2^-52).
  RowsAndBound attention(const std::vector<Index>& rows, bool to_model, Index keys,
                         double logit_scale) const {
    const double u = to_model ? std::ldexp(1.0, -24) + std::ldexp(1.0, -52) : std::ldexp(1.0, -52);
    const auto pick = [&](const InputBounds& b) { return to_model ? b.to_model : b.to_fixture; };
    return attention_rows(q, k, v, pick(bq), pick(bk), pick(bv), keys, logit_scale, u, rows);
  }
};

template <class T>
CheckHead check_head(const bench::RealAttention<T>& f, const bench::RealAttentionData& data,
                     const bench::RealAttentionCheck& c) {
  const auto& L = data.layers[size_t(c.layer)];
  const auto& hd = f.head(c.sequence, c.layer, c.head);
  const Index D = L.model_dim, dh = L.head_dim;
  CheckHead h;
  h.q = hd.q.template cast<double>();
  h.k = hd.k.template cast<double>();
  h.v = hd.v.template cast<double>();
  h.bq = input_bounds(data, c.sequence, c.layer, c.head * dh, hd.q);
  h.bk = input_bounds(data, c.sequence, c.layer, D + c.head * dh, hd.k);
  h.bv = input_bounds(data, c.sequence, c.layer, 2 * D + c.head * dh, hd.v);
  h.len = data.sequences[size_t(c.sequence)].length;
  h.scale = L.scale;
  return h;
}

TYPED_TEST(RealAttentionFixtureTest, AttentionReproducesTheStoredOutputs) {
  const auto& f = fixture<TypeParam>();
  const auto& data = raw();
  ASSERT_FALSE(data.checks.empty());
  bool padded_check = false;
  for (const auto& c : data.checks) {
    const CheckHead h = check_head(f, data, c);
    padded_check = padded_check || h.len < data.tokens;
    // The output itself from the independent double reference of the test suite, with key padding.
    test::RefSpec spec;
    spec.scale = h.scale;
    spec.padding = f.key_padding(c.sequence);
    const Mat full = test::reference_attention(h.q, h.k, h.v, spec);
    Mat ref(Index(c.rows.size()), h.v.cols());
    for (std::size_t r = 0; r < c.rows.size(); ++r) ref.row(Index(r)) = full.row(c.rows[r]);
    // (a) Against the generator's float64 recomputation from the same stored values.
    const RowsAndBound fix = h.attention(c.rows, false, h.len, h.scale);
    // (b) Against the model's own float32 output.
    const RowsAndBound mod = h.attention(c.rows, true, h.len, h.scale);
    // Two double computations of the same softmax (sums of <= 128 x 128 terms: ~1e-14 relative).
    EXPECT_LE((ref - fix.out).cwiseAbs().maxCoeff(), 1e-12 * (1 + ref.cwiseAbs().maxCoeff()))
        << "the test's two double references disagree";
    const std::string where = "sequence " + std::to_string(c.sequence) + " layer " +
                              std::to_string(c.layer) + " head " + std::to_string(c.head);
    EXPECT_LE(worst_ratio(ref, c.fixture_output, fix.bound), 1.0) << where;
    EXPECT_LE(worst_ratio(ref, c.model_output, mod.bound), 1.0) << where;
    // The check has power: a scale off by 0.1%, or ignoring the padding, breaks the tight bound.
    const RowsAndBound off_scale = h.attention(c.rows, false, h.len, h.scale * 1.001);
    EXPECT_GT(worst_ratio(off_scale.out, c.fixture_output, fix.bound), 1.0) << where;
    if (h.len < data.tokens) {
      const RowsAndBound unmasked = h.attention(c.rows, false, data.tokens, h.scale);
      EXPECT_GT(worst_ratio(unmasked.out, c.fixture_output, fix.bound), 1.0) << where;
    }
  }
  EXPECT_TRUE(padded_check) << "no check vector exercises key padding";
}

TYPED_TEST(RealAttentionFixtureTest, OutOfRangeHeadIsRejected) {
  // A small hand-made set: 2 sequences, 2 layers of 4 heads (the check needs no data).
  bench::RealAttention<TypeParam> f;
  f.tokens = 8;
  f.sequences.resize(2);
  f.sequences[0].length = 8;
  f.sequences[1].length = 5;
  f.layers = {{"Layer_0", 4, 2, 0.5}, {"Layer_1", 4, 2, 0.5}};
  f.heads.assign(2, std::vector<std::vector<bench::RealAttentionHead<TypeParam>>>(
                        2, std::vector<bench::RealAttentionHead<TypeParam>>(4)));
  EXPECT_NO_THROW(f.head(1, 1, 3));
  const std::string msg = test::invalid_argument_message([&] { f.head(0, 2, 0); });
  EXPECT_NE(msg.find("layer 2"), std::string::npos) << msg;
  EXPECT_THROW(f.head(2, 0, 0), std::invalid_argument);
  EXPECT_THROW(f.head(0, 0, 4), std::invalid_argument);
  EXPECT_THROW(f.head(0, -1, 0), std::invalid_argument);
  EXPECT_THROW(f.key_padding(-1), std::invalid_argument);
  EXPECT_EQ(f.key_padding(1).count(), 3);
}

// ---- damaged copies -----------------------------------------------------------------------------
class RealAttentionDamage : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::temp_directory_path() /
           ("fastattn_real_attention_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const char* f : {"real_attention.json", "real_attention.bin"})
      fs::copy_file(fs::path(kDir) / f, dir_ / f);
    // The untouched copy loads: the errors below come from the damage alone.
    ASSERT_NO_THROW(bench::read_real_attention_data(dir_.string()));
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<char> bytes() const {
    std::ifstream in(dir_ / "real_attention.bin", std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  void write_bytes(const std::vector<char>& b) const {
    std::ofstream(dir_ / "real_attention.bin", std::ios::binary | std::ios::trunc)
        .write(b.data(), std::streamsize(b.size()));
  }
  // The index as it is now in the copy (read it before damaging it).
  Json index() const { return read_index(dir_.string()); }
  void write_index(const Json& j) const {
    std::ofstream(dir_ / "real_attention.json", std::ios::trunc) << j.dump(1);
  }
  void write_index_text(const std::string& text) const {
    std::ofstream(dir_ / "real_attention.json", std::ios::trunc) << text;
  }
  // Writes `good` changed by `edit` as the index; loading must then fail as expect_error() says.
  void expect_index_error(const Json& good, const std::function<void(Json&)>& edit,
                          const std::string& file, std::initializer_list<std::string> parts) const {
    Json j = good;
    edit(j);
    write_index(j);
    expect_error(file, parts);
  }
  // Loading must throw std::runtime_error whose message names `file` and contains every part.
  void expect_error(const std::string& file, std::initializer_list<std::string> parts) const {
    std::string msg;
    try {
      bench::read_real_attention_data(dir_.string());
    } catch (const std::runtime_error& e) {
      msg = e.what();
    }
    ASSERT_FALSE(msg.empty()) << "the damaged fixture loaded without a std::runtime_error";
    EXPECT_NE(msg.find((dir_ / file).string()), std::string::npos) << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
  }

  fs::path dir_;
};

TEST_F(RealAttentionDamage, FlippedPayloadBytesFailTheChecksum) {
  const std::vector<char> good = bytes();
  for (const std::size_t at :
       {std::size_t(96), std::size_t(128), good.size() / 2, good.size() - 1}) {
    std::vector<char> b = good;
    b[at] = char(b[at] ^ 0x10);
    write_bytes(b);
    expect_error("real_attention.bin", {"checksum mismatch", "corrupted"});
  }
}

TEST_F(RealAttentionDamage, TruncatedDataFile) {
  std::vector<char> b = bytes();
  b.resize(b.size() - 1000);
  write_bytes(b);
  expect_error("real_attention.bin", {"truncated", std::to_string(b.size()) + " bytes"});
  b.resize(10);
  write_bytes(b);
  expect_error("real_attention.bin", {"truncated"});
  // Even when the index agrees with the short size, a file without its header is rejected.
  expect_index_error(index(), [](Json& j) { j["data_bytes"] = 10; }, "real_attention.bin",
                     {"shorter than its 96-byte header"});
}

TEST_F(RealAttentionDamage, WrongMagicAndHeader) {
  std::vector<char> b = bytes();
  const std::vector<char> good = b;
  b[0] = 'X';
  write_bytes(b);
  expect_error("real_attention.bin", {"wrong magic"});
  b = good;
  b[8] = 2;  // header version
  write_bytes(b);
  expect_error("real_attention.bin", {"header version 2"});
  b = good;
  b[16] = char(b[16] + 1);  // payload size field
  write_bytes(b);
  expect_error("real_attention.bin", {"header payload size"});
  b = good;
  b[30] = char(b[30] ^ 1);  // stored payload digest
  write_bytes(b);
  expect_error("real_attention.bin", {"header SHA-256"});
  b = good;
  b[60] = char(b[60] ^ 1);  // stored index digest
  write_bytes(b);
  expect_error("real_attention.json", {"checksum mismatch, the index is corrupted or edited"});
}

// A non-finite value is rejected even in a file whose checksums were updated to match it.
TEST_F(RealAttentionDamage, NonFiniteValueWithMatchingChecksums) {
  std::vector<char> b = bytes();
  Json j = index();
  const auto at = j["layers"][0]["hidden"]["offset"].get<std::size_t>() + 2 * 5;
  b[at] = 0x00;  // float16 +inf = 0x7c00, little-endian
  b[at + 1] = 0x7c;
  const auto hex_to_header = [&](const std::string& hex, std::size_t pos) {
    for (std::size_t i = 0; i < 32; ++i)
      b[pos + i] = char(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  };
  const std::string payload = bench::sha256_hex(b.data() + 96, b.size() - 96);
  hex_to_header(payload, 24);
  j["payload_sha256"] = payload;
  write_index(j);
  std::ifstream in(dir_ / "real_attention.json", std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  hex_to_header(bench::sha256_hex(text.data(), text.size()), 56);
  write_bytes(b);
  expect_error("real_attention.bin", {"layers[0].hidden has a non-finite value at element 5"});
}

// Edits that leave the index well-formed and plausible are caught by its checksum in the header.
TEST_F(RealAttentionDamage, IndexEditedButWellFormed) {
  const Json good = index();
  expect_index_error(good, [&](Json& j) { j["layers"][0]["scale"] = 0.1251; },
                     "real_attention.json",
                     {"checksum mismatch, the index is corrupted or edited"});
  expect_index_error(good, [&](Json& j) { j["sequences"][2]["token_ids"][5] = 7; },
                     "real_attention.json",
                     {"checksum mismatch, the index is corrupted or edited"});
  expect_index_error(good, [&](Json& j) { j["checks"][0]["model_output"][0][0] = 0.5; },
                     "real_attention.json",
                     {"checksum mismatch, the index is corrupted or edited"});
}

TEST_F(RealAttentionDamage, MissingFiles) {
  fs::remove(dir_ / "real_attention.bin");
  expect_error("real_attention.bin", {"cannot open"});
  fs::remove(dir_ / "real_attention.json");
  expect_error("real_attention.json", {"cannot open"});
}

TEST_F(RealAttentionDamage, IndexThatIsNotJson) {
  std::ifstream in(dir_ / "real_attention.json");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  write_index_text(text.substr(0, text.size() / 2));
  expect_error("real_attention.json", {"not valid JSON"});
}

TEST_F(RealAttentionDamage, IndexWithMissingOrMistypedFields) {
  const Json good = index();
  expect_index_error(good, [&](Json& j) { j.erase("layers"); }, "real_attention.json",
                     {"missing field layers"});
  expect_index_error(good, [&](Json& j) { j["tokens"] = "128"; }, "real_attention.json",
                     {"tokens is not an integer"});
  expect_index_error(good, [&](Json& j) { j["layers"][1]["hidden"].erase("offset"); },
                     "real_attention.json", {"missing field layers[1].hidden.offset"});
  expect_index_error(good, [&](Json& j) { j["checks"][0]["model_output"][1].erase(0); },
                     "real_attention.json", {"checks[0].model_output[1] is not an array of"});
}

TEST_F(RealAttentionDamage, IndexWithWrongFormatOrVersion) {
  const Json good = index();
  expect_index_error(good, [&](Json& j) { j["version"] = 2; }, "real_attention.json",
                     {"version 2 is not supported"});
  expect_index_error(good, [&](Json& j) { j["format"] = "something-else"; }, "real_attention.json",
                     {"format"});
  expect_index_error(good, [&](Json& j) { j["payload_sha256"] = std::string(64, '0'); },
                     "real_attention.bin", {"differs from the index"});
}

TEST_F(RealAttentionDamage, IndexWithBadOffsetsAndShapes) {
  const Json good = index();
  const auto end = good["data_bytes"].get<std::int64_t>();
  expect_index_error(good, [&](Json& j) { j["layers"][1]["qkv_bias"]["offset"] = end - 4; },
                     "real_attention.json",
                     {"layers[1].qkv_bias", "does not lie inside the payload"});
  // Offset 0 lies inside the header.
  expect_index_error(good, [&](Json& j) { j["layers"][0]["hidden"]["offset"] = 0; },
                     "real_attention.json",
                     {"layers[0].hidden", "does not lie inside the payload"});
  expect_index_error(good,
                     [&](Json& j) {
                       j["layers"][0]["qkv_weight"]["offset"] =
                           good["layers"][0]["hidden"]["offset"];
                     },
                     "real_attention.json", {"overlap"});
  expect_index_error(good, [&](Json& j) { j["layers"][0]["hidden"]["shape"][2] = 255; },
                     "real_attention.json", {"layers[0].hidden.shape[2] = 255"});
  expect_index_error(good, [&](Json& j) { j["layers"][0]["head_dim"] = 63; }, "real_attention.json",
                     {"num_heads 4 x head_dim 63 != model_dim 256"});
  expect_index_error(good, [&](Json& j) { j["layers"][1]["qkv_weight"]["dtype"] = "int8"; },
                     "real_attention.json", {"layers[1].qkv_weight.dtype"});
}

TEST_F(RealAttentionDamage, IndexWithBadSequencesOrChecks) {
  const Json good = index();
  expect_index_error(good, [&](Json& j) { j["sequences"][17]["length"] = 129; },
                     "real_attention.json", {"sequences[17].length = 129 is out of range"});
  expect_index_error(good, [&](Json& j) { j["sequences"][3]["token_ids"].erase(0); },
                     "real_attention.json", {"sequences[3].token_ids has 127 ids for length 128"});
  // One sequence fewer in the index than the arrays hold.
  expect_index_error(good, [&](Json& j) { j["sequences"].erase(19); }, "real_attention.json",
                     {"layers[0].hidden.shape[0] = 20, expected 19"});
  expect_index_error(good, [&](Json& j) { j["checks"][1]["rows"][0] = 128; }, "real_attention.json",
                     {"checks[1].rows[0] = 128 is out of range"});
  expect_index_error(good, [&](Json& j) { j["data_file"] = "../real_attention.bin"; },
                     "real_attention.json", {"not a plain file name"});
}

}  // namespace
}  // namespace fastattn
