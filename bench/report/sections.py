"""The page's sections, one builder per section (Report -> HTML), and their order (SECTIONS at
the end: a new section is a builder plus one line there)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from . import figures
from .analysis import (D_MAIN, crossover, forward_methods, forward_sweep, headline_picks,
                       pareto_front)
from .data import BenchRun, Report, arg
from .fmt import DASH, esc, finite, fmt_n, fmt_num, fmt_ratio, fmt_time, ratio
from .methods import BASELINE, EXACT
from .tables import FLAG_TITLE, Cell, Table, error_cell, simple_table, table_html


def largest_n_cell(method: str, times: dict[int, float], exact: dict[int, float]) -> Cell:
    """Time at the method's largest benchmarked N, with the speedup if Exact ran there too."""
    if not times:
        return Cell()
    n_max = max(times)
    if method == EXACT:
        sub = f"N = {n_max}"
    elif n_max in exact:
        sub = f"N = {n_max}, {fmt_ratio(ratio(exact[n_max], times[n_max]))}"
    else:
        sub = f"N = {n_max}, no Exact"
    return Cell(fmt_time(times[n_max]), sub)


def headline_table(rep: Report) -> Table:
    """Per method: time and speedup at N_head and the largest N, crossover, errors per regime."""
    methods = rep.meta.order(forward_methods(rep.bench) + rep.acc.methods)
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
            exact = forward_sweep(rep.bench, EXACT, causal, rep.m_default)
            t = times.get(rep.n_head)
            if t is None and times:  # e.g. Exact-reference, run at one N only
                n_near = min(times, key=lambda n: abs(math.log(n / rep.n_head)))
                cells.append(Cell(DASH, f"N = {n_near}: {fmt_time(times[n_near])}"))
            elif method == EXACT:
                cells.append(Cell(fmt_time(t), "reference" if t else ""))
            else:
                speed = ratio(exact.get(rep.n_head), t)
                cells.append(Cell(fmt_time(t), f"{fmt_ratio(speed)} vs Exact" if speed else ""))
            if largest:
                cells.append(largest_n_cell(method, times, exact))
            cells.append(Cell(crossover(times, exact).text if rep.meta.is_approximation(method)
                              else DASH))
        for regime, _ in rep.acc.regimes:
            base = rep.acc.get(regime, BASELINE, 0, rep.n_default)
            cells.append(error_cell(rep.acc.get(regime, method, rep.m_default, rep.n_default),
                                    base, method, rep.meta))
        rows.append((method, cells))
    return Table(columns, rows, groups, "headline-table")


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
    shown = rep.meta.order(forward_methods(rep.bench) + rep.acc.methods)
    without_m = [m for m in shown if not rep.meta.uses_m(m) and m != BASELINE]
    if without_m:
        notes.append(f"{and_list(without_m)} do not use m.")
    if BASELINE in shown and rep.meta.info(BASELINE).label:
        notes.append(f"{BASELINE} ({rep.meta.info(BASELINE).label}).")
    return notes


def and_list(items: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def conclusion(rep: Report) -> str:
    """The headline's one-sentence conclusion (HTML), from the picks of analysis.headline_picks."""
    picks = headline_picks(rep)
    exact_t = forward_sweep(rep.bench, EXACT, False, rep.m_default).get(rep.n_head)
    wins, losses = [], []
    for p in picks:
        if p.method is None:
            losses.append(p.regime)
            continue
        speed = ratio(exact_t, p.time_ms)
        speed_text = (f"{fmt_ratio(speed)} {'faster than' if speed >= 1 else 'the speed of'} Exact"
                      if speed else f"{fmt_time(p.time_ms)}")
        wins.append(f"<b>{esc(p.method)}</b> on {esc(p.regime)} inputs ({speed_text}; error "
                    f"{fmt_num(p.error.mean)} vs {fmt_num(p.baseline.mean)} for ignoring the keys)")
    if not wins and not losses:
        return "No conclusion: the inputs hold no comparable timings and errors."
    if not wins:
        return ("No approximation of softmax attention beats the uniform baseline on any regime "
                f"(error at N = {rep.n_default}).")
    text = (f"At N = {rep.n_head} (float, non-causal, m = {rep.m_default}) the fastest "
            f"approximation of softmax attention whose error (at N = {rep.n_default}) beats the "
            "uniform baseline is " + "; ".join(wins))
    if losses:
        text += f"; on {' and '.join(esc(r) for r in losses)} inputs no approximation beats it"
    return text + "."


def section_headline(rep: Report) -> str:
    """Section 1."""
    notes = "".join(f"<li>{esc(n)}</li>" for n in footnotes(rep))
    return (f'<div class="scroll">{table_html(headline_table(rep))}</div>'
            f'<ul class="notes">{notes}</ul>'
            f'<p class="lead">{conclusion(rep)}</p>')


def section_methods(rep: Report) -> str:
    """What each method in the inputs is, from the metadata the benchmarks wrote."""
    roles = {"exact": "exact", "approximation": "approximation",
             "baseline": "baseline (reference line)"}
    rows = []
    for name in rep.meta.order(forward_methods(rep.bench) + rep.acc.methods):
        info = rep.meta.info(name)
        rows.append([name, roles.get(info.role, info.role), info.label or DASH,
                     DASH if info.role == "exact" else info.target,
                     ", ".join(info.params) or DASH, info.cost or DASH, info.spec or DASH])
    return (simple_table(["Method", "Role", "What it computes", "Error measured against",
                          "Parameters", "Flops per forward pass (model)", "Specification"],
                         rows, "kv")
            + '<p class="caption">N tokens, head dimension D, m features. The flop model is what '
            "the GFLOP/s figures count; the metadata comes from bench/method_info.hpp, written "
            "into both JSON files.</p>")


def section_time(rep: Report) -> str:
    """Section 2: forward time vs N, non-causal and causal, with crossovers against Exact."""
    methods = forward_methods(rep.bench)
    panels = []
    for causal in (False, True):
        exact = forward_sweep(rep.bench, EXACT, causal, rep.m_default)
        sweeps = {m: forward_sweep(rep.bench, m, causal, rep.m_default) for m in methods}
        sweeps = {m: s for m, s in sweeps.items() if s}
        if not sweeps:
            continue
        crossovers = {m: crossover(s, exact) for m, s in sweeps.items() if m != EXACT}
        title = (f"{'Causal' if causal else 'Non-causal'} forward (float, D = {D_MAIN}, "
                 f"m = {rep.m_default})")
        panels.append(figures.time_figure(rep.meta, title, sweeps, crossovers).svg)
    if not panels:
        return '<p class="missing">No forward benchmarks in this run.</p>'
    legend = figures.legend(rep.meta, methods, [("cross", "crosses Exact here")])
    return (legend + "".join(f'<div class="wide">{p}</div>' for p in panels)
            + '<p class="caption">Lower is faster. Exact is the thick black line; an open circle '
            "marks where a method's line crosses it (N interpolated log-log).</p>")


def regime_caption(rep: Report, regime: str, description: str, fig: figures.Figure,
                   shown: Iterable[str]) -> str:
    """The text under an error panel: the regime, off-scale values, target notes."""
    text = description.strip() or "no description"
    parts = [f"<b>{esc(regime)}</b>: {esc(text)}" + ("" if text.endswith(".") else ".")]
    if fig.offscale:
        parts.append("Off scale (↑): " + esc(", ".join(fig.offscale)) + ".")
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
            if ms and rep.meta.uses_m(method):
                series[method] = {m: acc.get(regime, method, m, n) for m in ms}
            elif acc.get(regime, method, 0, n):
                flat[method] = acc.get(regime, method, 0, n)
        if not series and not flat:
            continue
        fig = figures.error_figure(rep.meta, f"{regime} (N = {n}, non-causal)",
                                   "features m (log2 scale)", series, flat)
        panels.append(fig.svg + regime_caption(rep, regime, description, fig,
                                               list(series) + list(flat)))
    if not panels:
        return '<p class="missing">No accuracy results in this run.</p>'
    extras = [("dash", "independent of m / baseline"), ("bar", "min–max over seeds"),
              ("up", "off scale (value printed)")]
    m_meaning = rep.acc.config.get("m_meaning")
    meaning = f'<p class="caption">m = {esc(m_meaning)}.</p>' if m_meaning else ""
    return figures.legend(rep.meta, acc.methods, extras) + meaning + panels_html(panels)


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
        fig = figures.error_figure(rep.meta, f"{regime} (m = {m}, non-causal)",
                                   "sequence length N (tokens)", series, {})
        panels.append(fig.svg + regime_caption(rep, regime, description, fig, series))
    if not panels:
        return '<p class="missing">No accuracy results in this run.</p>'
    causal_rows = []
    for method in acc.methods:
        cells = [error_cell(acc.get(r, method, m, rep.n_default, True),
                            acc.get(r, BASELINE, 0, rep.n_default, True), method, rep.meta)
                 for r, _ in acc.regimes]
        if any(c.text != DASH for c in cells):
            causal_rows.append((method, cells))
    causal = ""
    if causal_rows:
        causal = (f"<h3>Causal, N = {rep.n_default}, m = {m}</h3>"
                  + table_html(Table(["Method"] + [r for r, _ in acc.regimes], causal_rows)))
    legend = figures.legend(rep.meta, acc.methods, [("bar", "min–max over seeds"),
                                                    ("up", "off scale (value printed)")])
    return legend + panels_html(panels) + causal


def section_pareto(rep: Report) -> str:
    """Section 5: error (accuracy.json) against time (bench.json) at N_timed, per regime."""
    acc, n = rep.acc, rep.n_head
    exact_t = forward_sweep(rep.bench, EXACT, False, rep.m_default).get(n)
    panels, missing = [], []
    for regime, description in acc.regimes:
        points = []
        for method in acc.methods:
            if not rep.meta.is_approximation(method):
                continue
            for m in acc.ms(regime, method, n):
                err = acc.get(regime, method, m, n)
                t = forward_sweep(rep.bench, method, False, m).get(n)
                if t is not None:
                    points.append(figures.ParetoPoint(t, err, method, m))
                elif method + (f" m={m}" if rep.meta.uses_m(method) else "") not in missing:
                    missing.append(method + (f" m={m}" if rep.meta.uses_m(method) else ""))
        base = acc.get(regime, BASELINE, 0, n)
        if not points:
            continue
        baseline = base.mean if base else None
        front = pareto_front([(p.time_ms, p.error.mean) for p in points
                              if p.error.target == "softmax"], baseline, exact_t)
        fig = figures.pareto_figure(rep.meta, f"{regime} (N = {n}, non-causal)", points, front,
                                    baseline, exact_t)
        caption = regime_caption(rep, regime, description, fig,
                                 dict.fromkeys(p.method for p in points))
        if not front:
            caption += '<p class="caption">No approximation beats the baseline here.</p>'
        panels.append(fig.svg + caption)
    if not panels:
        return '<p class="missing">No (time, error) pairs: accuracy and benchmarks do not ' \
               f'overlap at N = {n}.</p>'
    methods = [m for m in acc.methods if rep.meta.is_approximation(m)] + [EXACT, BASELINE]
    legend = figures.legend(rep.meta, methods, [("front", "Pareto front"),
                                                ("bar", "min–max over seeds")])
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
    methods = rep.meta.order(m for m, _ in run.decode)
    if contexts:
        rows = []
        for method in methods:
            row = [method]
            for c in contexts:
                t = run.decode.get((method, c))
                exact = run.decode.get((EXACT, c))
                row.append(fmt_time(t.time_ms if t else None))
                row.append("reference" if method == EXACT and t else fmt_ratio(
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
        rep.meta.order(m for m, *_ in run.multihead).index(k[0]), -(k[2] or 0)))
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
            entry = next((e for (m, p, c, nn, d, _), e in run.forward.items() if m == EXACT
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
        fast = forward_sweep(run, EXACT, False, rep.m_default, d or D_MAIN, prec).get(nn)
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
    for method in rep.meta.order(forward_methods(a) + forward_methods(b)):
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
                     key=lambda c: (rep.meta.order(k[0] for k in run.forward).index(c[0]),
                                    c[1] != "float", c[2], c[3] or 0, c[4] or 0))
    if configs:
        rows = []
        for method, prec, causal, d, m in configs:
            label = f"{method}, {prec}, {'causal' if causal else 'non-causal'}, D = {d}" + (
                f", m = {m}" if rep.meta.uses_m(method) else "")
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
fastattn_accuracy, then the report package (bench/report/, run by bench/report.py with a
Python that has matplotlib); <code>--markdown headline.md</code> also writes the headline table
for the README.</p>"""


@dataclass(frozen=True)
class Section:
    """One section of the page: its anchor id, heading and builder; whether --check requires a
    chart in it, and when it is shown (a section of an optional input only with that input)."""
    sid: str
    title: str
    build: Callable[[Report], str]
    has_chart: bool = False
    shown: Callable[[Report], bool] = lambda rep: True


# The page, in order. A new section is a builder above and one line here.
SECTIONS = [
    Section("headline", "Headline: speed and error at a glance", section_headline),
    Section("methods", "The methods", section_methods),
    Section("time", "Time vs N", section_time, has_chart=True),
    Section("err-m", "Error vs m", section_error_vs_m, has_chart=True),
    Section("err-n", "Error vs N", section_error_vs_n, has_chart=True),
    Section("pareto", "Error vs time (Pareto fronts)", section_pareto, has_chart=True),
    Section("decode", "Decoding and multi-head scaling", section_decode),
    Section("efficiency", "Kernel efficiency", section_efficiency),
    Section("openblas", "Eigen's GEMM vs OpenBLAS", section_openblas,
            shown=lambda rep: rep.blas is not None),
    Section("machine", "Machine and build", section_machine),
    Section("appendix", "Appendix: all measurements", section_appendix),
    Section("reproduce", "How to reproduce", section_reproduce),
]


def shown_sections(rep: Report) -> list[Section]:
    """The sections this report has (optional ones only with their input)."""
    return [sec for sec in SECTIONS if sec.shown(rep)]
