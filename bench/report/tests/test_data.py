"""Reading the inputs: method metadata, repetitions, the method registry."""
import json
import unittest

from report.data import InputError, benchmark_entries, input_methods, merged_methods
from report.methods import SPARE_COLORS, Methods

from .inputs import METHODS

META = [{"name": "Exact", "role": "exact", "params": [], "color": "#000000", "marker": "circle"},
        {"name": "FAVOR+", "role": "approximation", "params": ["m"], "color": "#0072B2",
         "marker": "square", "target": "softmax", "label": "positive features"},
        {"name": "uniform", "role": "baseline", "params": [], "color": "#999999"}]


class MethodMetadata(unittest.TestCase):
    def test_from_accuracy_and_from_the_bench_context(self):
        from_acc = input_methods({"methods": META})
        from_bench = input_methods({"context": {"fastattn_methods": json.dumps(META)}})
        self.assertEqual(from_acc, from_bench)
        self.assertEqual([m.name for m in from_acc], ["Exact", "FAVOR+", "uniform"])
        self.assertEqual(from_acc[1].params, ("m",))
        self.assertEqual(from_acc[1].label, "positive features")
        self.assertEqual(from_acc[2].role, "baseline")

    def test_first_description_wins_and_order_is_kept(self):
        other = [{"name": "FAVOR+", "color": "#ff0000"}, {"name": "New", "color": "#123456"}]
        meta = merged_methods({"bench.json": {"methods": META}, "accuracy.json": {"methods": other},
                               "absent": None})
        self.assertEqual(meta.color("FAVOR+"), "#0072B2")
        self.assertEqual(meta.order(["New", "uniform", "FAVOR+", "Exact"]),
                         ["Exact", "FAVOR+", "uniform", "New"])

    def test_errors_name_the_file(self):
        with self.assertRaisesRegex(InputError, "old.json.*fastattn_methods"):
            input_methods({"context": {"fastattn_methods": "[{"}}, "old.json")
        with self.assertRaisesRegex(InputError, "x.json: method A: role 'best'"):
            input_methods({"methods": [{"name": "A", "role": "best"}]}, "x.json")
        with self.assertRaisesRegex(InputError, "x.json: a method without a name"):
            input_methods({"methods": [{"role": "exact"}]}, "x.json")
        with self.assertRaisesRegex(InputError, "no input carries the method metadata"):
            merged_methods({"bench.json": {"context": {}}, "accuracy.json": {"results": []}})


class Registry(unittest.TestCase):
    def test_roles_and_parameters(self):
        self.assertTrue(METHODS.is_exact("Exact"))
        self.assertFalse(METHODS.is_approximation("Exact"))
        self.assertFalse(METHODS.is_approximation("uniform"))
        self.assertTrue(METHODS.is_approximation("Window"))
        self.assertTrue(METHODS.uses_m("Fast"))
        self.assertFalse(METHODS.uses_m("Window"))

    def test_unknown_methods(self):
        # An unknown method is an approximation with features, sorts (alphabetically) just
        # before the baseline, and keeps the spare colour it got first.
        meta = Methods(list(METHODS.infos))  # a fresh registry: this one learns new names
        self.assertEqual(meta.order(["uniform", "Zeta", "Alpha", "Exact"]),
                         ["Exact", "Alpha", "Zeta", "uniform"])
        self.assertEqual(meta.color("Zeta"), SPARE_COLORS[0])
        self.assertEqual(meta.color("Alpha"), SPARE_COLORS[1])
        self.assertEqual(meta.color("Zeta"), SPARE_COLORS[0])
        self.assertTrue(meta.is_approximation("Zeta") and meta.uses_m("Zeta"))


class Repetitions(unittest.TestCase):
    def test_median_aggregate_replaces_the_runs(self):
        runs = [{"name": "b/x", "run_name": "b/x", "run_type": "iteration", "real_time": t,
                 "time_unit": "us", "GFLOPs": g} for t, g in ((1.0, 10.0), (5.0, 30.0))]
        median = {"name": "b/x_median", "run_name": "b/x", "run_type": "aggregate",
                  "aggregate_name": "median", "real_time": 2.0, "time_unit": "us", "GFLOPs": 20.0}
        mean = dict(median, name="b/x_mean", aggregate_name="mean", real_time=99.0)
        [entry] = benchmark_entries({"benchmarks": runs + [median, mean]})
        self.assertEqual(entry.name, "b/x")
        self.assertAlmostEqual(entry.time_ms, 2.0e-3)
        self.assertEqual(entry.counters["GFLOPs"], 20.0)

    def test_median_of_runs_without_aggregates(self):
        runs = [{"name": "b/y", "run_type": "iteration", "real_time": t, "time_unit": "ms"}
                for t in (3.0, 1.0, 2.0)]
        failed = {"name": "b/z", "real_time": 1.0, "error_occurred": True}
        [entry] = benchmark_entries({"benchmarks": runs + [failed]})
        self.assertEqual(entry.time_ms, 2.0)


if __name__ == "__main__":
    unittest.main()
