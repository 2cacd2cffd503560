#pragma once
/// @file detail/eva/config.hpp
/// Eva's resolved configuration: the options validated and defaults resolved once, at
/// construction (everything that does not depend on the input).

#include <cmath>

#include "fastattn/config.hpp"
#include "fastattn/eva_options.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// EvaOptions after validation, with the defaults resolved.
struct EvaConfig {
  Index window = 0, ext = 0, num_chunks = 0, chunk_size = 0;
  Index grid_height = 0, grid_width = 0;
  bool disjoint = false;
  double mu_scale_noncausal = 0.5, mu_scale_causal = 1;  // mu_c = mu_scale (f_q(qbar) + f_k(kbar))

  bool two_d() const { return grid_height > 0 || grid_width > 0; }
  double mu_scale(bool causal) const { return causal ? mu_scale_causal : mu_scale_noncausal; }
};

/// Validates the options that do not depend on the input and resolves their defaults; throws
/// std::invalid_argument naming the option.
inline EvaConfig make_eva_config(const EvaOptions& o) {
  FASTATTN_CHECK(o.grid_height >= 0 && o.grid_width >= 0,
                 "Eva: options.grid_height and options.grid_width must be >= 0, got "
                     << o.grid_height << " x " << o.grid_width);
  FASTATTN_CHECK(std::isfinite(o.mu_scale),
                 "Eva: options.mu_scale must be finite (< 0 selects the default), got "
                     << o.mu_scale);
  EvaConfig c;
  c.window = o.window;
  c.ext = o.ext;
  c.num_chunks = o.num_chunks;
  c.chunk_size = o.chunk_size;
  c.grid_height = o.grid_height;
  c.grid_width = o.grid_width;
  c.disjoint = o.semantics == EvaSemantics::Disjoint;
  if (o.mu_scale >= 0) c.mu_scale_noncausal = c.mu_scale_causal = o.mu_scale;

  FASTATTN_CHECK(c.window >= 1, "Eva: options.window must be at least 1, got " << c.window);
  FASTATTN_CHECK(c.ext >= 0, "Eva: options.ext must be >= 0, got " << c.ext);
  FASTATTN_CHECK(c.num_chunks >= 0 && c.chunk_size >= 0,
                 "Eva: options.num_chunks (" << c.num_chunks << ") and options.chunk_size ("
                                             << c.chunk_size << ") must be >= 0");
  FASTATTN_CHECK((c.num_chunks > 0) != (c.chunk_size > 0),
                 "Eva: exactly one of options.num_chunks and options.chunk_size must be set (> 0), "
                 "got num_chunks = "
                     << c.num_chunks << ", chunk_size = " << c.chunk_size);
  if (c.two_d()) {
    FASTATTN_CHECK(c.grid_height > 0 && c.grid_width > 0,
                   "Eva: options.grid_height and options.grid_width must both be > 0 for the 2-D "
                   "mode (or both 0 for 1-D), got "
                       << c.grid_height << " x " << c.grid_width);
    FASTATTN_CHECK(c.grid_height % c.window == 0 && c.grid_width % c.window == 0,
                   "Eva: the 2-D grid " << c.grid_height << " x " << c.grid_width
                                        << " (options.grid_height x options.grid_width) must be "
                                           "divisible by options.window = "
                                        << c.window << " (windows are W x W tiles)");
  }
  return c;
}

}  // namespace fastattn::detail
