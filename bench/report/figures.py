"""The report's charts: time vs N with crossovers, error panels, Pareto panels, legend strips.
Each function takes plain data (no Report) and returns the chart as an inline SVG string."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .analysis import Crossover, value_range
from .data import ErrStat
from .fmt import fmt_num
from .methods import BASELINE, M_INDEPENDENT, color
from .svg import Chart, legend_svg, marker_svg


@dataclass
class Figure:
    """A rendered chart and what it could not show in range (for its caption)."""
    svg: str
    offscale: list[str] = field(default_factory=list)  # "method value" per point above the range


def legend(methods: list[str], extras: list[tuple[str, str]] = ()) -> str:
    """A legend strip: one entry per method (colour, marker) plus explanations of the other marks
    (kinds: "cross", "dash", "bar", "up", "front")."""
    return legend_svg(methods, extras)


def time_figure(title: str, sweeps: dict[str, dict[int, float]],
                crossovers: dict[str, Crossover]) -> Figure:
    """Forward time vs N (log-log), one line per method, Exact thick; an open circle where a
    method crosses Exact."""
    chart = Chart(title, "sequence length N (tokens)", "time per forward (ms)",
                  [n for s in sweeps.values() for n in s],
                  [t for s in sweeps.values() for t in s.values()], x_pow2=True,
                  width=760, height=400)
    for method, s in sweeps.items():
        chart.line(sorted(s.items()), color(method), 3.5 if method == "Exact" else 1.8)
        for n, t in s.items():
            chart.marker(n, t, method, 4.5 if method == "Exact" else 3.5)
        chart.label_end(s[max(s)], method, color(method))
        cross = crossovers.get(method)
        if cross and cross.n is not None:
            chart.over.append(marker_svg("circle-open", chart.px(cross.n),
                                         chart.py(cross.exact_time), color(method), 6))
            chart.note(cross.n, cross.exact_time, f"N≈{fmt_num(cross.n)}", color(method),
                       dx=8, dy=15)
    return Figure(chart.render(), chart.offscale)


def error_figure(title: str, x_label: str, series: dict[str, dict[int, ErrStat]],
                 flat: dict[str, ErrStat]) -> Figure:
    """Error curves (x -> ErrStat per method, x on a log2 axis) with min-max bars over seeds, plus
    horizontal lines for the methods in `flat` (independent of x)."""
    values = [e.mean for s in series.values() for e in s.values()] + \
        [e.mean for e in flat.values()]
    inliers = value_range(values)
    bars = [v for s in series.values() for e in s.values() for v in (e.lo, e.hi)
            if e.mean in inliers and v is not None and v <= max(inliers, default=0) * 3]
    chart = Chart(title, x_label, "relative error ‖O − O*‖F / ‖O*‖F",
                  [x for s in series.values() for x in s], inliers + bars, x_pow2=True)
    for i, (method, s) in enumerate(series.items()):
        dash = "6,4" if method == BASELINE else ""
        dx = (i - (len(series) - 1) / 2) * 2.5  # keep overlapping error bars apart
        chart.line([(x, e.mean) for x, e in s.items()], color(method), 1.8, dash, dx)
        for x, e in sorted(s.items()):
            chart.errbar(x, e.mean, e.lo, e.hi, color(method), dx)
            if method != BASELINE:
                chart.marker(x, e.mean, method, dx=dx)
        last = s[max(s)].mean
        if chart.fits(last):
            chart.label_end(last, method, color(method))
    for method, e in flat.items():
        chart.hline(e.mean, color(method), method)
    return Figure(chart.render(), chart.offscale)


@dataclass
class ParetoPoint:
    """One method at one feature count: forward time (ms) and error."""
    time_ms: float
    error: ErrStat
    method: str
    m: int


def pareto_figure(title: str, points: list[ParetoPoint], front: list[tuple[float, float]],
                  baseline: Optional[float], exact_time: Optional[float]) -> Figure:
    """Error against time, the Pareto front as a shaded staircase from the baseline down to
    Exact's time, the baseline as a dashed line, Exact as a vertical line."""
    inliers = value_range([p.error.mean for p in points] + [baseline])
    chart = Chart(title, "time per forward (ms)", "relative error",
                  [p.time_ms for p in points] + [exact_time], inliers)
    stairs = [(chart.xlo, baseline if baseline is not None else front[0][1])] if front else []
    for t, e in front:
        stairs += [(t, stairs[-1][1]), (t, e)]
    if front and exact_time:
        stairs += [(exact_time, front[-1][1]), (exact_time, chart.ylo)]
    chart.step(stairs, "#000")
    chart.hline(baseline, color(BASELINE), BASELINE)
    chart.vline(exact_time, color("Exact"), "Exact (error 0)")
    for p in points:
        chart.errbar(p.time_ms, p.error.mean, p.error.lo, p.error.hi, color(p.method))
        chart.marker(p.time_ms, p.error.mean, p.method, 4.5)
        if p.method not in M_INDEPENDENT:
            chart.note(p.time_ms, p.error.mean, str(p.m), color(p.method), dx=6, dy=-5)
    return Figure(chart.render(), chart.offscale)
