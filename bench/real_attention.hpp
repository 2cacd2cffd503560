#pragma once
/// @file real_attention.hpp
/// Reader of the real-attention fixture (bench/data/real_attention/): per (sequence, layer, head)
/// q, k, v [tokens, head_dim] of the two attention layers of a trained transformer encoder
/// (Universal Sentence Encoder lite) on 20 texts, with each text's true token length (keys at
/// positions >= length are padding). Provenance, format and error analysis:
/// bench/data/real_attention/PROVENANCE.md; generator: scripts/real-attention/extract.js.
///
/// The fixture stores, per layer, the hidden states that enter the attention block's QKV projection
/// (float16) and the projection's weight (float16) and bias (float32); the reader forms
/// [Q | K | V] = X W + b in double and cuts the per-head columns (Q of head h = columns
/// [h dh, (h+1) dh), K and V the same in the second and third thirds). Every size, offset, the
/// magic, the version, the SHA-256 of the payload and that of the index are checked before the data
/// is returned; any problem throws std::runtime_error naming the file and what is wrong.

#include <nlohmann/json.hpp>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastattn/config.hpp"
#include "fastattn/types.hpp"
#include "sha256.hpp"

namespace fastattn::bench {

/// One text of the fixture.
struct RealAttentionSequence {
  std::string id, source, license;
  Index length = 0;            // true number of tokens; rows >= length are padding
  std::vector<int> token_ids;  // [length] SentencePiece ids
};

/// One attention layer as stored: its dimensions and the inputs of its QKV projection.
struct RealAttentionLayer {
  std::string name;
  Index model_dim = 0, num_heads = 0, head_dim = 0;  // model_dim = num_heads * head_dim
  double scale = 0;                                  // the model's logit scale (1/sqrt(head_dim))
  std::vector<RowMatrix<double>> hidden;             // per sequence [tokens, model_dim]
  RowMatrix<double> qkv_weight;                      // [model_dim, 3 model_dim]: [Q | K | V]
  Vector<double> qkv_bias;                           // [3 model_dim]
};

/// Reference rows of one head's attention output, stored by the generator.
struct RealAttentionCheck {
  Index sequence = 0, layer = 0, head = 0;
  std::vector<Index> rows;  // query rows
  /// [rows, head_dim] the model's own attention output (float32 values).
  RowMatrix<double> model_output;
  /// [rows, head_dim] the generator's float64 recomputation from the stored (float16) values.
  RowMatrix<double> fixture_output;
};

/// Everything in the fixture, float16 values widened to double.
struct RealAttentionData {
  std::string index_path;
  Index tokens = 0;  // rows of every hidden state (the model's 128-token limit)
  std::vector<RealAttentionSequence> sequences;
  std::vector<RealAttentionLayer> layers;
  std::vector<RealAttentionCheck> checks;
};

/// One head's inputs: q, k, v [tokens, head_dim] (padded rows included, as the model computed
/// them).
template <class T>
struct RealAttentionHead {
  RowMatrix<T> q, k, v;
};

/// The fixture as per-head matrices.
template <class T>
struct RealAttention {
  struct Layer {
    std::string name;
    Index num_heads = 0, head_dim = 0;
    double scale = 0;
  };
  Index tokens = 0;
  std::vector<RealAttentionSequence> sequences;
  std::vector<Layer> layers;
  std::vector<std::vector<std::vector<RealAttentionHead<T>>>> heads;  // [sequence][layer][head]

  /// q, k, v [tokens, head_dim] of head h of layer l for sequence s.
  const RealAttentionHead<T>& head(Index s, Index l, Index h) const {
    FASTATTN_CHECK(s >= 0 && s < Index(sequences.size()) && l >= 0 && l < Index(layers.size()) &&
                       h >= 0 && h < layers[size_t(l)].num_heads,
                   "real_attention head(sequence " << s << ", layer " << l << ", head " << h
                                                   << ") is out of range [" << sequences.size()
                                                   << ", " << layers.size() << ", heads]");
    return heads[size_t(s)][size_t(l)][size_t(h)];
  }

  /// [tokens] key padding of sequence s: true for positions >= its length.
  KeyMask key_padding(Index s) const {
    FASTATTN_CHECK(s >= 0 && s < Index(sequences.size()), "real_attention key_padding: sequence "
                                                              << s << " is out of range [0, "
                                                              << sequences.size() << ")");
    KeyMask mask(tokens);
    for (Index j = 0; j < tokens; ++j) mask[j] = j >= sequences[size_t(s)].length;
    return mask;
  }
};

/// The index file's name inside the fixture directory.
inline constexpr char kRealAttentionIndex[] = "real_attention.json";

namespace detail {

using Json = nlohmann::json;

[[noreturn]] inline void real_attention_fail(const std::string& file, const std::string& what) {
  throw std::runtime_error("real_attention fixture " + file + ": " + what);
}

// Checked access to the index: every missing field or wrong type names the field's path.
class IndexReader {
 public:
  explicit IndexReader(std::string file) : file_(std::move(file)) {}

  const Json& field(const Json& obj, const char* key, const std::string& where) const {
    if (!obj.is_object())
      fail((where.empty() ? std::string("the index") : where) + " is not an object");
    const auto it = obj.find(key);
    if (it == obj.end()) fail("missing field " + path(where, key));
    return *it;
  }
  std::int64_t integer(const Json& obj, const char* key, const std::string& where, std::int64_t lo,
                       std::int64_t hi) const {
    return integer_value(field(obj, key, where), path(where, key), lo, hi);
  }
  std::int64_t integer_value(const Json& v, const std::string& name, std::int64_t lo,
                             std::int64_t hi) const {
    if (!v.is_number_integer()) fail(name + " is not an integer");
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > std::uint64_t(hi))
      fail(name + " = " + v.dump() + " is out of range [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "]");
    const std::int64_t x = v.get<std::int64_t>();
    if (x < lo || x > hi)
      fail(name + " = " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "]");
    return x;
  }
  double number_value(const Json& v, const std::string& name) const {
    if (!v.is_number()) fail(name + " is not a number");
    const double x = v.get<double>();
    if (!std::isfinite(x)) fail(name + " is not finite");
    return x;
  }
  std::string string(const Json& obj, const char* key, const std::string& where) const {
    const Json& v = field(obj, key, where);
    if (!v.is_string()) fail(path(where, key) + " is not a string");
    return v.get<std::string>();
  }
  const Json& array(const Json& obj, const char* key, const std::string& where) const {
    const Json& v = field(obj, key, where);
    if (!v.is_array()) fail(path(where, key) + " is not an array");
    return v;
  }
  [[noreturn]] void fail(const std::string& what) const { real_attention_fail(file_, what); }

  static std::string path(const std::string& where, const char* key) {
    return where.empty() ? std::string(key) : where + "." + key;
  }

 private:
  std::string file_;
};

inline std::vector<unsigned char> read_file_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) real_attention_fail(file, "cannot open the file");
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  if (in.bad()) real_attention_fail(file, "read error");
  return bytes;
}

inline std::uint32_t load_le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}

inline std::uint64_t load_le64(const unsigned char* p) {
  return std::uint64_t(load_le32(p)) | std::uint64_t(load_le32(p + 4)) << 32;
}

/// IEEE binary16 bits -> double (exact). Inf and NaN come back as such; the caller rejects them.
inline double half_to_double(std::uint16_t h) {
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  double v;
  if (e == 0)
    v = std::ldexp(double(m), -24);  // subnormal
  else if (e == 31)
    v = m == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  else
    v = std::ldexp(double(1024 + m), e - 25);
  return (h & 0x8000) ? -v : v;
}

// Where one stored array lives in the data file.
struct ArraySpec {
  std::string name;
  std::uint64_t offset = 0, bytes = 0, count = 0;
  bool half = false;  // float16, else float32
};

// Parses {offset, dtype, shape}, checks the shape equals `expected` and the bytes lie inside the
// payload, and returns where to read.
inline ArraySpec array_spec(const IndexReader& r, const Json& obj, const std::string& where,
                            const char* key, const std::vector<std::int64_t>& expected,
                            std::uint64_t header_bytes, std::uint64_t file_bytes) {
  ArraySpec a;
  const std::string name = IndexReader::path(where, key);
  a.name = name;
  const Json& spec = r.field(obj, key, where);
  const std::string dtype = r.string(spec, "dtype", name);
  if (dtype != "float16" && dtype != "float32")
    r.fail(name + ".dtype \"" + dtype + "\" is not float16 or float32");
  a.half = dtype == "float16";
  const Json& shape = r.array(spec, "shape", name);
  if (shape.size() != expected.size())
    r.fail(name + ".shape has " + std::to_string(shape.size()) + " dimensions, expected " +
           std::to_string(expected.size()));
  a.count = 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const std::int64_t d =
        r.integer_value(shape[i], name + ".shape[" + std::to_string(i) + "]", 1, 1 << 24);
    if (d != expected[i])
      r.fail(name + ".shape[" + std::to_string(i) + "] = " + std::to_string(d) + ", expected " +
             std::to_string(expected[i]) + " from the layer's dimensions");
    a.count *= std::uint64_t(d);  // < 2^64: d <= 2^24 and count <= file size before each step
    if (a.count > file_bytes) r.fail(name + " has more elements than the data file has bytes");
  }
  a.bytes = a.count * (a.half ? 2 : 4);
  a.offset =
      std::uint64_t(r.integer(spec, "offset", name, 0, std::numeric_limits<std::int64_t>::max()));
  if (a.offset < header_bytes || a.offset > file_bytes || a.bytes > file_bytes - a.offset)
    r.fail(name + " at offset " + std::to_string(a.offset) + " with " + std::to_string(a.bytes) +
           " bytes does not lie inside the payload [" + std::to_string(header_bytes) + ", " +
           std::to_string(file_bytes) + ")");
  return a;
}

// Decodes an array into `out` (count values), rejecting non-finite values.
inline void decode_array(const IndexReader& r, const std::vector<unsigned char>& bytes,
                         const ArraySpec& a, double* out) {
  const unsigned char* p = bytes.data() + a.offset;
  for (std::uint64_t i = 0; i < a.count; ++i) {
    double v;
    if (a.half) {
      v = half_to_double(std::uint16_t(p[2 * i] | p[2 * i + 1] << 8));
    } else {
      const std::uint32_t bits = load_le32(p + 4 * i);
      float f;
      std::memcpy(&f, &bits, sizeof f);
      v = f;
    }
    if (!std::isfinite(v))
      r.fail(a.name + " has a non-finite value at element " + std::to_string(i));
    out[i] = v;
  }
}

}  // namespace detail

/// Reads and validates the fixture in `dir` (real_attention.json and the data file it names).
/// Throws std::runtime_error naming the file and the problem: missing or unreadable file, invalid
/// JSON, a missing or mistyped index field, wrong format or version, wrong magic, a data file of
/// the wrong size (truncated), a SHA-256 mismatch of the payload or of the index (corrupted or
/// edited), an array outside the payload or overlapping another, a shape that does not match the
/// layer's dimensions, a non-finite value.
inline RealAttentionData read_real_attention_data(const std::string& dir) {
  using detail::Json;
  constexpr char kMagic[] = "FATTNRAF";
  constexpr std::int64_t kVersion = 1;
  constexpr std::uint64_t kHeaderBytes = 96;

  RealAttentionData data;
  data.index_path = dir + "/" + kRealAttentionIndex;
  const detail::IndexReader r(data.index_path);
  const std::vector<unsigned char> index_bytes = detail::read_file_bytes(data.index_path);
  Json index;
  try {
    index = Json::parse(index_bytes.begin(), index_bytes.end());
  } catch (const Json::exception& e) {
    r.fail(std::string("not valid JSON: ") + e.what());
  }
  if (r.string(index, "format", "") != "fastattn-real-attention")
    r.fail("format is not \"fastattn-real-attention\"");
  const std::int64_t version = r.integer(index, "version", "", 0, 1 << 30);
  if (version != kVersion)
    r.fail("version " + std::to_string(version) + " is not supported (this reader reads " +
           std::to_string(kVersion) + ")");
  if (r.string(index, "magic", "") != kMagic) r.fail(std::string("magic is not ") + kMagic);
  if (r.string(index, "byte_order", "") != "little") r.fail("byte_order is not \"little\"");
  if (std::uint64_t(r.integer(index, "header_bytes", "", 0, 1 << 20)) != kHeaderBytes)
    r.fail("header_bytes is not " + std::to_string(kHeaderBytes));

  // The data file: a plain name next to the index.
  const std::string data_name = r.string(index, "data_file", "");
  if (data_name.empty() || data_name == "." || data_name == ".." ||
      data_name.find_first_of("/\\") != std::string::npos)
    r.fail("data_file \"" + data_name + "\" is not a plain file name");
  const std::string data_path = dir + "/" + data_name;
  const detail::IndexReader rd(data_path);
  const std::vector<unsigned char> bytes = detail::read_file_bytes(data_path);
  const std::uint64_t size = bytes.size();
  const auto expected_size = std::uint64_t(
      r.integer(index, "data_bytes", "", 0, std::numeric_limits<std::int64_t>::max()));
  if (size != expected_size)
    rd.fail("has " + std::to_string(size) + " bytes, the index says " +
            std::to_string(expected_size) + " (truncated or not the file the index describes)");
  if (size < kHeaderBytes)
    rd.fail("is shorter than its " + std::to_string(kHeaderBytes) + "-byte header");
  if (std::memcmp(bytes.data(), kMagic, 8) != 0)
    rd.fail(std::string("wrong magic (expected \"") + kMagic + "\"): not a real-attention fixture");
  if (detail::load_le32(bytes.data() + 8) != kVersion)
    rd.fail("header version " + std::to_string(detail::load_le32(bytes.data() + 8)) +
            " is not supported (this reader reads " + std::to_string(kVersion) + ")");
  if (detail::load_le32(bytes.data() + 12) != kHeaderBytes)
    rd.fail("header size field is " + std::to_string(detail::load_le32(bytes.data() + 12)) +
            ", expected " + std::to_string(kHeaderBytes));
  if (detail::load_le64(bytes.data() + 16) != size - kHeaderBytes)
    rd.fail("header payload size " + std::to_string(detail::load_le64(bytes.data() + 16)) +
            " does not match the file (" + std::to_string(size - kHeaderBytes) +
            " bytes after the header)");
  const auto header_hex = [&](std::size_t begin) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string h;
    for (std::size_t i = begin; i < begin + 32; ++i) {
      h += hex[bytes[i] >> 4];
      h += hex[bytes[i] & 15];
    }
    return h;
  };
  const std::string payload_hash = r.string(index, "payload_sha256", "");
  if (header_hex(24) != payload_hash)
    rd.fail("header SHA-256 " + header_hex(24) + " differs from the index's payload_sha256 " +
            payload_hash);
  const std::string actual_hash = sha256_hex(bytes.data() + kHeaderBytes, size - kHeaderBytes);
  if (actual_hash != payload_hash)
    rd.fail("payload SHA-256 is " + actual_hash + ", expected " + payload_hash +
            ": checksum mismatch, the file is corrupted");

  // Dimensions, sequences and arrays.
  data.tokens = r.integer(index, "tokens", "", 1, 1 << 16);
  const Json& sequences = r.array(index, "sequences", "");
  if (sequences.empty()) r.fail("sequences is empty");
  for (std::size_t s = 0; s < sequences.size(); ++s) {
    const std::string where = "sequences[" + std::to_string(s) + "]";
    RealAttentionSequence seq;
    seq.id = r.string(sequences[s], "id", where);
    seq.source = r.string(sequences[s], "source", where);
    seq.license = r.string(sequences[s], "license", where);
    seq.length = r.integer(sequences[s], "length", where, 1, data.tokens);
    const Json& ids = r.array(sequences[s], "token_ids", where);
    if (Index(ids.size()) != seq.length)
      r.fail(where + ".token_ids has " + std::to_string(ids.size()) + " ids for length " +
             std::to_string(seq.length));
    for (std::size_t i = 0; i < ids.size(); ++i)
      seq.token_ids.push_back(
          int(r.integer_value(ids[i], where + ".token_ids[" + std::to_string(i) + "]", 0,
                              std::numeric_limits<int>::max())));
    data.sequences.push_back(std::move(seq));
  }
  const auto num_seq = std::int64_t(data.sequences.size());

  const Json& layers = r.array(index, "layers", "");
  if (layers.empty()) r.fail("layers is empty");
  std::vector<detail::ArraySpec> specs;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const std::string where = "layers[" + std::to_string(l) + "]";
    RealAttentionLayer layer;
    layer.name = r.string(layers[l], "name", where);
    layer.model_dim = r.integer(layers[l], "model_dim", where, 1, 1 << 16);
    layer.num_heads = r.integer(layers[l], "num_heads", where, 1, 1 << 10);
    layer.head_dim = r.integer(layers[l], "head_dim", where, 1, 1 << 16);
    if (layer.num_heads * layer.head_dim != layer.model_dim)
      r.fail(where + ": num_heads " + std::to_string(layer.num_heads) + " x head_dim " +
             std::to_string(layer.head_dim) + " != model_dim " + std::to_string(layer.model_dim));
    layer.scale = r.number_value(r.field(layers[l], "scale", where), where + ".scale");
    if (!(layer.scale > 0)) r.fail(where + ".scale is not positive");
    const std::int64_t D = layer.model_dim;
    const auto hidden = detail::array_spec(r, layers[l], where, "hidden", {num_seq, data.tokens, D},
                                           kHeaderBytes, size);
    const auto weight =
        detail::array_spec(r, layers[l], where, "qkv_weight", {D, 3 * D}, kHeaderBytes, size);
    const auto bias =
        detail::array_spec(r, layers[l], where, "qkv_bias", {3 * D}, kHeaderBytes, size);
    for (const auto* a : {&hidden, &weight, &bias}) specs.push_back(*a);

    std::vector<double> h(hidden.count);
    detail::decode_array(rd, bytes, hidden, h.data());
    for (std::int64_t s = 0; s < num_seq; ++s)
      layer.hidden.push_back(
          Eigen::Map<const RowMatrix<double>>(h.data() + s * data.tokens * D, data.tokens, D));
    layer.qkv_weight.resize(D, 3 * D);
    detail::decode_array(rd, bytes, weight, layer.qkv_weight.data());
    layer.qkv_bias.resize(3 * D);
    detail::decode_array(rd, bytes, bias, layer.qkv_bias.data());
    data.layers.push_back(std::move(layer));
  }
  // No two arrays may share bytes (an index pointing two arrays at one place is corrupt).
  for (std::size_t a = 0; a < specs.size(); ++a)
    for (std::size_t b = a + 1; b < specs.size(); ++b)
      if (specs[a].offset < specs[b].offset + specs[b].bytes &&
          specs[b].offset < specs[a].offset + specs[a].bytes)
        r.fail(specs[a].name + " and " + specs[b].name + " overlap in the data file");

  const Json& checks = r.array(index, "checks", "");
  for (std::size_t c = 0; c < checks.size(); ++c) {
    const std::string where = "checks[" + std::to_string(c) + "]";
    RealAttentionCheck check;
    check.sequence = r.integer(checks[c], "sequence", where, 0, num_seq - 1);
    check.layer = r.integer(checks[c], "layer", where, 0, std::int64_t(data.layers.size()) - 1);
    const RealAttentionLayer& layer = data.layers[size_t(check.layer)];
    check.head = r.integer(checks[c], "head", where, 0, layer.num_heads - 1);
    const Json& rows = r.array(checks[c], "rows", where);
    for (std::size_t i = 0; i < rows.size(); ++i)
      check.rows.push_back(
          r.integer_value(rows[i], where + ".rows[" + std::to_string(i) + "]", 0, data.tokens - 1));
    for (const char* key : {"model_output", "fixture_output"}) {
      const Json& out = r.array(checks[c], key, where);
      const std::string name = detail::IndexReader::path(where, key);
      if (out.size() != rows.size())
        r.fail(name + " has " + std::to_string(out.size()) + " rows, expected " +
               std::to_string(rows.size()));
      RowMatrix<double> m(Index(rows.size()), layer.head_dim);
      for (std::size_t i = 0; i < out.size(); ++i) {
        if (!out[i].is_array() || Index(out[i].size()) != layer.head_dim)
          r.fail(name + "[" + std::to_string(i) + "] is not an array of " +
                 std::to_string(layer.head_dim) + " numbers");
        for (Index t = 0; t < layer.head_dim; ++t)
          m(Index(i), t) = r.number_value(out[i][size_t(t)], name + "[" + std::to_string(i) + "]");
      }
      (std::string(key) == "model_output" ? check.model_output : check.fixture_output) =
          std::move(m);
    }
    data.checks.push_back(std::move(check));
  }
  // Last, so that a malformed index is reported by what is wrong with it: the header holds the
  // SHA-256 of the index file, which catches edits that leave the index well-formed (a digit of a
  // scale or a length).
  const std::string index_hash = sha256_hex(index_bytes.data(), index_bytes.size());
  if (index_hash != header_hex(56))
    r.fail("SHA-256 is " + index_hash + ", but the data file's header says " + header_hex(56) +
           ": checksum mismatch, the index is corrupted or edited");
  return data;
}

/// [tokens, 3 model_dim] = hidden W + b of layer l for sequence s, in double.
inline RowMatrix<double> real_attention_projection(const RealAttentionData& data, Index s,
                                                   Index l) {
  FASTATTN_CHECK(
      s >= 0 && s < Index(data.sequences.size()) && l >= 0 && l < Index(data.layers.size()),
      "real_attention_projection: sequence " << s << " / layer " << l << " out of range ["
                                             << data.sequences.size() << ", " << data.layers.size()
                                             << "]");
  const RealAttentionLayer& layer = data.layers[size_t(l)];
  RowMatrix<double> y = layer.hidden[size_t(s)] * layer.qkv_weight;
  y.rowwise() += layer.qkv_bias.transpose();
  return y;
}

/// Loads the fixture in `dir` as per-head q, k, v [tokens, head_dim] in T (formed in double, then
/// rounded to T once). Throws std::runtime_error as read_real_attention_data() does.
template <class T>
RealAttention<T> load_real_attention(const std::string& dir) {
  const RealAttentionData data = read_real_attention_data(dir);
  RealAttention<T> out;
  out.tokens = data.tokens;
  out.sequences = data.sequences;
  for (const auto& layer : data.layers)
    out.layers.push_back({layer.name, layer.num_heads, layer.head_dim, layer.scale});
  out.heads.resize(data.sequences.size());
  for (Index s = 0; s < Index(data.sequences.size()); ++s) {
    for (Index l = 0; l < Index(data.layers.size()); ++l) {
      const RealAttentionLayer& layer = data.layers[size_t(l)];
      const RowMatrix<double> y = real_attention_projection(data, s, l);
      const Index D = layer.model_dim, dh = layer.head_dim;
      std::vector<RealAttentionHead<T>> heads;
      for (Index h = 0; h < layer.num_heads; ++h)
        heads.push_back({y.middleCols(h * dh, dh).template cast<T>(),
                         y.middleCols(D + h * dh, dh).template cast<T>(),
                         y.middleCols(2 * D + h * dh, dh).template cast<T>()});
      out.heads[size_t(s)].push_back(std::move(heads));
    }
  }
  return out;
}

}  // namespace fastattn::bench
