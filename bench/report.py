#!/usr/bin/env python3
"""fastattn's benchmark report: one self-contained HTML page (inline CSS and SVG, no scripts).

It reads the Google Benchmark JSON written by fastattn_bench and the accuracy sweep written by
fastattn_accuracy, and answers: which method, at which N and m, beats exact attention by how
much, at what error, on which kind of inputs.

    python3 bench/report.py --bench bench.json --accuracy accuracy.json \\
        [--bench-openblas other_bench.json] --out index.html [--markdown headline.md] [--check]

Python standard library only. Missing data is shown as "—" and never stops the report.
"""
from __future__ import annotations

import argparse
import datetime
import html
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

DASH = "—"
# The headline configuration (the benchmarks' N sweep runs at these).
D_MAIN = 64
PREC_MAIN = "float"

# Display order and one colour (Okabe-Ito, colour-blind safe) and marker per method.
METHOD_ORDER = ["Exact", "FAVOR+", "FAVOR-hyp", "FAVOR++", "RFA", "EVA-Reference",
                "EVA-Disjoint", "Exact-reference", "uniform"]
COLORS = {"Exact": "#000000", "FAVOR+": "#0072B2", "FAVOR-hyp": "#56B4E9", "FAVOR++": "#009E73",
          "RFA": "#E69F00", "EVA-Reference": "#D55E00", "EVA-Disjoint": "#CC79A7",
          "Exact-reference": "#777777", "uniform": "#999999"}
EXTRA_COLORS = ["#882255", "#44AA99", "#117733", "#332288", "#AA4499", "#DDCC77"]
MARKERS = {"Exact": "circle", "FAVOR+": "square", "FAVOR-hyp": "diamond", "FAVOR++": "triangle",
           "RFA": "triangle-down", "EVA-Reference": "circle", "EVA-Disjoint": "cross",
           "Exact-reference": "circle-open"}
# Methods whose cost and error do not depend on the feature count m.
M_INDEPENDENT = {"Exact", "Exact-reference", "EVA-Reference", "EVA-Disjoint", "uniform"}
REFERENCES = {"Exact", "Exact-reference"}
BASELINE = "uniform"

SECTIONS = [("headline", "Headline: speed and error at a glance"),
            ("time", "Time vs N"),
            ("err-m", "Error vs m"),
            ("err-n", "Error vs N"),
            ("pareto", "Error vs time (Pareto fronts)"),
            ("decode", "Decoding and multi-head scaling"),
            ("efficiency", "Kernel efficiency"),
            ("openblas", "Eigen's GEMM vs OpenBLAS"),
            ("machine", "Machine and build"),
            ("appendix", "Appendix: all measurements"),
            ("reproduce", "How to reproduce")]
CHART_SECTIONS = ("time", "err-m", "err-n", "pareto")
OPTIONAL_SECTIONS = ("openblas",)
TIME_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
GB_KEYS = {"name", "run_name", "run_type", "family_index", "per_family_instance_index",
           "repetitions", "repetition_index", "threads", "iterations", "real_time", "cpu_time",
           "time_unit", "label", "aggregate_name", "aggregate_unit", "error_occurred",
           "error_message"}


# ---------------------------------------------------------------------------------- formatting
def finite(x: Any) -> Optional[float]:
    """x as a float if it is a finite number, else None (null, NaN, strings, booleans)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fmt_num(x: Optional[float], sig: int = 3) -> str:
    """x to `sig` significant digits; scientific (2.42e4) outside [0.001, 10000)."""
    if x is None or not math.isfinite(x):
        return DASH
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= 4 or mag < -3:
        mantissa, exponent = f"{x:.{sig - 1}e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    decimals = sig - 1 - mag
    if decimals < 0:  # 1214 -> 1210
        return str(int(round(x, decimals)))
    return f"{x:.{decimals}f}"


def fmt_time(ms: Optional[float]) -> str:
    """A duration given in ms, in µs, ms or s, whichever reads best."""
    if ms is None:
        return DASH
    if ms < 1.0:
        return f"{fmt_num(ms * 1e3)}\u00a0µs"
    if ms >= 1e3:
        return f"{fmt_num(ms / 1e3)}\u00a0s"
    return f"{fmt_num(ms)}\u00a0ms"


def fmt_ratio(x: Optional[float]) -> str:
    """A speedup or ratio such as 7.38×."""
    return DASH if x is None else f"{fmt_num(x)}×"


def fmt_n(n: Optional[float]) -> str:
    """A token count: integers as such, interpolated values to 3 significant digits."""
    if n is None:
        return DASH
    return str(int(n)) if float(n).is_integer() else fmt_num(n)


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing or b is zero."""
    return a / b if a is not None and b else None


def esc(text: Any) -> str:
    """HTML-escape anything."""
    return html.escape(str(text), quote=True)


def median(values: Iterable[float]) -> Optional[float]:
    """The median of the finite values, or None."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(vals) if vals else None


# ------------------------------------------------------------------------------------ methods
_extra_colors: dict[str, str] = {}


def color(method: str) -> str:
    """The method's colour, the same in every chart (unknown methods get the next spare one)."""
    if method in COLORS:
        return COLORS[method]
    if method not in _extra_colors:
        _extra_colors[method] = EXTRA_COLORS[len(_extra_colors) % len(EXTRA_COLORS)]
    return _extra_colors[method]


def order_methods(names: Iterable[str]) -> list[str]:
    """Known methods in display order, unknown ones alphabetically before the baseline."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(set(names), key=lambda m: (rank.get(m, len(METHOD_ORDER) - 1.5), m))


def is_approximation(method: str) -> bool:
    """True for the methods the report compares against exact attention."""
    return method not in REFERENCES and method != BASELINE


# ------------------------------------------------------------------------------------- inputs
def load_json(path: str, what: str) -> dict:
    """Parses a JSON object from path; exits with a message (not a traceback) if it cannot."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"report.py: cannot read the {what} file {path}: {e}")
    if not isinstance(data, dict):
        sys.exit(f"report.py: {path} is not a JSON object")
    return data


@dataclass
class Entry:
    """One benchmark: its name, label, real time in ms and numeric counters."""
    name: str
    label: str
    time_ms: Optional[float]
    counters: dict[str, float]


@dataclass
class BenchRun:
    """A Google Benchmark run, split into the families the report uses."""
    context: dict
    forward: dict[tuple, Entry] = field(default_factory=dict)  # (method, prec, causal, N, D, m)
    decode: dict[tuple, Entry] = field(default_factory=dict)  # (method, context)
    multihead: dict[tuple, Entry] = field(default_factory=dict)  # (method, H, Hkv, threads)
    fma_peak: dict[str, float] = field(default_factory=dict)  # precision -> GFLOP/s
    naive: list[Entry] = field(default_factory=list)
    extra: dict[str, list[Entry]] = field(default_factory=dict)  # family -> entries

    @property
    def gemm(self) -> str:
        """The GEMM backend the run was built with."""
        return str(self.context.get("fastattn_gemm") or "unknown GEMM")


def merge_entry(name: str, raws: list[dict]) -> Entry:
    """One Entry from the runs of one benchmark (repetitions: the median of each number)."""
    times = [finite(r.get("real_time")) for r in raws]
    unit = TIME_TO_MS.get(str(raws[0].get("time_unit", "ns")), 1e-6)
    time = median(t * unit for t in times if t is not None)
    keys = {k for r in raws for k, v in r.items() if k not in GB_KEYS and finite(v) is not None}
    counters = {k: median(finite(r.get(k)) for r in raws) for k in sorted(keys)}
    return Entry(name, str(raws[0].get("label") or ""), time,
                 {k: v for k, v in counters.items() if v is not None})


def benchmark_entries(data: dict) -> list[Entry]:
    """The benchmarks of a run; with repetitions, their median aggregate (or median of runs)."""
    raw = [b for b in data.get("benchmarks") or [] if isinstance(b, dict) and "name" in b
           and not b.get("error_occurred")]
    with_median = {b.get("run_name") for b in raw
                   if b.get("run_type") == "aggregate" and b.get("aggregate_name") == "median"}
    groups: dict[str, list[dict]] = {}
    for b in raw:
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") != "median":
                continue
            key = str(b.get("run_name") or b["name"])
        else:
            key = str(b["name"])
            if b.get("run_name") in with_median:
                continue
        groups.setdefault(key, []).append(b)
    return [merge_entry(k, v) for k, v in groups.items()]


def name_arg(name: str, key: str) -> Optional[float]:
    """The value of `key:value` in a benchmark name, e.g. N in .../N:4096/..."""
    match = re.search(r"(?:^|/)" + re.escape(key) + r":([0-9.]+)", name)
    return float(match.group(1)) if match else None


def arg(entry: Entry, counter: str, key: str) -> Optional[int]:
    """An integer parameter from the counters, else from the name."""
    value = entry.counters.get(counter)
    if value is None:
        value = name_arg(entry.name, key)
    return None if value is None else int(round(value))


def parse_bench(data: dict) -> BenchRun:
    """Sorts the benchmarks of a run into the families the report shows."""
    run = BenchRun(context=data.get("context") if isinstance(data.get("context"), dict) else {})
    for e in benchmark_entries(data):
        parts = e.name.split("/")
        family = parts[0]
        method = e.label or (parts[1] if len(parts) > 1 else "?")
        if family == "forward" and len(parts) >= 4:
            prec = "float" if e.counters.get("float", 1.0 if parts[2] == "float" else 0.0) else \
                "double"
            causal = bool(e.counters.get("causal", 1.0 if parts[3] == "causal" else 0.0))
            key = (method, prec, causal, arg(e, "N", "N"), arg(e, "D", "D"), arg(e, "m", "m"))
            run.forward[key] = e
        elif family == "decode" and len(parts) >= 2:
            run.decode[(method, arg(e, "context", "context"))] = e
        elif family == "multihead" and len(parts) >= 2:
            run.multihead[(method, arg(e, "heads", "H"), arg(e, "kv_heads", "Hkv"),
                           arg(e, "threads", "threads"))] = e
        elif family.startswith("BM_FmaPeak"):
            prec = e.label or ("double" if "double" in family else "float")
            if e.counters.get("GFLOPs") is not None:
                run.fma_peak[prec] = e.counters["GFLOPs"]
        elif family.startswith("BM_ExactNaive"):
            run.naive.append(e)
        else:
            run.extra.setdefault(re.sub(r"<.*", "", family), []).append(e)
    return run


@dataclass
class ErrStat:
    """Relative Frobenius error of one (regime, method, m, N, causal) point over the seeds."""
    mean: float
    std: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    target: str


@dataclass
class Accuracy:
    """The accuracy sweep."""
    build: dict
    config: dict
    regimes: list[tuple[str, str]]
    results: dict[tuple, ErrStat]
    targets: dict[str, str]

    @property
    def methods(self) -> list[str]:
        """Every method in the sweep, in display order."""
        return order_methods(k[1] for k in self.results)

    def get(self, regime: str, method: str, m: int, n: int, causal: bool = False
            ) -> Optional[ErrStat]:
        """The error at this point; m is ignored for methods that do not use features."""
        hit = self.results.get((regime, method, m, n, causal))
        if hit is None and method in M_INDEPENDENT:
            hit = self.results.get((regime, method, 0, n, causal))
        return hit

    def ms(self, regime: str, method: str, n: int, causal: bool = False) -> list[int]:
        """The feature counts swept for this method at N = n."""
        return sorted(k[2] for k in self.results
                      if k[0] == regime and k[1] == method and k[3] == n and k[4] == causal)

    def ns(self, regime: str, method: str, m: int) -> list[int]:
        """The sequence lengths swept for this method at feature count m (non-causal)."""
        m_key = 0 if method in M_INDEPENDENT else m
        return sorted(k[3] for k in self.results
                      if k[0] == regime and k[1] == method and k[2] == m_key and not k[4])


def parse_accuracy(data: dict) -> Accuracy:
    """Reads accuracy.json; results without a finite mean error are skipped."""
    results: dict[tuple, ErrStat] = {}
    targets: dict[str, str] = {}
    for r in data.get("results") or []:
        if not isinstance(r, dict):
            continue
        err = r.get("rel_error") if isinstance(r.get("rel_error"), dict) else {}
        mean = finite(err.get("mean"))
        n, m = finite(r.get("N")), finite(r.get("m"))
        if mean is None or n is None or m is None or not r.get("method"):
            continue
        target = str(r.get("target") or "softmax")
        targets[str(r["method"])] = target
        key = (str(r.get("regime")), str(r["method"]), int(m), int(n), bool(r.get("causal")))
        results[key] = ErrStat(mean, finite(err.get("std")), finite(err.get("min")),
                               finite(err.get("max")), target)
    regimes = [(str(g.get("name")), str(g.get("description") or ""))
               for g in data.get("regimes") or [] if isinstance(g, dict) and g.get("name")]
    known = {name for name, _ in regimes}
    regimes += [(name, "") for name in sorted({k[0] for k in results} - known)]
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    build = data.get("build") if isinstance(data.get("build"), dict) else {}
    return Accuracy(build, config, regimes, results, targets)


@dataclass
class Report:
    """Everything the sections need."""
    bench: BenchRun
    acc: Accuracy
    blas: Optional[BenchRun]
    n_head: int  # the headline N (the accuracy sweep's N_timed)
    n_default: int  # the N of the headline errors
    m_default: int
    failures: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------- analysis
def forward_sweep(run: BenchRun, method: str, causal: bool, m: int, d: int = D_MAIN,
                  prec: str = PREC_MAIN) -> dict[int, float]:
    """N -> forward time (ms) of one method; methods without features match any m."""
    out: dict[int, float] = {}
    for (meth, p, c, n, dd, mm), e in run.forward.items():
        if meth != method or p != prec or c != causal or dd != d or not e.time_ms or \
                e.time_ms <= 0:
            continue
        if mm == m:
            out[n] = e.time_ms
        elif method in M_INDEPENDENT:
            out.setdefault(n, e.time_ms)
    return out


def forward_methods(run: Optional[BenchRun]) -> list[str]:
    """The methods with forward benchmarks."""
    return order_methods(k[0] for k in run.forward) if run else []


def log_interp(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    """Linear interpolation in log-log space."""
    t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))


@dataclass
class Crossover:
    """Where a method's time curve crosses Exact's: n (interpolated) or a verdict."""
    n: Optional[float]
    text: str
    exact_time: Optional[float] = None


def crossover(times: dict[int, float], exact: dict[int, float]) -> Crossover:
    """The N above which the method is faster than Exact (log-log interpolation of the sweep)."""
    ns = sorted(set(times) & set(exact))
    if not ns:
        return Crossover(None, DASH)
    logr = [math.log(times[n] / exact[n]) for n in ns]
    if all(r < 0 for r in logr):
        return Crossover(None, f"always (N ≥ {ns[0]})")
    if all(r >= 0 for r in logr):
        return Crossover(None, f"never in range (N ≤ {ns[-1]})")
    i = max(j for j in range(len(ns) - 1) if (logr[j] < 0) != (logr[j + 1] < 0))
    t = logr[i] / (logr[i] - logr[i + 1])
    n = math.exp(math.log(ns[i]) + t * (math.log(ns[i + 1]) - math.log(ns[i])))
    t_exact = log_interp(n, ns[i], ns[i + 1], exact[ns[i]], exact[ns[i + 1]])
    if logr[-1] < 0:
        return Crossover(n, f"N ≈ {fmt_num(n)}", t_exact)
    return Crossover(n, f"faster only below N ≈ {fmt_num(n)}", t_exact)


def pareto_front(points: list[tuple[float, float]], baseline: Optional[float],
                 exact_time: Optional[float]) -> list[tuple[float, float]]:
    """The (time, error) points no other point beats in both; the baseline (which costs next to
    nothing) dominates every error at or above it, Exact (error 0) every slower time."""
    best = baseline if baseline is not None else math.inf
    front = []
    for t, err in sorted(points):
        if exact_time is not None and t >= exact_time:
            break
        if err < best:
            front.append((t, err))
            best = err
    return front


def conclusion(rep: Report) -> str:
    """The headline's one-sentence conclusion, computed from the data."""
    n, acc = rep.n_head, rep.acc
    exact_t = forward_sweep(rep.bench, "Exact", False, rep.m_default).get(n)
    wins, losses = [], []
    for regime, _ in acc.regimes:
        base = acc.get(regime, BASELINE, 0, rep.n_default)
        best = None
        for method in forward_methods(rep.bench):
            err = acc.get(regime, method, rep.m_default, rep.n_default)
            t = forward_sweep(rep.bench, method, False, rep.m_default).get(n)
            if (not is_approximation(method) or err is None or t is None or base is None
                    or err.target != "softmax" or err.mean >= base.mean):
                continue
            if best is None or t < best[0]:
                best = (t, method, err)
        if best is None:
            losses.append(regime)
            continue
        t, method, err = best
        speed = ratio(exact_t, t)
        speed_text = (f"{fmt_ratio(speed)} {'faster than' if speed >= 1 else 'the speed of'} Exact"
                      if speed else f"{fmt_time(t)}")
        wins.append(f"<b>{esc(method)}</b> on {esc(regime)} inputs ({speed_text}; error "
                    f"{fmt_num(err.mean)} vs {fmt_num(base.mean)} for ignoring the keys)")
    if not wins and not losses:
        return "No conclusion: the inputs hold no comparable timings and errors."
    head = (f"At N = {n} (float, non-causal, m = {rep.m_default}) the fastest approximation of "
            f"softmax attention whose error (at N = {rep.n_default}) beats the uniform "
            "baseline is ")
    if not wins:
        return ("No approximation of softmax attention beats the uniform baseline on any regime "
                f"(error at N = {rep.n_default}).")
    text = head + "; ".join(wins)
    if losses:
        text += f"; on {' and '.join(esc(r) for r in losses)} inputs no approximation beats it"
    return text + "."


def value_range(values: Iterable[Optional[float]], spread: float = 30.0) -> list[float]:
    """The positive values that fit one panel: those beyond `spread` times the median are
    outliers, drawn as ▲ at the top edge rather than squashing every other line."""
    vals = [v for v in values if v is not None and v > 0]
    mid = median(vals)
    return [v for v in vals if mid is None or v <= mid * spread]


# ---------------------------------------------------------------------------------------- SVG
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


# ------------------------------------------------------------------------------------- tables
@dataclass
class Cell:
    """A table cell: main text, optional second line, flag (worse than the baseline)."""
    text: str = DASH
    sub: str = ""
    flag: bool = False


@dataclass
class Table:
    """A table model rendered both as HTML and as markdown."""
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    groups: list[tuple[str, int]] = field(default_factory=list)  # (title, span) over columns
    table_id: str = ""


FLAG_TITLE = "error ≥ the uniform baseline's: worse than ignoring the keys"


def table_html(t: Table) -> str:
    """The table as HTML (row headers carry data-method so --check can find them)."""
    ident = f' id="{t.table_id}"' if t.table_id else ""
    out = [f"<table{ident}>", "<thead>"]
    if t.groups:
        out.append("<tr><th></th>" + "".join(f'<th colspan="{span}" class="group">{esc(g)}</th>'
                                              for g, span in t.groups if span) + "</tr>")
    out.append("<tr>" + "".join(f"<th>{esc(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for head, cells in t.rows:
        row = f'<tr><th scope="row" data-method="{esc(head)}">{esc(head)}'
        if head == BASELINE:
            row += "<br><small>(ignore the keys)</small>"
        row += "</th>"
        for c in cells:
            cls = ' class="worse"' if c.flag else ""
            title = f' title="{FLAG_TITLE}"' if c.flag else ""
            mark = "✗\u00a0" if c.flag else ""
            sub = f"<br><small>{esc(c.sub)}</small>" if c.sub else ""
            row += f"<td{cls}{title}>{mark}{esc(c.text)}{sub}</td>"
        out.append(row + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


def table_markdown(t: Table) -> str:
    """The table as GitHub markdown (groups folded into the column names)."""
    names, i = [], 0
    for g, span in t.groups or [("", len(t.columns) - 1)]:
        names += [f"{g}: {c}" if g else c for c in t.columns[1 + i:1 + i + span]]
        i += span
    names = [t.columns[0]] + names + t.columns[1 + i:]
    out = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for head, cells in t.rows:
        texts = [("⚠ " if c.flag else "") + c.text + (f" ({c.sub})" if c.sub else "")
                 for c in cells]
        out.append("| " + " | ".join([head] + texts).replace("\n", " ") + " |")
    return "\n".join(out).replace("\u00a0", " ")


def simple_table(columns: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A plain HTML table of strings (first column as row header)."""
    klass = f' class="{cls}"' if cls else ""
    out = [f"<table{klass}><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns)
           + "</tr></thead><tbody>"]
    for r in rows:
        out.append(f'<tr><th scope="row">{esc(r[0])}</th>'
                   + "".join(f"<td>{esc(c)}</td>" for c in r[1:]) + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


def error_cell(err: Optional[ErrStat], base: Optional[ErrStat], method: str) -> Cell:
    """mean ± std, flagged when not below the baseline; † for a non-softmax target."""
    if method in REFERENCES:
        return Cell("0 (exact)")
    if err is None:
        return Cell()
    dagger = " †" if err.target != "softmax" else ""
    flag = method != BASELINE and base is not None and err.mean >= base.mean
    std = f"\u00a0±\u00a0{fmt_num(err.std, 2)}" if err.std is not None else ""
    return Cell(f"{fmt_num(err.mean)}{std}{dagger}".replace(" †", "\u00a0†"), flag=flag)


# ----------------------------------------------------------------------------------- sections
def largest_n_cell(method: str, times: dict[int, float], exact: dict[int, float]) -> Cell:
    """Time at the method's largest benchmarked N, with the speedup if Exact ran there too."""
    if not times:
        return Cell()
    n_max = max(times)
    if method == "Exact":
        sub = f"N = {n_max}"
    elif n_max in exact:
        sub = f"N = {n_max}, {fmt_ratio(ratio(exact[n_max], times[n_max]))}"
    else:
        sub = f"N = {n_max}, no Exact"
    return Cell(fmt_time(times[n_max]), sub)


def headline_table(rep: Report) -> Table:
    """Per method: time and speedup at N_head and the largest N, crossover, errors per regime."""
    methods = order_methods(forward_methods(rep.bench) + rep.acc.methods)
    largest = any(max(forward_sweep(rep.bench, m, c, rep.m_default), default=0) > rep.n_head
                  for m in methods for c in (False, True))
    time_cols = [f"N = {rep.n_head}"] + (["largest N"] if largest else []) + ["faster than Exact"]
    columns = ["Method"] + time_cols * 2 + [r for r, _ in rep.acc.regimes]
    n_seeds = finite(rep.acc.config.get("seeds"))
    seeds = f"{fmt_n(n_seeds)} seeds" if n_seeds else "seeds"
    groups = [(f"Non-causal time (float, D = {D_MAIN}, m = {rep.m_default})", len(time_cols)),
              ("Causal time", len(time_cols)),
              (f"Relative error, N = {rep.n_default}, non-causal (mean ± std over {seeds})",
               len(rep.acc.regimes))]
    rows = []
    for method in methods:
        cells = []
        for causal in (False, True):
            times = forward_sweep(rep.bench, method, causal, rep.m_default)
            exact = forward_sweep(rep.bench, "Exact", causal, rep.m_default)
            t = times.get(rep.n_head)
            if t is None and times:  # e.g. Exact-reference, run at one N only
                n_near = min(times, key=lambda n: abs(math.log(n / rep.n_head)))
                cells.append(Cell(DASH, f"N = {n_near}: {fmt_time(times[n_near])}"))
            elif method == "Exact":
                cells.append(Cell(fmt_time(t), "reference" if t else ""))
            else:
                speed = ratio(exact.get(rep.n_head), t)
                cells.append(Cell(fmt_time(t), f"{fmt_ratio(speed)} vs Exact" if speed else ""))
            if largest:
                cells.append(largest_n_cell(method, times, exact))
            cells.append(Cell(crossover(times, exact).text if is_approximation(method)
                              else DASH))
        for regime, _ in rep.acc.regimes:
            base = rep.acc.get(regime, BASELINE, 0, rep.n_default)
            cells.append(error_cell(rep.acc.get(regime, method, rep.m_default, rep.n_default),
                                    base, method))
        rows.append((method, cells))
    return Table(columns, rows, groups, "headline")


def footnotes(rep: Report) -> list[str]:
    """The explanations under the headline table."""
    notes = [f"✗ shaded: {FLAG_TITLE}.",
             "“faster than Exact”: the N above which the method is faster, interpolated "
             "log-log between the benchmarked N."]
    for method, target in sorted(rep.acc.targets.items()):
        if target != "softmax":
            notes.append(f"† {method}'s error is measured against {target}, not against softmax "
                         "attention like the others: not directly comparable (the flag still "
                         "compares it with the softmax baseline).")
    notes.append("Exact and EVA do not use m; uniform = output the mean of the (visible) values.")
    return notes


def section_headline(rep: Report) -> str:
    """Section 1."""
    notes = "".join(f"<li>{esc(n)}</li>" for n in footnotes(rep))
    return (f'<div class="scroll">{table_html(headline_table(rep))}</div>'
            f'<ul class="notes">{notes}</ul>'
            f'<p class="lead">{conclusion(rep)}</p>')


def section_time(rep: Report) -> str:
    """Section 2: forward time vs N, non-causal and causal, with crossovers against Exact."""
    methods = forward_methods(rep.bench)
    panels = []
    for causal in (False, True):
        exact = forward_sweep(rep.bench, "Exact", causal, rep.m_default)
        sweeps = {m: forward_sweep(rep.bench, m, causal, rep.m_default) for m in methods}
        sweeps = {m: s for m, s in sweeps.items() if s}
        if not sweeps:
            continue
        chart = Chart(f"{'Causal' if causal else 'Non-causal'} forward (float, D = {D_MAIN}, "
                      f"m = {rep.m_default})", "sequence length N (tokens)",
                      "time per forward (ms)", [n for s in sweeps.values() for n in s],
                      [t for s in sweeps.values() for t in s.values()], x_pow2=True,
                      width=760, height=400)
        for method, s in sweeps.items():
            chart.line(sorted(s.items()), color(method), 3.5 if method == "Exact" else 1.8)
            for n, t in s.items():
                chart.marker(n, t, method, 4.5 if method == "Exact" else 3.5)
            chart.label_end(s[max(s)], method, color(method))
            cross = crossover(s, exact) if method != "Exact" else None
            if cross and cross.n is not None:
                chart.over.append(marker_svg("circle-open", chart.px(cross.n),
                                             chart.py(cross.exact_time), color(method), 6))
                chart.note(cross.n, cross.exact_time, f"N≈{fmt_num(cross.n)}", color(method),
                           dx=8, dy=15)
        panels.append(chart.render())
    if not panels:
        return '<p class="missing">No forward benchmarks in this run.</p>'
    legend = legend_svg(methods, [("cross", "crosses Exact here")])
    return (legend + "".join(f'<div class="wide">{p}</div>' for p in panels)
            + '<p class="caption">Lower is faster. Exact is the thick black line; an open circle '
            "marks where a method's line crosses it (N interpolated log-log).</p>")


def error_panel(rep: Report, regime: str, title: str, x_label: str, x_pow2: bool,
                series: dict[str, dict[int, ErrStat]], flat: dict[str, ErrStat]) -> Chart:
    """A panel of error curves (x -> ErrStat per method) plus horizontal lines for the methods
    in `flat` (independent of x)."""
    values = [e.mean for s in series.values() for e in s.values()] + \
        [e.mean for e in flat.values()]
    inliers = value_range(values)
    bars = [v for s in series.values() for e in s.values() for v in (e.lo, e.hi)
            if e.mean in inliers and v is not None and v <= max(inliers, default=0) * 3]
    chart = Chart(title, x_label, "relative error ‖O − O*‖F / ‖O*‖F",
                  [x for s in series.values() for x in s], inliers + bars, x_pow2=x_pow2)
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
    return chart


def regime_caption(rep: Report, regime: str, description: str, chart: Chart,
                   shown: Iterable[str]) -> str:
    """The text under an error panel: the regime, off-scale values, target notes."""
    text = description.strip() or "no description"
    parts = [f"<b>{esc(regime)}</b>: {esc(text)}" + ("" if text.endswith(".") else ".")]
    if chart.offscale:
        parts.append("Off scale (▲): " + esc(", ".join(chart.offscale)) + ".")
    for method in shown:
        target = rep.acc.targets.get(method, "softmax")
        if target != "softmax":
            parts.append(f"{esc(method)}: error against {esc(target)}, not softmax.")
    return '<p class="caption">' + " ".join(parts) + "</p>"


def panels_html(items: list[str]) -> str:
    """Panels side by side, wrapping on narrow screens."""
    return '<div class="panels">' + "".join(f'<div class="panel">{p}</div>' for p in items) + \
        "</div>"


def section_error_vs_m(rep: Report) -> str:
    """Section 3: error vs feature count m at N_default, one panel per regime."""
    acc, n = rep.acc, rep.n_default
    panels = []
    for regime, description in acc.regimes:
        series, flat = {}, {}
        for method in acc.methods:
            ms = [m for m in acc.ms(regime, method, n) if m > 0]
            if ms and method not in M_INDEPENDENT:
                series[method] = {m: acc.get(regime, method, m, n) for m in ms}
            elif acc.get(regime, method, 0, n):
                flat[method] = acc.get(regime, method, 0, n)
        if not series and not flat:
            continue
        chart = error_panel(rep, regime, f"{regime} (N = {n}, non-causal)",
                            "features m (log2 scale)", True, series, flat)
        panels.append(chart.render() + regime_caption(rep, regime, description, chart,
                                                      list(series) + list(flat)))
    if not panels:
        return '<p class="missing">No accuracy results in this run.</p>'
    extras = [("dash", "independent of m / baseline"), ("bar", "min–max over seeds"),
              ("up", "off scale (value printed)")]
    m_meaning = rep.acc.config.get("m_meaning")
    meaning = f'<p class="caption">m = {esc(m_meaning)}.</p>' if m_meaning else ""
    return legend_svg(acc.methods, extras) + meaning + panels_html(panels)


def section_error_vs_n(rep: Report) -> str:
    """Section 4: error vs N at m_default, one small panel per regime, plus causal errors."""
    acc, m = rep.acc, rep.m_default
    panels = []
    for regime, description in acc.regimes:
        series = {}
        for method in acc.methods:
            ns = acc.ns(regime, method, m)
            if ns:
                series[method] = {n: acc.get(regime, method, m, n) for n in ns}
        if not series:
            continue
        chart = error_panel(rep, regime, f"{regime} (m = {m}, non-causal)",
                            "sequence length N (tokens)", True, series, {})
        panels.append(chart.render() + regime_caption(rep, regime, description, chart, series))
    if not panels:
        return '<p class="missing">No accuracy results in this run.</p>'
    causal_rows = []
    for method in acc.methods:
        cells = [error_cell(acc.get(r, method, m, rep.n_default, True),
                            acc.get(r, BASELINE, 0, rep.n_default, True), method)
                 for r, _ in acc.regimes]
        if any(c.text != DASH for c in cells):
            causal_rows.append((method, cells))
    causal = ""
    if causal_rows:
        causal = (f"<h3>Causal, N = {rep.n_default}, m = {m}</h3>"
                  + table_html(Table(["Method"] + [r for r, _ in acc.regimes], causal_rows)))
    legend = legend_svg(acc.methods, [("bar", "min–max over seeds"),
                                      ("up", "off scale (value printed)")])
    return legend + panels_html(panels) + causal


def section_pareto(rep: Report) -> str:
    """Section 5: error (accuracy.json) against time (bench.json) at N_timed, per regime."""
    acc, n = rep.acc, rep.n_head
    exact_t = forward_sweep(rep.bench, "Exact", False, rep.m_default).get(n)
    panels, missing = [], []
    for regime, description in acc.regimes:
        points = []  # (time, err, method, m)
        for method in acc.methods:
            if not is_approximation(method):
                continue
            for m in acc.ms(regime, method, n):
                err = acc.get(regime, method, m, n)
                t = forward_sweep(rep.bench, method, False, m).get(n)
                if t is not None:
                    points.append((t, err, method, m))
                elif method + ("" if method in M_INDEPENDENT else f" m={m}") not in missing:
                    missing.append(method + ("" if method in M_INDEPENDENT else f" m={m}"))
        base = acc.get(regime, BASELINE, 0, n)
        if not points:
            continue
        inliers = value_range([e.mean for _, e, _, _ in points] + [base.mean if base else None])
        chart = Chart(f"{regime} (N = {n}, non-causal)", "time per forward (ms)",
                      "relative error", [t for t, *_ in points] + [exact_t], inliers)
        front = pareto_front([(t, e.mean) for t, e, _, _ in points if e.target == "softmax"],
                             base.mean if base else None, exact_t)
        stairs = [(chart.xlo, base.mean if base else front[0][1])] if front else []
        for t, e in front:
            stairs += [(t, stairs[-1][1]), (t, e)]
        if front and exact_t:
            stairs += [(exact_t, front[-1][1]), (exact_t, chart.ylo)]
        chart.step(stairs, "#000")
        chart.hline(base.mean if base else None, color(BASELINE), BASELINE)
        chart.vline(exact_t, color("Exact"), "Exact (error 0)")
        for t, e, method, m in points:
            chart.errbar(t, e.mean, e.lo, e.hi, color(method))
            chart.marker(t, e.mean, method, 4.5)
            if method not in M_INDEPENDENT:
                chart.note(t, e.mean, str(m), color(method), dx=6, dy=-5)
        caption = regime_caption(rep, regime, description, chart, {p[2] for p in points})
        if not front:
            caption += '<p class="caption">No approximation beats the baseline here.</p>'
        panels.append(chart.render() + caption)
    if not panels:
        return '<p class="missing">No (time, error) pairs: accuracy and benchmarks do not ' \
               f'overlap at N = {n}.</p>'
    methods = [m for m in acc.methods if is_approximation(m)] + ["Exact", BASELINE]
    legend = legend_svg(methods, [("front", "Pareto front"), ("bar", "min–max over seeds")])
    if missing:
        legend += (f'<p class="caption missing">Not drawn (error measured, but no forward time at '
                   f'N = {n} in bench.json): {esc(", ".join(missing))}.</p>')
    return (legend + '<p class="caption">Each point is one method at one feature count m '
            "(number next to it), float, non-causal, D = 64. Down-left is better. Points at or "
            "above the uniform line are dominated by it (ignoring the keys costs O(N·D)); "
            "points right of Exact's line are dominated by Exact. Methods measured against another "
            "target than softmax (RFA) are drawn but left out of the front.</p>"
            + panels_html(panels))


def section_decode(rep: Report) -> str:
    """Section 6: per-step decode latency and multi-head thread scaling."""
    run, parts = rep.bench, []
    contexts = sorted({c for _, c in run.decode if c is not None})
    methods = order_methods(m for m, _ in run.decode)
    if contexts:
        rows = []
        for method in methods:
            row = [method]
            for c in contexts:
                t = run.decode.get((method, c))
                exact = run.decode.get(("Exact", c))
                row.append(fmt_time(t.time_ms if t else None))
                row.append("reference" if method == "Exact" and t else fmt_ratio(
                    ratio(exact.time_ms if exact else None, t.time_ms if t else None)))
            rows.append(row)
        cols = ["Method"] + [h for c in contexts for h in (f"context {c}: per step",
                                                           "speedup vs Exact")]
        parts.append("<h3>Decoding: latency of one step (float, D = 64)</h3>"
                     + simple_table(cols, rows)
                     + '<p class="caption">Google Benchmark manual time per step (real_time); '
                     "cpu_time also counts each iteration's setup and is not shown.</p>")
    else:
        parts.append('<p class="missing">No decode benchmarks in this run.</p>')
    threads = sorted({k[3] for k in run.multihead if k[3] is not None})
    configs = sorted({k[:3] for k in run.multihead}, key=lambda k: (
        order_methods(m for m, *_ in run.multihead).index(k[0]), -(k[2] or 0)))
    if configs and threads:
        rows = []
        for method, h, hkv in configs:
            times = [run.multihead.get((method, h, hkv, th)) for th in threads]
            times = [e.time_ms if e else None for e in times]
            row = [f"{method}, H = {h}, Hkv = {hkv}"] + [fmt_time(t) for t in times]
            row.append(fmt_ratio(ratio(times[0], times[-1])) if len(threads) > 1 else DASH)
            full = run.multihead.get((method, h, h, threads[0]))
            row.append(fmt_ratio(ratio(full.time_ms if full else None, times[0]))
                       if hkv != h else DASH)
            rows.append(row)
        cols = ["Configuration (N = 4096, float)"] + [f"{t} thread{'s' * (t > 1)}"
                                                      for t in threads]
        cols += [f"speedup {threads[0]}→{threads[-1]} threads", "GQA saving vs Hkv = H"]
        parts.append("<h3>Multi-head attention: thread scaling and grouped-query attention</h3>"
                     + simple_table(cols, rows))
    else:
        parts.append('<p class="missing">No multi-head benchmarks in this run.</p>')
    return "".join(parts)


def exact_efficiency_rows(run: BenchRun, n: int) -> list[list[str]]:
    """Exact at N = n: time, GFLOP/s and % of the FMA peak per precision and causality."""
    rows = []
    for prec in ("float", "double"):
        for causal in (False, True):
            entry = next((e for (m, p, c, nn, d, _), e in run.forward.items() if m == "Exact"
                          and p == prec and c == causal and nn == n and d == D_MAIN), None)
            counters = entry.counters if entry else {}
            gflops = counters.get("GFLOPs")
            pct = ratio(gflops, counters.get("peak_GFLOPs") or run.fma_peak.get(prec))
            rows.append([f"Exact, {prec}, {'causal' if causal else 'non-causal'}",
                         fmt_time(entry.time_ms if entry else None), fmt_num(gflops),
                         f"{fmt_num(100 * pct)} %" if pct else DASH])
    return rows


def section_efficiency(rep: Report) -> str:
    """Section 7: FMA peaks, Exact's GFLOP/s and share of peak, naive Eigen vs fastattn."""
    run, n = rep.bench, rep.n_head
    peaks = [[f"FMA peak, {p}", fmt_num(g)] for p, g in sorted(run.fma_peak.items(), reverse=True)]
    out = ("<h3>Single-thread FMA peak (BM_FmaPeak)</h3>"
           + (simple_table(["Precision", "GFLOP/s"], peaks) if peaks
              else '<p class="missing">No BM_FmaPeak in this run.</p>'))
    out += (f"<h3>Exact kernel at N = {n}, D = {D_MAIN}</h3>" + simple_table(
        ["Kernel", "time", "GFLOP/s", "% of peak"], exact_efficiency_rows(run, n)))
    naive_rows = []
    for e in run.naive:
        prec = "double" if "<double>" in e.name else "float"
        nn, d = arg(e, "N", "N"), arg(e, "D", "D")
        fast = forward_sweep(run, "Exact", False, rep.m_default, d or D_MAIN, prec).get(nn)
        naive_rows.append([e.name, fmt_time(e.time_ms), fmt_num(e.counters.get("GFLOPs")),
                           fmt_time(fast), fmt_ratio(ratio(e.time_ms, fast))])
    if naive_rows:
        out += ("<h3>What a user writes without fastattn</h3>" + simple_table(
            ["Naive Eigen (materialises QKᵀ, softmax, multiply)", "time", "GFLOP/s",
             "fastattn Exact", "fastattn speedup"], naive_rows))
    return out + ('<p class="caption">GFLOP/s count model flops (the same formula for every '
                  "kernel); % of peak uses the peak measured for that precision in the same "
                  "run.</p>")


def section_openblas(rep: Report) -> str:
    """Optional: the same benchmarks with Eigen's GEMM and with OpenBLAS, side by side."""
    a, b, n = rep.bench, rep.blas, rep.n_head
    cols = ["Method"]
    for mode in ("non-causal", "causal"):
        cols += [f"{mode}: {a.gemm}", f"{mode}: {b.gemm}", f"{mode}: ratio"]
    rows = []
    for method in order_methods(forward_methods(a) + forward_methods(b)):
        row = [method]
        for causal in (False, True):
            ta = forward_sweep(a, method, causal, rep.m_default).get(n)
            tb = forward_sweep(b, method, causal, rep.m_default).get(n)
            row += [fmt_time(ta), fmt_time(tb), fmt_ratio(ratio(ta, tb))]
        rows.append(row)
    peak_rows = [[f"{run.gemm}: {r[0]}"] + r[1:] for run in (a, b)
                 for r in exact_efficiency_rows(run, n)]
    return (f"<h3>Forward time at N = {n} (float, D = {D_MAIN}, m = {rep.m_default})</h3>"
            + simple_table(cols, rows)
            + '<p class="caption">ratio = Eigen time / OpenBLAS time (above 1: OpenBLAS is '
            "faster).</p><h3>Exact kernel: share of the FMA peak</h3>"
            + simple_table(["Kernel", "time", "GFLOP/s", "% of peak"], peak_rows))


def caches_text(caches: Any) -> str:
    """Google Benchmark's cache list as one line."""
    if not isinstance(caches, list):
        return DASH
    parts = []
    for c in caches:
        if not isinstance(c, dict):
            continue
        size = finite(c.get("size")) or 0
        kind = {"Data": "d", "Instruction": "i"}.get(str(c.get("type")), "")
        mib = size >= 1024 ** 2
        text = f"L{c.get('level')}{kind} {fmt_n(size / 1024 ** (2 if mib else 1))} " + \
            ("MiB" if mib else "KiB")
        if (finite(c.get("num_sharing")) or 1) > 1:
            text += f" (shared by {int(c['num_sharing'])})"
        parts.append(text)
    return ", ".join(parts) or DASH


def load_note(context: dict) -> str:
    """A warning when the machine was busy when the benchmarks started."""
    load = context.get("load_avg")
    cpus = finite(context.get("num_cpus"))
    if not isinstance(load, list) or not load or finite(load[0]) is None or not cpus:
        return ""
    share = finite(load[0]) / cpus
    if share >= 0.5:
        return (f"The 1-minute load average was {fmt_num(load[0])} on {int(cpus)} CPUs when the "
                "benchmarks started: the machine was busy and the timings are noisier than usual.")
    if share >= 0.25:
        return (f"The 1-minute load average was {fmt_num(load[0])} on {int(cpus)} CPUs: some other "
                "work was running, so timings (the multi-threaded ones most) may be noisier.")
    return ""


def section_machine(rep: Report) -> str:
    """Section 8: CPU, ISA, compiler, flags, threads, GEMM, Eigen, date, load."""
    ctx = rep.bench.context

    def get(key: str) -> str:
        value = ctx.get(key)
        if isinstance(value, bool):
            return "yes" if value else "no"
        return DASH if value is None or value == "" else str(value)
    load = ctx.get("load_avg")
    rows = [["CPU", get("fastattn_cpu")],
            ["CPUs × clock (Google Benchmark)", f"{get('num_cpus')} × {get('mhz_per_cpu')} MHz"],
            ["Caches", caches_text(ctx.get("caches"))],
            ["ISA compiled for (Eigen vectorizes for)", get("fastattn_simd")],
            ["Compiler", get("fastattn_compiler")],
            ["Flags", get("fastattn_flags")],
            ["OpenMP", get("fastattn_openmp")],
            ["Hardware threads", get("fastattn_hardware_threads")],
            ["GEMM", get("fastattn_gemm")],
            ["Eigen", get("fastattn_eigen")],
            ["Date of the run", get("date")],
            ["Load average (1, 5, 15 min)", ", ".join(fmt_num(finite(x)) for x in load)
             if isinstance(load, list) else DASH],
            ["Google Benchmark library build", get("library_build_type")],
            ["CPU frequency scaling", get("cpu_scaling_enabled")]]
    notes = [n for n in [load_note(ctx)] if n]
    if ctx.get("library_build_type") == "debug":
        notes.append("Google Benchmark's own library is a debug build: that affects its timing "
                     "loop, not the kernels (built with the flags above); only the shortest "
                     "benchmarks (decode steps of a few µs) could show its overhead.")
    if ctx.get("cpu_scaling_enabled") is True:
        notes.append("CPU frequency scaling was enabled: timings may vary between runs.")
    differ = [k for k, v in rep.acc.build.items()
              if f"fastattn_{k}" in ctx and str(ctx[f"fastattn_{k}"]) != str(v)]
    if differ:
        notes.append("The accuracy sweep was built differently from the benchmarks ("
                     + ", ".join(f"{k}: {rep.acc.build[k]}" for k in differ) + ").")
    return simple_table(["", "bench.json"], rows, "kv") + "".join(
        f'<p class="warn">{esc(n)}</p>' for n in notes)


def section_appendix(rep: Report) -> str:
    """Section 9: every forward timing, then one table per extra benchmark family."""
    run, out = rep.bench, []
    ns = sorted({k[3] for k in run.forward if k[3] is not None})
    configs = sorted({(k[0], k[1], k[2], k[4], k[5]) for k in run.forward},
                     key=lambda c: (order_methods(k[0] for k in run.forward).index(c[0]),
                                    c[1] != "float", c[2], c[3] or 0, c[4] or 0))
    if configs:
        rows = []
        for method, prec, causal, d, m in configs:
            label = f"{method}, {prec}, {'causal' if causal else 'non-causal'}, D = {d}" + (
                "" if method in M_INDEPENDENT else f", m = {m}")
            rows.append([label] + [fmt_time(run.forward[(method, prec, causal, n, d, m)].time_ms)
                                   if (method, prec, causal, n, d, m) in run.forward else DASH
                                   for n in ns])
        out.append("<h3>All forward timings</h3>" + simple_table(
            ["Configuration"] + [f"N = {n}" for n in ns], rows))
    for family in sorted(run.extra):
        entries = sorted(run.extra[family], key=lambda e: e.name)
        keys = sorted({k for e in entries for k in e.counters})
        rows = [[e.name, fmt_time(e.time_ms)] + [fmt_num(e.counters.get(k)) for k in keys]
                for e in entries]
        out.append(f"<h3>{esc(family)}</h3>" + simple_table(["Benchmark", "time"] + keys, rows))
    if not run.extra:
        out.append('<p class="caption">No further benchmark families in this run (the full '
                   "sweep adds BM_FeatureMap, BM_Sincos, BM_LinearCore and "
                   "BM_ExactBlockedTiling).</p>")
    return "".join(out)


def section_reproduce(rep: Report) -> str:
    """Section 9b: the commands that produce this page."""
    return """<pre>./scripts/install-deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DFASTATTN_NATIVE=ON
cmake --build build/release -j2 --target report      # writes build/release/report/index.html

# The full sweep (N up to 65536, every D × m, 8 seeds; about an hour):
cmake -S . -B build/release -DFASTATTN_REPORT_FULL=ON
cmake --build build/release -j2 --target report

# Eigen's GEMM vs OpenBLAS: a second build with -DFASTATTN_BENCH_OPENBLAS=ON, then
python3 bench/report.py --bench build/release/report/bench.json \\
    --accuracy build/release/report/accuracy.json \\
    --bench-openblas build/openblas/report/bench.json --out index.html</pre>
<p class="caption">The report target runs fastattn_bench (Google Benchmark, JSON output),
fastattn_accuracy, then this script (bench/report.py); <code>--markdown headline.md</code> also
writes the headline table for the README.</p>"""


SECTION_BUILDERS: dict[str, Callable[[Report], str]] = {
    "headline": section_headline, "time": section_time, "err-m": section_error_vs_m,
    "err-n": section_error_vs_n, "pareto": section_pareto, "decode": section_decode,
    "efficiency": section_efficiency, "openblas": section_openblas,
    "machine": section_machine, "appendix": section_appendix, "reproduce": section_reproduce}


# --------------------------------------------------------------------------------------- page
CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 15px; line-height: 1.45;
       color: #222; max-width: 1200px; margin: 0 auto; padding: 0 16px 40px; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 2px solid #ddd; }
h3 { margin: 1.4em 0 0.4em; font-size: 16px; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 13.5px;
        font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d6d6; padding: 4px 7px; vertical-align: top; }
td { text-align: right; white-space: nowrap; } thead th { background: #f0f0f0; }
th.group { text-align: center; }
th[scope=row] { text-align: left; background: #fafafa; white-space: nowrap; }
.scroll { overflow-x: auto; } #headline td, #headline th { padding: 3px 5px; }
#headline td { white-space: normal; }
tbody tr:nth-child(even) td { background: #fbfbfb; }
td.worse, tbody tr:nth-child(even) td.worse { background: #fbd9d3; color: #7a1a0a; }
table.kv td { text-align: left; white-space: normal; }
small { color: #666; } .lead { font-size: 16px; background: #eef5fb; padding: 10px 14px;
        border-left: 4px solid #0072B2; }
.notes { font-size: 13px; color: #444; } .caption { font-size: 13px; color: #444; margin: 2px 0; }
.missing { color: #8a5a00; } .warn { background: #fff4d6; padding: 6px 10px; font-size: 14px; }
.panels { display: flex; flex-wrap: wrap; gap: 12px 28px; }
.panel { width: 540px; } .wide { margin: 8px 0 14px; } svg { max-width: 100%; height: auto; }
pre { background: #f5f5f5; padding: 10px; overflow-x: auto; font-size: 13px; }
nav { font-size: 14px; } nav a { margin-right: 12px; }
"""


def build_sections(rep: Report) -> list[tuple[str, str, str]]:
    """(id, title, html) per section; a section that fails shows a note, the rest go on."""
    out = []
    for sid, title in SECTIONS:
        if sid == "openblas" and rep.blas is None:
            continue
        try:
            body = SECTION_BUILDERS[sid](rep)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the report
            rep.failures.append(f"{title}: {type(e).__name__}: {e}")
            print(f"report.py: warning: section '{title}' failed: {type(e).__name__}: {e}",
                  file=sys.stderr)
            body = f'<p class="warn">This section could not be drawn ({esc(type(e).__name__)}).</p>'
        out.append((sid, title, body))
    return out


def render_page(rep: Report) -> str:
    """The whole HTML page."""
    sections = build_sections(rep)
    ctx = rep.bench.context
    nav = " ".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = (f"{esc(ctx.get('fastattn_cpu') or 'unknown CPU')}, "
             f"{esc(ctx.get('fastattn_compiler') or 'unknown compiler')}, "
             f"{esc(rep.bench.gemm)}; benchmarks run {esc(ctx.get('date') or DASH)}, "
             f"page generated {generated} by bench/report.py.")
    body = "".join(f'<h2 id="{sid}">{esc(title)}</h2>\n{html_}\n' for sid, title, html_ in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastattn benchmark report</title><style>{CSS}</style></head>
<body><h1>fastattn benchmark report</h1>
<p>How close each approximation of softmax attention comes to exact attention, and how much faster
it is: which method, at which sequence length N and feature count m, beats exact attention by how
much, at what error, on which kind of inputs. {intro}</p>
<nav>{nav}</nav>
{body}</body></html>
"""


def render_markdown(rep: Report) -> str:
    """The headline table, its notes and conclusion as GitHub markdown."""
    notes = "\n".join(f"- {n}".replace("✗ shaded", "⚠") for n in footnotes(rep))
    lead = re.sub(r"</?b>", "**", conclusion(rep))
    return f"{table_markdown(headline_table(rep))}\n\n{notes}\n\n{html.unescape(lead)}\n"


# -------------------------------------------------------------------------------------- check
def section_chunk(page: str, sid: str) -> Optional[str]:
    """The HTML from a section's heading to the next heading, or None if absent."""
    start = page.find(f'<h2 id="{sid}">')
    if start < 0:
        return None
    end = page.find("<h2 ", start + 1)
    return page[start:end if end > 0 else len(page)]


def check_page(path: str, methods: list[str], rep: Report) -> list[str]:
    """Re-reads the written page and lists what is wrong with it (empty: all good)."""
    with open(path, encoding="utf-8") as f:
        page = f.read()
    problems = [f"section failed: {f}" for f in rep.failures]
    for sid, title in SECTIONS:
        if sid in OPTIONAL_SECTIONS and rep.blas is None:
            continue
        chunk = section_chunk(page, sid)
        if chunk is None or esc(title) not in chunk:
            problems.append(f"missing section heading: {title}")
        elif sid in CHART_SECTIONS and "<svg" not in chunk:
            problems.append(f"no chart (<svg>) in section: {title}")
    match = re.search(r'<table id="headline">(.*?)</table>', page, re.S)
    if not match:
        problems.append("no headline table")
    else:
        for method in methods:
            cell = f'<th scope="row" data-method="{esc(method)}">{esc(method)}'
            if cell not in match.group(1):
                problems.append(f"method missing from the headline table: {method}")
    for pattern, flags in ((r"\bnan\b", re.I), (r"\bNone\b", 0), (r"Traceback", 0),
                           (r"\binf\b", re.I)):
        hit = re.search(pattern, page, flags)
        if hit:
            context = page[max(hit.start() - 60, 0):hit.end() + 20].replace("\n", " ")
            problems.append(f"'{hit.group(0)}' leaked into the page: ...{context}...")
    return problems


# --------------------------------------------------------------------------------------- main
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", required=True, help="Google Benchmark JSON of fastattn_bench")
    p.add_argument("--accuracy", required=True, help="accuracy.json of fastattn_accuracy")
    p.add_argument("--bench-openblas", help="the same benchmarks built with OpenBLAS as GEMM")
    p.add_argument("--out", required=True, help="the HTML page to write")
    p.add_argument("--markdown", help="also write the headline table as GitHub markdown here")
    p.add_argument("--check", action="store_true",
                   help="re-read the page and fail unless it is complete and clean")
    return p.parse_args(argv)


def config_int(config: dict, key: str, default: int) -> int:
    """An integer from accuracy.json's config, or the default."""
    value = finite(config.get(key))
    return int(value) if value else default


def main(argv: Optional[list[str]] = None) -> int:
    """Reads the inputs, writes the page (and markdown), optionally checks the page."""
    args = parse_args(argv)
    bench = parse_bench(load_json(args.bench, "benchmark"))
    acc = parse_accuracy(load_json(args.accuracy, "accuracy"))
    blas = parse_bench(load_json(args.bench_openblas, "OpenBLAS benchmark")) \
        if args.bench_openblas else None
    rep = Report(bench, acc, blas, n_head=config_int(acc.config, "N_timed", 4096),
                 n_default=config_int(acc.config, "N_default", 1024),
                 m_default=config_int(acc.config, "m_default", 256))
    page = render_page(rep)
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(page)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(render_markdown(rep))
    except OSError as e:
        print(f"report.py: cannot write: {e}", file=sys.stderr)
        return 1
    print(f"report.py: wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""))
    if args.check:
        methods = order_methods(forward_methods(bench) + acc.methods + forward_methods(blas))
        problems = check_page(args.out, methods, rep)
        for p in problems:
            print(f"report.py --check: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"report.py --check: {args.out} is complete ({len(methods)} methods, "
              f"{page.count('<svg')} SVG elements)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
