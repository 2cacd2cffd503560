"""The page's sections, one builder per section (Report -> HTML), and their order (SECTIONS at
the end: a new section is a builder plus one line there)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from . import figures
from .analysis import (D_MAIN, and_list, crossover, forward_methods, forward_sweep,
                       headline_picks, param_word, pareto_front, regime_findings)
from .data import BenchRun, Report, arg
from .fmt import DASH, esc, finite, fmt_n, fmt_num, fmt_ratio, fmt_time, ratio
from .methods import BASELINE, EXACT
from .peers import section_peers
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
    """Per method: time and speedup at N_head and the largest N, crossover, errors per regime (at
    the method's headline setting in that regime)."""
    methods = rep.meta.order(forward_methods(rep.bench) + rep.acc.methods)
    largest = any(max(forward_sweep(rep.bench, m, c, rep.m_default), default=0) > rep.n_head
                  for m in methods for c in (False, True))
    time_cols = [f"N = {rep.n_head}"] + (["largest N"] if largest else []) + ["faster than Exact"]
    columns = ["Method"] + time_cols * 2 + [r.name for r in rep.acc.regimes]
    groups = [(f"Non-causal time (float, D = {D_MAIN}, m = {rep.m_default})", len(time_cols)),
              ("Causal time", len(time_cols)),
              ("Relative error, non-causal, at each regime's headline setting (notes below)",
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
        for regime in rep.acc.regimes:
            n = rep.acc.n_of(regime.name)
            base = rep.acc.at_default(regime.name, BASELINE, n)
            err = rep.acc.at_default(regime.name, method, n)
            # The reference lines' settings differ between regimes: say which.
            cells.append(error_cell(err, base, method, rep.meta,
                                    show_setting=rep.meta.info(method).role == "baseline"))
        rows.append((method, cells))
    return Table(columns, rows, groups, "headline-table")


def regime_settings_note(rep: Report) -> list[str]:
    """One note per group of regimes with the same N and headline setting."""
    groups: dict[str, list[str]] = {}
    for r in rep.acc.regimes:
        n = rep.acc.n_of(r.name)
        shown = ", ".join(f"{param_word(p)} = {v}" for p, v in r.defaults.items())
        if not shown:
            shown = f"m = {rep.m_default}"
        stat = ("pooled error over every valid query row [10th–90th percentile over "
                f"(sequence, head)], {r.samples}" if r.real else
                f"mean ± std over {r.samples or 'seeds'}")
        size = f"N ≤ {n} tokens" if r.real else f"N = {n}"
        groups.setdefault(f"{size}, {shown}; {stat}", []).append(r.name)
    return [f"{and_list(names)}: {text}." for text, names in groups.items()]


def footnotes(rep: Report) -> list[str]:
    """The explanations under the headline table."""
    notes = [f"✗ shaded: {FLAG_TITLE}.",
             "“faster than Exact”: the N above which the method is faster, interpolated "
             "log-log between the benchmarked N."]
    notes += ["Errors: " + n for n in regime_settings_note(rep)]
    for method in rep.acc.methods:
        for target, regimes in rep.acc.other_targets(method).items():
            notes.append(f"† {method}'s error is measured against {target} on "
                         f"{and_list(regimes)}, not against softmax attention like the others: "
                         "not directly comparable (the flag still compares it with the softmax "
                         "baseline).")
    shown = rep.meta.order(forward_methods(rep.bench) + rep.acc.methods)
    without_m = [m for m in shown if not rep.meta.uses_m(m) and m != BASELINE
                 and rep.meta.info(m).role != "baseline"]
    if without_m:
        notes.append(f"{and_list(without_m)} do not use m.")
    for name in rep.meta.baselines():
        if name in shown and rep.meta.info(name).label:
            notes.append(f"{name}: {rep.meta.info(name).label}.")
    return notes


def pick_text(rep: Report, p) -> str:
    """One regime's pick in words (HTML), for the conclusion."""
    refs = [f"{fmt_num(p.baseline.value)} for ignoring the keys"] if p.baseline else []
    if p.oracle is not None:
        refs.append(f"{fmt_num(p.oracle.value)} for the oracle top-{p.oracle_k}")
    setting = f" ({esc(p.error.setting)})" if p.error.setting else ""
    if p.by_time:
        exact_t = forward_sweep(rep.bench, EXACT, False, rep.m_default).get(rep.n_head)
        speed = ratio(exact_t, p.time_ms)
        cost = (f"{fmt_ratio(speed)} {'faster than' if speed >= 1 else 'the speed of'} Exact"
                if speed else fmt_time(p.time_ms))
    else:
        cost = (f"{fmt_num(100 * p.flops_share, 2)} % of exact attention's flops"
                if p.flops_share else f"≤ {p.budget} keys or features")
    return (f"<b>{esc(p.method)}</b>{setting} on {esc(p.regime)} ({cost}; error "
            f"{fmt_num(p.error.value)} vs {', '.join(refs)})")


def conclusion(rep: Report) -> str:
    """The headline's conclusion (HTML), from the picks of analysis.headline_picks."""
    picks = headline_picks(rep)
    if not picks:
        return "No conclusion: the inputs hold no comparable timings and errors."
    out = []
    timed = [p for p in picks if p.by_time]
    budget = [p for p in picks if not p.by_time]
    if timed:
        wins = [pick_text(rep, p) for p in timed if p.method]
        losses = [p.regime for p in timed if not p.method]
        if wins:
            text = (f"At N = {rep.n_head} (float, non-causal, m = {rep.m_default}) the fastest "
                    f"approximation of softmax attention whose error (at N = {rep.n_default}) "
                    "beats the uniform baseline is " + "; ".join(wins))
            if losses:
                text += f"; on {and_list([esc(r) for r in losses])} no approximation beats it"
            out.append(text + ".")
        else:
            out.append("No approximation of softmax attention beats the uniform baseline on "
                       f"{and_list([esc(p.regime) for p in timed])} (error at N = "
                       f"{rep.n_default}).")
    if budget:
        limits = sorted({p.budget for p in budget})
        wins = [pick_text(rep, p) for p in budget if p.method]
        losses = [p.regime for p in budget if not p.method]
        lead = (f"With at most {'/'.join(map(str, limits))} keys computed exactly or features "
                "per query, the most accurate approximation that beats ignoring the keys is ")
        if wins:
            text = lead + "; ".join(wins)
            if losses:
                text += f"; on {and_list([esc(r) for r in losses])} none does"
            out.append(text + ".")
        else:
            out.append(f"On {and_list([esc(p.regime) for p in budget])} no approximation within "
                       "that budget beats ignoring the keys.")
    return " ".join(out)


def picks_table(rep: Report) -> Table:
    """Per regime: the headline's pick, its cost, its error next to the reference lines."""
    rows = []
    exact_t = forward_sweep(rep.bench, EXACT, False, rep.m_default).get(rep.n_head)
    for p in headline_picks(rep):
        if p.by_time:
            rule = f"fastest below uniform at N = {rep.n_head}"
        else:
            rule = f"most accurate with ≤ {p.budget} keys or features per query"
        if p.method is None:
            rows.append((p.regime, [Cell(rule), Cell("none beats uniform"), Cell(), Cell(),
                                    error_cell(p.baseline, None, BASELINE, rep.meta),
                                    Cell(), Cell()]))
            continue
        if p.by_time:
            speed = ratio(exact_t, p.time_ms)
            cost = Cell(fmt_time(p.time_ms), f"{fmt_ratio(speed)} vs Exact" if speed else "")
        else:
            cost = Cell(f"{fmt_num(100 * p.flops_share, 2)} %" if p.flops_share else DASH,
                        "of exact's model flops")
        oracle = Cell(DASH) if p.oracle is None else \
            Cell(fmt_num(p.oracle.value), f"k = {p.oracle_k}" +
                 (" ≥ N: exact" if p.oracle.value == 0 else ""))
        window = Cell(DASH) if p.window is None else \
            Cell(fmt_num(p.window.value), p.window.setting)
        rows.append((p.regime, [Cell(rule), Cell(p.method, p.error.setting), cost,
                                error_cell(p.error, p.baseline, p.method, rep.meta),
                                error_cell(p.baseline, None, BASELINE, rep.meta),
                                oracle, window]))
    return Table(["Regime", "Chosen as", "Method", "Cost", "Error", "uniform",
                  "oracle top-k", "window only"], rows, table_id="picks-table")


def section_headline(rep: Report) -> str:
    """Section 1."""
    notes = "".join(f"<li>{esc(n)}</li>" for n in footnotes(rep))
    return (f'<div class="scroll">{table_html(headline_table(rep))}</div>'
            f'<ul class="notes">{notes}</ul>'
            f'<p class="lead">{conclusion(rep)}</p>'
            "<h3>Best per regime, next to the reference lines</h3>"
            f'<div class="scroll">{table_html(picks_table(rep))}</div>'
            '<p class="caption">oracle top-k: exact softmax over each query\'s k largest logits '
            "(k = the method's m, or its window W), i.e. what choosing the right keys alone "
            "gives; window only: EVA's window without its chunk terms. Neither is a fast method; "
            "they show how much of the error a better choice of keys would remove.</p>")


def section_regimes(rep: Report) -> str:
    """What a user should take from each regime, in words (from analysis.regime_findings)."""
    out = []
    for r in rep.acc.regimes:
        kind = "real attention" if r.real else "synthetic"
        n = rep.acc.n_of(r.name)
        source = (f' Provenance: <code>{esc(r.source)}</code>.' if r.source else "")
        findings = " ".join(esc(t) for t in regime_findings(rep, r.name))
        how = (f"Errors: pooled over every valid query row of {r.samples}; spread: {r.spread}."
               if r.real else f"Errors: mean over {r.samples or 'seeds'}; spread: {r.spread}.")
        out.append(f'<div class="regime" data-regime="{esc(r.name)}"><h3>{esc(r.name)} '
                   f'<small>({kind}, N {"≤" if r.real else "="} {n}, non-causal)</small></h3>'
                   f'<p>{findings}</p><p class="caption">{esc(r.description)}. {esc(how)}'
                   f'{source}</p>'
                   "</div>")
    if not out:
        return '<p class="missing">No accuracy results in this run.</p>'
    return "".join(out)


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


def regime_caption(rep: Report, regime: str, fig: figures.Figure, shown: Iterable[str],
                   extra: str = "") -> str:
    """The text under an error panel: the regime, off-scale values, target notes."""
    r = rep.acc.regime(regime)
    text = r.description.strip() or "no description"
    parts = [f"<b>{esc(regime)}</b>: {esc(text)}" + ("" if text.endswith(".") else ".")]
    if extra:
        parts.append(extra)
    if fig.offscale:
        parts.append("Off scale (↑): " + esc(", ".join(fig.offscale)) + ".")
    for method in shown:
        for target, regimes in rep.acc.other_targets(method).items():
            if regime in regimes:
                parts.append(f"{esc(method)}: error against {esc(target)}, not softmax.")
    return '<p class="caption">' + " ".join(parts) + "</p>"


def panel_div(body: str, regime: str, lines: Iterable[str]) -> str:
    """One panel; data-regime and data-lines (the methods drawn) let --check find it."""
    return (f'<div class="panel" data-regime="{esc(regime)}" '
            f'data-lines="{esc("|".join(lines))}">{body}</div>')


def panels_html(items: list[str]) -> str:
    """Panels side by side, wrapping on narrow screens (items: panel_div or plain HTML)."""
    return '<div class="panels">' + "".join(
        p if p.startswith('<div class="panel"') else f'<div class="panel">{p}</div>'
        for p in items) + "</div>"


def spread_extras(rep: Report) -> list[tuple[str, str]]:
    """The legend entry for the error bars (spread_caption says what they span)."""
    return [("bar", "spread (see below)")]


def spread_caption(rep: Report) -> str:
    """What the error bars span, per kind of regime."""
    kinds: dict[str, list[str]] = {}
    for r in rep.acc.regimes:
        kinds.setdefault(r.spread, []).append(r.name)
    parts = [f"{esc(spread)} ({esc(and_list(names))})" for spread, names in kinds.items()]
    return ("Bars: " + "; ".join(parts) + ". Bars reaching below the panel are clipped there "
            "(no cap)." if parts else "")


def section_error_vs_budget(rep: Report) -> str:
    """Section 3: error vs budget (features m, EVA's window W, the oracle's k) at each regime's
    own N, one panel per regime, with the reference lines."""
    acc = rep.acc
    panels = []
    for r in acc.regimes:
        n = acc.n_of(r.name)
        series, flat = {}, {}
        for method in acc.methods:
            budgets = [b for b in acc.budgets(r.name, method, n) if b > 0]
            if budgets and rep.meta.param(method):
                series[method] = {b: acc.get(r.name, method, b, n) for b in budgets}
            elif acc.get(r.name, method, 0, n):
                flat[method] = acc.get(r.name, method, 0, n)
        if not series and not flat:
            continue
        size = f"N ≤ {n} tokens" if r.real else f"N = {n}"
        fig = figures.error_figure(rep.meta, f"{r.name} ({size}, non-causal)",
                                   "budget: features m, or keys computed exactly (W, k); log2",
                                   series, flat)
        extra = ""
        oracle = rep.meta.reference("k")
        over = sorted({b for s in series.values() for b in s if b >= n})
        if oracle and over:
            extra = (f"The oracle top-k is exact attention for k ≥ {n} (error 0, not drawn); "
                     f"methods at {', '.join(map(str, over))} use as many features as there are "
                     "tokens or more.")
        drawn = list(series) + list(flat)
        panels.append(panel_div(fig.svg + regime_caption(rep, r.name, fig, drawn, extra),
                                r.name, drawn))
    if not panels:
        return '<p class="missing">No accuracy results in this run.</p>'
    extras = spread_extras(rep) + \
        [("up", "off scale (value printed)")]
    meaning = [spread_caption(rep)]
    if rep.acc.config.get("budget_meaning"):
        meaning.append(f"Budget = {esc(rep.acc.config['budget_meaning'])}.")
    if rep.acc.config.get("m_meaning"):
        meaning.append(f"m = {esc(rep.acc.config['m_meaning'])}.")
    caption = f'<p class="caption">{" ".join(meaning)}</p>' if meaning else ""
    return figures.legend(rep.meta, acc.methods, extras) + caption + panels_html(panels)


def section_error_vs_n(rep: Report) -> str:
    """Section 4: error vs N at each method's headline setting, one small panel per regime that
    was run at several N, plus causal errors."""
    acc = rep.acc
    panels, single = [], []
    for r in acc.regimes:
        series = {}
        for method in acc.methods:
            ns = acc.ns(r.name, method)
            if ns:
                series[method] = {n: acc.at_default(r.name, method, n) for n in ns}
        if not series:
            continue
        if max(len(s) for s in series.values()) < 2:
            single.append(f"{r.name} (N {'≤' if r.real else '='} {acc.n_of(r.name)})")
            continue
        fig = figures.error_figure(rep.meta, f"{r.name} (m = {rep.m_default}, non-causal)",
                                   "sequence length N (tokens)", series, {})
        settings = ", ".join(f"{param_word(p)} = {v}" for p, v in r.defaults.items())
        extra = f"Each method at {esc(settings)}." if settings else ""
        panels.append(panel_div(fig.svg + regime_caption(rep, r.name, fig, series, extra),
                                r.name, series))
    if not panels and not single:
        return '<p class="missing">No accuracy results in this run.</p>'
    causal_regimes = [r.name for r in acc.regimes
                      if any(k[0] == r.name and k[4] for k in acc.results)]
    causal_rows = []
    for method in acc.methods:
        cells = [error_cell(acc.at_default(r, method, rep.n_default, True),
                            acc.at_default(r, BASELINE, rep.n_default, True), method, rep.meta,
                            show_setting=rep.meta.info(method).role == "baseline")
                 for r in causal_regimes]
        if any(c.text != DASH for c in cells):
            causal_rows.append((method, cells))
    causal = ""
    if causal_rows:
        causal = (f"<h3>Causal, N = {rep.n_default}, m = {rep.m_default}</h3>"
                  + table_html(Table(["Method"] + causal_regimes, causal_rows)))
    note = ""
    if single:
        note = (f'<p class="caption">{esc(and_list(single))}: one length only (real attention: '
                "the model's 128-token inputs, bidirectional, so no causal runs); see Error vs "
                "budget.</p>")
    legend = figures.legend(rep.meta, acc.methods, spread_extras(rep) +
                            [("up", "off scale (value printed)")])
    return (legend + f'<p class="caption">{spread_caption(rep)}</p>' + panels_html(panels) + note
            + causal)


def section_pareto(rep: Report) -> str:
    """Section 5: error (accuracy.json) against time (bench.json) at N_timed, per synthetic
    regime; for regimes without timings at their N (real attention, 128 tokens), error against
    the model flops as a share of exact attention's."""
    acc, n = rep.acc, rep.n_head
    exact_t = forward_sweep(rep.bench, EXACT, False, rep.m_default).get(n)
    panels, missing = [], []
    for r in acc.regimes:
        regime = r.name
        points = []
        by_flops = r.real or not exact_t
        n_r = acc.n_of(regime) if by_flops else n
        for method in acc.methods:
            if not rep.meta.is_approximation(method):
                continue
            for b in acc.budgets(regime, method, n_r):
                err = acc.get(regime, method, b, n_r)
                if (not by_flops and rep.meta.param(method) == "window"
                        and b != acc.default(regime, method)):
                    continue  # the benchmarks time EVA at its default window only
                label = (f"{param_word(rep.meta.param(method))}={b}"
                         if rep.meta.param(method) else "")
                if by_flops:
                    if err.flops and r.exact_flops:
                        points.append(figures.ParetoPoint(err.flops / r.exact_flops, err, method,
                                                          label))
                    continue
                t = forward_sweep(rep.bench, method, False, b).get(n)
                if t is not None:
                    points.append(figures.ParetoPoint(t, err, method, label))
                elif f"{method} {label}".strip() not in missing:
                    missing.append(f"{method} {label}".strip())
        base = acc.at_default(regime, BASELINE, n_r)
        if not points:
            continue
        baseline = base.value if base else None
        limit = 1.0 if by_flops else exact_t
        front = pareto_front([(p.x, p.error.value) for p in points
                              if p.error.target == "softmax"], baseline, limit)
        if by_flops:
            fig = figures.pareto_figure(
                rep.meta, f"{regime} (N ≤ {n_r}): error vs model flops", points, front,
                baseline, 1.0, x_label="model flops of one forward pass / exact attention's",
                exact_label="Exact (1, error 0)", label_dominated=False)
        else:
            fig = figures.pareto_figure(rep.meta, f"{regime} (N = {n}, non-causal)", points,
                                        front, baseline, exact_t)
        extra = ("No timings at 128 tokens (microseconds per head, dominated by call overhead): "
                 "the x axis is the flop model of the methods table, relative to exact "
                 "attention's 4 N² D." if by_flops else "")
        caption = regime_caption(rep, regime, fig, dict.fromkeys(p.method for p in points), extra)
        if not front:
            caption += '<p class="caption">No approximation beats the baseline here.</p>'
        panels.append(panel_div(fig.svg + caption, regime, dict.fromkeys(p.method for p in points)))
    if not panels:
        return '<p class="missing">No (time, error) pairs: accuracy and benchmarks do not ' \
               f'overlap at N = {n}.</p>'
    methods = [m for m in acc.methods if rep.meta.is_approximation(m)] + [EXACT, BASELINE]
    legend = figures.legend(rep.meta, methods, [("front", "Pareto front")] + spread_extras(rep))
    legend += f'<p class="caption">{spread_caption(rep)}</p>'
    if missing:
        legend += (f'<p class="caption missing">Not drawn (error measured, but no forward time at '
                   f'N = {n} in bench.json): {esc(", ".join(missing))}.</p>')
    return (legend + '<p class="caption">Each point is one method at one setting (m or W next to '
            "it; on the flop panels only below the uniform line), float, non-causal. Down-left is "
            "better. Points at or above the uniform line are "
            "dominated by it (ignoring the keys costs O(N·D)); points right of Exact's line are "
            "dominated by Exact. Methods measured against another target than softmax (RFA on "
            "the synthetic regimes) are drawn but left out of the front.</p>"
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

# fastattn next to ONNX Runtime and ggml (opt-in: installs from npm and apt into build/peers/;
# a few minutes), then the report again: it adds the peers section when peers.json is there
scripts/bench-peers.sh                                # writes build/release/report/peers.json
cmake --build build/release -j2 --target report

# Eigen's GEMM vs OpenBLAS: a second build with -DFASTATTN_BENCH_OPENBLAS=ON, then
python3 bench/report.py --bench build/release/report/bench.json \\
    --accuracy build/release/report/accuracy.json \\
    --bench-openblas build/openblas/report/bench.json --out index.html</pre>
<p class="caption">The report target runs fastattn_bench (Google Benchmark, JSON output),
fastattn_accuracy (synthetic regimes and the real-attention fixture in
bench/data/real_attention/), then the report package (bench/report/, run by bench/report.py
with a Python that has matplotlib); it passes <code>--peers-if-present</code> with the report
directory's peers.json and build/release/report/peers.json. <code>--markdown headline.md</code>
also writes the headline table for the README. docs/benchmarks.md explains the suite.</p>"""


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
    Section("regimes", "Regime by regime: what to take from each", section_regimes),
    Section("methods", "The methods", section_methods),
    Section("time", "Time vs N", section_time, has_chart=True),
    Section("err-budget", "Error vs budget (features m, window W, oracle k)",
            section_error_vs_budget, has_chart=True),
    Section("err-n", "Error vs N", section_error_vs_n, has_chart=True),
    Section("pareto", "Error vs time (Pareto fronts)", section_pareto, has_chart=True),
    Section("decode", "Decoding and multi-head scaling", section_decode),
    Section("efficiency", "Kernel efficiency", section_efficiency),
    Section("peers", "fastattn and other CPU attention implementations", section_peers,
            has_chart=True, shown=lambda rep: rep.peers is not None),
    Section("openblas", "Eigen's GEMM vs OpenBLAS", section_openblas,
            shown=lambda rep: rep.blas is not None),
    Section("machine", "Machine and build", section_machine),
    Section("appendix", "Appendix: all measurements", section_appendix),
    Section("reproduce", "How to reproduce", section_reproduce),
]


def shown_sections(rep: Report) -> list[Section]:
    """The sections this report has (optional ones only with their input)."""
    return [sec for sec in SECTIONS if sec.shown(rep)]
