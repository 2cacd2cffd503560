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
    meta: Methods  # the methods of every input (data.merged_methods)

    @property
    def methods(self) -> list[str]:
        """Every method in the sweep, in display order."""
        return self.meta.order(k[1] for k in self.results)

    def get(self, regime: str, method: str, m: int, n: int, causal: bool = False
            ) -> Optional[ErrStat]:
        """The error at this point; m is ignored for methods that do not use features."""
        hit = self.results.get((regime, method, m, n, causal))
        if hit is None and not self.meta.uses_m(method):
            hit = self.results.get((regime, method, 0, n, causal))
        return hit

    def ms(self, regime: str, method: str, n: int, causal: bool = False) -> list[int]:
        """The feature counts swept for this method at N = n."""
        return sorted(k[2] for k in self.results
                      if k[0] == regime and k[1] == method and k[3] == n and k[4] == causal)

    def ns(self, regime: str, method: str, m: int) -> list[int]:
        """The sequence lengths swept for this method at feature count m (non-causal)."""
        m_key = m if self.meta.uses_m(method) else 0
        return sorted(k[3] for k in self.results
                      if k[0] == regime and k[1] == method and k[2] == m_key and not k[4])


def parse_accuracy(data: dict, meta: Methods) -> Accuracy:
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
    return Accuracy(build, config, regimes, results, targets, meta)


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
    failures: list[str] = field(default_factory=list)


def config_int(config: dict, key: str, default: int) -> int:
    """An integer from accuracy.json's config, or the default."""
    value = finite(config.get(key))
    return int(value) if value else default
