"""The analysis on hand-made inputs whose answers are worked out in the comments."""
import unittest

from report.analysis import (crossover, forward_sweep, headline_picks, log_interp, pareto_front,
                             value_range)
from report.fmt import DASH

from .inputs import forward, report, result


class LogInterp(unittest.TestCase):
    def test_power_law_is_exact(self):
        # y = x^2 is a straight line in log-log space, so interpolation reproduces it.
        self.assertAlmostEqual(log_interp(645.0, 256, 1024, 256.0 ** 2, 1024.0 ** 2), 645.0 ** 2,
                               delta=1e-6 * 645.0 ** 2)

    def test_end_points(self):
        self.assertAlmostEqual(log_interp(256, 256, 1024, 3.0, 7.0), 3.0)
        self.assertAlmostEqual(log_interp(1024, 256, 1024, 3.0, 7.0), 7.0)


class Crossover(unittest.TestCase):
    def test_interpolated_crossing(self):
        # Exact ~ N^2 (1 ms at 256, 16 at 1024), the method ~ N^0.5 (4 ms, 8 ms). log2 of the
        # ratio: +2 at 256, -1 at 1024, so it crosses 2/3 of the way in log N: N = 256 * 4^(2/3),
        # where Exact takes (N / 256)^2 ms.
        cross = crossover({256: 4.0, 1024: 8.0}, {256: 1.0, 1024: 16.0})
        n = 256 * 4 ** (2 / 3)
        self.assertAlmostEqual(cross.n, n, delta=1e-9 * n)
        self.assertAlmostEqual(cross.exact_time, (n / 256) ** 2, delta=1e-9)
        self.assertEqual(cross.text, "N ≈ 645")

    def test_always_never_and_no_overlap(self):
        exact = {256: 1.0, 1024: 16.0}
        self.assertEqual(crossover({256: 0.5, 1024: 2.0}, exact).text, "always (N ≥ 256)")
        self.assertIsNone(crossover({256: 0.5, 1024: 2.0}, exact).n)
        self.assertEqual(crossover({256: 2.0, 1024: 32.0}, exact).text,
                         "never in range (N ≤ 1024)")
        self.assertEqual(crossover({512: 1.0}, exact).text, DASH)  # no common N

    def test_equal_time_counts_as_not_faster(self):
        # Equal at 256 (ratio 1: not faster), faster at 1024: crosses between them, at 256 itself.
        cross = crossover({256: 1.0, 1024: 8.0}, {256: 1.0, 1024: 16.0})
        self.assertAlmostEqual(cross.n, 256.0)

    def test_last_crossing_and_slower_at_the_end(self):
        # Faster at 1024 only: crosses up between 1024 and 4096 (ratio 1/2 -> 2, the middle in
        # log N, N = 2048); the method is slower at the largest N.
        exact = {256: 1.0, 1024: 4.0, 4096: 16.0}
        cross = crossover({256: 2.0, 1024: 2.0, 4096: 32.0}, exact)
        self.assertAlmostEqual(cross.n, 2048.0, delta=1e-9)
        self.assertEqual(cross.text, "faster only below N ≈ 2050")  # 3 significant digits


class ParetoFront(unittest.TestCase):
    POINTS = [(3.0, 0.4), (1.0, 0.5), (2.0, 0.3), (10.0, 0.05), (4.0, 0.1), (5.0, 0.1)]

    def test_baseline_and_exact_dominate(self):
        # (1, 0.5) is not below the baseline 0.45; (3, 0.4) is beaten by (2, 0.3); (5, 0.1) ties
        # (4, 0.1) at a higher time; (10, 0.05) is slower than Exact (8 ms, error 0).
        self.assertEqual(pareto_front(self.POINTS, 0.45, 8.0), [(2.0, 0.3), (4.0, 0.1)])

    def test_without_baseline_or_exact(self):
        self.assertEqual(pareto_front(self.POINTS, None, None),
                         [(1.0, 0.5), (2.0, 0.3), (4.0, 0.1), (10.0, 0.05)])

    def test_nothing_beats_the_baseline(self):
        self.assertEqual(pareto_front([(1.0, 0.9), (2.0, 0.8)], 0.5, 8.0), [])


class ValueRange(unittest.TestCase):
    def test_outliers_beyond_thirty_medians(self):
        # The positive values' median is 0.3 (of 0.1, 0.2, 0.3, 5.9, 10): 30 x 0.3 = 9 keeps 5.9
        # and drops 10; None, 0 and negative values are never drawn on a log axis.
        self.assertEqual(value_range([0.1, 0.2, 0.3, 5.9, 10.0, None, 0.0, -1.0]),
                         [0.1, 0.2, 0.3, 5.9])


class ForwardSweep(unittest.TestCase):
    def test_methods_without_m_match_any_m(self):
        rep = report([forward("Exact", 256, 1.0, m=256), forward("Window", 256, 0.5, m=256),
                      forward("Fast", 256, 0.3, m=256), forward("Fast", 1024, 0.9, m=128)],
                     [], [])
        self.assertEqual(forward_sweep(rep.bench, "Exact", False, 64), {256: 1.0})
        self.assertEqual(forward_sweep(rep.bench, "Window", False, 64), {256: 0.5})
        self.assertEqual(forward_sweep(rep.bench, "Fast", False, 64), {})
        self.assertEqual(forward_sweep(rep.bench, "Fast", False, 128), {1024: 0.9})
        self.assertEqual(forward_sweep(rep.bench, "Fast", True, 256), {})  # no causal runs


class HeadlinePicks(unittest.TestCase):
    BENCH = [forward("Exact", 4096, 30.0), forward("Fast", 4096, 3.0),
             forward("Faster", 4096, 1.0), forward("Own", 4096, 0.5),
             forward("Window", 4096, 2.0)]

    def test_fastest_below_the_baseline(self):
        # Times: Own 0.5 < Faster 1 < Window 2 < Fast 3 ms. On "a", Own is measured against its
        # own target (not eligible) and Faster is not below uniform (0.5 >= 0.5): Window wins.
        # On "b", Faster is below uniform and fastest. On "c" nothing is below uniform.
        results = [result("a", "Fast", 0.2), result("a", "Faster", 0.5),
                   result("a", "Own", 0.01, target="its own target"),
                   result("a", "Window", 0.3, m=0), result("a", "uniform", 0.5, m=0),
                   result("b", "Fast", 0.2), result("b", "Faster", 0.4),
                   result("b", "uniform", 0.5, m=0),
                   result("c", "Fast", 0.9), result("c", "uniform", 0.5, m=0)]
        picks = headline_picks(report(self.BENCH, results, ["a", "b", "c"]))
        self.assertEqual([(p.regime, p.method) for p in picks],
                         [("a", "Window"), ("b", "Faster"), ("c", None)])
        self.assertEqual(picks[0].time_ms, 2.0)
        self.assertEqual(picks[0].error.value, 0.3)
        self.assertEqual(picks[0].baseline.value, 0.5)

    def test_needs_a_baseline_and_a_time(self):
        # "a" has no uniform result; on "b" the only method below uniform has no time at N_head.
        results = [result("a", "Fast", 0.1),
                   result("b", "Window", 0.1, m=0), result("b", "uniform", 0.5, m=0)]
        bench = [forward("Exact", 4096, 30.0), forward("Fast", 4096, 3.0),
                 forward("Window", 1024, 2.0)]
        picks = headline_picks(report(bench, results, ["a", "b"]))
        self.assertEqual([p.method for p in picks], [None, None])

    def test_exact_is_never_picked(self):
        results = [result("a", "Exact", 0.0, m=0), result("a", "uniform", 0.5, m=0)]
        picks = headline_picks(report(self.BENCH, results, ["a"]))
        self.assertIsNone(picks[0].method)


if __name__ == "__main__":
    unittest.main()
