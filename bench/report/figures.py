"""The report's charts, drawn with matplotlib and returned as inline SVG (the page stays one file
that opens from disk): time vs N with crossovers, error panels, Pareto panels, legend strips.
Each chart function takes plain data (no Report) and the method metadata for colours and markers.

Output is deterministic: Agg backend, no dates in the SVG metadata, and a fixed `svg.hashsalt`
per figure (derived from its title), so the ids matplotlib derives from it are stable and do not
collide between the figures of one page."""
from __future__ import annotations

import io
import math
import re
import textwrap
from dataclasses import dataclass, field
from typing import Iterable, Optional

import matplotlib

matplotlib.use("Agg")  # no display; and the figures below never go through pyplot

from matplotlib.figure import Figure as MplFigure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from .analysis import Crossover, value_range  # noqa: E402
from .data import ErrStat  # noqa: E402
from .fmt import fmt_num  # noqa: E402
from .methods import BASELINE, EXACT, MethodInfo, Methods  # noqa: E402

# Sizes in CSS pixels (1/96 inch); matplotlib works in inches and points (1/72 inch).
PX = 1 / 96
PANEL = (540, 340)
WIDE = (980, 430)
LEGEND_WIDTH = 1080
MARGINS = (62, 118, 30, 46)  # left, right (labels of the lines), top (title), bottom, in px
FONT = 8.5  # points: tick labels and margin labels; titles a little larger
GRID = "#e3e3e3"
# The metadata's marker names as matplotlib markers.
MPL_MARKERS = {"circle": "o", "square": "s", "diamond": "D", "triangle": "^",
               "triangle-down": "v", "cross": "X", "circle-open": "o"}
OFFSCALE_MARK = r"$\uparrow$"
RC = {"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
      "font.size": FONT, "svg.fonttype": "none", "axes.edgecolor": "#888888",
      "axes.linewidth": 0.8, "xtick.color": "#444444", "ytick.color": "#444444",
      "xtick.labelcolor": "#222222", "ytick.labelcolor": "#222222"}


@dataclass
class Figure:
    """A rendered chart and what it could not show in range (for its caption)."""
    svg: str
    offscale: list[str] = field(default_factory=list)  # "method value" per point above the range


# ----------------------------------------------------------------------------- axis arithmetic
def log_range(values: Iterable[Optional[float]], pad: float) -> tuple[float, float]:
    """A padded log-axis range for the positive values (at least a factor 3 wide)."""
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return 1.0, 10.0
    lo, hi = min(vals) / pad, max(vals) * pad
    if hi / lo < 3:
        mid = math.sqrt(lo * hi)
        lo, hi = mid / math.sqrt(3), mid * math.sqrt(3)
    return lo, hi


def log_ticks(lo: float, hi: float, pow2: bool) -> list[float]:
    """Tick values: powers of two, or 1-2-5 / decades depending on the span."""
    if pow2:
        ticks = [2.0 ** k for k in range(math.ceil(math.log2(lo)), math.floor(math.log2(hi)) + 1)]
        return ticks[::2] if len(ticks) > 9 else ticks
    decades = math.log10(hi / lo)
    mults = (1,) if decades > 2.5 else (1, 2, 5) if decades > 1 else (1, 2, 3, 5, 7)
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
             for m in mults if lo <= m * 10.0 ** k <= hi]
    if decades > 6:
        ticks = ticks[::2]
    return ticks


def fmt_tick(v: float) -> str:
    """A short tick label."""
    if v >= 1e5 or v < 1e-3:
        return f"1e{round(math.log10(v))}" if math.log10(v).is_integer() else fmt_num(v, 2)
    return f"{v:g}"


def spread(ys: list[float], gap: float, lo: float, hi: float) -> list[float]:
    """Positions moved apart so that neighbours are at least `gap` apart, within [lo, hi]."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    pos = [min(max(ys[i], lo), hi) for i in order]
    for i in range(1, len(pos)):
        pos[i] = max(pos[i], pos[i - 1] + gap)
    if pos and pos[-1] > hi:
        pos[-1] = hi
        for i in range(len(pos) - 2, -1, -1):
            pos[i] = min(pos[i], pos[i + 1] - gap)
    out = [0.0] * len(ys)
    for rank, i in enumerate(order):
        out[i] = pos[rank]
    return out


# --------------------------------------------------------------------------------------- SVG
_AUTO_ID = re.compile(r' id="[A-Za-z][A-Za-z0-9.]*_\d+"')


def to_svg(fig: MplFigure, salt: str, label: str) -> str:
    """The figure as an inline <svg> element: no XML prolog, no dates, stable hashed ids, and
    without matplotlib's per-figure group ids (figure_1, axes_1, ...), which would repeat on a
    page of many figures."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"fastattn-report:{salt}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                 "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = _AUTO_ID.sub("", svg[svg.index("<svg"):])
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{label}" ', 1)


def marker_style(info: MethodInfo, size: float) -> dict:
    """matplotlib marker settings for a method: filled with a white rim (so that overlapping
    points stay apart), except the open circle and the cross, drawn in the method's colour."""
    plain = info.marker in ("circle-open", "cross")
    return dict(marker=MPL_MARKERS.get(info.marker, "o"), color=info.color,
                markersize=size * 0.85 if info.marker == "diamond" else size,
                markerfacecolor="white" if info.marker == "circle-open" else info.color,
                markeredgecolor=info.color if plain else "white", markeredgewidth=0.7)


# ------------------------------------------------------------------------------------- panel
class Panel:
    """One log-log chart: axes with ticks and grid, and the vocabulary the figures use (lines,
    markers, error bars, reference lines, labels in the right margin, notes). Values above the
    y range are drawn as an arrow at the top edge with their value, and listed in `offscale`."""

    def __init__(self, methods: Methods, title: str, x_label: str, y_label: str,
                 xs: Iterable[Optional[float]], ys: Iterable[Optional[float]],
                 x_pow2: bool = True, size: tuple[int, int] = PANEL) -> None:
        self.methods, self.title = methods, title
        with matplotlib.rc_context(RC):
            self.fig = MplFigure(figsize=(size[0] * PX, size[1] * PX))
            left, right, top, bottom = MARGINS
            w, h = size
            self.ax = self.fig.add_axes([left / w, bottom / h, (w - left - right) / w,
                                         (h - top - bottom) / h])
        self.height_pt = (h - top - bottom) * PX * 72
        ax = self.ax
        ax.set_xscale("log", base=2 if x_pow2 else 10)
        ax.set_yscale("log")
        self.xlo, self.xhi = log_range(xs, 1.2)
        self.ylo, self.yhi = log_range(ys, 1.35)
        ax.set_xlim(self.xlo, self.xhi)
        ax.set_ylim(self.ylo, self.yhi)
        for axis, (lo, hi, pow2) in ((ax.xaxis, (self.xlo, self.xhi, x_pow2)),
                                     (ax.yaxis, (self.ylo, self.yhi, False))):
            ticks = log_ticks(lo, hi, pow2)
            axis.set_major_locator(FixedLocator(ticks))
            axis.set_ticklabels([fmt_tick(t) for t in ticks])
            axis.set_minor_locator(NullLocator())
        ax.tick_params(labelsize=FONT, length=3, width=0.6)
        ax.grid(True, color=GRID, linewidth=0.7)
        ax.set_axisbelow(True)
        ax.set_facecolor("#fcfcfc")
        ax.set_xlabel(x_label, fontsize=9)
        ax.set_ylabel(y_label, fontsize=9)
        ax.set_title(title, loc="left", fontsize=10, fontweight="bold")
        self.side: list[tuple[float, str, str]] = []  # (y data, text, colour) in the right margin
        self.notes: list[tuple[float, float, float, float, str, str]] = []  # x, y, dx, dy pt
        self.offscale: list[str] = []

    def shift(self, dx: float):
        """The data transform moved dx points to the right (keeps overlapping series apart)."""
        return self.ax.transData + ScaledTranslation(dx / 72, 0, self.fig.dpi_scale_trans)

    def fits(self, y: Optional[float]) -> bool:
        """True if y can be drawn inside the y range."""
        return y is not None and self.ylo <= y <= self.yhi

    def line(self, pts: list[tuple[float, Optional[float]]], col: str, width: float = 1.6,
             dashed: bool = False, dx: float = 0.0) -> None:
        """A line through the points, broken where a point is missing or off scale."""
        pts = sorted(pts)
        ys = [y if self.fits(y) else math.nan for _, y in pts]
        self.ax.plot([x for x, _ in pts], ys, color=col, linewidth=width,
                     linestyle=(0, (5, 3)) if dashed else "-", transform=self.shift(dx),
                     solid_joinstyle="round", zorder=2)

    def marker(self, x: float, y: Optional[float], method: str, size: float = 5.5,
               dx: float = 0.0) -> None:
        """A method's marker; above the range: an arrow at the top edge and the value."""
        if y is None or y <= 0:
            return
        col = self.methods.color(method)
        if y > self.yhi:
            self.ax.annotate("", xy=(x, 1.0), xytext=(x, 0.9),
                             xycoords=self.ax.get_xaxis_transform(),
                             arrowprops=dict(arrowstyle="-|>", color=col, linewidth=1.4,
                                             mutation_scale=9), annotation_clip=False, zorder=5)
            self.notes.append((x, self.yhi, 5, -12, fmt_num(y), col))  # beside the arrow
            self.offscale.append(f"{method} {fmt_num(y)}")
            return
        self.ax.plot([x], [y], linestyle="none", transform=self.shift(dx), zorder=4,
                     **marker_style(self.methods.info(method), size))

    def errbar(self, x: float, mean: float, lo: Optional[float], hi: Optional[float], col: str,
               dx: float = 0.0) -> None:
        """A vertical spread bar with caps (none if the value itself is off scale); ends beyond
        the y range are clipped at the edge."""
        if lo is None or hi is None or not self.fits(mean):
            return
        ends = [y for y in (lo, hi) if self.ylo <= y <= self.yhi]  # capped: not clipped
        lo, hi = max(lo, self.ylo), min(hi, self.yhi)
        self.ax.plot([x, x], [lo, hi], color=col, linewidth=1.0, alpha=0.8,
                     transform=self.shift(dx), zorder=3)
        if ends:
            self.ax.plot([x] * len(ends), ends, linestyle="none", color=col, alpha=0.8,
                         marker="_", markersize=5, markeredgewidth=1.0, transform=self.shift(dx),
                         zorder=3)

    def hline(self, y: Optional[float], col: str, label: str) -> None:
        """A dashed horizontal line across the panel, labelled in the right margin."""
        if y is None or y <= 0:
            return
        if not self.fits(y):
            self.offscale.append(f"{label} {fmt_num(y)}")
            return
        self.ax.axhline(y, color=col, linewidth=1.5, linestyle=(0, (5, 3)), zorder=2)
        self.side.append((y, label, col))

    def vline(self, x: Optional[float], col: str, label: str) -> None:
        """A vertical line from bottom to top, labelled at its top."""
        if x is None or not self.xlo <= x <= self.xhi:
            return
        self.ax.axvline(x, color=col, linewidth=2.2, zorder=2)
        self.notes.append((x, self.yhi, -4, -10, label, col))

    def label_end(self, y: Optional[float], text: str, col: str) -> None:
        """A series label in the right margin at height y (a line's last point)."""
        if y is not None and y > 0:
            self.side.append((y, text, col))

    def note(self, x: float, y: Optional[float], text: str, col: str, dx: float = 5,
             dy: float = 5) -> None:
        """A small text next to a data point (offset in points, dy upwards)."""
        if y is not None and self.fits(y):
            self.notes.append((x, y, dx, dy, text, col))

    def band(self, pts: list[tuple[float, float]], col: str) -> None:
        """A broad translucent staircase through the points (the Pareto front)."""
        if len(pts) > 1:
            self.ax.plot([x for x, _ in pts], [y for _, y in pts], color=col, linewidth=7,
                         alpha=0.18, solid_joinstyle="round", solid_capstyle="butt", zorder=1)

    def _y_points(self, y: float) -> float:
        """Height of data value y above the bottom of the axes, in points."""
        frac = math.log(y / self.ylo) / math.log(self.yhi / self.ylo)
        return min(max(frac, 0.0), 1.0) * self.height_pt

    def _place_labels(self) -> None:
        """Margin labels spread vertically; notes nudged up or down until they do not overlap."""
        ax = self.ax
        ys = spread([self._y_points(y) for y, _, _ in self.side], FONT * 1.2, 3,
                    self.height_pt - 3)
        for (y0, text, col), y in zip(self.side, ys):
            frac0, frac = self._y_points(y0) / self.height_pt, y / self.height_pt
            ax.annotate(text, xy=(1.0, frac0), xycoords="axes fraction", xytext=(1.03, frac),
                        textcoords="axes fraction", color=col, fontsize=FONT - 0.5,
                        va="center", ha="left", annotation_clip=False,
                        arrowprops=dict(arrowstyle="-", color=col, linewidth=0.6,
                                        shrinkA=0, shrinkB=1))
        placed: list[tuple[float, float, float]] = []  # (x0, x1, y) in points from the origin
        width_pt = ax.get_position().width * self.fig.get_figwidth() * 72
        for x, y, dx, dy, text, col in sorted(self.notes):
            xfrac = math.log(x / self.xlo) / math.log(self.xhi / self.xlo)
            text_w = 0.55 * FONT * len(text)
            x0 = xfrac * width_pt + dx
            if x0 + text_w > width_pt - 2:  # no room on the right: the other side of the point
                x0 = xfrac * width_pt - abs(dx) - text_w
            x0 = max(x0, 2)
            x1 = x0 + text_w
            base = self._y_points(y) + dy
            chosen = min(max(base, 2), self.height_pt - FONT)
            for step in (0, 9, -9, 18, -18, 27, -27, 36, -36):
                cand = base + step
                if 2 <= cand <= self.height_pt - FONT and all(
                        x1 < a or x0 > b or abs(cand - c) >= 9 for a, b, c in placed):
                    chosen = cand
                    break
            placed.append((x0, x1, chosen))
            ax.annotate(text, xy=(x0 / width_pt, chosen / self.height_pt),
                        xycoords="axes fraction", color=col, fontsize=FONT - 1, va="baseline",
                        annotation_clip=False, zorder=6,
                        bbox=dict(boxstyle="square,pad=0.05", facecolor="white", edgecolor="none",
                                  alpha=0.75))

    def render(self, kind: str) -> Figure:
        """The finished chart (kind + title make its id salt unique on the page)."""
        with matplotlib.rc_context(RC):
            self._place_labels()
            return Figure(to_svg(self.fig, f"{kind}:{self.title}", self.title), self.offscale)


# ----------------------------------------------------------------------------------- figures
def legend(methods: Methods, names: list[str], extras: list[tuple[str, str]] = ()) -> str:
    """A legend strip: one entry per method (colour, marker; reference lines dashed) plus
    explanations of the other marks (kinds: "cross", "dash", "bar", "up", "front")."""
    handles = []
    for name in names:
        info = methods.info(name)
        line_only = info.role == "baseline"  # reference lines: dashed, no markers
        style = dict(marker="None", color=info.color) if line_only else marker_style(info, 6)
        handles.append(Line2D([], [], linewidth=3 if name == EXACT else 1.6,
                              linestyle=(0, (5, 3)) if line_only else "-", label=name,
                              **style))
    grey = "#555555"
    kinds = {
        "cross": dict(linestyle="none", marker="o", markersize=9, markerfacecolor="none",
                      markeredgecolor="#333333", markeredgewidth=1.4),
        "dash": dict(color=grey, linewidth=1.5, linestyle=(0, (5, 3))),
        "bar": dict(linestyle="none", marker="|", markersize=11, color=grey, markeredgewidth=1.0),
        "up": dict(linestyle="none", marker=OFFSCALE_MARK, markersize=9, color=grey),
        "front": dict(color="#000000", linewidth=7, alpha=0.18)}
    handles += [Line2D([], [], label=text, **kinds[kind]) for kind, text in extras]
    per_row = 6
    rows = max(1, math.ceil(len(handles) / per_row))
    # matplotlib fills a legend column by column; reorder so that it reads row by row.
    handles = [handles[r * per_row + c] for c in range(per_row) for r in range(rows)
               if r * per_row + c < len(handles)]
    with matplotlib.rc_context(RC):
        fig = MplFigure(figsize=(LEGEND_WIDTH * PX, (rows * 22 + 8) * PX))
        fig.legend(handles=handles, loc="center left", ncol=per_row, frameon=False,
                   fontsize=9, handlelength=2.6, columnspacing=1.6, borderaxespad=0.2)
        return to_svg(fig, "legend:" + "|".join(h.get_label() for h in handles), "legend")


def time_figure(methods: Methods, title: str, sweeps: dict[str, dict[int, float]],
                crossovers: dict[str, Crossover]) -> Figure:
    """Forward time vs N (log-log), one line per method, Exact thick; an open circle where a
    method crosses Exact, with the interpolated N."""
    panel = Panel(methods, title, "sequence length N (tokens)", "time per forward (ms)",
                  [n for s in sweeps.values() for n in s],
                  [t for s in sweeps.values() for t in s.values()], size=WIDE)
    for method, s in sweeps.items():
        col = methods.color(method)
        panel.line(sorted(s.items()), col, 3.0 if method == EXACT else 1.5)
        for n, t in s.items():
            panel.marker(n, t, method, 6.5 if method == EXACT else 5.5)
        panel.label_end(s[max(s)], method, col)
        cross = crossovers.get(method)
        if cross and cross.n is not None:
            panel.ax.plot([cross.n], [cross.exact_time], linestyle="none", marker="o",
                          markersize=11, markerfacecolor="none", markeredgecolor=col,
                          markeredgewidth=1.5, zorder=5)
            panel.note(cross.n, cross.exact_time, f"N≈{fmt_num(cross.n)}", col, dx=7, dy=-14)
    return panel.render("time")


def error_figure(methods: Methods, title: str, x_label: str,
                 series: dict[str, dict[int, ErrStat]], flat: dict[str, ErrStat]) -> Figure:
    """Error curves (x -> ErrStat per method, x on a log2 axis) with min-max bars over seeds, plus
    dashed horizontal lines for the methods in `flat` (independent of x)."""
    values = [e.value for s in series.values() for e in s.values()] + \
        [e.value for e in flat.values()]
    inliers = value_range(values)
    # Bars widen the range up to 3x the largest and down to 1/5 of the smallest value; beyond,
    # they are clipped at the panel's edge (a 10th percentile of 0 would stretch a log axis).
    bars = [v for s in series.values() for e in s.values() for v in (e.lo, e.hi)
            if e.value in inliers and v is not None
            and min(inliers, default=0) / 5 <= v <= max(inliers, default=0) * 3]
    panel = Panel(methods, title, x_label, "relative error ‖O − O*‖F / ‖O*‖F",
                  [x for s in series.values() for x in s], inliers + bars)
    for i, (method, s) in enumerate(series.items()):
        col = methods.color(method)
        dx = (i - (len(series) - 1) / 2) * 1.9  # points: keeps overlapping error bars apart
        line_only = methods.info(method).role == "baseline"  # reference lines: dashed
        panel.line([(x, e.value) for x, e in s.items()], col, 1.5, line_only, dx)
        for x, e in sorted(s.items()):
            panel.errbar(x, e.value, e.lo, e.hi, col, dx)
            if not line_only:
                panel.marker(x, e.value, method, dx=dx)
        last = s[max(s)].value
        if panel.fits(last):
            panel.label_end(last, method, col)
    for method, e in flat.items():
        panel.hline(e.value, methods.color(method), method)
    return panel.render("error")


@dataclass
class ParetoPoint:
    """One method at one setting: its cost (forward time in ms, or model flops relative to
    exact attention's), its error, and its setting's label ("m=64", "W=32"; "" without one)."""
    x: float
    error: ErrStat
    method: str
    label: str = ""


def pareto_figure(methods: Methods, title: str, points: list[ParetoPoint],
                  front: list[tuple[float, float]], baseline: Optional[float],
                  exact_x: Optional[float], x_label: str = "time per forward (ms)",
                  exact_label: str = "Exact (error 0)", label_dominated: bool = True) -> Figure:
    """Error against cost: the Pareto front as a shaded staircase from the baseline down to
    Exact's cost, the baseline as a dashed line, Exact (error 0) as a vertical line, each point
    with its spread bar and its setting (label_dominated False: only below the baseline)."""
    inliers = value_range([p.error.value for p in points] + [baseline])
    panel = Panel(methods, title, x_label, "relative error",
                  [p.x for p in points] + [exact_x], inliers, x_pow2=False)
    stairs = [(panel.xlo, baseline if baseline is not None else front[0][1])] if front else []
    for t, e in front:
        stairs += [(t, stairs[-1][1]), (t, e)]
    if front and exact_x:
        stairs += [(exact_x, front[-1][1]), (exact_x, panel.ylo)]
    panel.band(stairs, "#000000")
    panel.hline(baseline, methods.color(BASELINE), BASELINE)
    panel.vline(exact_x, methods.color(EXACT), exact_label)
    for p in points:
        col = methods.color(p.method)
        panel.errbar(p.x, p.error.value, p.error.lo, p.error.hi, col)
        panel.marker(p.x, p.error.value, p.method, 6.5)
        if p.label and (label_dominated or baseline is None or p.error.value < baseline):
            panel.note(p.x, p.error.value, p.label, col, dx=5, dy=4)
    return panel.render("pareto")


def peers_figure(bars: dict[str, dict[tuple[bool, int], float]], ns: list[int],
                 x_label: str) -> str:
    """Horizontal bars, one row per implementation, one bar per N, non-causal and causal side by
    side: bars[name][(causal, N)] = value (% of peak). fastattn's rows are drawn in black."""
    names = list(bars)
    shades = ["#9ecae1", "#3182bd", "#08519c", "#08306b"]
    height = 90 + 26 * len(names) * max(1, len(ns)) ** 0.5
    with matplotlib.rc_context(RC):
        fig = MplFigure(figsize=(WIDE[0] * PX, height * PX))
        top = max((v for b in bars.values() for v in b.values()), default=1.0) * 1.12
        axes = fig.subplots(1, 2, sharey=True)
        fig.subplots_adjust(left=0.2, right=0.98, top=1 - 52 / height, bottom=42 / height,
                            wspace=0.08)
        step = 0.8 / max(1, len(ns))
        for ax, causal in zip(axes, (False, True)):
            for row, name in enumerate(names):
                ours = name.startswith("fastattn")
                for j, n in enumerate(ns):
                    value = bars[name].get((causal, n))
                    y = row + (j - (len(ns) - 1) / 2) * step
                    if value is None:
                        ax.text(0.5, y, "—", va="center", fontsize=FONT - 1, color="#777777")
                        continue
                    col = "#222222" if ours else shades[j % len(shades)]
                    if ours and j == 0:
                        col = "#777777"
                    ax.barh(y, value, height=step * 0.9, color=col)
                    ax.text(value + top * 0.01, y, f"{fmt_num(value, 2)} %", va="center",
                            fontsize=FONT - 1, color="#222222")
            ax.set_title("Causal" if causal else "Non-causal", loc="left", fontsize=10,
                         fontweight="bold")
            ax.set_xlim(0, top)
            ax.set_xlabel(x_label, fontsize=9)
            ax.grid(True, axis="x", color=GRID, linewidth=0.7)
            ax.set_axisbelow(True)
            ax.tick_params(labelsize=FONT, length=3, width=0.6)
        axes[0].set_yticks(range(len(names)))
        axes[0].set_yticklabels([textwrap.fill(name, 26) for name in names], fontsize=FONT)
        axes[0].invert_yaxis()
        handles = [Line2D([], [], linewidth=6, color=shades[j % len(shades)],
                          label=f"N = {n}") for j, n in enumerate(ns)]
        handles.append(Line2D([], [], linewidth=6, color="#777777",
                              label="fastattn (grey, black: the same N order)"))
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.2, 1.0),
                   ncol=len(handles), frameon=False, fontsize=FONT)
        return to_svg(fig, "peers:" + "|".join(names), "implementations: share of the FMA peak")
