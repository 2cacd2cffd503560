"""What the numbers say: time sweeps, crossovers against Exact, Pareto fronts, the headline's
choice of method per regime, and which values fit a panel."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

from .data import BenchRun, ErrStat, Report
from .fmt import DASH, fmt_num, median
from .methods import BASELINE

# The headline configuration (the benchmarks' N sweep runs at these).
D_MAIN = 64
PREC_MAIN = "float"


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
        elif not run.meta.uses_m(method):
            out.setdefault(n, e.time_ms)
    return out


def forward_methods(run: Optional[BenchRun]) -> list[str]:
    """The methods with forward benchmarks."""
    return run.meta.order(k[0] for k in run.forward) if run else []


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


@dataclass
class HeadlinePick:
    """The headline's choice for one regime: the fastest approximation of softmax attention (at
    N_head) whose error (at N_default) is below the uniform baseline's; method None if none is."""
    regime: str
    method: Optional[str] = None
    time_ms: Optional[float] = None
    error: Optional[ErrStat] = None
    baseline: Optional[ErrStat] = None


def headline_picks(rep: Report) -> list[HeadlinePick]:
    """One pick per regime, in the sweep's regime order (non-causal, m = m_default)."""
    acc, picks = rep.acc, []
    for regime, _ in acc.regimes:
        base = acc.get(regime, BASELINE, 0, rep.n_default)
        best = HeadlinePick(regime)
        for method in forward_methods(rep.bench):
            err = acc.get(regime, method, rep.m_default, rep.n_default)
            t = forward_sweep(rep.bench, method, False, rep.m_default).get(rep.n_head)
            if (not rep.meta.is_approximation(method) or err is None or t is None or base is None
                    or err.target != "softmax" or err.mean >= base.mean):
                continue
            if best.time_ms is None or t < best.time_ms:
                best = HeadlinePick(regime, method, t, err, base)
        picks.append(best)
    return picks


def value_range(values: Iterable[Optional[float]], spread: float = 30.0) -> list[float]:
    """The positive values that fit one panel: those beyond `spread` times the median are
    outliers, drawn as ▲ at the top edge rather than squashing every other line."""
    vals = [v for v in values if v is not None and v > 0]
    mid = median(vals)
    return [v for v in vals if mid is None or v <= mid * spread]
