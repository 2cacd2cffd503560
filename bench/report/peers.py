"""The peers: peers.json of scripts/bench-peers.sh (schema: scripts/peers/README.md), fastattn's
Exact<float> timed next to ONNX Runtime and ggml on the same inputs, one thread. Reading it, and
the section "fastattn and other CPU attention implementations"."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from .data import InputError, Report, load_json
from .fmt import DASH, esc, finite, fmt_num, fmt_ratio, fmt_time
from .tables import Cell, Table, simple_table, table_html

SCHEMA = "fastattn-peers"
FASTATTN_ID = "fastattn.exact"


def load_peers(path: Optional[str], candidates: list[str]) -> Optional[dict]:
    """peers.json from `path` (which must exist), else from the first of `candidates` that
    exists (none: None, and the page has no peers section). A file that is not peers.json of a
    known schema version raises InputError naming it."""
    if path is None:
        path = next((c for c in candidates if os.path.isfile(c)), None)
        if path is None:
            return None
    data = load_json(path, "peers")
    if data.get("schema") != SCHEMA:
        raise InputError(f"{path}: schema is {data.get('schema')!r}, expected {SCHEMA!r} "
                         "(the output of scripts/bench-peers.sh)")
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise InputError(f"{path}: schema_version {version!r} is not a version this report reads")
    if not isinstance(data.get("implementations"), list) or not isinstance(data.get("results"),
                                                                            list):
        raise InputError(f"{path}: no implementations / results lists")
    data["_path"] = path
    return data


@dataclass
class PeerTime:
    """One (implementation, N, mask) result on the page's time basis."""
    status: str
    ms: Optional[float] = None
    pct: Optional[float] = None
    headline: bool = True
    reason: str = ""


def contended(peers: dict) -> bool:
    """True if the machine was busy during the run: then the page uses CPU time."""
    quality = peers.get("timing_quality") if isinstance(peers.get("timing_quality"), dict) else {}
    return bool(quality.get("contended"))


def peer_time(peers: dict, impl: str, n: int, causal: bool) -> Optional[PeerTime]:
    """The result of impl at (n, causal) on the page's basis (CPU time when contended)."""
    cpu = contended(peers)
    for r in peers["results"]:
        if not isinstance(r, dict) or r.get("impl") != impl or r.get("N") != n or \
                bool(r.get("causal")) != causal:
            continue
        status = str(r.get("status") or "error")
        if status != "ok":
            return PeerTime(status, reason=str(r.get("reason") or ""),
                            headline=bool(r.get("headline", True)))
        times = r.get("cpu_time_ms" if cpu else "time_ms")
        ms = finite(times.get("median")) if isinstance(times, dict) else None
        pct = finite(r.get("pct_of_peak_cpu_time" if cpu else "pct_of_peak"))
        return PeerTime(status, ms, pct, bool(r.get("headline", True)))
    return None


def implementations(peers: dict) -> list[dict]:
    """The implementations, fastattn first, in the file's order otherwise."""
    impls = [i for i in peers["implementations"] if isinstance(i, dict) and i.get("id")]
    return sorted(impls, key=lambda i: i.get("id") != FASTATTN_ID)


def sizes(peers: dict) -> list[int]:
    """The timed N, ascending."""
    return sorted({int(r["N"]) for r in peers["results"]
                   if isinstance(r, dict) and finite(r.get("N")) is not None})


def time_table(peers: dict) -> Table:
    """Per implementation: time and % of the FMA peak per (mask, N), and its time relative to
    fastattn's."""
    ns = sizes(peers)
    rows = []
    for impl in implementations(peers):
        cells = []
        for causal in (False, True):
            for n in ns:
                t = peer_time(peers, impl["id"], n, causal)
                if t is None:
                    cells.append(Cell(DASH, "not run"))
                    continue
                if t.status != "ok":
                    cells.append(Cell(t.status, t.reason[:80]))
                    continue
                ours = peer_time(peers, FASTATTN_ID, n, causal)
                rel = (t.ms / ours.ms) if ours and ours.ms and t.ms else None
                sub = [f"{fmt_num(t.pct, 2)} % peak" if t.pct is not None else ""]
                if impl["id"] != FASTATTN_ID and rel is not None:
                    sub.append(fmt_ratio(rel))
                mark = "" if t.headline else "\u00a0‡"
                cells.append(Cell(fmt_time(t.ms) + mark, " · ".join(s for s in sub if s)))
        rows.append((str(impl.get("name") or impl["id"]), cells))
    columns = ["Implementation"] + [f"N = {n}" for n in ns] * 2
    return Table(columns, rows, [("Non-causal", len(ns)), ("Causal", len(ns))], "peers-table")


def check_text(impl: dict) -> str:
    """The largest error of its checks against the float64 reference, and the tolerance."""
    check = impl.get("check") if isinstance(impl.get("check"), dict) else {}
    errors = [finite(c.get("max_abs_error")) for c in check.get("cases") or []
              if isinstance(c, dict)]
    errors = [e for e in errors if e is not None]
    if not errors:
        return DASH
    verdict = "passed" if check.get("passed") else "FAILED"
    return (f"{verdict}, max |err| {fmt_num(max(errors), 2)} "
            f"(tol. {fmt_num(finite(check.get('tolerance_max_abs')), 2)})")


def differences_table(peers: dict) -> str:
    """What each implementation computes, how it differs, and its accuracy check."""
    rows = []
    def plain(text: str) -> str:  # -inf as a symbol (a bare "inf" reads as a leaked number)
        return text.replace("-inf", "−∞")
    for impl in implementations(peers):
        computes = impl.get("computes") if isinstance(impl.get("computes"), dict) else {}
        what = " ".join(f"{mode}: {text}." if not str(text).endswith(".") else f"{mode}: {text}"
                        for mode, text in computes.items())
        rows.append([str(impl.get("name") or impl["id"]),
                     f"{impl.get('library', '')} {impl.get('version', '')}".strip() or DASH,
                     plain(what) or DASH, plain(str(impl.get("differences") or DASH)),
                     check_text(impl)])
    return simple_table(["Implementation", "Version", "What it computes",
                         "What differs when comparing", "Check vs float64"], rows, "kv")


def flash_probe_text(peers: dict) -> str:
    """ONNX Runtime's flash-path probe in one sentence."""
    probe = peers.get("ort_flash_path_probe")
    if not isinstance(probe, dict) or not isinstance(probe.get("cases"), list):
        return ""
    parts = []
    for c in probe["cases"]:
        if not isinstance(c, dict):
            continue
        mode = "causal" if c.get("causal") else "non-causal"
        taken = "takes" if c.get("flash_path_taken") else "does not take"
        parts.append(f"{c.get('impl')} {mode} {taken} its flash path (forcing it off: "
                     f"{fmt_ratio(finite(c.get('ratio_disabled_over_default')))} the CPU time)")
    return (f"ONNX Runtime's flash-path probe at N = {probe.get('N')}: " + "; ".join(parts) + "."
            if parts else "")


def setup_text(peers: dict) -> str:
    """The shapes, inputs, threads and machine of the run."""
    setup = peers.get("setup") if isinstance(peers.get("setup"), dict) else {}
    machine = peers.get("machine") if isinstance(peers.get("machine"), dict) else {}
    peak = peers.get("fma_peak") if isinstance(peers.get("fma_peak"), dict) else {}
    cpu = contended(peers)
    gflops = finite(peak.get("gflops_cpu_time" if cpu else "gflops"))
    load = machine.get("loadavg_start")
    load_text = ", ".join(fmt_num(finite(x)) for x in load) if isinstance(load, list) else DASH
    fastattn = (peers.get("software") or {}).get("fastattn") or {}
    return (f"B = {setup.get('B')}, H = {setup.get('H')}, D = {setup.get('D')}, "
            f"{setup.get('dtype')}, {setup.get('threads')} thread, q/k/v/out [B, N, H·D] "
            f"row-major, the same bytes for every implementation; "
            f"{machine.get('cpu_model') or 'unknown CPU'} ({machine.get('logical_cpus')} "
            f"logical CPUs), load average at the start {load_text}; FMA peak "
            f"{fmt_num(gflops)} GFLOP/s (float, one thread, {'CPU' if cpu else 'wall'} time); "
            f"fastattn {fastattn.get('version') or '?'} at commit "
            f"{fastattn.get('git') or '?'}; run {peers.get('created_utc') or DASH}.")


def section_peers(rep: Report) -> str:
    """fastattn's Exact next to ONNX Runtime and ggml (from peers.json)."""
    peers = rep.peers
    if peers is None:
        return ""
    from . import figures  # matplotlib, only when the section is drawn

    cpu = contended(peers)
    quality = peers.get("timing_quality") or {}
    basis = ("Times are CPU time per call (median) and % of the FMA peak measured by CPU time: "
             f"the machine was busy during the run (median CPU/wall {fmt_num(finite(quality.get('median_cpu_over_wall')), 2)}), "
             "so wall-clock times include waiting for a CPU (they are in peers.json)."
             if cpu else "Times are wall-clock time per call (median); % of the FMA peak measured "
             "in the same run.")
    bars = {}
    ns = sizes(peers)
    for impl in implementations(peers):
        for causal in (False, True):
            for n in ns:
                t = peer_time(peers, impl["id"], n, causal)
                if t is not None and t.status == "ok" and t.headline and t.pct is not None:
                    bars.setdefault(str(impl.get("name") or impl["id"]), {})[(causal, n)] = t.pct
    fig = figures.peers_figure(bars, ns, "% of the FMA peak (one thread)") if bars else ""
    probe = flash_probe_text(peers)
    return (f'<p class="caption">{esc(setup_text(peers))} {esc(basis)} Source: '
            f'<code>{esc(os.path.basename(peers.get("_path", "peers.json")))}</code> from '
            "<code>scripts/bench-peers.sh</code> (opt-in; it installs ONNX Runtime from npm and "
            "ggml's prebuilt libraries, see docs/benchmarks.md). Each implementation passed a "
            "check against a float64 reference before it was timed; runs were interleaved.</p>"
            f'<div class="scroll">{table_html(time_table(peers))}</div>'
            '<p class="caption">Below each time: % of the FMA peak, and the time relative to '
            "fastattn's in the same case (below 1×: faster than fastattn). ‡ measured, but not "
            "the implementation's headline mode (see below).</p>"
            + (f'<div class="wide">{fig}</div>' if fig else "")
            + "<h3>What each implementation computes</h3>"
            + f'<div class="scroll">{differences_table(peers)}</div>'
            + (f'<p class="caption">{esc(probe)}</p>' if probe else "")
            + '<p class="caption">The flop model is 4 B H N² D (causal: half), the same for '
            "every implementation; a causal kernel that computes whole masked tiles does more "
            "work than it is credited with.</p>")
