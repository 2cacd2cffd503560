#pragma once
/// @file detail/eva/geometry.hpp
/// EVA geometry (implementation detail, no API promise): which tokens form each window's queries
/// and key slots, which tokens form each chunk, which chunks a window sees, and the domain checks
/// of docs/spec/eva.md §5.2 (Reference) and §5.3 (Disjoint alignment).
///
/// 1-D and 2-D share one description: a token grid of `rows` x `cols` axes, token index
/// r * cols.valid + c. In 1-D the row axis is trivial (one row, window 1, no extension), so a
/// window tile is 1 x W and a chunk tile is 1 x L.

#include <algorithm>
#include <cmath>

#include "fastattn/config.hpp"
#include "fastattn/detail/eva/config.hpp"
#include "fastattn/types.hpp"

namespace fastattn::detail {

/// Half-open index range [begin, end).
struct EvaRange {
  Index begin = 0, end = 0;
  Index size() const { return end > begin ? end - begin : 0; }
};

/// Largest r with r * r <= x (x >= 0); exact for every Index, unlike a bare std::sqrt.
inline Index eva_isqrt(Index x) {
  Index r = static_cast<Index>(std::sqrt(static_cast<double>(x)));
  while (r > 0 && r * r > x) --r;
  while ((r + 1) * (r + 1) <= x) ++r;
  return r;
}

/// One axis of the token grid.
struct EvaAxis {
  Index extent = 1;     // padded length: windows tile [0, extent) (1-D: n_p; 2-D: grid side)
  Index valid = 1;      // tokens exist at [0, valid) (1-D: n; 2-D: grid side)
  Index window = 1;     // W
  Index before = 0;     // key slots before each window (e)
  Index after = 0;      // key slots after each window (e non-causal, 0 causal)
  Index chunk = 1;      // L
  Index chunk_ext = 0;  // chunk slots extend this far on both sides (Reference non-causal: e)
  Index chunks = 1;     // number of chunks along the axis

  Index windows() const { return extent / window; }
  /// S_w along this axis (the local bias is indexed by it).
  Index slots() const { return window + before + after; }
  /// Slot index 0 of window a sits at position a W - before (possibly negative).
  Index slot_origin(Index a) const { return a * window - before; }
  EvaRange window_queries(Index a) const {
    return {a * window, std::min(valid, a * window + window)};
  }
  /// The in-range key slots of window a (positions that hold a token).
  EvaRange window_keys(Index a) const {
    return {std::max<Index>(0, a * window - before), std::min(valid, a * window + window + after)};
  }
  /// K̄_w of spec §5.3: the window's key range clipped to [0, extent).
  EvaRange window_span(Index a) const {
    return {std::max<Index>(0, a * window - before), std::min(extent, a * window + window + after)};
  }
  /// The in-range slots of chunk c.
  EvaRange chunk_slots(Index c) const {
    return {std::max<Index>(0, c * chunk - chunk_ext),
            std::min(valid, c * chunk + chunk + chunk_ext)};
  }
  /// The chunks lying inside `span`, whose ends are chunk boundaries (Disjoint alignment).
  EvaRange chunks_within(EvaRange span) const {
    return {std::min(chunks, span.begin / chunk), std::min(chunks, (span.end + chunk - 1) / chunk)};
  }
  /// Whether both ends of every window's span are chunk boundaries (multiples of L, or extent).
  /// Returns the first offending window, or -1.
  Index first_unaligned_window() const {
    for (Index a = 0; a < windows(); ++a) {
      const EvaRange s = window_span(a);
      if (s.begin % chunk != 0 || (s.end % chunk != 0 && s.end != extent)) return a;
    }
    return -1;
  }
};

/// The resolved geometry of one call (or of one decoding state).
struct EvaGeometry {
  EvaAxis rows, cols;
  Index n = 0;  // number of tokens
  bool causal = false, disjoint = false, two_d = false;

  Index num_windows() const { return rows.windows() * cols.windows(); }
  Index num_chunks() const { return rows.chunks * cols.chunks; }
  /// Queries of a full window (W or W^2): the rows of the local bias.
  Index window_queries() const { return rows.window * cols.window; }
  /// S_w: key slots of a window, in range or not (the columns of the local bias).
  Index window_slots() const { return rows.slots() * cols.slots(); }
  /// Upper bounds on the queries and the in-range key slots of any window (workspace sizes).
  Index max_window_queries() const {
    return std::min(rows.window, rows.valid) * std::min(cols.window, cols.valid);
  }
  Index max_window_keys() const {
    return std::min(rows.slots(), rows.valid) * std::min(cols.slots(), cols.valid);
  }
  /// Reference divisor of the chunk means: every slot counts, valid or not (spec §3.2 step 4).
  Index chunk_divisor() const {
    return (rows.chunk + 2 * rows.chunk_ext) * (cols.chunk + 2 * cols.chunk_ext);
  }
  /// Upper bound on the in-range slots of any chunk.
  Index max_chunk_slots() const {
    return std::min(rows.chunk + 2 * rows.chunk_ext, rows.valid) *
           std::min(cols.chunk + 2 * cols.chunk_ext, cols.valid);
  }
  Index token(Index r, Index c) const { return r * cols.valid + c; }

  /// Calls f(token, count) for each run of consecutive in-range slot tokens of chunk c, in
  /// row-major slot order.
  template <class F>
  void for_each_chunk_run(Index c, F&& f) const {
    const EvaRange rr = rows.chunk_slots(c / cols.chunks), cr = cols.chunk_slots(c % cols.chunks);
    if (cr.size() == 0) return;
    for (Index r = rr.begin; r < rr.end; ++r) f(token(r, cr.begin), cr.size());
  }
  /// Calls f(token, count) for each run of the window's query tokens; the runs are consecutive
  /// in the window's query numbering (row-major inside the tile).
  template <class F>
  void for_each_query_run(Index w, F&& f) const {
    const Index a = w / cols.windows(), b = w % cols.windows();
    const EvaRange rr = rows.window_queries(a), cr = cols.window_queries(b);
    for (Index r = rr.begin; r < rr.end; ++r) f(token(r, cr.begin), cr.size());
  }
  /// Calls f(token, count, slot) for each run of the window's in-range key slots; `slot` is the
  /// index of the run's first slot in the full (W + 2e)^k slot numbering (the bias column).
  template <class F>
  void for_each_key_run(Index w, F&& f) const {
    const Index a = w / cols.windows(), b = w % cols.windows();
    const EvaRange rr = rows.window_keys(a), cr = cols.window_keys(b);
    for (Index r = rr.begin; r < rr.end; ++r)
      f(token(r, cr.begin), cr.size(),
        (r - rows.slot_origin(a)) * cols.slots() + (cr.begin - cols.slot_origin(b)));
  }
  /// Disjoint, non-causal: calls f(c_begin, c_end) for each range of chunk indices lying inside
  /// window w's span K̄_w (excluded from its softmax).
  template <class F>
  void for_each_excluded_chunk_range(Index w, F&& f) const {
    const Index a = w / cols.windows(), b = w % cols.windows();
    const EvaRange rr = rows.chunks_within(rows.window_span(a));
    const EvaRange cr = cols.chunks_within(cols.window_span(b));
    if (cr.size() == 0) return;
    for (Index r = rr.begin; r < rr.end; ++r)
      f(r * cols.chunks + cr.begin, r * cols.chunks + cr.end);
  }
  /// Disjoint, causal (1-D): window w sees exactly the chunks [0, result) (those ending at or
  /// before the start of K̄_w; spec §5.3).
  Index causal_disjoint_visible_chunks(Index w) const {
    return std::min(cols.chunks, cols.window_span(w).begin / cols.chunk);
  }
  /// Reference, causal (1-D): query i sees exactly the chunks [0, result) (spec §3.4 step 4).
  Index causal_reference_visible_chunks(Index i) const {
    return std::min(cols.chunks, i / cols.chunk);
  }
};

/// The geometry of a call on n >= 1 tokens; throws std::invalid_argument (naming `fn`) outside
/// the domain: Reference §5.2 (configurations the official code rejects or silently truncates)
/// and Disjoint §5.3 (window spans must end on chunk boundaries).
inline EvaGeometry resolve_eva_geometry(const EvaConfig& c, Index n, bool causal, const char* fn) {
  EvaGeometry g;
  g.n = n;
  g.causal = causal;
  g.disjoint = c.disjoint;
  g.two_d = c.two_d();
  if (g.two_d) {
    FASTATTN_CHECK(!causal, fn << ": the 2-D mode (options.grid_height/grid_width) is non-causal "
                                  "only (EVA's chunk rules need a 1-D token order); got causal = "
                                  "true");
    FASTATTN_CHECK(n == c.grid_height * c.grid_width,
                   fn << ": the 2-D grid " << c.grid_height << " x " << c.grid_width << " holds "
                      << c.grid_height * c.grid_width << " tokens but the input has n = " << n);
    const Index side = c.chunk_size > 0 ? c.chunk_size : eva_isqrt(n / c.num_chunks);
    FASTATTN_CHECK(side >= 1, fn << ": options.num_chunks = " << c.num_chunks
                                 << " gives chunk side floor(sqrt(floor(n / C))) = 0 for n = " << n
                                 << "; use at most n chunks");
    if (!c.disjoint) {
      FASTATTN_CHECK(c.grid_height % side == 0 && c.grid_width % side == 0,
                     fn << ": Reference 2-D needs the grid " << c.grid_height << " x "
                        << c.grid_width << " divisible by the chunk side L2 = " << side
                        << " (the official code silently drops the rest)");
    }
    for (EvaAxis* axis : {&g.rows, &g.cols}) {
      const Index len = axis == &g.rows ? c.grid_height : c.grid_width;
      axis->extent = axis->valid = len;
      axis->window = c.window;
      axis->before = axis->after = c.ext;
      axis->chunk = side;
      axis->chunk_ext = c.disjoint ? 0 : c.ext;
      axis->chunks = c.disjoint ? (len + side - 1) / side : len / side;
    }
  } else {
    const Index n_p = (n + c.window - 1) / c.window * c.window;
    const Index len = c.chunk_size > 0 ? c.chunk_size : n_p / c.num_chunks;
    FASTATTN_CHECK(len >= 1, fn << ": options.num_chunks = " << c.num_chunks
                                << " exceeds the padded length n_p = " << n_p << " (n = " << n
                                << ", window " << c.window
                                << "), so the chunk length floor(n_p / C) "
                                << "is 0");
    if (!c.disjoint) {
      FASTATTN_CHECK(
          n_p % len == 0,
          fn << ": Reference needs the padded length n_p = " << n_p
             << " to be a multiple of the chunk length L = " << len
             << (c.chunk_size > 0 ? " (options.chunk_size)" : " (floor(n_p / num_chunks))")
             << "; the official code errors (ext = 0) or silently drops the tail");
      if (causal) {
        FASTATTN_CHECK(len < n_p, fn << ": causal Reference needs the chunk length L = " << len
                                     << " below the padded length n_p = " << n_p
                                     << " (the official code fails: no chunk is ever complete)");
        if (c.chunk_size > 0)
          FASTATTN_CHECK(len <= c.window && c.window % len == 0,
                         fn << ": causal Reference with options.chunk_size = " << len
                            << " needs chunk_size <= window and window % chunk_size == 0 (window = "
                            << c.window << "), as asserted by the official code");
      }
    }
    g.cols.extent = n_p;
    g.cols.valid = n;
    g.cols.window = c.window;
    g.cols.before = c.ext;
    g.cols.after = causal ? 0 : c.ext;
    g.cols.chunk = len;
    g.cols.chunk_ext = (c.disjoint || causal) ? 0 : c.ext;
    // Disjoint chunks past the last token are empty and do not exist (spec §5.3).
    g.cols.chunks = c.disjoint ? (n + len - 1) / len : n_p / len;
  }
  if (c.disjoint) {
    for (const EvaAxis* axis : {&g.rows, &g.cols}) {
      const Index bad = axis->first_unaligned_window();
      if (bad < 0) continue;
      const EvaRange s = axis->window_span(bad);
      FASTATTN_CHECK(
          false, fn << ": Disjoint semantics needs every window's key range "
                    << "to start and end on chunk boundaries, but window " << bad
                    << (g.two_d ? (axis == &g.rows ? " (grid rows)" : " (grid columns)") : "")
                    << " spans [" << s.begin << ", " << s.end << ") and the chunk length is "
                    << axis->chunk << "; choose a chunk length dividing both window (" << c.window
                    << ") and ext (" << c.ext << ")");
    }
  }
  return g;
}

}  // namespace fastattn::detail
