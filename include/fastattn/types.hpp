#pragma once
/// @file types.hpp
/// Matrix and view types shared by every method. Tokens are rows, row-major, inner stride 1.

#include <Eigen/Core>

namespace fastattn {

/// Sizes and indices: Eigen's signed index type (std::ptrdiff_t).
using Index = Eigen::Index;

/// A dense row-major matrix; per head q [N, D], k [N, D], v [N, Dv], out [N, Dv].
template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A dense column vector, e.g. a log-sum-exp output [Nq].
template <class T>
using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// Read-only view of a row-major matrix with inner stride 1 (binds blocks and maps without
/// copying).
template <class T>
using ConstMatRef = Eigen::Ref<const RowMatrix<T>>;

/// Writable view of a row-major matrix with inner stride 1.
template <class T>
using MatRef = Eigen::Ref<RowMatrix<T>>;

/// Writable view of a vector with inner stride 1.
template <class T>
using VecRef = Eigen::Ref<Vector<T>>;

/// Read-only view of a vector with inner stride 1.
template <class T>
using ConstVecRef = Eigen::Ref<const Vector<T>>;

/// Read-only non-owning view of a row-major matrix with an outer stride (e.g. one head of a
/// [B, N, H, D] tensor); copyable and storable, unlike Ref. Binds to ConstMatRef without a copy.
template <class T>
using ConstMatMap = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;

/// Writable non-owning view of a row-major matrix with an outer stride.
template <class T>
using MatMap = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;

/// Key padding mask [Nk]: true = padded key (ignored by every query). Empty = no padding.
using KeyMask = Eigen::Array<bool, Eigen::Dynamic, 1>;

}  // namespace fastattn
