"""Small hand-made inputs in the shape fastattn_bench and fastattn_accuracy write."""
from __future__ import annotations

from typing import Optional, Union

from report.data import Report, parse_accuracy, parse_bench
from report.methods import MethodInfo, Methods

METHODS = Methods([
    MethodInfo("Exact", role="exact", params=(), color="#000000"),
    MethodInfo("Fast", params=("m",), color="#0072B2", marker="square"),
    MethodInfo("Faster", params=("m",), color="#009E73", marker="triangle"),
    MethodInfo("Own", params=("m",), target="its own target", color="#E69F00"),
    MethodInfo("Window", params=("window",), color="#D55E00"),
    MethodInfo("oracle top-k", role="baseline", params=("k",), color="#332288"),
    MethodInfo("window only", role="baseline", params=("window",), color="#882255"),
    MethodInfo("uniform", role="baseline", params=(), color="#999999"),
])


def forward(method: str, n: int, ms: float, m: int = 256, causal: bool = False) -> dict:
    """One forward benchmark as Google Benchmark writes it (time in ms, counters)."""
    mode = "causal" if causal else "noncausal"
    return {"name": f"forward/{method}/float/{mode}/N:{n}/D:64/m:{m}", "run_type": "iteration",
            "real_time": ms, "time_unit": "ms", "label": method, "N": float(n), "D": 64.0,
            "m": float(m), "causal": float(causal), "float": 1.0}


def result(regime: str, method: str, value: float, n: int = 1024, m: int = 256,
           target: str = "softmax", spread: float = 0.0, pooled: bool = False,
           flops: Optional[float] = None, causal: bool = False) -> dict:
    """One accuracy result at budget m (features, window or k; 0 for a method without a
    parameter). Synthetic: mean over seeds with min/max = value -/+ spread; pooled: the pooled
    error with 10th/90th percentiles value -/+ spread."""
    err = {"value": value, "statistic": "pooled" if pooled else "mean", "mean": value,
           "std": spread, "min": value - spread, "max": value + spread,
           "p10": value - spread, "p90": value + spread, "median": value}
    out = {"regime": regime, "method": method, "budget": m, "m": m, "N": n, "causal": causal,
           "target": target, "setting": f"x = {m}" if m else "", "rel_error": err}
    if flops is not None:
        out["model_flops"] = flops
    return out


def regime(name: str, real: bool = False, n: Optional[int] = None,
           defaults: Optional[dict] = None, exact_flops: Optional[float] = None) -> dict:
    """One entry of accuracy.json's regimes."""
    out = {"name": name, "kind": "real" if real else "synthetic",
           "samples": "8 sequences × 2 heads" if real else "4 seeds",
           "spread": "10th-90th percentile over (sequence, head)" if real else "min-max over seeds"}
    if n is not None:
        out["N"] = n
    if defaults is not None:
        out["defaults"] = defaults
    if exact_flops is not None:
        out["exact_flops"] = exact_flops
    return out


def report(benchmarks: list[dict], results: list[dict], regimes: list[Union[str, dict]],
           meta: Optional[Methods] = None, n_head: int = 4096,
           peers: Optional[dict] = None) -> Report:
    """A Report over the given benchmarks and accuracy results (N_default 1024, m 256); regimes
    by name (synthetic, no defaults) or as regime() entries."""
    meta = meta or METHODS
    bench = parse_bench({"context": {}, "benchmarks": benchmarks}, meta)
    acc = parse_accuracy({"regimes": [r if isinstance(r, dict) else {"name": r}
                                      for r in regimes], "results": results}, meta)
    return Report(bench, acc, None, meta, n_head=n_head, n_default=1024, m_default=256,
                  peers=peers)
