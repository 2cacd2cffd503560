"""The whole page on a small hand-made report, and --check finding what is wrong with a page
(needs matplotlib for the figures; skipped without it)."""
import importlib.util
import os
import tempfile
import unittest

from .inputs import forward, report, result

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


@unittest.skipUnless(HAVE_MPL, "matplotlib is not installed")
class Page(unittest.TestCase):
    def setUp(self):
        from report.page import render_page
        bench = [forward(method, n, t * n / 256) for method, t in
                 (("Exact", 1.0), ("Fast", 2.0), ("Window", 0.5)) for n in (256, 1024, 4096)]
        results = [result(r, "Fast", 0.2, n=n, m=m) for r in ("a", "b") for n in (1024, 4096)
                   for m in (64, 256)]
        results += [result(r, name, mean, n=n, m=0) for r in ("a", "b") for n in (1024, 4096)
                    for name, mean in (("Window", 0.1), ("uniform", 0.5))]
        self.rep = report(bench, results, ["a", "b"])
        self.page = render_page(self.rep)
        self.methods = ["Exact", "Fast", "Window", "uniform"]

    def check(self, page: str) -> list[str]:
        from report.check import check_page
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "index.html")
            with open(path, "w", encoding="utf-8") as f:
                f.write(page)
            return check_page(path, self.methods, self.rep)

    def test_complete_page_passes(self):
        self.assertEqual(self.check(self.page), [])
        self.assertEqual(self.rep.failures, [])

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


if __name__ == "__main__":
    unittest.main()
