"""Small hand-made inputs in the shape fastattn_bench and fastattn_accuracy write."""
from __future__ import annotations

from typing import Optional

from report.data import Report, parse_accuracy, parse_bench
from report.methods import MethodInfo, Methods

METHODS = Methods([
    MethodInfo("Exact", role="exact", params=(), color="#000000"),
    MethodInfo("Fast", params=("m",), color="#0072B2", marker="square"),
    MethodInfo("Faster", params=("m",), color="#009E73", marker="triangle"),
    MethodInfo("Own", params=("m",), target="its own target", color="#E69F00"),
    MethodInfo("Window", params=("window",), color="#D55E00"),
    MethodInfo("uniform", role="baseline", params=(), color="#999999"),
])


def forward(method: str, n: int, ms: float, m: int = 256, causal: bool = False) -> dict:
    """One forward benchmark as Google Benchmark writes it (time in ms, counters)."""
    mode = "causal" if causal else "noncausal"
    return {"name": f"forward/{method}/float/{mode}/N:{n}/D:64/m:{m}", "run_type": "iteration",
            "real_time": ms, "time_unit": "ms", "label": method, "N": float(n), "D": 64.0,
            "m": float(m), "causal": float(causal), "float": 1.0}


def result(regime: str, method: str, mean: float, n: int = 1024, m: int = 256,
           target: str = "softmax", spread: float = 0.0) -> dict:
    """One accuracy result (mean error, min/max = mean -/+ spread)."""
    return {"regime": regime, "method": method, "m": m, "N": n, "causal": False,
            "target": target, "rel_error": {"mean": mean, "std": spread, "min": mean - spread,
                                            "max": mean + spread}}


def report(benchmarks: list[dict], results: list[dict], regimes: list[str],
           meta: Optional[Methods] = None, n_head: int = 4096) -> Report:
    """A Report over the given benchmarks and accuracy results (N_default 1024, m 256)."""
    meta = meta or METHODS
    bench = parse_bench({"context": {}, "benchmarks": benchmarks}, meta)
    acc = parse_accuracy({"regimes": [{"name": r} for r in regimes], "results": results}, meta)
    return Report(bench, acc, None, meta, n_head=n_head, n_default=1024, m_default=256)
