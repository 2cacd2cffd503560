"""The whole page on a small hand-made report, and --check finding what is wrong with a page:
missing sections, charts, methods, regimes and reference lines (needs matplotlib for the
figures; skipped without it)."""
import importlib.util
import os
import tempfile
import unittest

from .inputs import forward, regime, report, result

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def sweep(real_regime: bool = True, drop: tuple = ()) -> list:
    """Results of two synthetic regimes (N = 1024 and 4096) and one real one (N = 128), every
    method and reference line; `drop`: (regime, method) pairs left out."""
    out = []
    for r in ("a", "b"):
        for n in (1024, 4096):
            out += [result(r, "Fast", 0.2, n=n, m=m) for m in (64, 256)]
            out += [result(r, "Window", 0.1, n=n, m=64), result(r, "uniform", 0.5, n=n, m=0),
                    result(r, "oracle top-k", 0.05, n=n, m=64),
                    result(r, "window only", 0.3, n=n, m=64)]
    if real_regime:
        flops = {16: 1e5, 32: 2e5}
        out += [result("r", "Fast", 1.2, n=128, m=m, pooled=True, spread=0.1, flops=flops[m])
                for m in (16, 32)]
        out += [result("r", "Window", v, n=128, m=m, pooled=True, spread=0.05, flops=flops[m])
                for m, v in ((16, 0.3), (32, 0.2))]
        out += [result("r", "oracle top-k", v, n=128, m=m, pooled=True) for m, v in
                ((16, 0.08), (32, 0.03))]
        out += [result("r", "window only", v, n=128, m=m, pooled=True) for m, v in
                ((16, 0.35), (32, 0.25))]
        out.append(result("r", "uniform", 0.9, n=128, m=0, pooled=True, flops=1e3))
    return [x for x in out if (x["regime"], x["method"]) not in drop]


REGIMES = ["a", "b", regime("r", real=True, n=128, defaults={"m": 32, "window": 32, "k": 32},
                            exact_flops=4e5)]


@unittest.skipUnless(HAVE_MPL, "matplotlib is not installed")
class Page(unittest.TestCase):
    def setUp(self):
        from report.page import render_page
        self.bench = [forward(method, n, t * n / 256) for method, t in
                      (("Exact", 1.0), ("Fast", 2.0), ("Window", 0.5)) for n in (256, 1024, 4096)]
        self.rep = report(self.bench, sweep(), REGIMES)
        self.page = render_page(self.rep)
        self.methods = ["Exact", "Fast", "Window", "oracle top-k", "window only", "uniform"]

    def check(self, page: str, rep=None) -> list[str]:
        from report.check import check_page
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.html")
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
            return check_page(path, self.methods, rep or self.rep)

    def test_complete_page_passes(self):
        self.assertEqual(self.check(self.page), [])
        self.assertEqual(self.rep.failures, [])
        # The real regime is in the headline, in words, and drawn against model flops.
        self.assertIn("<th>r</th>", self.page)
        self.assertIn('data-regime="r"', self.page)
        self.assertIn("r (N ≤ 128): error vs model flops", self.page)

    def test_problems_are_found(self):
        broken = self.page.replace('data-method="Window">Window', 'data-method="W">W', 1)
        broken = broken.replace("</body>", "<p>NaN</p></body>")
        start = broken.index('<h2 id="pareto">')
        end = broken.index("<h2 ", start + 1)
        broken = broken[:start] + '<h2 id="pareto">Error vs time (Pareto fronts)</h2>' + \
            broken[end:]
        problems = self.check(broken)
        self.assertEqual(len(problems), 3, problems)
        self.assertIn("method missing from the headline table: Window", problems)
        self.assertIn("no chart (<svg>) in section: Error vs time (Pareto fronts)", problems)
        self.assertTrue(any("'NaN' leaked" in p for p in problems))

    def test_a_missing_regime_is_found(self):
        # The real regime's panel is cut out of "Error vs budget", and its paragraph renamed.
        start = self.page.index('<div class="panel" data-regime="r"')
        end = self.page.index("</div>", start) + len("</div>")
        broken = self.page[:start] + self.page[end:]
        broken = broken.replace('<div class="regime" data-regime="r">',
                                '<div class="regime" data-regime="x">')
        problems = self.check(broken)
        self.assertIn("regime missing from Error vs budget: r", problems)
        self.assertIn("regime missing from the regime-by-regime section: r", problems)
        self.assertEqual(len(problems), 2, problems)

    def test_a_missing_reference_line_is_found(self):
        from report.page import render_page
        rep = report(self.bench, sweep(drop=(("r", "oracle top-k"), ("a", "window only"))),
                     REGIMES)
        problems = self.check(render_page(rep), rep)
        self.assertEqual(sorted(problems), [
            "reference line missing: oracle top-k has no result in r at N = 128",
            "reference line missing: window only has no result in a at N = 1024"])
        # Measured, but not drawn in its panel.
        page = self.page.replace('data-regime="b" data-lines="Fast|Window|oracle top-k|',
                                 'data-regime="b" data-lines="Fast|Window|', 1)
        self.assertEqual(self.check(page),
                         ["reference line not drawn: oracle top-k in the b panel of Error vs "
                          "budget"])

    def test_a_sweep_without_real_attention_is_incomplete(self):
        from report.page import render_page
        rep = report(self.bench, sweep(real_regime=False), ["a", "b"])
        self.assertEqual(self.check(render_page(rep), rep),
                         ['no real-attention regime in the accuracy sweep (kind "real")'])


if __name__ == "__main__":
    unittest.main()
