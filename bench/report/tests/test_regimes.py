"""The accuracy sweep's regimes: reading them (pooled errors, per-regime defaults, the older
schema), the headline's pick by error within a budget, and the findings in words."""
import unittest

from report.analysis import headline_picks, pick_by_error, regime_findings
from report.data import parse_accuracy

from .inputs import METHODS, forward, regime, report, result

REAL = regime("r", real=True, n=128, defaults={"m": 32, "window": 32, "k": 32},
              exact_flops=400.0)


def real_results(extra: list = ()) -> list:
    """A real regime: Fast never beats uniform, Window always does, the oracle is better still
    at 16 and 32; window only sits between Window and uniform."""
    out = [result("r", "Fast", v, n=128, m=m, pooled=True, flops=f)
           for m, v, f in ((16, 1.3, 100.0), (32, 1.2, 200.0), (64, 1.1, 400.0))]
    out += [result("r", "Window", v, n=128, m=m, pooled=True, flops=f)
            for m, v, f in ((16, 0.3, 60.0), (32, 0.2, 110.0), (64, 0.1, 220.0))]
    out += [result("r", "oracle top-k", v, n=128, m=m, pooled=True)
            for m, v in ((16, 0.05, ), (32, 0.02), (64, 0.01))]
    out += [result("r", "window only", v, n=128, m=m, pooled=True)
            for m, v in ((16, 0.4), (32, 0.25), (64, 0.12))]
    out.append(result("r", "uniform", 0.9, n=128, m=0, pooled=True))
    return out + list(extra)


class Reading(unittest.TestCase):
    def test_pooled_errors_take_their_spread_from_the_percentiles(self):
        data = {"regimes": [REAL], "results": [
            {"regime": "r", "method": "Window", "budget": 32, "m": 0, "window": 32, "N": 128,
             "setting": "W = 32, 4 chunks", "model_flops": 110.0,
             "rel_error": {"value": 0.2, "statistic": "pooled", "mean": 0.25, "std": 0.1,
                           "min": 0.0, "max": 0.9, "p10": 0.05, "p90": 0.4}}]}
        acc = parse_accuracy(data, METHODS)
        err = acc.get("r", "Window", 32, 128)
        self.assertEqual((err.value, err.lo, err.hi, err.statistic), (0.2, 0.05, 0.4, "pooled"))
        self.assertEqual((err.setting, err.budget, err.flops), ("W = 32, 4 chunks", 32, 110.0))
        self.assertTrue(acc.regime("r").real)
        self.assertEqual(acc.n_of("r"), 128)
        self.assertEqual(acc.default("r", "Window"), 32)
        self.assertIs(acc.at_default("r", "Window"), err)

    def test_the_older_schema_reads_m_as_the_budget(self):
        # fastattn-accuracy-1: no budget, no value, no regime metadata; EVA-like methods at m 0.
        data = {"config": {"m_default": 128, "N_default": 1024}, "results": [
            {"regime": "a", "method": "Fast", "m": 128, "N": 1024,
             "rel_error": {"mean": 0.3, "std": 0.01, "min": 0.29, "max": 0.31}},
            {"regime": "a", "method": "Window", "m": 0, "N": 1024,
             "rel_error": {"mean": 0.2, "std": 0.01, "min": 0.19, "max": 0.21}}]}
        acc = parse_accuracy(data, METHODS)
        self.assertEqual([r.name for r in acc.regimes], ["a"])
        self.assertFalse(acc.regimes[0].real)
        self.assertEqual(acc.at_default("a", "Fast").value, 0.3)
        self.assertEqual(acc.at_default("a", "Window").value, 0.2)  # its one setting
        self.assertEqual((acc.at_default("a", "Fast").lo, acc.at_default("a", "Fast").hi),
                         (0.29, 0.31))


class PickByError(unittest.TestCase):
    def test_most_accurate_within_the_budget(self):
        # Budget 32: Window at 64 (0.1) is over it; Window at 32 (0.2) is the most accurate.
        rep = report([], real_results(), [REAL])
        pick = pick_by_error(rep, "r")
        self.assertEqual((pick.method, pick.error.budget, pick.error.value), ("Window", 32, 0.2))
        self.assertEqual(pick.budget, 32)
        self.assertEqual(pick.baseline.value, 0.9)
        self.assertEqual((pick.oracle_k, pick.oracle.value), (32, 0.02))
        self.assertEqual(pick.window.value, 0.25)
        self.assertAlmostEqual(pick.flops_share, 110.0 / 400.0)

    def test_nothing_below_uniform_names_no_method(self):
        results = [x for x in real_results() if x["method"] != "Window"]
        pick = pick_by_error(report([], results, [REAL]), "r")
        self.assertIsNone(pick.method)
        self.assertEqual(pick.baseline.value, 0.9)

    def test_oracle_with_k_at_least_n_is_exact(self):
        # A feature method picked at m = 128 = N: selecting 128 of 128 keys is exact attention.
        reg = regime("r", real=True, n=128, defaults={"m": 128, "window": 128, "k": 128})
        results = [result("r", "Fast", 0.5, n=128, m=128, pooled=True),
                   result("r", "uniform", 0.9, n=128, m=0, pooled=True),
                   result("r", "oracle top-k", 0.1, n=128, m=64, pooled=True),
                   result("r", "window only", 0.1, n=128, m=64, pooled=True)]
        pick = pick_by_error(report([], results, [reg]), "r")
        self.assertEqual((pick.method, pick.oracle_k, pick.oracle.value), ("Fast", 128, 0.0))

    def test_real_regimes_are_picked_by_error_synthetic_by_time(self):
        bench = [forward("Exact", 4096, 30.0), forward("Fast", 4096, 3.0)]
        results = real_results() + [result("a", "Fast", 0.2), result("a", "uniform", 0.5, m=0)]
        picks = headline_picks(report(bench, results, ["a", REAL]))
        self.assertEqual([(p.regime, p.by_time, p.method) for p in picks],
                         [("a", True, "Fast"), ("r", False, "Window")])


class Findings(unittest.TestCase):
    def findings(self, results, regimes=(REAL,), name="r"):
        return regime_findings(report([], results, list(regimes)), name)

    def test_real_regime_in_words(self):
        text = self.findings(real_results())
        self.assertEqual(text[0], "Ignoring the keys (uniform) gives an error of 0.900.")
        self.assertIn("Only Window beats it.", text)
        self.assertIn("Fast is worse than uniform at every m tried (m = 16–64).", text)
        self.assertIn("The most accurate within a budget of 32 keys or features per query is "
                      "Window (x = 32), at 0.200: 10.0× the error of selecting the best 32 keys "
                      "alone (oracle top-32: 0.0200), so a better choice of keys would pay.", text)
        self.assertIn("Window's chunk terms improve on its window alone at every W (0.200 vs "
                      "0.250 at W = 32).", text)
        self.assertIn("A few keys carry most of the weight: each query's 16 largest logits "
                      "alone give 0.0500.", text)

    def test_partial_wins_and_spread_attention(self):
        # Faster beats uniform only from m = 64 up, Window only at W = 32, where it also beats
        # its window alone (not at 64); the oracle at the smallest k is worse than uniform
        # (spread-out attention).
        results = [result("a", "Faster", v, m=m) for m, v in ((32, 0.7), (64, 0.4), (128, 0.3))]
        results += [result("a", "Window", v, m=m) for m, v in ((32, 0.45), (64, 0.6))]
        results += [result("a", "window only", v, m=m) for m, v in ((32, 0.5), (64, 0.55))]
        results += [result("a", "oracle top-k", v, m=m) for m, v in ((32, 0.8), (64, 0.6))]
        results.append(result("a", "uniform", 0.5, m=0))
        text = self.findings(results, ["a"], "a")
        self.assertIn("Faster beats it only at m ≥ 64; Window beats it only at W = 32.", text)
        self.assertIn("Window improves on its window alone only at W = 32 (0.600 vs 0.550 at "
                      "W = 64).", text)
        self.assertIn("Keeping only each query's 32 largest logits is worse than ignoring the "
                      "keys (0.800): the attention is spread over many keys.", text)

    def test_own_target_and_no_winner(self):
        results = [result("a", "Own", 0.01, m=64, target="its own target"),
                   result("a", "Fast", 0.9, m=64), result("a", "uniform", 0.5, m=0)]
        text = self.findings(results, ["a"], "a")
        self.assertIn("No approximation beats it at any setting tried.", text)
        self.assertIn("Own is measured against its own target here (not comparable).", text)


if __name__ == "__main__":
    unittest.main()
