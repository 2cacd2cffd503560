"""The figures (needs matplotlib; skipped without it): deterministic SVG, unique ids across
figures, off-scale values reported for the captions."""
import importlib.util
import re
import unittest

from report.data import ErrStat

from .inputs import METHODS

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def err(mean: float) -> ErrStat:
    return ErrStat(mean, 0.0, mean * 0.9, mean * 1.1, "softmax")


@unittest.skipUnless(HAVE_MPL, "matplotlib is not installed")
class ErrorFigure(unittest.TestCase):
    def draw(self, title: str):
        from report import figures
        series = {"Fast": {32: err(0.2), 64: err(0.15), 128: err(0.1)},
                  "Faster": {32: err(0.3), 64: err(500.0), 128: err(0.25)}}
        return figures.error_figure(METHODS, title, "features m", series,
                                    {"uniform": err(0.5), "Window": err(1e4)})

    def test_offscale_values_are_listed(self):
        # Median of the means 0.3: 500 and 1e4 are beyond 30 medians, so they are drawn at the
        # top edge (the point) or left out (the flat line) and both are listed for the caption.
        fig = self.draw("a")
        self.assertEqual(fig.offscale, ["Faster 500", "Window 1.00e4"])
        self.assertTrue(fig.svg.startswith("<svg "))

    def test_deterministic_and_ids_unique_across_figures(self):
        a1, a2, b = self.draw("a").svg, self.draw("a").svg, self.draw("b").svg
        self.assertEqual(a1, a2)
        ids_a = set(re.findall(r' id="([^"]+)"', a1))
        ids_b = set(re.findall(r' id="([^"]+)"', b))
        self.assertTrue(ids_a)
        self.assertFalse(ids_a & ids_b)
        self.assertNotIn("<?xml", a1)


if __name__ == "__main__":
    unittest.main()
