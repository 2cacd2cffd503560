// The fuzz harness's decoders of the input (tests/fuzz/harness.hpp): key padding, the per-call
// scale, and the method with its constructor arguments and the verdict the documented rules give
// on them.

#include <algorithm>
#include <cmath>

#include "harness.hpp"

namespace fastattn::fuzz {

KeyMask make_padding(Reader& r, Rng& rng, Index nk) {
  KeyMask m;
  const unsigned mode = r.pick(10);
  switch (mode) {
    case 3:
    case 4:
      m = KeyMask(nk);
      for (Index j = 0; j < nk; ++j) m[j] = rng.uniform() < 0.3;
      break;
    case 5:
      m = KeyMask::Constant(nk, true);
      break;
    case 6:
      m = KeyMask::Constant(nk, true);
      if (nk > 0) m[rng.index(nk)] = false;
      break;
    case 7:
      m = KeyMask::Constant(nk, false);
      m.head(nk / 2).setConstant(true);
      break;
    case 8:
      m = KeyMask::Constant(nk, false);
      break;
    case 9:
      m = KeyMask(nk);
      for (Index j = 0; j < nk; ++j) m[j] = rng.uniform() < 0.8;
      break;
    default:
      break;
  }
  if (m.size() != 0) note("padding(mode=", mode, " padded=", m.count(), "/", nk, ")");
  return m;
}

/// Per-call scale: default, ordinary, negative, tiny, huge, non-finite.
double decode_scale(Reader& r) {
  constexpr double scales[] = {0,   0,   0,    0,     1,      0.5,    0.125, -1,   -0.25, 1e-3,
                               1e3, 1e6, 1e30, 1e300, 1e-300, 5e-324, kNaN,  kInf, -kInf};
  return r.pick(3) != 0 ? 0.0 : r.choose(scales);
}

Kind decode_kind(Reader& r) {
  switch (r.pick(9)) {
    case 0:
      return Kind::ExactBlocked;
    case 1:
      return Kind::ExactReference;
    case 2:
    case 3:
    case 4:
      return Kind::Favor;
    case 5:
    case 6:
      return Kind::Rfa;
    default:
      return Kind::Eva;
  }
}

Spec decode_spec(Reader& r, Rng& rng, Kind kind, Index d, bool decoding) {
  Spec s;
  s.kind = kind;
  s.head_dim = r.one_in(24) ? d + 1 : d;  // a mismatch is rejected by the call, not the ctor
  if (s.head_dim < 1) s.ctor.invalid("head_dim < 1");
  switch (kind) {
    case Kind::ExactBlocked:
    case Kind::ExactReference: {
      constexpr Index blocks[] = {0, 0, 1, 2, 3, 5, 8, 64, -1};
      s.exact.kernel = kind == Kind::ExactBlocked ? ExactKernel::Blocked : ExactKernel::Reference;
      s.exact.block_q = r.choose(blocks);
      s.exact.block_k = r.choose(blocks);
      s.ctor = Validity{};
      if (s.exact.block_q < 0 || s.exact.block_k < 0) s.ctor.invalid("block < 0");
      note("Exact(kernel=", kind == Kind::ExactBlocked ? "blocked" : "reference",
           " bq=", s.exact.block_q, " bk=", s.exact.block_k, ")");
      break;
    }
    case Kind::Favor: {
      constexpr Index feats[] = {1, 2, 3, 4, 4, 5, 8, 8, 16, 0, -1};
      constexpr double as[] = {kNaN, kNaN, kNaN, -0.5, -0.1, 0, 0.05, 0.12, 0.125, 0.3, -kInf};
      constexpr double reps[] = {1e-3, 1e-3, 0, 0.5, -1, kNaN};
      constexpr Index chunks[] = {0, 0, 1, 2, 3, 4, 7, 8, 64, -1};
      FavorOptions& o = s.favor;
      o.num_features = r.choose(feats);
      o.kernel = static_cast<FavorKernel>(r.pick(5));
      o.projection = static_cast<Projection>(r.pick(3));
      o.seed = r.byte();
      o.optimal_a = r.choose(as);
      o.rescale = r.one_in(4);
      o.relu_eps = r.pick(4) != 0 ? 1e-3 : r.choose(reps);
      o.chunk_size = r.choose(chunks);
      o.compat = r.pick(4) != 0 ? FavorCompat::None : static_cast<FavorCompat>(r.pick(5));
      s.caller_projection = r.one_in(8);
      note("Favor(m=", o.num_features, " kernel=", int(o.kernel), " proj=", int(o.projection),
           " seed=", o.seed, " A=", o.optimal_a.value_or(kNaN), " rescale=", o.rescale,
           " relu_eps=", o.relu_eps, " chunk=", o.chunk_size, " compat=", int(o.compat),
           " caller=", s.caller_projection, ")");
      Validity& v = s.ctor;
      if (o.num_features < 0) v.invalid("num_features < 0");
      if (o.chunk_size < 0) v.invalid("chunk_size < 0");
      const double a = o.optimal_a.value_or(kNaN);  // NaN: the per-call optimum (old spelling)
      if (!(std::isnan(a) || a < 0.125)) v.invalid("optimal_a >= 1/8");
      if (o.kernel == FavorKernel::Optimal && std::isinf(a)) v.invalid("optimal_a inf");
      if (o.kernel == FavorKernel::Smreg && o.projection != Projection::Orthogonal)
        v.invalid("Smreg projection");
      if (o.rescale && o.kernel != FavorKernel::Positive && o.kernel != FavorKernel::Hyperbolic &&
          o.kernel != FavorKernel::Optimal)
        v.invalid("rescale kernel");
      switch (o.compat) {
        case FavorCompat::None:
          break;
        case FavorCompat::PerformerPytorch:
          if (o.kernel != FavorKernel::Positive && o.kernel != FavorKernel::Relu)
            v.invalid("compat kernel");
          break;
        case FavorCompat::FastTransformers:
          if (o.kernel != FavorKernel::Hyperbolic) v.invalid("compat kernel");
          break;
        default:
          if (o.kernel != FavorKernel::Positive) v.invalid("compat kernel");
      }
      if (o.compat != FavorCompat::None && o.rescale) v.invalid("compat rescale");
      if (!s.caller_projection && o.projection == Projection::Simplex && s.head_dim < 2 &&
          o.kernel != FavorKernel::Smreg)
        v.invalid("simplex with D = 1");
      if (!(std::isfinite(o.relu_eps) && o.relu_eps >= 0)) v.invalid("relu_eps");
      if (s.caller_projection) {
        const Index rows = o.num_features > 0 ? o.num_features : (r.flag() ? 3 : 0);
        const Index cols = r.one_in(16) ? 0 : s.head_dim;
        if (o.num_features == 0 && rows == 0) v.invalid("empty projection");
        if (cols == 0) v.invalid("empty projection");
        s.projection = MatD(std::max<Index>(rows, 0), cols);
        for (Index i = 0; i < s.projection.rows(); ++i)
          for (Index j = 0; j < cols; ++j) s.projection(i, j) = double(float(rng.normal()));
        if (s.projection.size() && r.one_in(16)) {
          s.projection(0, 0) = kNaN;
          v.invalid("non-finite projection");
        }
      } else if (s.head_dim < 1) {
        v.invalid("head_dim");
      }
      break;
    }
    case Kind::Rfa: {
      constexpr Index feats[] = {1, 2, 3, 4, 4, 6, 8, 16, 0};
      constexpr double sigmas[] = {1, 1, 1, 0.5, 2, 4, 1e-3, 30, 0, -1, kNaN};
      constexpr double den_epss[] = {1e-6, 1e-6, 1e-2, 1, 0, -1, kNaN};
      constexpr Index chunks[] = {0, 0, 1, 2, 3, 5, 8, 64, -1};
      RfaOptions& o = s.rfa;
      o.num_features = r.choose(feats);
      o.sigma = r.pick(3) != 0 ? 1.0 : r.choose(sigmas);
      o.kernel = r.flag() ? RfaKernel::Arccos : RfaKernel::Trig;
      o.projection = static_cast<Projection>(r.pick(3));
      o.seed = r.byte();
      o.den_eps = r.pick(3) != 0 ? 1e-6 : r.choose(den_epss);
      o.chunk_size = r.choose(chunks);
      s.caller_projection = r.one_in(8);
      s.sigma_per_dim = !s.caller_projection && r.one_in(6);
      note("Rfa(m=", o.num_features, " sigma=", o.sigma, " kernel=", int(o.kernel),
           " proj=", int(o.projection), " seed=", o.seed, " den_eps=", o.den_eps,
           " chunk=", o.chunk_size, " caller=", s.caller_projection, " per_dim=", s.sigma_per_dim,
           ")");
      Validity& v = s.ctor;
      if (o.num_features < 0) v.invalid("num_features");
      if (!(std::isfinite(o.sigma) && o.sigma > 0)) v.invalid("sigma");
      if (!(std::isfinite(o.den_eps) && o.den_eps > 0)) v.invalid("den_eps");
      if (o.chunk_size < 0) v.invalid("chunk_size");
      if (!s.caller_projection && o.projection == Projection::Simplex && s.head_dim < 2)
        v.invalid("simplex with D = 1");
      if (s.caller_projection) {
        const Index rows = o.num_features > 0 ? o.num_features : 4;
        s.projection = MatD(rows, s.head_dim);
        for (Index i = 0; i < rows; ++i)
          for (Index j = 0; j < s.head_dim; ++j) s.projection(i, j) = double(float(rng.normal()));
        if (o.sigma != 1.0) v.invalid("sigma with caller projection");
      }
      if (s.sigma_per_dim) {
        const Index len = r.one_in(8) ? s.head_dim + 1 : s.head_dim;
        s.sigma = VecD(len);
        for (Index j = 0; j < len; ++j) s.sigma[j] = double(float(0.25 + 2 * rng.uniform()));
        if (len != s.head_dim) v.invalid("sigma_per_dim size");
        if (o.sigma != 1.0) v.invalid("sigma and sigma_per_dim");
        if (len > 0 && r.one_in(8)) {
          s.sigma[0] = r.flag() ? 0.0 : -1.0;
          v.invalid("sigma_per_dim <= 0");
        }
      }
      break;
    }
    case Kind::Eva: {
      constexpr Index windows[] = {1, 2, 2, 3, 4, 4, 5, 8, 16, 40, 0};
      constexpr Index exts[] = {0, 0, 1, 2, 3, 4, 8, -1};
      constexpr Index lens[] = {1, 2, 2, 3, 4, 8};
      constexpr double mus[] = {-1, -1, -1, 0, 0.5, 1, 2, kNaN};
      EvaOptions& o = s.eva;
      o.window = r.choose(windows);
      o.ext = r.choose(exts);
      switch (r.pick(12)) {
        case 10:
          o.num_chunks = r.choose(lens);
          o.chunk_size = r.choose(lens);
          break;
        case 11:
          break;
        default:
          if (r.flag())
            o.num_chunks = r.choose(lens);
          else
            o.chunk_size = r.choose(lens);
      }
      o.semantics = r.flag() ? EvaSemantics::Disjoint : EvaSemantics::Reference;
      o.mu_scale = r.choose(mus);
      if (!decoding && r.one_in(4)) {
        constexpr Index sides[] = {1, 2, 2, 3, 4, 4, 6, 8};
        o.grid_height = r.choose(sides);
        o.grid_width = r.one_in(3) ? o.grid_height : r.choose(sides);
      }
      note("Eva(W=", o.window, " e=", o.ext, " C=", o.num_chunks, " L=", o.chunk_size,
           " disjoint=", o.semantics == EvaSemantics::Disjoint, " mu=", o.mu_scale,
           " grid=", o.grid_height, "x", o.grid_width, ")");
      Validity& v = s.ctor;
      if (o.window < 1) v.invalid("window");
      if (o.ext < 0) v.invalid("ext");
      if ((o.num_chunks > 0) == (o.chunk_size > 0)) v.invalid("chunks");
      if (!std::isfinite(o.mu_scale)) v.invalid("mu_scale");
      if (o.grid_height > 0 && o.window >= 1 &&
          (o.grid_height % o.window != 0 || o.grid_width % o.window != 0))
        v.invalid("grid % window");
      break;
    }
  }
  return s;
}

}  // namespace fastattn::fuzz
