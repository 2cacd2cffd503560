"""A small hand-written chart library: log-log panels and legend strips as inline SVG."""
from __future__ import annotations

import math
from typing import Iterable, Optional

from .fmt import esc, fmt_num
from .methods import BASELINE, MARKERS, color


def log_range(values: Iterable[float], pad: float) -> tuple[float, float]:
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


def marker_svg(shape: str, x: float, y: float, col: str, r: float = 4.0) -> str:
    """A marker of the given shape centred on (x, y)."""
    def poly(pts: list[tuple[float, float]]) -> str:
        p = " ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in pts)
        return f'<polygon points="{p}" fill="{col}" stroke="white" stroke-width="0.8"/>'
    if shape == "square":
        return (f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" '
                f'fill="{col}" stroke="white" stroke-width="0.8"/>')
    if shape == "diamond":
        s = r * 1.35
        return poly([(0, -s), (s, 0), (0, s), (-s, 0)])
    if shape in ("triangle", "triangle-down"):
        k = -1 if shape == "triangle" else 1
        return poly([(0, k * 1.3 * r), (1.2 * r, -k * 0.8 * r), (-1.2 * r, -k * 0.8 * r)])
    if shape == "cross":
        return (f'<path d="M{x - r:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}M{x - r:.1f},'
                f'{y + r:.1f}L{x + r:.1f},{y - r:.1f}" stroke="{col}" stroke-width="2.4"/>')
    fill = "white" if shape == "circle-open" else col
    return (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" stroke="'
            f'{col if fill == "white" else "white"}" stroke-width="1.2"/>')


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


_clip_ids = iter(range(1, 1 << 30))


class Chart:
    """One log-log panel as inline SVG: axes with ticks, grid, lines, markers, error bars,
    labels in the right margin and annotations. Methods take data coordinates; values above
    the y range are drawn as ▲ at the top edge with their value."""

    def __init__(self, title: str, x_label: str, y_label: str, xs: Iterable[float],
                 ys: Iterable[float], x_pow2: bool = False, width: int = 540,
                 height: int = 330) -> None:
        self.title, self.x_label, self.y_label, self.x_pow2 = title, x_label, y_label, x_pow2
        self.w, self.h = width, height
        self.left, self.right, self.top, self.bottom = 60, width - 112, 30, height - 44
        self.xlo, self.xhi = log_range(xs, 1.2)
        self.ylo, self.yhi = log_range(ys, 1.35)
        self.body: list[str] = []  # clipped to the plot area
        self.over: list[str] = []  # markers and bars, not clipped
        self.side: list[tuple[float, str, str]] = []  # (y px, text, colour) in the right margin
        self.notes: list[tuple[float, float, str, str]] = []  # (x px, y px, text, colour)
        self.offscale: list[str] = []

    def px(self, x: float) -> float:
        """x in pixels (non-positive values at the left edge)."""
        if x <= 0:
            return float(self.left)
        return self.left + (math.log(x / self.xlo) / math.log(self.xhi / self.xlo)
                            * (self.right - self.left))

    def py(self, y: float) -> float:
        """y in pixels (clamped to the plot area; non-positive values at the bottom)."""
        if y <= 0:
            return float(self.bottom)
        frac = math.log(y / self.ylo) / math.log(self.yhi / self.ylo)
        return self.bottom - min(max(frac, 0.0), 1.0) * (self.bottom - self.top)

    def fits(self, y: Optional[float]) -> bool:
        """True if y can be drawn inside the y range."""
        return y is not None and self.ylo <= y <= self.yhi

    def line(self, pts: list[tuple[float, Optional[float]]], col: str, width: float = 2.0,
             dash: str = "", dx: float = 0.0) -> None:
        """A polyline through the points, broken where a point is missing or off scale
        (dx: a pixel offset that keeps overlapping series apart)."""
        runs: list[list[str]] = [[]]
        for x, y in sorted(pts):
            if self.fits(y):
                runs[-1].append(f"{self.px(x) + dx:.1f},{self.py(y):.1f}")
            elif runs[-1]:
                runs.append([])
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        for r in runs:
            if len(r) > 1:
                self.body.append(f'<polyline points="{" ".join(r)}" fill="none" stroke="{col}" '
                                 f'stroke-width="{width}"{dash_attr} stroke-linejoin="round"/>')

    def marker(self, x: float, y: Optional[float], method: str, r: float = 4.0,
               dx: float = 0.0) -> None:
        """A method's marker; off scale: ▲ at the top edge with the value."""
        if y is None or y <= 0:
            return
        if y > self.yhi:
            self.over.append(f'<text x="{self.px(x):.1f}" y="{self.top + 9:.1f}" fill="'
                             f'{color(method)}" text-anchor="middle" font-size="12">▲</text>')
            self.notes.append((self.px(x) + 6, self.top + 20, fmt_num(y), color(method)))
            self.offscale.append(f"{method} {fmt_num(y)}")
            return
        self.over.append(marker_svg(MARKERS.get(method, "circle"), self.px(x) + dx, self.py(y),
                                    color(method), r))

    def errbar(self, x: float, mean: float, lo: Optional[float], hi: Optional[float], col: str,
               dx: float = 0.0) -> None:
        """A vertical bar from lo to hi (clamped to the plot area; none if the mean is off
        scale)."""
        if lo is None or hi is None or lo <= 0 or not self.fits(mean):
            return
        x0, y0, y1 = self.px(x) + dx, self.py(lo), self.py(hi)
        self.over.append(f'<path d="M{x0:.1f},{y0:.1f}V{y1:.1f}M{x0 - 3:.1f},{y0:.1f}H'
                         f'{x0 + 3:.1f}M{x0 - 3:.1f},{y1:.1f}H{x0 + 3:.1f}" stroke="{col}" '
                         f'stroke-width="1.2" opacity="0.8"/>')

    def hline(self, y: Optional[float], col: str, label: str, dash: str = "6,4") -> None:
        """A horizontal line across the panel, labelled in the right margin."""
        if y is None or y <= 0:
            return
        if not self.fits(y):
            self.offscale.append(f"{label} {fmt_num(y)}")
            return
        yy = self.py(y)
        self.body.append(f'<line x1="{self.left}" x2="{self.right}" y1="{yy:.1f}" y2="{yy:.1f}" '
                         f'stroke="{col}" stroke-width="1.8" stroke-dasharray="{dash}"/>')
        self.side.append((yy, label, col))

    def vline(self, x: Optional[float], col: str, label: str) -> None:
        """A vertical line from bottom to top, labelled at its top."""
        if x is None or not self.xlo <= x <= self.xhi:
            return
        xx = self.px(x)
        self.body.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{self.top}" y2="{self.bottom}" '
                         f'stroke="{col}" stroke-width="2.5"/>')
        self.notes.append((xx - 4, self.top + 12, label, col))

    def label_end(self, y: Optional[float], text: str, col: str) -> None:
        """A series label in the right margin at height y (a line's last point)."""
        if y is not None and y > 0:
            self.side.append((self.py(y), text, col))

    def note(self, x: float, y: float, text: str, col: str, dx: float = 6, dy: float = -6) -> None:
        """A small text annotation next to a data point."""
        if y is not None and y > 0 and self.fits(y):
            self.notes.append((self.px(x) + dx, self.py(y) + dy, text, col))

    def step(self, pts: list[tuple[float, float]], col: str) -> None:
        """A staircase through the points in data coordinates (the Pareto front)."""
        if len(pts) > 1:
            path = " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in pts)
            self.body.append(f'<polyline points="{path}" fill="none" stroke="{col}" '
                             f'stroke-width="7" stroke-opacity="0.18" stroke-linejoin="round"/>')

    def _axes(self) -> list[str]:
        """Frame, grid, tick labels and axis titles."""
        out = [f'<rect x="{self.left}" y="{self.top}" width="{self.right - self.left}" '
               f'height="{self.bottom - self.top}" fill="#fcfcfc" stroke="#888"/>']
        for v in log_ticks(self.xlo, self.xhi, self.x_pow2):
            x = self.px(v)
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" y2="{self.bottom}" '
                       f'stroke="#e3e3e3"/><text x="{x:.1f}" y="{self.bottom + 15}" '
                       f'text-anchor="middle">{fmt_tick(v)}</text>')
        for v in log_ticks(self.ylo, self.yhi, False):
            y = self.py(v)
            out.append(f'<line x1="{self.left}" x2="{self.right}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#e3e3e3"/><text x="{self.left - 5}" y="{y + 4:.1f}" '
                       f'text-anchor="end">{fmt_tick(v)}</text>')
        mid_x, mid_y = (self.left + self.right) / 2, (self.top + self.bottom) / 2
        out.append(f'<text x="{mid_x:.0f}" y="{self.h - 8}" text-anchor="middle" '
                   f'font-size="12">{esc(self.x_label)}</text>')
        out.append(f'<text transform="translate(14,{mid_y:.0f}) rotate(-90)" '
                   f'text-anchor="middle" font-size="12">{esc(self.y_label)}</text>')
        out.append(f'<text x="{self.left}" y="19" font-weight="bold" font-size="13">'
                   f'{esc(self.title)}</text>')
        return out

    def _labels(self) -> list[str]:
        """Margin labels spread vertically; annotations nudged down until they do not overlap."""
        out = []
        ys = spread([y for y, _, _ in self.side], 12.5, self.top + 4, self.bottom)
        for (y0, text, col), y in zip(self.side, ys):
            out.append(f'<path d="M{self.right},{y0:.1f}L{self.right + 6},{y:.1f}" stroke="{col}" '
                       f'stroke-width="0.8"/><text x="{self.right + 8}" y="{y + 4:.1f}" '
                       f'fill="{col}" font-size="11">{esc(text)}</text>')
        placed: list[tuple[float, float, float]] = []  # (x0, x1, y)
        for x, y0, text, col in sorted(self.notes):
            width = 6.0 * len(text)
            x = min(max(x, self.left + 2), self.right - width - 2)
            y = min(max(y0, self.top + 11), self.bottom - 3)
            for dy in (0, 12, -12, 24, -24, 36, -36, 48, -48, 60, -60):
                if self.top + 11 <= y0 + dy <= self.bottom - 3 and all(
                        x + width < a or x > b or abs(y0 + dy - c) >= 12 for a, b, c in placed):
                    y = y0 + dy
                    break
            placed.append((x, x + width, y))
            out.append(f'<text x="{x:.1f}" y="{y:.1f}" fill="{col}" font-size="10.5" '
                       f'paint-order="stroke" stroke="white" stroke-width="3">{esc(text)}</text>')
        return out

    def render(self) -> str:
        """The panel as an <svg> element."""
        clip = f"clip{next(_clip_ids)}"
        return "\n".join(
            [f'<svg viewBox="0 0 {self.w} {self.h}" width="{self.w}" height="{self.h}" '
             f'role="img" aria-label="{esc(self.title)}" font-family="Helvetica, Arial, '
             f'sans-serif" font-size="11">',
             f'<clipPath id="{clip}"><rect x="{self.left}" y="{self.top}" '
             f'width="{self.right - self.left}" height="{self.bottom - self.top}"/></clipPath>']
            + self._axes() + [f'<g clip-path="url(#{clip})">'] + self.body + ["</g>"]
            + self.over + self._labels() + ["</svg>"])


def legend_svg(methods: list[str], extras: list[tuple[str, str]] = ()) -> str:
    """A legend strip: one entry per method (colour, marker) plus line-style explanations."""
    items = [(m, "method") for m in methods] + [(text, kind) for kind, text in extras]
    width, per_row, step_x = 1080, 6, 178
    rows = math.ceil(len(items) / per_row) or 1
    out = [f'<svg viewBox="0 0 {width} {rows * 22 + 6}" width="{width}" height="{rows * 22 + 6}" '
           f'role="img" aria-label="legend" font-family="Helvetica, Arial, sans-serif" '
           f'font-size="12" class="legend">']
    for i, (text, kind) in enumerate(items):
        x, y = 6 + (i % per_row) * step_x, 14 + (i // per_row) * 22
        if kind == "method":
            dash = ' stroke-dasharray="6,4"' if text == BASELINE else ""
            width_px = 3.5 if text == "Exact" else 2
            out.append(f'<line x1="{x}" x2="{x + 26}" y1="{y}" y2="{y}" stroke="{color(text)}" '
                       f'stroke-width="{width_px}"{dash}/>')
            if text != BASELINE:
                out.append(marker_svg(MARKERS.get(text, "circle"), x + 13, y, color(text)))
        elif kind == "dash":
            out.append(f'<line x1="{x}" x2="{x + 26}" y1="{y}" y2="{y}" stroke="#555" '
                       f'stroke-width="1.8" stroke-dasharray="6,4"/>')
        elif kind == "bar":
            out.append(f'<path d="M{x + 13},{y - 7}V{y + 7}M{x + 10},{y - 7}H{x + 16}M{x + 10},'
                       f'{y + 7}H{x + 16}" stroke="#555" stroke-width="1.2"/>')
        elif kind == "front":
            out.append(f'<polyline points="{x},{y - 6} {x + 13},{y - 6} {x + 13},{y + 5} '
                       f'{x + 26},{y + 5}" fill="none" stroke="#000" stroke-width="7" '
                       f'stroke-opacity="0.18"/>')
        elif kind == "cross":
            out.append(marker_svg("circle-open", x + 13, y, "#333", 5))
        elif kind == "up":
            out.append(f'<text x="{x + 13}" y="{y + 5}" text-anchor="middle">▲</text>')
        out.append(f'<text x="{x + 32}" y="{y + 4}">{esc(text)}</text>')
    return "\n".join(out + ["</svg>"])
