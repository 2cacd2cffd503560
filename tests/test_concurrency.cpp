// Thread safety of the const API (docs/reliability.md): several std::threads call forward() and
// step() (each thread on its own State objects) and multihead() (threads = 1 inside) on shared
// method objects -- Exact, Favor, Rfa, Eva -- at the same time. Every result must be bitwise equal
// to a serial run. Run this binary under ThreadSanitizer (-DFASTATTN_SANITIZE=thread) to check for
// data races as well; without TSan it still catches races that corrupt results.

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fastattn/eva.hpp"
#include "fastattn/exact.hpp"
#include "fastattn/favor.hpp"
#include "fastattn/multihead.hpp"
#include "fastattn/rfa.hpp"
#include "support.hpp"

namespace fastattn {
namespace {

using test::random_matrix;

constexpr int kThreads = 4;
constexpr int kRounds = 3;

template <class M>
bool bitwise_equal(const M& a, const M& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 ||
          std::memcmp(a.data(), b.data(), sizeof(typename M::Scalar) * size_t(a.size())) == 0);
}

/// One unit of work: a forward call, a decoding sequence or a multihead call on input `i`, whose
/// result is a matrix. Work items only read the shared method objects.
template <class T>
using Job = std::function<RowMatrix<T>(int i)>;

/// Runs every job on every input serially, then on kThreads threads at once (each thread walks
/// all inputs starting at a different offset, so different threads run different jobs and the
/// same job concurrently), and compares the results bitwise.
template <class T>
void check_concurrent_equals_serial(const std::vector<std::pair<std::string, Job<T>>>& jobs,
                                    int inputs) {
  const int n_jobs = int(jobs.size());
  std::vector<RowMatrix<T>> serial(size_t(n_jobs * inputs));
  for (int j = 0; j < n_jobs; ++j)
    for (int i = 0; i < inputs; ++i) serial[size_t(j * inputs + i)] = jobs[size_t(j)].second(i);

  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<RowMatrix<T>>> results(kThreads,
                                                   std::vector<RowMatrix<T>>(serial.size()));
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();  // start together
        for (int w = 0; w < n_jobs * inputs; ++w) {
          const int item = (w + t * 7) % (n_jobs * inputs);
          results[size_t(t)][size_t(item)] = jobs[size_t(item / inputs)].second(item % inputs);
        }
      });
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t)
      for (int item = 0; item < n_jobs * inputs; ++item)
        EXPECT_TRUE(bitwise_equal(results[size_t(t)][size_t(item)], serial[size_t(item)]))
            << jobs[size_t(item / inputs)].first << " input " << item % inputs << " thread " << t
            << " round " << round;
  }
}

template <class T>
struct Inputs {
  static constexpr int count = 3;
  static constexpr Index n = 24, d = 8, dv = 6;
  std::vector<RowMatrix<T>> q, k, v;
  std::vector<KeyMask> pad;
  Inputs() {
    for (int i = 0; i < count; ++i) {
      q.push_back(random_matrix<T>(n, d, 100 + 3 * i));
      k.push_back(random_matrix<T>(n, d, 101 + 3 * i));
      v.push_back(random_matrix<T>(n, dv, 102 + 3 * i));
      pad.push_back(test::random_mask(n, 0.2, 200 + i));
    }
  }
};

/// Jobs for one method: non-causal and causal (padded) forward, and a token-by-token decode with
/// a fresh State per call (states are per thread; the method object is shared).
template <class T, class M, class MakeState>
void add_method_jobs(std::vector<std::pair<std::string, Job<T>>>& jobs, const std::string& name,
                     const M& method, const Inputs<T>& in, MakeState make_state) {
  jobs.emplace_back(name + " forward", [&method, &in](int i) {
    return RowMatrix<T>(method(in.q[size_t(i)], in.k[size_t(i)], in.v[size_t(i)]));
  });
  jobs.emplace_back(name + " causal padded forward", [&method, &in](int i) {
    AttentionOptions opt;
    opt.causal = true;
    opt.key_padding = in.pad[size_t(i)];
    return RowMatrix<T>(method(in.q[size_t(i)], in.k[size_t(i)], in.v[size_t(i)], opt));
  });
  jobs.emplace_back(name + " step", [&method, &in, make_state](int i) {
    auto state = make_state();
    RowMatrix<T> out(in.n, in.dv);
    for (Index t = 0; t < in.n; ++t) {
      RowMatrix<T> row(1, in.dv);
      method.step(state, in.q[size_t(i)].row(t), in.k[size_t(i)].row(t), in.v[size_t(i)].row(t),
                  row, bool(in.pad[size_t(i)][t]));
      out.row(t) = row;
    }
    return out;
  });
}

/// multihead() with threads = 1 inside, on a [B, N, H, D] tensor built from the inputs (GQA: 4
/// query heads over 2 key/value heads).
template <class T, class M>
void add_multihead_job(std::vector<std::pair<std::string, Job<T>>>& jobs, const std::string& name,
                       const M& method, const Inputs<T>& in) {
  jobs.emplace_back(name + " multihead", [&method, &in](int i) {
    const Index b = 2, hq = 4, hkv = 2, n = in.n, d = in.d, dv = in.dv;
    std::vector<T> q(size_t(b * n * hq * d)), k(size_t(b * n * hkv * d)),
        v(size_t(b * n * hkv * dv));
    std::vector<T> out(size_t(b * n * hq * dv));
    test::DataRng rng{static_cast<std::uint64_t>(300 + i)};
    for (auto* buf : {&q, &k, &v})
      for (auto& x : *buf) x = T(rng.normal());
    MultiheadOptions opt;
    opt.threads = 1;
    opt.causal = true;
    opt.key_lengths = {n, n - 5};
    multihead(method, TensorView<T>::bnhd(q.data(), b, n, hq, d),
              TensorView<T>::bnhd(k.data(), b, n, hkv, d),
              TensorView<T>::bnhd(v.data(), b, n, hkv, dv),
              TensorView<T>::bnhd(out.data(), b, n, hq, dv), opt);
    return RowMatrix<T>(Eigen::Map<RowMatrix<T>>(out.data(), b * n * hq, dv));
  });
}

template <class T>
class ConcurrencyTest : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ConcurrencyTest, Types);

TYPED_TEST(ConcurrencyTest, SharedMethodsGiveSerialResultsUnderConcurrentCalls) {
  using T = TypeParam;
  const Inputs<T> in;
  const Index d = in.d, dv = in.dv;
  const Exact<T> exact;
  ExactOptions tiny_blocks;
  tiny_blocks.block_q = 5;
  tiny_blocks.block_k = 7;
  const Exact<T> exact_blocked(tiny_blocks);
  FavorOptions fo;
  fo.num_features = 16;
  fo.chunk_size = 5;
  const Favor<T> favor(d, fo);
  FavorOptions fh = FavorOptions::best();
  fh.num_features = 8;
  const Favor<T> favor_best(d, fh);
  RfaOptions ro;
  ro.num_features = 8;
  const Rfa<T> rfa(d, ro);
  EvaOptions eo;
  eo.window = 4;
  eo.chunk_size = 2;
  const Eva<T> eva(d, eo);
  eo.semantics = EvaSemantics::Disjoint;
  const Eva<T> eva_disjoint(d, eo);

  std::vector<std::pair<std::string, Job<T>>> jobs;
  add_method_jobs<T>(jobs, "Exact", exact, in, [&] { return exact.make_state(dv); });
  add_method_jobs<T>(jobs, "Exact(tiles)", exact_blocked, in,
                     [&] { return exact_blocked.make_state(dv); });
  add_method_jobs<T>(jobs, "Favor", favor, in, [&] { return favor.make_state(dv); });
  add_method_jobs<T>(jobs, "Favor(best)", favor_best, in,
                     [&] { return favor_best.make_state(dv); });
  add_method_jobs<T>(jobs, "Rfa", rfa, in, [&] { return rfa.make_state(dv); });
  add_method_jobs<T>(jobs, "Eva", eva, in, [&] { return eva.make_state(dv); });
  add_method_jobs<T>(jobs, "Eva(disjoint)", eva_disjoint, in,
                     [&] { return eva_disjoint.make_state(dv); });
  add_multihead_job<T>(jobs, "Exact", exact, in);
  add_multihead_job<T>(jobs, "Favor", favor, in);
  add_multihead_job<T>(jobs, "Rfa", rfa, in);
  add_multihead_job<T>(jobs, "Eva", eva, in);
  check_concurrent_equals_serial<T>(jobs, Inputs<T>::count);
}

TYPED_TEST(ConcurrencyTest, BatchedDecodersOnASharedMethodRunConcurrently) {
  // One BatchedDecoder per thread over one shared Favor: the decoders' states are private, the
  // method is shared.
  using T = TypeParam;
  const Index b = 2, hq = 2, hkv = 1, d = 8, dv = 4, steps = 12;
  FavorOptions fo;
  fo.num_features = 16;
  const Favor<T> favor(d, fo);
  const auto decode = [&](int seed) {
    BatchedDecoder<Favor<T>, T> dec(favor, b, hq, hkv, dv);
    RowMatrix<T> all(steps * b * hq, dv);
    test::DataRng rng{static_cast<std::uint64_t>(seed)};
    std::vector<T> q(size_t(b * hq * d)), k(size_t(b * hkv * d)), v(size_t(b * hkv * dv));
    std::vector<T> out(size_t(b * hq * dv));
    MultiheadOptions opt;
    opt.threads = 1;
    for (Index t = 0; t < steps; ++t) {
      for (auto* buf : {&q, &k, &v})
        for (auto& x : *buf) x = T(rng.normal());
      dec.step(TensorView<T>::bnhd(q.data(), b, 1, hq, d),
               TensorView<T>::bnhd(k.data(), b, 1, hkv, d),
               TensorView<T>::bnhd(v.data(), b, 1, hkv, dv),
               TensorView<T>::bnhd(out.data(), b, 1, hq, dv), {t % 3 == 0, false}, opt);
      all.middleRows(t * b * hq, b * hq) = Eigen::Map<RowMatrix<T>>(out.data(), b * hq, dv);
    }
    return all;
  };
  std::vector<RowMatrix<T>> serial;
  for (int t = 0; t < kThreads; ++t) serial.push_back(decode(500 + t));
  std::vector<RowMatrix<T>> concurrent(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { concurrent[size_t(t)] = decode(500 + t); });
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t)
    EXPECT_TRUE(bitwise_equal(concurrent[size_t(t)], serial[size_t(t)]));
}

}  // namespace
}  // namespace fastattn
