#pragma once
/// @file detail/exact/packed_kv_bf16.hpp
/// Keys and values of one head stored as bfloat16 pairs, the layout vdpbf16ps reads
/// (docs/bfloat16.md): packed once per forward call on the AVX512_BF16 path, or grown token by
/// token as the bfloat16 KV cache of Exact<float>::State (any ISA).
///
/// The panels, chunks and masking are those of detail/exact/packed_kv.hpp (C = RegisterTile<float>
/// ::kCols keys per panel, value_stride = Dv rounded up to float packets); only the order inside
/// a panel changes, because vdpbf16ps multiplies adjacent pairs along the reduction dimension:
///  - keys: panels of C keys, each [Dp/2][C][2] with Dp = D rounded up to even (pairs of
///    dimensions; dimension D of an odd D is 0);
///  - values: panels of C keys in column chunks as for float, chunk [c0, c0 + w) being [C/2][w][2]
///    (pairs of keys) at offset c0 C;
///  - key_add [panels * C] in float: -inf on padded keys, plus the per-key bias, 0 elsewhere.
/// Padded keys and slots past the last key are zero, as for float.

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>

#include "fastattn/detail/exact/packed_kv.hpp"
#include "fastattn/detail/simd/bf16.hpp"
#include "fastattn/detail/simd/packet.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// D rounded up to whole bfloat16 pairs: the depth of a key in a pair panel.
constexpr Index pair_depth(Index dim) { return (dim + 1) / 2 * 2; }

/// Offset of key (j, dd) in pair panels of C keys and depth dp.
constexpr Index pair_key_offset(Index j, Index dd, Index dp) {
  constexpr Index c = RegisterTile<float>::kCols;
  return (j / c) * dp * c + (dd / 2) * 2 * c + (j % c) * 2 + (dd % 2);
}

/// Offset of value (j, c) in pair panels (value_stride = Dv rounded up to float packets).
constexpr Index pair_value_offset(Index j, Index c, Index value_stride) {
  constexpr Index keys = RegisterTile<float>::kCols, chunk = RegisterTile<float>::kCols;
  const Index c0 = c / chunk * chunk, width = std::min(chunk, value_stride - c0);
  return (j / keys) * keys * value_stride + c0 * keys + (j % keys) / 2 * 2 * width + (c - c0) * 2 +
         j % 2;
}

/// Copies the pairs of x [dim] (rounded to bfloat16 to nearest even, the pad element of an odd dim
/// 0) to dst[0], dst[stride], dst[2 stride], ...: one 32-bit store per pair.
template <class In>
void store_pairs(const In* x, Index dim, Eigen::bfloat16* dst, Index stride) {
  Index dd = 0;
  for (; dd + 2 <= dim; dd += 2, dst += stride) {
    const Eigen::bfloat16 pair[2] = {to_bf16(x[dd]), to_bf16(x[dd + 1])};
    std::memcpy(dst, pair, sizeof pair);
  }
  if (dd < dim) {
    const Eigen::bfloat16 pair[2] = {to_bf16(x[dd]), Eigen::bfloat16()};
    std::memcpy(dst, pair, sizeof pair);
  }
}

/// The rows [i0, i0 + rows) of q (float or bfloat16; rounded to bfloat16 to nearest even) as one
/// group of R = RegisterTile<float>::kRows query rows in pairs of dimensions, dst [Dp/2][R][2]
/// (Dp = D rounded up to even); absent rows and the pad dimension are 0.
template <class In>
void pack_query_pairs(const ConstMatRef<In>& q, Index i0, Index rows, Eigen::bfloat16* dst) {
  constexpr Index R = RegisterTile<float>::kRows;
  const Index d = q.cols(), dp = pair_depth(d);
  for (Index r = 0; r < R; ++r) {
    if (r < rows) {
      store_pairs(q.row(i0 + r).data(), d, dst + 2 * r, 2 * R);
    } else {
      for (Index dd = 0; dd < dp; ++dd) dst[dd / 2 * 2 * R + 2 * r + dd % 2] = Eigen::bfloat16();
    }
  }
}

/// Owning storage of keys and values as bfloat16 pairs, with a capacity in whole panels.
class PackedKvBf16Storage {
 public:
  using Bf16 = Eigen::bfloat16;
  static constexpr Index kCols = RegisterTile<float>::kCols;
  static_assert(kCols % 2 == 0, "a panel holds whole pairs of keys");

  /// Sets D and Dv (drops the content, keeps the buffers).
  void set_dims(Index dim, Index value_dim) {
    dim_ = dim;
    depth_ = pair_depth(dim);
    value_dim_ = value_dim;
    value_stride_ = packet_padded<float>(value_dim);
    size_ = capacity_ = 0;
  }

  Index size() const { return size_; }
  Index capacity() const { return capacity_; }

  /// Makes room for `tokens` keys (whole panels), keeping the first size() keys.
  void reserve(Index tokens) {
    if (tokens <= capacity_) return;
    const Index panels = key_panels<float>(tokens);
    grow(keys_, panels * depth_ * kCols);
    grow(values_, panels * kCols * value_stride_);
    if (key_add_.size() < panels * kCols) key_add_.conservativeResize(panels * kCols);
    capacity_ = panels * kCols;
  }

  /// Frees the buffers (keeps D and Dv).
  void release() {
    keys_.resize(0);
    values_.resize(0);
    key_add_.resize(0);
    size_ = capacity_ = 0;
  }

  /// Bytes held by the buffers.
  std::size_t bytes() const {
    return sizeof(Bf16) * static_cast<std::size_t>(keys_.size() + values_.size()) +
           sizeof(float) * static_cast<std::size_t>(key_add_.size());
  }

  /// Drops every key after the first `tokens`. O(1), as for float.
  void truncate(Index tokens) { size_ = tokens; }

  /// Packs k [Nk, D] and v [Nk, Dv] (bfloat16, any outer stride), replacing the content.
  /// `padding` [Nk] (or empty) marks padded keys; `key_bias` [Nk] (or empty) is added to every
  /// query's logits.
  template <class KeyBias>
  void pack(const ConstMatRef<Bf16>& k, const ConstMatRef<Bf16>& v, const KeyMask& padding,
            const KeyBias& key_bias) {
    size_ = 0;
    reserve(k.rows());
    size_ = k.rows();
    const Index panels = key_panels<float>(size_);
    has_key_add_ = key_bias.size() != 0 || (padding.size() != 0 && padding.any());
    keys_.head(panels * depth_ * kCols).setZero();  // odd D: the pad dimension; absent keys
    values_.head(panels * kCols * value_stride_).setZero();
    for (Index j = 0; j < panels * kCols; ++j) {
      const bool present = j < size_ && !(padding.size() != 0 && padding[j]);
      if (present) write(j, k.row(j).data(), v.row(j).data());
      if (has_key_add_)
        key_add_[j] = j >= size_             ? 0.0f
                      : !present             ? -std::numeric_limits<float>::infinity()
                      : key_bias.size() != 0 ? static_cast<float>(key_bias[j])
                                             : 0.0f;
    }
  }

  /// Appends one token (k [D], v [Dv]; float is rounded to bfloat16 to nearest even); a padded
  /// token is stored as zeros and masked. The caller reserves the room first.
  template <class In>
  void append(const In* k, const In* v, bool padded) {
    const Index j = size_;
    if (j % kCols == 0) {  // a fresh panel: its future slots read as 0
      const Index panel = j / kCols;
      keys_.segment(panel * depth_ * kCols, depth_ * kCols).setZero();
      values_.segment(panel * kCols * value_stride_, kCols * value_stride_).setZero();
      key_add_.segment(panel * kCols, kCols).setZero();
    }
    if (padded)
      clear_slot(j);
    else
      write(j, k, v);
    key_add_[j] = padded ? -std::numeric_limits<float>::infinity() : 0.0f;
    has_key_add_ = true;
    ++size_;
  }

  /// The packed content (the first size() keys).
  PackedKv<float, Bf16> view() const {
    return PackedKv<float, Bf16>{
        keys_.data(), values_.data(), has_key_add_ ? key_add_.data() : nullptr, size_, dim_,
        value_dim_,   value_stride_};
  }

  /// Element dd of key j, as float.
  float key(Index j, Index dd) const {
    return bf16_to_float(keys_[pair_key_offset(j, dd, depth_)]);
  }
  /// Element c of value j, as float.
  float value(Index j, Index c) const {
    return bf16_to_float(values_[pair_value_offset(j, c, value_stride_)]);
  }

 private:
  static void grow(Vector<Bf16>& buffer, Index size) {
    if (buffer.size() < size) buffer.conservativeResize(size);
  }
  template <class In>
  void write(Index j, const In* k, const In* v) {
    store_pairs(k, dim_, keys_.data() + pair_key_offset(j, 0, depth_), 2 * kCols);
    for (Index c0 = 0; c0 < value_dim_; c0 += kCols) {  // chunk by chunk: stride 2 within one
      Bf16* dst = values_.data() + pair_value_offset(j, c0, value_stride_);
      for (Index c = c0; c < std::min(value_dim_, c0 + kCols); ++c)
        dst[2 * (c - c0)] = to_bf16(v[c]);
    }
  }
  // Zeroes key j and value j (a padded token after a truncate may land on old data).
  void clear_slot(Index j) {
    for (Index dd = 0; dd < depth_; ++dd) keys_[pair_key_offset(j, dd, depth_)] = Bf16();
    for (Index c = 0; c < value_stride_; ++c)
      values_[pair_value_offset(j, c, value_stride_)] = Bf16();
  }

  Vector<Bf16> keys_, values_;
  Vector<float> key_add_;
  Index dim_ = 0, depth_ = 0, value_dim_ = 0, value_stride_ = 0, size_ = 0, capacity_ = 0;
  bool has_key_add_ = false;
};

}  // namespace fastattn::detail
