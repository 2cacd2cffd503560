#pragma once
/// @file detail/linear/rows.hpp
/// What every linear-attention path shares per output row and per call: the validation of a pair
/// of feature maps, the default chunk sizes, and the finishing of a row (numerator / denominator
/// with the relative denominator guard and the empty-row rule).

#include <algorithm>

#include "fastattn/config.hpp"
#include "fastattn/detail/common/checks.hpp"
#include "fastattn/features.hpp"
#include "fastattn/linear_options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Default chunks, measured at N = 4096, M = 256, D = 64 (bench/bench_linear.cpp): causal C = 32
/// keeps the intra-chunk products (2 C M + 2 C Dv per row) small next to the state products;
/// non-causal chunks only set the depth of the key-sum GEMM.
inline Index linear_chunk(const LinearOptions& lopt, bool causal) {
  return lopt.chunk_size > 0 ? lopt.chunk_size : (causal ? 32 : 256);
}

/// Query and key maps must agree with each other and with the head dimension D.
template <class T>
void check_linear_maps(const char* fn, const FeatureMap<T>& query_map, const FeatureMap<T>& key_map,
                       Index d) {
  FASTATTN_CHECK(query_map.feature_dim() == key_map.feature_dim() &&
                     query_map.log_domain() == key_map.log_domain(),
                 fn << ": query and key feature maps must have the same number of features and "
                       "domain, got M = "
                    << query_map.feature_dim() << " and " << key_map.feature_dim());
  FASTATTN_CHECK(query_map.input_dim() == d && key_map.input_dim() == d,
                 fn << ": feature maps take D = " << query_map.input_dim() << " and "
                    << key_map.input_dim() << " but q and k have D = " << d);
}

/// out row from the numerator/denominator row r [Dv + 1] of a row whose visible keys have total
/// weight `mass` (0 = no visible key); returns true when the row was guarded.
template <class T, class Row, class Out>
bool finish_row(const Row& r, Out out_row, T mass, T den_eps) {
  const Index dv = out_row.size();
  const T den = r[dv];
  if (!(mass > 0)) {
    out_row.setZero();
    return false;
  }
  const T floor = den_eps * mass;
  if (den > floor) {
    out_row = r.head(dv) / den;
    return false;
  }
  if (floor > 0)
    out_row = r.head(dv) / floor;
  else
    out_row.setZero();
  return true;
}

/// Query heads that share one key/value stream (one head, or the query heads of a GQA group):
/// q[g] [Nq, D] -> out[g] [Nq, Dv], g < count, all with the same Nq. A view: nothing is copied.
template <class T>
struct QueryHeads {
  const ConstMatMap<T>* q;
  MatMap<T>* out;
  Index count;

  Index rows() const { return count > 0 ? q[0].rows() : 0; }
};

}  // namespace fastattn::detail
