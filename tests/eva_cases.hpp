#pragma once
// Loader of the EVA reference cases in tests/data/eva_cases (see its README): <name>.json holds
// the metadata and the array index, <name>.bin the raw little-endian C-order arrays.

#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fastattn/eva.hpp"
#include "fastattn/types.hpp"

#ifndef FASTATTN_EVA_CASES_DIR
#error "FASTATTN_EVA_CASES_DIR must name the directory of the EVA reference cases"
#endif

namespace fastattn::test {

/// The five cases, by name.
inline const std::vector<std::string>& eva_case_names() {
  static const std::vector<std::string> names = {
      "nc_n64_d16_w8_c8_noln-id", "nc_n256_d64_w16_c8_ov_default", "nc_n250_d16_w16_c8_pad_noln-id",
      "c_n250_d16_w16_cs8_pad_qk", "c_n64_d16_w8_cs8_ov_noln-id"};
  return names;
}

/// One reference case: metadata plus typed access to its arrays.
class EvaCase {
 public:
  explicit EvaCase(const std::string& name) : name_(name) {
    const std::string dir = FASTATTN_EVA_CASES_DIR;
    std::ifstream js(dir + "/" + name + ".json");
    if (!js) throw std::runtime_error("cannot open " + dir + "/" + name + ".json");
    js >> meta_;
    std::ifstream bin(dir + "/" + meta_.at("bin").get<std::string>(), std::ios::binary);
    if (!bin) throw std::runtime_error("cannot open the .bin of " + name);
    bytes_.assign(std::istreambuf_iterator<char>(bin), std::istreambuf_iterator<char>());
    const std::uint16_t probe = 1;
    unsigned char first = 0;
    std::memcpy(&first, &probe, 1);
    if (first != 1) throw std::runtime_error("the EVA case loader assumes a little-endian host");
  }

  const std::string& name() const { return name_; }
  bool causal() const { return meta_.at("variant") == "causal"; }
  Index batch() const { return meta_.at("B").get<Index>(); }
  Index heads() const { return meta_.at("H").get<Index>(); }
  Index n() const { return meta_.at("n").get<Index>(); }
  Index d() const { return meta_.at("d").get<Index>(); }
  Index num_chunks() const { return meta_.at("derived").at("num_chunks").get<Index>(); }
  bool has(const std::string& array) const { return meta_.at("arrays").contains(array); }

  /// The library options equivalent to the case's official arguments.
  EvaOptions options() const {
    const auto& config = meta_.at("config");
    EvaOptions o;
    o.window = config.at("window_size").get<Index>();
    o.ext = meta_.at("derived").at("ext_size").get<Index>();
    if (config.contains("chunk_size"))
      o.chunk_size = config.at("chunk_size").get<Index>();
    else if (config.contains("num_chunks"))
      o.num_chunks = config.at("num_chunks").get<Index>();
    else
      o.num_chunks = config.at("num_landmarks").get<Index>();
    o.semantics = EvaSemantics::Reference;
    return o;  // mu_scale: the default (1/2 non-causal, 1 causal) is the official one
  }

  /// The case's adaptive projections (the stored identity in the noln-id cases), cast to T.
  template <class T>
  EvaParams<T> params() const {
    EvaParams<T> p;
    p.mu_q = projection<T>("mu_q");
    p.mu_k = projection<T>("mu_k");
    return p;
  }

  /// Head (b, h) of a [B, H, rows, cols] array as a [rows, cols] matrix of T.
  template <class T>
  RowMatrix<T> head(const std::string& array, Index b, Index h) const {
    const auto s = shape(array);
    const Index rows = s.at(2), cols = s.at(3);
    return slice<T>(array, ((b * heads() + h) * rows) * cols, rows, cols);
  }

  /// Row b of key_padding_mask as a KeyMask (true = padded).
  KeyMask padding(Index b) const {
    const auto& a = meta_.at("arrays").at("key_padding_mask");
    const Index n_ = a.at("shape").at(1).get<Index>();
    const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data()) +
                    a.at("offset").get<std::size_t>() + static_cast<std::size_t>(b * n_);
    KeyMask m(n_);
    for (Index j = 0; j < n_; ++j) m[j] = p[j] != 0;
    return m;
  }

 private:
  std::vector<Index> shape(const std::string& array) const {
    return meta_.at("arrays").at(array).at("shape").get<std::vector<Index>>();
  }

  template <class T>
  RowMatrix<T> slice(const std::string& array, Index first, Index rows, Index cols) const {
    const auto& a = meta_.at("arrays").at(array);
    const std::string dtype = a.at("dtype");
    const std::size_t offset = a.at("offset").get<std::size_t>();
    RowMatrix<T> m(rows, cols);
    for (Index i = 0; i < rows * cols; ++i) {
      const std::size_t at = static_cast<std::size_t>(first + i);
      if (dtype == "<f4") {
        float x;
        std::memcpy(&x, bytes_.data() + offset + at * sizeof(float), sizeof(float));
        m.data()[i] = static_cast<T>(x);
      } else if (dtype == "<f8") {
        double x;
        std::memcpy(&x, bytes_.data() + offset + at * sizeof(double), sizeof(double));
        m.data()[i] = static_cast<T>(x);
      } else {
        throw std::runtime_error("unexpected dtype " + dtype + " of " + array);
      }
    }
    return m;
  }

  template <class T>
  RowMatrix<T> whole(const std::string& array) const {
    const auto s = shape(array);
    return slice<T>(array, 0, s.at(0), s.size() > 1 ? s.at(1) : 1);
  }

  template <class T>
  EvaProjection<T> projection(const std::string& prefix) const {
    EvaProjection<T> p;
    p.weight = whole<T>(prefix + "_W");
    p.bias = whole<T>(prefix + "_b").col(0);
    if (has(prefix + "_ln_gamma")) {
      p.ln_gamma = whole<T>(prefix + "_ln_gamma").col(0);
      p.ln_beta = whole<T>(prefix + "_ln_beta").col(0);
    }
    return p;
  }

  std::string name_;
  nlohmann::json meta_;
  std::vector<char> bytes_;
};

}  // namespace fastattn::test
