"""Reading the inputs: Google Benchmark JSON (fastattn_bench) and the accuracy sweep
(fastattn_accuracy), into the structures the analysis and the sections use."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

from .fmt import finite, median
from .methods import ROLES, MethodInfo, Methods

TIME_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
GB_KEYS = {"name", "run_name", "run_type", "family_index", "per_family_instance_index",
           "repetitions", "repetition_index", "threads", "iterations", "real_time", "cpu_time",
           "time_unit", "label", "aggregate_name", "aggregate_unit", "error_occurred",
           "error_message"}


class InputError(ValueError):
    """An input the report cannot use (unreadable, not the expected JSON); the message says which
    file and why."""


def load_json(path: str, what: str) -> dict:
    """Parses a JSON object from path."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the {what} file {path}: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"the {what} file {path} is not a JSON object")
    return data


def input_methods(data: dict, source: str = "input") -> list[MethodInfo]:
    """The method metadata (bench/method_info.hpp) an input carries: accuracy.json's "methods",
    or bench.json's context key "fastattn_methods" (the same array as a string: Google
    Benchmark's context holds strings only). [] if it carries none; `source` names the input in
    messages."""
    raw = data.get("methods")
    context = data.get("context")
    if raw is None and isinstance(context, dict) and "fastattn_methods" in context:
        try:
            raw = json.loads(context["fastattn_methods"])
        except (TypeError, ValueError) as e:
            raise InputError(f"{source}: context.fastattn_methods is not a JSON array: {e}") from e
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InputError(f"{source}: the method metadata is not a list")
    infos = []
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise InputError(f"{source}: a method without a name in the metadata: {item!r}")
        role, params = item.get("role", "approximation"), item.get("params") or []
        if role not in ROLES:
            raise InputError(f"{source}: method {name}: role {role!r} is not one of {ROLES}")
        if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
            raise InputError(f"{source}: method {name}: params {params!r} is not a list of names")
        infos.append(MethodInfo(name, label=str(item.get("label") or ""), role=role,
                                target=str(item.get("target") or "softmax"), params=tuple(params),
                                cost=str(item.get("cost") or ""),
                                color=str(item.get("color") or "#777777"),
                                marker=str(item.get("marker") or "circle"),
                                spec=str(item.get("spec") or "")))
    return infos


def merged_methods(inputs: dict[str, Optional[dict]]) -> Methods:
    """One registry over the inputs, by file name (a method described twice: the first
    description wins; None: an input not given)."""
    infos = [info for source, data in inputs.items() if data is not None
             for info in input_methods(data, source)]
    if not infos:
        raise InputError("no input carries the method metadata (bench.json: context key "
                         "fastattn_methods; accuracy.json: methods). They were written by an "
                         "older fastattn_bench / fastattn_accuracy: run them again (the report "
                         "target does).")
    return Methods(infos)


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
    meta: Methods  # the methods of every input (data.merged_methods)
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


def parse_bench(data: dict, meta: Methods) -> BenchRun:
    """Sorts the benchmarks of a run into the families the report shows."""
    run = BenchRun(context=data.get("context") if isinstance(data.get("context"), dict) else {},
                   meta=meta)
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
    """Relative Frobenius error of one (regime, method, setting, N, causal) point: its value (the
    mean over seeds on synthetic inputs, the error pooled over every valid row of every
    (sequence, head) on real attention), its spread (lo-hi: min-max over seeds, or the 10th-90th
    percentile over (sequence, head)), and what it was measured against."""
    value: float
    std: Optional[float]
    lo: Optional[float]
    hi: Optional[float]
    target: str
    statistic: str = "mean"  # "mean" (over seeds) or "pooled"
    setting: str = ""  # "m = 64", "W = 32, 4 chunks", "k = 32"; "" without parameters
    budget: int = 0  # features m, window W or oracle k; 0 without parameters
    flops: Optional[float] = None  # model flops of one forward pass of one head


@dataclass
class Regime:
    """An input regime of the accuracy sweep: synthetic (seeded random inputs) or real attention
    (a trained model's per-head q, k, v); the N of its budget sweep, and the setting of its
    headline cells."""
    name: str
    description: str = ""
    kind: str = "synthetic"
    n: Optional[int] = None  # the N of its budget sweep (None: the sweep's N_default)
    d: Optional[int] = None
    samples: str = ""  # what the spread is over ("4 seeds", "20 sequences × 4 heads")
    spread: str = "min–max over seeds"
    defaults: dict[str, int] = field(default_factory=dict)  # param -> value ("m", "window", "k")
    exact_flops: Optional[float] = None
    source: str = ""

    @property
    def real(self) -> bool:
        """True for real attention."""
        return self.kind == "real"


@dataclass
class Accuracy:
    """The accuracy sweep."""
    build: dict
    config: dict
    regimes: list[Regime]
    results: dict[tuple, ErrStat]  # (regime, method, budget, N, causal)
    meta: Methods  # the methods of every input (data.merged_methods)

    @property
    def methods(self) -> list[str]:
        """Every method in the sweep, in display order."""
        return self.meta.order(k[1] for k in self.results)

    def regime(self, name: str) -> Regime:
        """The regime called name (a bare one if the sweep did not describe it)."""
        return next((r for r in self.regimes if r.name == name), Regime(name))

    def n_of(self, regime: str) -> int:
        """The N of a regime's budget sweep."""
        return self.regime(regime).n or config_int(self.config, "N_default", 1024)

    def default(self, regime: str, method: str) -> int:
        """The budget of a method's headline setting in a regime (its first parameter at the
        regime's default; 0 without parameters)."""
        param = self.meta.param(method)
        if not param:
            return 0
        defaults = self.regime(regime).defaults
        if param in defaults:
            return int(defaults[param])
        # Sweeps without per-regime defaults: the config's, else the sweep's documented ones
        # (m = 256, EVA's window 64; the oracle at the window's k).
        window = config_int(self.config, "window_default", 64)
        return {"m": config_int(self.config, "m_default", 256), "window": window,
                "k": window}.get(param, 0)

    def get(self, regime: str, method: str, budget: int, n: int, causal: bool = False
            ) -> Optional[ErrStat]:
        """The error at this point; a method without parameters matches any budget."""
        hit = self.results.get((regime, method, budget, n, causal))
        if hit is None and not self.meta.param(method):
            hit = self.results.get((regime, method, 0, n, causal))
        return hit

    def at_default(self, regime: str, method: str, n: Optional[int] = None,
                   causal: bool = False) -> Optional[ErrStat]:
        """The error at the method's headline setting in this regime (N: the regime's own)."""
        n = self.n_of(regime) if n is None else n
        return self.get(regime, method, self.default(regime, method), n, causal) or \
            self.results.get((regime, method, 0, n, causal))  # older sweeps: one setting, 0

    def budgets(self, regime: str, method: str, n: int, causal: bool = False) -> list[int]:
        """The budgets (m, W or k) swept for this method at N = n."""
        return sorted(k[2] for k in self.results
                      if k[0] == regime and k[1] == method and k[3] == n and k[4] == causal)

    def ns(self, regime: str, method: str) -> list[int]:
        """The sequence lengths swept for this method at its headline setting (non-causal)."""
        budget = self.default(regime, method)
        return sorted(k[3] for k in self.results
                      if k[0] == regime and k[1] == method and not k[4]
                      and (k[2] == budget or (k[2] == 0 and not self.meta.param(method))))

    def other_targets(self, method: str) -> dict[str, list[str]]:
        """The targets other than softmax this method's errors are measured against, with the
        regimes where they are."""
        out: dict[str, list[str]] = {}
        for (regime, meth, *_), err in self.results.items():
            if meth == method and err.target != "softmax" and regime not in out.get(err.target, []):
                out.setdefault(err.target, []).append(regime)
        return out


def parse_regime(g: dict) -> Regime:
    """One entry of accuracy.json's "regimes"."""
    defaults = g.get("defaults") if isinstance(g.get("defaults"), dict) else {}
    n, d = finite(g.get("N")), finite(g.get("D"))
    kind = str(g.get("kind") or "synthetic")
    spread = str(g.get("spread") or ("10th–90th percentile over (sequence, head)" if
                                     kind == "real" else "min–max over seeds"))
    return Regime(str(g.get("name")), str(g.get("description") or ""), kind,
                  int(n) if n else None, int(d) if d else None, str(g.get("samples") or ""),
                  spread.replace("-", "–") if "percentile" in spread or "min-max" in spread
                  else spread,
                  {str(k): int(v) for k, v in defaults.items() if finite(v) is not None},
                  finite(g.get("exact_flops")), str(g.get("source") or ""))


def parse_accuracy(data: dict, meta: Methods) -> Accuracy:
    """Reads accuracy.json (schema fastattn-accuracy-2, or -1 where every method had one setting
    and the budget was m); results without a finite error are skipped."""
    results: dict[tuple, ErrStat] = {}
    for r in data.get("results") or []:
        if not isinstance(r, dict):
            continue
        err = r.get("rel_error") if isinstance(r.get("rel_error"), dict) else {}
        value = finite(err.get("value", err.get("mean")))
        n = finite(r.get("N"))
        budget = finite(r.get("budget", r.get("m")))
        if value is None or n is None or budget is None or not r.get("method"):
            continue
        statistic = str(err.get("statistic") or "mean")
        pooled = statistic == "pooled"
        key = (str(r.get("regime")), str(r["method"]), int(budget), int(n), bool(r.get("causal")))
        results[key] = ErrStat(value, finite(err.get("std")),
                               finite(err.get("p10" if pooled else "min")),
                               finite(err.get("p90" if pooled else "max")),
                               str(r.get("target") or "softmax"), statistic,
                               str(r.get("setting") or ""), int(budget),
                               finite(r.get("model_flops")))
    regimes = [parse_regime(g) for g in data.get("regimes") or []
               if isinstance(g, dict) and g.get("name")]
    known = {g.name for g in regimes}
    regimes += [Regime(name) for name in sorted({k[0] for k in results} - known)]
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    build = data.get("build") if isinstance(data.get("build"), dict) else {}
    return Accuracy(build, config, regimes, results, meta)


@dataclass
class Report:
    """Everything the sections need."""
    bench: BenchRun
    acc: Accuracy
    blas: Optional[BenchRun]
    meta: Methods  # every input's methods (the page's colours and order)
    n_head: int  # the headline N (the accuracy sweep's N_timed)
    n_default: int  # the N of the headline errors
    m_default: int
    peers: Optional[dict] = None  # peers.json of scripts/bench-peers.sh, if given
    failures: list[str] = field(default_factory=list)


def config_int(config: dict, key: str, default: int) -> int:
    """An integer from accuracy.json's config, or the default."""
    value = finite(config.get(key))
    return int(value) if value else default
