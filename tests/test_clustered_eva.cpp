// Tests of clustered_eva.hpp (docs/spec/eva.md §10): the estimator given a partition against an
// independent brute-force double implementation written here (every centre, summary, mass
// correction, r, window, padding, cross-attention); the reductions (r >= C and singleton clusters
// are exact attention; r = 0 with positional clusters is EVA-Disjoint); permutation equivariance
// of the keys; padding; the stats; GQA sharing and thread-count determinism in multihead(); bad
// options; empty inputs.

#include "fastattn/clustered_eva.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <thread>
#include <vector>

#include "fastattn/multihead.hpp"
#include "reference/eva.hpp"
#include "reference/softmax.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using MatD = RowMatrix<double>;
using test::random_matrix;

// ------------------------------------------------------------------------------------------------
// The brute-force reference: one query at a time, every quantity recomputed from its definition
// in docs/spec/eva.md §10.2-§10.5, in double, with per-key loops.

struct RefOptions {
  Index r = 0;
  Index window = 0;
  ClusterCentre centre = ClusterCentre::KeyMean;
  ClusterSummary summary = ClusterSummary::RepresentativeQuery;
  ClusterMassCorrection correction = ClusterMassCorrection::None;
  double scale = 0;  // 0: 1/sqrt(D)
};

struct RefResult {
  MatD out;
  double exact_fraction = 0;
  double min_selection_gap = std::numeric_limits<double>::infinity();  // r-th vs (r+1)-th score
};

/// Moments of the keys `rows` (key indices): count, mean, diagonal variance, radius.
struct RefMoments {
  double count = 0;
  Eigen::VectorXd mean, var;
  double radius = 0;
};

RefMoments ref_moments(const MatD& k, const std::vector<Index>& rows) {
  RefMoments m;
  const Index d = k.cols();
  m.count = double(rows.size());
  m.mean = Eigen::VectorXd::Zero(d);
  m.var = Eigen::VectorXd::Zero(d);
  for (Index j : rows) m.mean += k.row(j).transpose();
  m.mean /= m.count;
  for (Index j : rows) {
    double r2 = 0;
    for (Index t = 0; t < d; ++t) {
      const double dev = k(j, t) - m.mean[t];
      m.var[t] += dev * dev;
      r2 += dev * dev;
    }
    m.radius = std::max(m.radius, std::sqrt(r2));
  }
  m.var /= m.count;
  return m;
}

/// The estimated log-mass of a set with moments m for query q (scale s).
double ref_logit(const Eigen::VectorXd& q, const RefMoments& m, double s, ClusterMassCorrection c) {
  double logit = s * q.dot(m.mean) + std::log(m.count);
  const double qn = q.norm();
  if (c == ClusterMassCorrection::Isotropic)
    logit += std::min(0.5 * s * s * q.squaredNorm() * m.var.mean(), s * qn * m.radius);
  if (c == ClusterMassCorrection::Diagonal)
    logit += std::min(0.5 * s * s * q.cwiseProduct(q).dot(m.var), s * qn * m.radius);
  return logit;
}

/// beta over the keys `rows` with the weights' vector w (mu_c or qhat_c): the shared masked
/// softmax (tests/reference/softmax.hpp) over the summary logits a_m of spec §10.5.
Eigen::VectorXd ref_beta(const MatD& k, const MatD& v, const std::vector<Index>& rows,
                         const Eigen::VectorXd& w, double s, ClusterSummary summary) {
  std::vector<test::ref::Term> terms;
  for (Index j : rows) {
    const Eigen::VectorXd kj = k.row(j).transpose();
    const double a = summary == ClusterSummary::SingleSample ? s * (w.dot(kj) - 0.5 * kj.squaredNorm())
                                                            : s * w.dot(kj);
    terms.push_back({a, j});
  }
  return test::ref::softmax_average(terms, v).transpose();
}

/// labels [Nk]: cluster label per key (-1 = padded key); empty labels are dropped, the others
/// keep their order.
RefResult reference_clustered_eva(const MatD& q, const MatD& k, const MatD& v,
                                  const std::vector<Index>& labels, Index num_labels,
                                  const RefOptions& o) {
  const Index nq = q.rows(), nk = k.rows(), d = q.cols();
  const double s = o.scale != 0 ? o.scale : 1.0 / std::sqrt(double(d));
  std::vector<std::vector<Index>> members;
  for (Index a = 0; a < num_labels; ++a) {
    std::vector<Index> m;
    for (Index j = 0; j < nk; ++j)
      if (labels[size_t(j)] == a) m.push_back(j);
    if (!m.empty()) members.push_back(m);
  }
  const Index c_count = Index(members.size());
  RefResult res;
  res.out = MatD::Zero(nq, v.cols());
  if (c_count == 0) return res;
  Index visible = 0;
  for (Index j = 0; j < nk; ++j) visible += labels[size_t(j)] >= 0;
  std::vector<RefMoments> full;
  for (const auto& m : members) full.push_back(ref_moments(k, m));
  const Index r = std::min(o.r, c_count);

  // Scores and selection of every query.
  std::vector<std::vector<double>> score(static_cast<size_t>(nq));
  std::vector<std::vector<Index>> selected(static_cast<size_t>(nq));
  for (Index n = 0; n < nq; ++n) {
    const Eigen::VectorXd qn = q.row(n).transpose();
    for (Index c = 0; c < c_count; ++c)
      score[size_t(n)].push_back(ref_logit(qn, full[size_t(c)], s, o.correction));
    std::vector<Index> order(static_cast<size_t>(c_count));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) {
      return score[size_t(n)][size_t(a)] > score[size_t(n)][size_t(b)];
    });
    selected[size_t(n)].assign(order.begin(), order.begin() + r);
    if (r > 0 && r < c_count)
      res.min_selection_gap = std::min(res.min_selection_gap, score[size_t(n)][size_t(order[size_t(r - 1)])] -
                                                                  score[size_t(n)][size_t(order[size_t(r)])]);
  }

  // The vector of each cluster's summary weights (spec §10.5).
  std::vector<Eigen::VectorXd> w(size_t(c_count), Eigen::VectorXd::Zero(d));
  for (Index c = 0; c < c_count; ++c) {
    Eigen::VectorXd qhat = Eigen::VectorXd::Zero(d);
    if (o.centre == ClusterCentre::TokenMean) {
      for (Index j : members[size_t(c)]) qhat += q.row(j).transpose();
      qhat /= double(members[size_t(c)].size());
    }
    if (o.centre == ClusterCentre::AttendingQueries) {
      double den = 0;
      for (Index n = 0; n < nq; ++n) {
        const auto& sel = selected[size_t(n)];
        if (std::find(sel.begin(), sel.end(), c) != sel.end()) continue;
        const double mx = *std::max_element(score[size_t(n)].begin(), score[size_t(n)].end());
        double z = 0;
        for (double x : score[size_t(n)]) z += std::exp(x - mx);
        const double a = std::exp(score[size_t(n)][size_t(c)] - mx) / z;
        den += a;
        qhat += a * q.row(n).transpose();
      }
      if (den > 0) qhat /= den;
    }
    if (o.summary == ClusterSummary::RepresentativeQuery) {
      w[size_t(c)] = qhat;
    } else if (o.centre == ClusterCentre::TokenMean) {
      w[size_t(c)] = 0.5 * (qhat + full[size_t(c)].mean);
    } else {
      w[size_t(c)] = qhat + full[size_t(c)].mean;  // KeyMean: qhat = 0
    }
  }

  double exact_total = 0;
  for (Index n = 0; n < nq; ++n) {
    const Eigen::VectorXd qn = q.row(n).transpose();
    auto in_window = [&](Index j) {
      if (o.window == 0) return false;
      const Index a = n / o.window * o.window;
      return j >= a && j < a + o.window;
    };
    std::vector<double> logit;
    std::vector<Eigen::VectorXd> value;
    Index exact = 0;
    for (Index j = 0; j < nk; ++j) {
      const Index lab = labels[size_t(j)];
      if (lab < 0) continue;
      // The cluster of key j (index in `members`).
      Index c = 0;
      while (std::find(members[size_t(c)].begin(), members[size_t(c)].end(), j) ==
             members[size_t(c)].end())
        ++c;
      const auto& sel = selected[size_t(n)];
      if (in_window(j) || std::find(sel.begin(), sel.end(), c) != sel.end()) {
        logit.push_back(s * qn.dot(k.row(j).transpose()));
        value.push_back(v.row(j).transpose());
        ++exact;
      }
    }
    for (Index c = 0; c < c_count; ++c) {
      const auto& sel = selected[size_t(n)];
      if (std::find(sel.begin(), sel.end(), c) != sel.end()) continue;
      std::vector<Index> rest;
      for (Index j : members[size_t(c)])
        if (!in_window(j)) rest.push_back(j);
      if (rest.empty()) continue;
      logit.push_back(ref_logit(qn, ref_moments(k, rest), s, o.correction));
      value.push_back(ref_beta(k, v, rest, w[size_t(c)], s, o.summary));
    }
    exact_total += double(exact) / double(visible);
    // One softmax over the exact keys and the summary entries (spec §10.2).
    MatD values(Index(value.size()), v.cols());
    std::vector<test::ref::Term> terms;
    for (size_t t = 0; t < logit.size(); ++t) {
      values.row(Index(t)) = value[t].transpose();
      terms.push_back({logit[t], Index(t)});
    }
    res.out.row(n) = test::ref::softmax_average(terms, values);
  }
  res.exact_fraction = exact_total / double(nq);
  return res;
}

// ------------------------------------------------------------------------------------------------

template <class T>
class ClusteredEvaTest : public ::testing::Test {
 protected:
  // float: outputs are convex combinations of O(1) values built from sums of <= a few hundred
  // rounded terms (logits, moments, softmax): ~1e-5 relative. double: 1e-11.
  static constexpr double tol = std::is_same_v<T, float> ? 3e-5 : 1e-11;
};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ClusteredEvaTest, Types);

/// Random labels in [0, num_labels) for the visible keys (some labels empty), -1 for padded.
std::vector<Index> random_labels(const KeyMask& pad, Index num_labels, std::uint64_t seed) {
  test::DataRng rng(seed);
  std::vector<Index> labels(static_cast<size_t>(pad.size()));
  for (Index j = 0; j < pad.size(); ++j)
    labels[size_t(j)] = pad[j] ? -1 : Index(rng.next() % std::uint64_t(num_labels));
  return labels;
}

template <class T>
detail::ClusteredEvaConfig config(Index r, Index window, ClusterCentre centre,
                                  ClusterSummary summary, ClusterMassCorrection correction) {
  ClusteredEvaOptions o;
  o.exact_clusters = r;
  o.window = window;
  o.centre = centre;
  o.summary = summary;
  o.mass_correction = correction;
  detail::ClusteredEvaConfig c = detail::make_clustered_eva_config(o);
  c.exact_clusters_zero = r == 0;
  return c;
}

// The estimator given a partition equals the brute force, for every centre, summary and mass
// correction, r in {0, 1, 3, >= C}, with and without a window, with padding, and for
// cross-attention (Nq != Nk; no window or TokenMean there).
TYPED_TEST(ClusteredEvaTest, EstimatorMatchesBruteForce) {
  using T = TypeParam;
  const Index d = 8, dv = 5;
  int cases = 0;
  for (int cross = 0; cross < 2; ++cross) {
    const Index nk = 45, nq = cross ? 23 : nk;
    const MatD q = random_matrix<double>(nq, d, 1, 1.5), k = random_matrix<double>(nk, d, 2, 1.5),
               v = random_matrix<double>(nk, dv, 3);
    const KeyMask pad = test::random_mask(nk, 0.2, 4);
    const Index num_labels = 9;
    const std::vector<Index> labels = random_labels(pad, num_labels, 5);
    const RowMatrix<T> qt = q.cast<T>(), kt = k.cast<T>(), vt = v.cast<T>();
    AttentionOptions opt;
    opt.key_padding = pad;
    for (ClusterCentre centre : {ClusterCentre::KeyMean, ClusterCentre::TokenMean,
                                 ClusterCentre::AttendingQueries})
      for (ClusterSummary summary :
           {ClusterSummary::SingleSample, ClusterSummary::RepresentativeQuery})
        for (ClusterMassCorrection correction :
             {ClusterMassCorrection::None, ClusterMassCorrection::Isotropic,
              ClusterMassCorrection::Diagonal})
          for (Index r : {0, 1, 3, 20})
            for (Index window : {0, 8}) {
              if (cross && (window > 0 || centre == ClusterCentre::TokenMean)) continue;
              RefOptions ro;
              ro.r = r;
              ro.window = window;
              ro.centre = centre;
              ro.summary = summary;
              ro.correction = correction;
              const RefResult ref = reference_clustered_eva(q, k, v, labels, num_labels, ro);
              // The selection is discontinuous: the data must not have a near-tie at the r-th
              // score (it does not, for these seeds; this guards the test's premise).
              ASSERT_GT(ref.min_selection_gap, 1e-4);
              RowMatrix<T> out(nq, dv);
              ClusteredEvaStats stats;
              detail::clustered_eva_with_partition<T>(
                  config<T>(r, window, centre, summary, correction), qt, kt, vt, out, opt, labels,
                  num_labels, &stats);
              EXPECT_TRUE(test::near(out, ref.out, this->tol, this->tol))
                  << "cross " << cross << " centre " << int(centre) << " summary " << int(summary)
                  << " correction " << int(correction) << " r " << r << " window " << window;
              EXPECT_NEAR(stats.exact_fraction, ref.exact_fraction, 1e-12);
              ++cases;
            }
  }
  EXPECT_EQ(cases, 2 * 2 * 3 * 4 + 3 * 2 * 3 * 4 * 2);
}

// The same with clusters of every size the exact kernel treats differently: at most one packet
// of keys (scored on that packet only), one partial panel, whole panels only, whole panels plus
// a tail of at most one packet or of more, for float (32-key panels on AVX-512) and double (16):
// sizes 5, 12, 16, 20, 32, 40, 47, 64, 70 (padded keys spread over them). Values of width 5
// (one narrow value chunk) and 40 (a full chunk and a narrow one); logits up to ~20 apart, so
// the kernel raises its softmax reference within a cluster (rescale path).
TYPED_TEST(ClusteredEvaTest, EstimatorMatchesBruteForceOnLargeClusters) {
  using T = TypeParam;
  const std::vector<Index> sizes = {5, 12, 16, 20, 32, 40, 47, 64, 70};
  const Index nk = std::accumulate(sizes.begin(), sizes.end(), Index(0)), d = 12;
  std::vector<Index> labels;
  for (size_t c = 0; c < sizes.size(); ++c) labels.insert(labels.end(), size_t(sizes[c]), Index(c));
  test::DataRng rng(41);  // shuffled positions: a cluster's keys are not contiguous in k
  for (size_t i = labels.size() - 1; i > 0; --i) std::swap(labels[i], labels[rng.next() % (i + 1)]);
  const KeyMask pad = test::random_mask(nk, 0.1, 42);
  for (Index j = 0; j < nk; ++j)
    if (pad[j]) labels[size_t(j)] = -1;
  const Index num_labels = Index(sizes.size());
  int cases = 0;
  for (Index dv : {5, 40})
    for (int cross = 0; cross < 2; ++cross) {
      const Index nq = cross ? 77 : nk;
      const MatD k = random_matrix<double>(nk, d, 44, 2.5), v = random_matrix<double>(nk, dv, 45);
      std::vector<std::pair<Index, Index>> configs;  // (r, window)
      for (Index r : {1, 3, 9})
        for (Index window : {0, 24})
          if (!cross || window == 0) configs.push_back({r, window});
      auto ref_options = [](Index r, Index window) {
        RefOptions ro;
        ro.r = r;
        ro.window = window;
        ro.correction = ClusterMassCorrection::Isotropic;
        return ro;
      };
      // The selection is discontinuous: take the first query seed whose data has no near-tie at
      // the r-th score in any configuration (the test's premise, as above).
      MatD q;
      std::vector<RefResult> refs;
      for (std::uint64_t seed = 43; seed < 63 && refs.size() < configs.size(); ++seed) {
        q = random_matrix<double>(nq, d, seed, 2.5);
        refs.clear();
        for (const auto& [r, window] : configs) {
          refs.push_back(
              reference_clustered_eva(q, k, v, labels, num_labels, ref_options(r, window)));
          if (refs.back().min_selection_gap <= 1e-4) break;
        }
        if (refs.back().min_selection_gap <= 1e-4) refs.clear();
      }
      ASSERT_EQ(refs.size(), configs.size()) << "no query seed without a near-tie";
      const RowMatrix<T> qt = q.cast<T>(), kt = k.cast<T>(), vt = v.cast<T>();
      AttentionOptions opt;
      opt.key_padding = pad;
      for (size_t ci = 0; ci < configs.size(); ++ci) {
        const auto [r, window] = configs[ci];
        RowMatrix<T> out(nq, dv);
        detail::clustered_eva_with_partition<T>(
            config<T>(r, window, ClusterCentre::KeyMean, ClusterSummary::RepresentativeQuery,
                      ClusterMassCorrection::Isotropic),
            qt, kt, vt, out, opt, labels, num_labels);
        EXPECT_TRUE(test::near(out, refs[ci].out, this->tol, this->tol))
            << "dv " << dv << " cross " << cross << " r " << r << " window " << window;
        ++cases;
      }
    }
  EXPECT_EQ(cases, 2 * (3 * 2 + 3));
}

// §10.6.1: r >= C is exact softmax attention (independent reference), padding and Nq != Nk too.
TYPED_TEST(ClusteredEvaTest, AllClustersExactIsExactAttention) {
  using T = TypeParam;
  for (Index nq : {37, 60}) {
    const Index nk = 60, d = 16, dv = 12;
    const MatD q = random_matrix<double>(nq, d, 11, 2.0), k = random_matrix<double>(nk, d, 12, 2.0),
               v = random_matrix<double>(nk, dv, 13);
    const KeyMask pad = test::random_mask(nk, 0.3, 14);
    AttentionOptions opt;
    opt.key_padding = pad;
    test::RefSpec spec;
    spec.padding = pad;
    const MatD exact = test::reference_attention(q, k, v, spec);
    for (ClusterCentre centre : {ClusterCentre::KeyMean, ClusterCentre::AttendingQueries}) {
      ClusteredEvaOptions o;
      o.num_clusters = 7;
      o.exact_clusters = 7;
      o.centre = centre;
      ClusteredEvaStats stats;
      RowMatrix<T> out(nq, dv);
      ClusteredEva<T>(d, o).forward(q.cast<T>(), k.cast<T>(), v.cast<T>(), out, opt, stats);
      EXPECT_TRUE(test::near(out, exact, test::Tol<T>::rel, test::Tol<T>::abs));
      EXPECT_EQ(stats.num_clusters, 7);
      EXPECT_DOUBLE_EQ(stats.exact_fraction, 1.0);
    }
  }
}

// §10.6.2: singleton clusters (C = n distinct keys) are exact attention for every r, and so are
// clusters of identical keys (logit s q.k + ln n_c is their exact log-mass, beta their value mean).
TYPED_TEST(ClusteredEvaTest, SingletonAndIdenticalKeyClustersAreExact) {
  using T = TypeParam;
  const Index nk = 40, nq = 31, d = 8, dv = 6;
  const MatD q = random_matrix<double>(nq, d, 21, 2.0), v = random_matrix<double>(nk, dv, 23);
  const MatD k = random_matrix<double>(nk, d, 22, 2.0);
  test::RefSpec spec;
  for (Index r : {1, 3}) {
    for (ClusterSummary summary : {ClusterSummary::SingleSample, ClusterSummary::RepresentativeQuery})
      for (ClusterMassCorrection correction :
           {ClusterMassCorrection::None, ClusterMassCorrection::Diagonal}) {
        ClusteredEvaOptions o;
        o.num_clusters = nk;
        o.exact_clusters = r;
        o.summary = summary;
        o.mass_correction = correction;
        ClusteredEvaStats stats;
        RowMatrix<T> out(nq, dv);
        ClusteredEva<T>(d, o).forward(q.cast<T>(), k.cast<T>(), v.cast<T>(), out, {}, stats);
        EXPECT_EQ(stats.num_clusters, nk);
        EXPECT_TRUE(test::near(out, test::reference_attention(q, k, v, spec), test::Tol<T>::rel,
                               test::Tol<T>::abs));
      }
    // 8 distinct keys, each repeated 5 times (different values): C = 8 clusters of equal keys.
    MatD dup(nk, d);
    for (Index j = 0; j < nk; ++j) dup.row(j) = k.row(j % 8);
    ClusteredEvaOptions o;
    o.num_clusters = 8;
    o.exact_clusters = r;
    o.mass_correction = ClusterMassCorrection::Diagonal;  // zero variance: no correction
    RowMatrix<T> out(nq, dv);
    ClusteredEva<T>(d, o).forward(q.cast<T>(), dup.cast<T>(), v.cast<T>(), out);
    EXPECT_TRUE(test::near(out, test::reference_attention(q, dup, v, spec), test::Tol<T>::rel,
                           test::Tol<T>::abs));
  }
}

// §10.6.3: r = 0 with positional clusters of length L, TokenMean, SingleSample, no correction and
// a window W (L | W) is EVA-Disjoint with ext = 0 (identity projections).
TYPED_TEST(ClusteredEvaTest, PositionalClustersWithoutExactClustersAreEvaDisjoint) {
  using T = TypeParam;
  const Index n = 64, d = 8, dv = 8, window = 16, chunk = 8;
  const RowMatrix<T> q = random_matrix<T>(n, d, 31), k = random_matrix<T>(n, d, 32),
                     v = random_matrix<T>(n, dv, 33);
  for (double p : {0.0, 0.25}) {
    const KeyMask pad = test::random_mask(n, p, 34);
    AttentionOptions opt;
    opt.key_padding = pad;
    std::vector<Index> labels(static_cast<size_t>(n));
    for (Index j = 0; j < n; ++j) labels[size_t(j)] = pad[j] ? -1 : j / chunk;
    RowMatrix<T> out(n, dv);
    detail::clustered_eva_with_partition<T>(
        config<T>(0, window, ClusterCentre::TokenMean, ClusterSummary::SingleSample,
                  ClusterMassCorrection::None),
        q, k, v, out, opt, labels, n / chunk);
    test::ref::EvaSpec spec;  // the independent EVA reference, not the library's Eva
    spec.options.window = window;
    spec.options.chunk_size = chunk;
    spec.options.semantics = EvaSemantics::Disjoint;
    spec.padding = pad;
    const MatD eva = test::ref::eva_attention(q.template cast<double>(), k.template cast<double>(),
                                              v.template cast<double>(), spec)
                         .out;
    EXPECT_TRUE(test::near(out, eva, 10 * test::Tol<T>::rel, 10 * test::Tol<T>::abs))
        << "padding " << p;
  }
}

// Same seed, keys (with their values and padding) permuted: the same output up to rounding. The
// k-means draws are keyed by key contents, assignment ties go to content-ordered clusters, and the
// estimator depends on positions only through the window (none here).
TYPED_TEST(ClusteredEvaTest, PermutationEquivariantInTheKeys) {
  using T = TypeParam;
  const Index nk = 300, nq = 50, d = 16, dv = 8;
  const RowMatrix<T> q = random_matrix<T>(nq, d, 41, 2.0), k = random_matrix<T>(nk, d, 42, 2.0),
                     v = random_matrix<T>(nk, dv, 43);
  const KeyMask pad = test::random_mask(nk, 0.1, 44);
  std::vector<Index> perm(static_cast<size_t>(nk));
  std::iota(perm.begin(), perm.end(), 0);
  test::DataRng rng(45);
  for (Index i = nk - 1; i > 0; --i) std::swap(perm[size_t(i)], perm[size_t(rng.next() % std::uint64_t(i + 1))]);
  RowMatrix<T> kp(nk, d), vp(nk, dv);
  KeyMask padp(nk);
  for (Index i = 0; i < nk; ++i) {
    kp.row(i) = k.row(perm[size_t(i)]);
    vp.row(i) = v.row(perm[size_t(i)]);
    padp[i] = pad[perm[size_t(i)]];
  }
  for (ClusterCentre centre : {ClusterCentre::KeyMean, ClusterCentre::AttendingQueries}) {
    ClusteredEvaOptions o;
    o.centre = centre;
    o.num_clusters = 12;
    o.exact_clusters = 3;
    o.seed = 9;
    const ClusteredEva<T> method(d, o);
    AttentionOptions a, b;
    a.key_padding = pad;
    b.key_padding = padp;
    ClusteredEvaStats sa, sb;
    RowMatrix<T> oa(nq, dv), ob(nq, dv);
    method.forward(q, k, v, oa, a, sa);
    method.forward(q, kp, vp, ob, b, sb);
    EXPECT_TRUE(test::near(ob, oa, 10 * test::Tol<T>::rel, 10 * test::Tol<T>::abs));
    EXPECT_NEAR(sa.exact_fraction, sb.exact_fraction, 1e-12);
  }
}

// Padded keys never influence anything: any values (NaN, inf, huge) at padded positions give the
// same output, bitwise (only visible keys are clustered or read), and it equals the call on the
// visible keys alone (to rounding: the visible keys are then read in place instead of gathered).
TYPED_TEST(ClusteredEvaTest, PaddedKeysNeverInfluenceTheOutput) {
  using T = TypeParam;
  const Index nk = 200, nq = 40, d = 16, dv = 8;
  const RowMatrix<T> q = random_matrix<T>(nq, d, 51, 2.0);
  RowMatrix<T> k = random_matrix<T>(nk, d, 52, 2.0), v = random_matrix<T>(nk, dv, 53);
  const KeyMask pad = test::random_mask(nk, 0.3, 54);
  AttentionOptions opt;
  opt.key_padding = pad;
  ClusteredEvaOptions o;
  o.num_clusters = 10;
  o.centre = ClusterCentre::AttendingQueries;
  const ClusteredEva<T> method(d, o);
  const RowMatrix<T> base = method(q, k, v, opt);
  ASSERT_TRUE(test::all_finite(base));
  const T garbage[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                       T(1e30)};
  for (T g : garbage) {
    RowMatrix<T> kg = k, vg = v;
    for (Index j = 0; j < nk; ++j)
      if (pad[j]) kg.row(j).setConstant(g), vg.row(j).setConstant(g);
    const RowMatrix<T> out = method(q, kg, vg, opt);
    EXPECT_TRUE(out == base) << "padded value " << g;
  }
  Index n = 0;
  RowMatrix<T> kv(nk, d), vv(nk, dv);
  for (Index j = 0; j < nk; ++j)
    if (!pad[j]) kv.row(n) = k.row(j), vv.row(n) = v.row(j), ++n;
  const RowMatrix<T> compact = method(q, kv.topRows(n), vv.topRows(n));
  EXPECT_TRUE(test::near(compact, base, 10 * test::Tol<T>::rel, 10 * test::Tol<T>::abs));
  // With a window the padded keys inside it are masked (and zeroed: NaN cannot leak).
  ClusteredEvaOptions w = o;
  w.window = 16;
  w.centre = ClusterCentre::KeyMean;
  RowMatrix<T> qs = random_matrix<T>(nk, d, 55, 2.0), kg = k, vg = v;
  for (Index j = 0; j < nk; ++j)
    if (pad[j]) kg.row(j).setConstant(garbage[0]), vg.row(j).setConstant(garbage[0]);
  const ClusteredEva<T> windowed(d, w);
  const RowMatrix<T> a = windowed(qs, k, v, opt), b = windowed(qs, kg, vg, opt);
  EXPECT_TRUE(test::all_finite(b));
  EXPECT_TRUE(a == b);
  // Every key padded: zero rows.
  AttentionOptions all;
  all.key_padding = KeyMask::Constant(nk, true);
  ClusteredEvaStats stats;
  RowMatrix<T> zero(nq, dv);
  method.forward(q, kg, vg, zero, all, stats);
  EXPECT_TRUE(zero.isZero(0));
  EXPECT_EQ(stats.num_clusters, 0);
  EXPECT_EQ(stats.exact_fraction, 0);
}

// The public forward is k-means followed by the estimator: with the default options its output
// equals the brute force given the partition k-means produces (same seed, same visible keys).
TYPED_TEST(ClusteredEvaTest, ForwardIsKMeansThenTheEstimator) {
  using T = TypeParam;
  const Index nk = 150, nq = 70, d = 16, dv = 8;
  const RowMatrix<T> q = random_matrix<T>(nq, d, 61, 2.0), k = random_matrix<T>(nk, d, 62, 2.0),
                     v = random_matrix<T>(nk, dv, 63);
  ClusteredEvaOptions o;  // defaults: C = ceil(sqrt(150)) = 13, r = 2, I = 3
  o.seed = 4;
  ClusteredEvaStats stats;
  RowMatrix<T> out(nq, dv);
  ClusteredEva<T>(d, o).forward(q, k, v, out, {}, stats);
  EXPECT_EQ(stats.num_clusters, 13);
  detail::KMeansWorkspace<T> ws;
  detail::KMeansResult<T> km;
  detail::kmeans<T>(k, 13, 3, 4, ws, km);
  RefOptions ro;
  ro.r = 2;
  ro.correction = ClusterMassCorrection::Isotropic;
  const RefResult ref = reference_clustered_eva(q.template cast<double>(), k.template cast<double>(),
                                                v.template cast<double>(), km.assignment, 13, ro);
  ASSERT_GT(ref.min_selection_gap, 1e-4);
  EXPECT_TRUE(test::near(out, ref.out, this->tol, this->tol));
  EXPECT_NEAR(stats.exact_fraction, ref.exact_fraction, 1e-12);
}

// multihead(): GQA shares the clusters of a kv head (forward_group) and equals per-head forward
// calls bitwise; results are bitwise identical for 1 and 2 threads (a caller-supplied
// parallel_for with std::thread, and OpenMP when the test is built with it).
TYPED_TEST(ClusteredEvaTest, MultiheadGqaAndThreads) {
  using T = TypeParam;
  const Index b = 2, n = 90, hq = 4, hkv = 2, d = 16, dv = 16;
  std::vector<T> qb(size_t(b * n * hq * d)), kb(size_t(b * n * hkv * d)), vb(size_t(b * n * hkv * dv));
  test::DataRng rng(71);
  for (auto* buf : {&qb, &kb, &vb})
    for (auto& x : *buf) x = T(2 * rng.normal());
  auto q = TensorView<T>::bnhd(qb.data(), b, n, hq, d);
  auto k = TensorView<T>::bnhd(kb.data(), b, n, hkv, d);
  auto v = TensorView<T>::bnhd(vb.data(), b, n, hkv, dv);
  for (ClusterCentre centre : {ClusterCentre::KeyMean, ClusterCentre::AttendingQueries}) {
    ClusteredEvaOptions o;
    o.centre = centre;
    const ClusteredEva<T> method(d, o);
    MultiheadOptions mo;
    mo.key_lengths = {n, 70};
    std::vector<T> o1(size_t(b * n * hq * dv)), o2(o1.size());
    mo.threads = 1;
    multihead(method, q, k, v, TensorView<T>::bnhd(o1.data(), b, n, hq, dv), mo);
    // Per head, the single-head forward gives the same bits.
    for (Index bi = 0; bi < b; ++bi)
      for (Index h = 0; h < hq; ++h) {
        AttentionOptions opt;
        opt.key_padding = KeyMask::Constant(n, false);
        opt.key_padding.tail(n - mo.key_lengths[size_t(bi)]).setConstant(true);
        const RowMatrix<T> one = method(q.head(bi, h), k.head(bi, h / 2), v.head(bi, h / 2), opt);
        const RowMatrix<T> got = TensorView<T>::bnhd(o1.data(), b, n, hq, dv).head(bi, h);
        EXPECT_TRUE(got == one) << "batch " << bi << " head " << h;
      }
    MultiheadOptions mt = mo;
    mt.threads = 2;
    mt.parallel_for = [](Index count, const std::function<void(Index)>& task) {
      std::vector<std::thread> pool;
      for (int t = 0; t < 2; ++t)
        pool.emplace_back([&, t] {
          for (Index i = t; i < count; i += 2) task(i);
        });
      for (auto& th : pool) th.join();
    };
    multihead(method, q, k, v, TensorView<T>::bnhd(o2.data(), b, n, hq, dv), mt);
    EXPECT_TRUE(o1 == o2) << "parallel_for, 2 threads";
#if FASTATTN_HAS_OPENMP
    std::vector<T> o3(o1.size());
    MultiheadOptions omp = mo;
    omp.threads = 2;
    multihead(method, q, k, v, TensorView<T>::bnhd(o3.data(), b, n, hq, dv), omp);
    EXPECT_TRUE(o1 == o3) << "OpenMP, 2 threads";
#endif
  }
}

// Cross-attention (Nq != Nk) and the empty cases: Nq = 0 gives nothing, Nk = 0 all-zero rows.
TYPED_TEST(ClusteredEvaTest, CrossAttentionAndEmptyInputs) {
  using T = TypeParam;
  const Index d = 8, dv = 4;
  const ClusteredEva<T> method(d);
  const RowMatrix<T> q = random_matrix<T>(10, d, 81), k = random_matrix<T>(77, d, 82),
                     v = random_matrix<T>(77, dv, 83);
  ClusteredEvaStats stats;
  RowMatrix<T> out(10, dv);
  method.forward(q, k, v, out, {}, stats);
  EXPECT_TRUE(test::all_finite(out));
  EXPECT_EQ(stats.num_clusters, 9);  // ceil(sqrt(77))
  EXPECT_GT(stats.exact_fraction, 0);
  EXPECT_LT(stats.exact_fraction, 1);
  RowMatrix<T> none(0, dv);
  method.forward(RowMatrix<T>(0, d), k, v, none, {}, stats);
  EXPECT_EQ(stats.num_clusters, 0);
  RowMatrix<T> zero = RowMatrix<T>::Constant(10, dv, T(7));
  method.forward(q, RowMatrix<T>(0, d), RowMatrix<T>(0, dv), zero, {}, stats);
  EXPECT_TRUE(zero.isZero(0));
}

TYPED_TEST(ClusteredEvaTest, RejectsBadOptionsAndCalls) {
  using T = TypeParam;
  auto msg = [](ClusteredEvaOptions o) {
    return test::invalid_argument_message([&] { ClusteredEva<T>(8, o); });
  };
  ClusteredEvaOptions o;
  o.num_clusters = -1;
  EXPECT_NE(msg(o).find("options.num_clusters"), std::string::npos);
  o = {};
  o.exact_clusters = -2;
  EXPECT_NE(msg(o).find("options.exact_clusters"), std::string::npos);
  o = {};
  o.num_clusters = 4;
  o.exact_clusters = 5;
  EXPECT_NE(msg(o).find("exceeds options.num_clusters"), std::string::npos);
  o = {};
  o.window = -1;
  EXPECT_NE(msg(o).find("options.window"), std::string::npos);
  o = {};
  o.iterations = -3;
  EXPECT_NE(msg(o).find("options.iterations"), std::string::npos);
  o = {};
  o.centre = static_cast<ClusterCentre>(7);
  EXPECT_NE(msg(o).find("options.centre"), std::string::npos);
  o = {};
  o.summary = static_cast<ClusterSummary>(7);
  EXPECT_NE(msg(o).find("options.summary"), std::string::npos);
  o = {};
  o.mass_correction = static_cast<ClusterMassCorrection>(-1);
  EXPECT_NE(msg(o).find("options.mass_correction"), std::string::npos);
  EXPECT_NE(test::invalid_argument_message([] { ClusteredEva<T>(0); }).find("head_dim"),
            std::string::npos);

  const RowMatrix<T> q = random_matrix<T>(6, 8, 91), k = random_matrix<T>(9, 8, 92),
                     v = random_matrix<T>(9, 4, 93);
  RowMatrix<T> out(6, 4);
  auto call = [&](const ClusteredEva<T>& m, const AttentionOptions& opt) {
    return test::invalid_argument_message([&] { m.forward(q, k, v, out, opt); });
  };
  const ClusteredEva<T> plain(8);
  AttentionOptions causal;
  causal.causal = true;
  EXPECT_NE(call(plain, causal).find("causal"), std::string::npos);
  AttentionOptions alibi;
  alibi.alibi_slope = 0.5;
  EXPECT_NE(call(plain, alibi).find("alibi_slope"), std::string::npos);
  ClusteredEvaOptions w;
  w.window = 4;
  EXPECT_NE(call(ClusteredEva<T>(8, w), {}).find("options.window"), std::string::npos);
  ClusteredEvaOptions tm;
  tm.centre = ClusterCentre::TokenMean;
  EXPECT_NE(call(ClusteredEva<T>(8, tm), {}).find("TokenMean"), std::string::npos);
  EXPECT_NE(call(ClusteredEva<T>(16), {}).find("head_dim = 16"), std::string::npos);
  AttentionOptions badpad;
  badpad.key_padding = KeyMask::Constant(3, false);
  EXPECT_NE(call(plain, badpad).find("key_padding"), std::string::npos);
  RowMatrix<T> wrong(5, 4);
  EXPECT_NE(test::invalid_argument_message([&] { plain.forward(q, k, v, wrong); }).find("out"),
            std::string::npos);
}

}  // namespace
}  // namespace fastattn
