#pragma once
/// @file detail/exact/packed_kv.hpp
/// Keys and values of one head in the layout the exact-attention micro-kernels read
/// (docs/exact_kernel.md, "Packing"), and the storage that holds them: packed once per forward
/// call, or grown token by token as the KV cache of Exact<T>::State.
///
/// Layout, with C = RegisterTile<T>::kCols keys per panel and W = kPackets packets per value
/// chunk (L = kLanes elements per packet):
///  - keys: panels of C keys, each [D][C] (key j of the panel is column j): the score kernel
///    loads one row of a panel (C keys at one dimension) as aligned packets;
///  - values: panels of C keys, each [value_stride * C] holding the panel's values in column
///    chunks of W L columns (the last chunk may be narrower, whole packets): chunk [c0, c0 + w)
///    is [C][w] at offset c0 C. The value kernel streams one chunk of one panel (4 KiB in float
///    on AVX-512) contiguously. value_stride = Dv rounded up to whole packets; padding is 0;
///  - key_add [panels * C]: -inf on padded keys, plus the per-key bias, 0 elsewhere.
/// Padded keys are stored as zero keys and values (so a NaN in a padded value never meets a zero
/// weight), and slots past the last key are zero; the kernels mask those slots by count.
/// The layout does not depend on the capacity, so a cache grows by copying a prefix.
///
/// bfloat16 storage uses the same scheme with pairs along the reduction dimension, as vdpbf16ps
/// reads them (detail/exact/packed_kv_bf16.hpp): keys [D/2][C][2] per panel and value chunks
/// [C/2][w][2].

#include <algorithm>
#include <cstddef>
#include <limits>

#include "fastattn/detail/common/prefetch.hpp"
#include "fastattn/detail/simd/bf16.hpp"
#include "fastattn/detail/simd/packet.hpp"
#include "fastattn/detail/simd/register_tile.hpp"
#include "fastattn/detail/simd/transpose.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Read-only view of packed keys and values (see the file comment for the layout). S is the
/// stored element: T, or bfloat16 pairs (detail/exact/packed_kv_bf16.hpp, T = float).
template <class T, class S = T>
struct PackedKv {
  const S* keys = nullptr;     // [panels][dim][C] (pairs: [panels][dim/2][C][2])
  const S* values = nullptr;   // [panels][value_stride * C], in column chunks
  const T* key_add = nullptr;  // [panels * C], or nullptr when no key is padded or biased
  Index size = 0;              // Nk: the keys present (slots past it are masked)
  Index dim = 0;               // D
  Index value_dim = 0;         // Dv
  Index value_stride = 0;      // Dv rounded up to whole packets
};

/// Panels needed for n keys.
template <class T>
constexpr Index key_panels(Index n) {
  constexpr Index c = RegisterTile<T>::kCols;
  return (n + c - 1) / c;
}

/// Offset of value (j, c) in the packed values (value_stride = Dv rounded up to packets).
template <class T>
constexpr Index packed_value_offset(Index j, Index c, Index value_stride) {
  constexpr Index keys = RegisterTile<T>::kCols, chunk = RegisterTile<T>::kCols;
  const Index c0 = c / chunk * chunk, width = std::min(chunk, value_stride - c0);
  return (j / keys) * keys * value_stride + c0 * keys + (j % keys) * width + (c - c0);
}

/// Owning storage of packed keys and values, with a capacity in whole panels.
template <class T>
class PackedKvStorage {
 public:
  static constexpr Index kCols = RegisterTile<T>::kCols;
  static constexpr T kMinusInf = -std::numeric_limits<T>::infinity();

  /// Sets D and Dv (drops the content, keeps the buffers).
  void set_dims(Index dim, Index value_dim) {
    dim_ = dim;
    value_dim_ = value_dim;
    value_stride_ = packet_padded<T>(value_dim);
    size_ = capacity_ = 0;
  }

  Index size() const { return size_; }
  Index capacity() const { return capacity_; }

  /// Makes room for `tokens` keys (whole panels), keeping the first size() keys. Buffers only
  /// grow, so storage reused across calls does not reallocate (or touch fresh pages) again.
  void reserve(Index tokens) {
    if (tokens <= capacity_) return;
    const Index panels = key_panels<T>(tokens);
    grow(keys_, panels * dim_ * kCols);
    grow(values_, panels * kCols * value_stride_);
    grow(key_add_, panels * kCols);
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
    return sizeof(T) * static_cast<std::size_t>(keys_.size() + values_.size() + key_add_.size());
  }

  /// Drops every key after the first `tokens`. O(1): slots past size() are masked by count and
  /// rewritten when a key is appended there.
  void truncate(Index tokens) { size_ = tokens; }

  /// Packs k [Nk, D] and v [Nk, Dv] (any outer stride), replacing the content. `padding` [Nk]
  /// (or empty) marks padded keys; `key_bias` [Nk] (or empty) is added to every query's logits.
  template <class KeyBias>
  void pack(const ConstMatRef<T>& k, const ConstMatRef<T>& v, const KeyMask& padding,
            const KeyBias& key_bias) {
    start_pack(k.rows(), padding, key_bias);
    pack_panels(k, v, padding, key_bias, 0, key_panels<T>(size_));
  }
  /// As above for bfloat16 k and v, widened to T as they are packed.
  template <class KeyBias>
  void pack(const ConstMatRef<Eigen::bfloat16>& k, const ConstMatRef<Eigen::bfloat16>& v,
            const KeyMask& padding, const KeyBias& key_bias) {
    start_pack(k.rows(), padding, key_bias);
    pack_panels(k, v, padding, key_bias, 0, key_panels<T>(size_));
  }

  /// Packing in steps (what pack() does at once): start_pack sizes the storage for nk keys, then
  /// pack_panels(..., first, last) writes panels [first, last) from the same k, v, padding and
  /// key_bias. view() is valid from start_pack on; the kernel reads a panel only once it is
  /// written (exact_packed lets it pack a block's panels just before their first use).
  template <class KeyBias>
  void start_pack(Index nk, const KeyMask& padding, const KeyBias& key_bias) {
    size_ = 0;
    reserve(nk);
    size_ = nk;
    has_key_add_ = key_bias.size() != 0 || (padding.size() != 0 && padding.any());
  }
  template <class In, class KeyBias>
  void pack_panels(const ConstMatRef<In>& k, const ConstMatRef<In>& v, const KeyMask& padding,
                   const KeyBias& key_bias, Index first, Index last) {
    const Index end = std::min(last * kCols, size_);  // rows prefetched: this call's only
    const auto prefetch_ahead = [&](Index j) {  // rows of strided heads defeat the prefetchers
      if (j + kPrefetchRows >= end) return;
      prefetch_row(k.row(j + kPrefetchRows).data(), dim_);
      prefetch_row(v.row(j + kPrefetchRows).data(), value_dim_);
    };
    for (Index j = first * kCols; j < last * kCols; ++j) {  // every slot written once
      if constexpr (std::is_same_v<In, T>) {
        // A whole panel of present keys without a key row (the common case): the keys
        // transposed by packet blocks, 2x faster than element by element (measured).
        if (j % kCols == 0 && j + kCols <= size_ && !has_key_add_) {
          for (Index t = j; t < j + kCols; ++t) {
            prefetch_ahead(t);
            write_value(t, v.row(t).data());
          }
          transpose_into(k.row(j).data(), k.outerStride(), kCols, dim_,
                         keys_.data() + (j / kCols) * dim_ * kCols, kCols);
          j += kCols - 1;
          continue;
        }
      }
      prefetch_ahead(j);
      const bool present = j < size_ && !(padding.size() != 0 && padding[j]);
      if (present) {
        write_key(j, k.row(j).data());
        write_value(j, v.row(j).data());
      } else {
        clear_slot(j);
      }
      if (has_key_add_)
        key_add_[j] = j >= size_             ? T(0)  // past Nk: masked by count
                      : !present             ? kMinusInf
                      : key_bias.size() != 0 ? T(key_bias[j])
                                             : T(0);
    }
  }

  /// Appends one token (k [D], v [Dv], In = T or bfloat16); a padded token is stored as zeros and
  /// masked. The caller reserves the room first.
  template <class In>
  void append(const In* k, const In* v, bool padded) {
    const Index j = size_;
    if (j % kCols == 0) clear_panel(j / kCols);  // a fresh panel: its future slots read as 0
    if (padded) {
      clear_slot(j);
    } else {
      write_key(j, k);
      write_value(j, v);
    }
    key_add_[j] = padded ? kMinusInf : T(0);
    has_key_add_ = true;
    ++size_;
  }

  /// The packed content (the first size() keys).
  PackedKv<T> view() const {
    return PackedKv<T>{keys_.data(), values_.data(), has_key_add_ ? key_add_.data() : nullptr,
                       size_,        dim_,           value_dim_,
                       value_stride_};
  }

  /// Element dd of key j (unpacked).
  T key(Index j, Index dd) const {
    return keys_[(j / kCols) * dim_ * kCols + dd * kCols + j % kCols];
  }
  /// Element c of value j (unpacked).
  T value(Index j, Index c) const { return values_[packed_value_offset<T>(j, c, value_stride_)]; }

 private:
  // Rows ahead that pack() prefetches. Rows of one head of a [B, N, H, D] tensor are H D elements
  // apart, which the hardware prefetchers follow poorly: measured here (N = 4096, D = 64, H = 8,
  // inputs not in cache) packing such a head took 0.38 ms against 0.2 ms for a contiguous one
  // without it, 0.32 ms with 32 rows of software prefetch (8 rows: no gain; 64: as 32).
  static constexpr Index kPrefetchRows = 32;
  static void grow(Vector<T>& buffer, Index size) {
    if (buffer.size() < size) buffer.conservativeResize(size);
  }
  template <class In>
  void write_key(Index j, const In* k) {
    T* dst = keys_.data() + (j / kCols) * dim_ * kCols + j % kCols;
    for (Index dd = 0; dd < dim_; ++dd) dst[dd * kCols] = widen<T>(k[dd]);
  }
  // Zeroes key j and value j (a padded token after a truncate may land on old data).
  void clear_slot(Index j) {
    T* dst = keys_.data() + (j / kCols) * dim_ * kCols + j % kCols;
    for (Index dd = 0; dd < dim_; ++dd) dst[dd * kCols] = T(0);
    for (Index c0 = 0; c0 < value_stride_; c0 += kCols) {
      T* row = values_.data() + packed_value_offset<T>(j, c0, value_stride_);
      std::fill(row, row + std::min(kCols, value_stride_ - c0), T(0));
    }
  }
  // Writes value j, zero in the padding columns.
  template <class In>
  void write_value(Index j, const In* v) {
    for (Index c0 = 0; c0 < value_stride_; c0 += kCols) {
      T* dst = values_.data() + packed_value_offset<T>(j, c0, value_stride_);
      const Index width = std::min(kCols, value_stride_ - c0);
      const Index present = std::clamp<Index>(value_dim_ - c0, 0, width);
      for (Index c = 0; c < present; ++c) dst[c] = widen<T>(v[c0 + c]);
      std::fill(dst + present, dst + width, T(0));
    }
  }
  void clear_panel(Index panel) {
    keys_.segment(panel * dim_ * kCols, dim_ * kCols).setZero();
    values_.segment(panel * kCols * value_stride_, kCols * value_stride_).setZero();
    key_add_.segment(panel * kCols, kCols).setZero();
  }

  Vector<T> keys_, values_, key_add_;
  Index dim_ = 0, value_dim_ = 0, value_stride_ = 0, size_ = 0, capacity_ = 0;
  bool has_key_add_ = false;
};

}  // namespace fastattn::detail
