"""What the numbers say: time sweeps, crossovers against Exact, Pareto fronts, the headline's
choice of method per regime, and which values fit a panel."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional

from .data import BenchRun, ErrStat, Report
from .fmt import DASH, fmt_num, fmt_ratio, median
from .methods import BASELINE, EXACT

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
    """The headline's choice for one regime; method None if no approximation qualifies.

    With timings at the regime's N (synthetic regimes): the fastest approximation of softmax
    attention at N_head (non-causal, headline setting) whose error at N_default is below the
    uniform baseline's. Without (real attention: 128 tokens, no timings): the most accurate
    approximation among the settings that compute at most the regime's default budget of keys
    exactly or use at most that many features. Next to it: uniform, the oracle top-k at the
    pick's budget, and EVA's window alone at the pick's window."""
    regime: str
    by_time: bool = True  # chosen by time (else by error within a budget)
    budget: int = 0  # the budget limit of a by-error pick
    method: Optional[str] = None
    time_ms: Optional[float] = None
    error: Optional[ErrStat] = None
    baseline: Optional[ErrStat] = None
    oracle: Optional[ErrStat] = None
    oracle_k: int = 0  # the oracle's k (the pick's budget)
    window: Optional[ErrStat] = None
    flops_share: Optional[float] = None  # model flops / exact attention's (by-error picks)


def oracle_at(rep: Report, regime: str, k: int, n: int, causal: bool = False
              ) -> Optional[ErrStat]:
    """The oracle top-k's error at k; k at or above the N keys is exact attention (error 0)."""
    oracle = rep.meta.reference("k")
    if oracle is None or k <= 0:
        return None
    if k >= n:
        return ErrStat(0.0, 0.0, 0.0, 0.0, "softmax", setting=f"k = {k}", budget=k)
    return rep.acc.get(regime, oracle, k, n, causal)


def with_references(rep: Report, pick: HeadlinePick, n: int) -> HeadlinePick:
    """The pick with uniform, the oracle at its budget and (EVA) the window alone beside it."""
    acc = rep.acc
    pick.baseline = acc.at_default(pick.regime, BASELINE, n)
    if pick.method is not None and pick.error is not None:
        pick.oracle_k = pick.error.budget
        pick.oracle = oracle_at(rep, pick.regime, pick.oracle_k, n)
        window = rep.meta.reference("window")
        if rep.meta.param(pick.method) == "window" and window:
            pick.window = acc.get(pick.regime, window, pick.error.budget, n)
    return pick


def pick_by_time(rep: Report, regime: str) -> HeadlinePick:
    """The fastest approximation at N_head whose error at N_default beats uniform."""
    acc = rep.acc
    base = acc.at_default(regime, BASELINE, rep.n_default)
    best = HeadlinePick(regime)
    for method in forward_methods(rep.bench):
        err = acc.at_default(regime, method, rep.n_default)
        t = forward_sweep(rep.bench, method, False, rep.m_default).get(rep.n_head)
        if (not rep.meta.is_approximation(method) or err is None or t is None or base is None
                or err.target != "softmax" or err.value >= base.value):
            continue
        if best.time_ms is None or t < best.time_ms:
            best = HeadlinePick(regime, True, 0, method, t, err)
    return with_references(rep, best, rep.n_default)


def pick_by_error(rep: Report, regime: str) -> HeadlinePick:
    """The most accurate approximation within the regime's default budget (at its own N); it
    must beat uniform to be named."""
    acc = rep.acc
    reg = acc.regime(regime)
    n = acc.n_of(regime)
    limit = reg.defaults.get("k") or min(reg.defaults.values(), default=0)
    base = acc.at_default(regime, BASELINE, n)
    best = HeadlinePick(regime, False, limit)
    for method in acc.methods:
        if not rep.meta.is_approximation(method):
            continue
        for b in acc.budgets(regime, method, n):
            err = acc.get(regime, method, b, n)
            if err is None or err.target != "softmax" or (limit and b > limit) or \
                    base is None or err.value >= base.value:
                continue
            if best.error is None or err.value < best.error.value:
                best = HeadlinePick(regime, False, limit, method, None, err)
    if best.error is not None and best.error.flops and reg.exact_flops:
        best.flops_share = best.error.flops / reg.exact_flops
    return with_references(rep, best, n)


def headline_picks(rep: Report) -> list[HeadlinePick]:
    """One pick per regime, in the sweep's regime order (non-causal): by time where the
    benchmarks timed the regime's N, by error within a budget otherwise."""
    timed = bool(forward_sweep(rep.bench, EXACT, False, rep.m_default).get(rep.n_head))
    return [pick_by_time(rep, r.name) if timed and not r.real and
            (r.n or rep.n_default) == rep.n_default else pick_by_error(rep, r.name)
            for r in rep.acc.regimes]


def param_word(param: str) -> str:
    """How the findings name a parameter's values."""
    return {"m": "m", "window": "W", "k": "k"}.get(param, param)


def range_text(param: str, values: list[int]) -> str:
    """"m = 16–256", "W = 32"."""
    word = param_word(param)
    if not values:
        return ""
    if len(values) == 1:
        return f"{word} = {values[0]}"
    return f"{word} = {values[0]}–{values[-1]}"


def and_list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if not items:
        return ""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def regime_findings(rep: Report, regime: str) -> list[str]:
    """What a user should take from one regime, in sentences (plain text, computed from the
    results at the regime's own N, non-causal): which approximations beat ignoring the keys and
    at which settings, how the best one compares with selection alone (the oracle top-k), whether
    EVA's chunk terms improve on its window alone, and how concentrated the attention is."""
    acc, meta = rep.acc, rep.meta
    n = acc.n_of(regime)
    base = acc.at_default(regime, BASELINE, n)
    if base is None:
        return [f"No uniform baseline at N = {n}: nothing to compare with."]
    out = [f"Ignoring the keys (uniform) gives an error of {fmt_num(base.value)}."]
    always, never, partly, own = [], {}, [], []
    for method in acc.methods:
        if not meta.is_approximation(method):
            continue
        budgets = acc.budgets(regime, method, n)
        errs = {b: acc.get(regime, method, b, n) for b in budgets}
        errs = {b: e for b, e in errs.items() if e is not None}
        if not errs:
            continue
        if any(e.target != "softmax" for e in errs.values()):
            own.append(method)
            continue
        param = meta.param(method)
        wins = [b for b, e in sorted(errs.items()) if e.value < base.value]
        if len(wins) == len(errs):
            always.append(method)
        elif not wins:
            never.setdefault(param, []).append((method, sorted(errs)))
        else:
            upper = len(wins) > 1 and sorted(errs)[-len(wins):] == wins
            where = (f"{param_word(param)} ≥ {wins[0]}" if upper
                     else f"{param_word(param)} = " + ", ".join(map(str, wins)))
            partly.append((method, where))
    worse = [m for group in never.values() for m, _ in group]
    if not always and not partly:
        out.append("No approximation beats it at any setting tried.")
    elif len(always) + len(partly) == 1 and worse:
        out.append(f"Only {always[0]} beats it." if always else
                   f"Only {partly[0][0]} beats it, and only at {partly[0][1]}.")
    else:
        parts = []
        if always:
            parts.append(f"{and_list(always)} beat{'s' if len(always) == 1 else ''} it at every "
                         "setting tried")
        parts += [f"{m} beats it only at {where}" for m, where in partly]
        out.append("; ".join(parts) + ".")
    for param, group in never.items():
        names = [m for m, _ in group]
        values = sorted({b for _, bs in group for b in bs})
        verb = "is" if len(names) == 1 else "are"
        out.append(f"{and_list(names)} {verb} worse than uniform at every {param_word(param)} "
                   f"tried ({range_text(param, values)}).")
    for method in own:
        out.append(f"{method} is measured against its own target here (not comparable).")

    pick = next((p for p in headline_picks(rep) if p.regime == regime), None)
    if pick and pick.method and pick.error and pick.oracle is not None:
        k = pick.oracle_k
        setting = f" ({pick.error.setting})" if pick.error.setting else ""
        lead = (f"The fastest that beats uniform at N = {rep.n_head} is {pick.method}{setting}"
                if pick.by_time else
                f"The most accurate within a budget of {pick.budget} keys or features per query "
                f"is {pick.method}{setting}")
        if pick.oracle.value == 0:
            out.append(f"{lead}, at {fmt_num(pick.error.value)}; with {k} ≥ N keys selection "
                       "alone would be exact.")
        elif pick.error.value > pick.oracle.value:
            out.append(f"{lead}, at {fmt_num(pick.error.value)}: "
                       f"{fmt_ratio(pick.error.value / pick.oracle.value)} the error of "
                       f"selecting the best {k} keys alone (oracle top-{k}: "
                       f"{fmt_num(pick.oracle.value)}), so a better choice of keys would pay.")
        else:
            out.append(f"{lead}, at {fmt_num(pick.error.value)}: below selecting the best {k} "
                       f"keys alone (oracle top-{k}: {fmt_num(pick.oracle.value)}), so it "
                       "uses information that selection discards.")
    window = meta.reference("window")
    for method in acc.methods:
        if not (meta.is_approximation(method) and meta.param(method) == "window" and window):
            continue
        pairs = [(b, acc.get(regime, method, b, n), acc.get(regime, window, b, n))
                 for b in acc.budgets(regime, method, n)]
        pairs = [(b, e, w) for b, e, w in pairs if e is not None and w is not None]
        if not pairs:
            continue
        better = [b for b, e, w in pairs if e.value < w.value]
        b0, e0, w0 = next(((b, e, w) for b, e, w in pairs if b == acc.default(regime, method)),
                          pairs[0])
        example = f"{fmt_num(e0.value)} vs {fmt_num(w0.value)} at W = {b0}"
        if len(better) == len(pairs):
            out.append(f"{method}'s chunk terms improve on its window alone at every W ({example}).")
        elif not better:
            out.append(f"{method}'s chunk terms make it worse than its window alone at every W "
                       f"({example}).")
        else:
            out.append(f"{method} improves on its window alone only at W = "
                       f"{', '.join(map(str, better))} ({example}).")
    oracle = meta.reference("k")
    ks = acc.budgets(regime, oracle, n) if oracle else []
    if ks:
        small = acc.get(regime, oracle, ks[0], n)
        if small is not None and small.value >= base.value:
            out.append(f"Keeping only each query's {ks[0]} largest logits is worse than ignoring "
                       f"the keys ({fmt_num(small.value)}): the attention is spread over many "
                       "keys.")
        elif small is not None and small.value < 0.1 * base.value:
            out.append(f"A few keys carry most of the weight: each query's {ks[0]} largest "
                       f"logits alone give {fmt_num(small.value)}.")
    return out


def value_range(values: Iterable[Optional[float]], spread: float = 30.0) -> list[float]:
    """The positive values that fit one panel: those beyond `spread` times the median are
    outliers, drawn as ▲ at the top edge rather than squashing every other line."""
    vals = [v for v in values if v is not None and v > 0]
    mid = median(vals)
    return [v for v in vals if mid is None or v <= mid * spread]
