"""--check: re-reads the written page and lists what is incomplete or unclean in it."""
from __future__ import annotations

import html
import re
from typing import Optional

from .data import Report
from .fmt import esc
from .peers import implementations
from .sections import shown_sections


def section_chunk(page: str, sid: str) -> Optional[str]:
    """The HTML from a section's heading to the next heading, or None if absent."""
    start = page.find(f'<h2 id="{sid}">')
    if start < 0:
        return None
    end = page.find("<h2 ", start + 1)
    return page[start:end if end > 0 else len(page)]


def panel_lines(chunk: str) -> dict[str, set[str]]:
    """regime -> the methods drawn in its panel (the panel divs' data-regime / data-lines)."""
    return {html.unescape(regime): set(html.unescape(lines).split("|"))
            for regime, lines in re.findall(r'<div class="panel" data-regime="([^"]*)" '
                                            r'data-lines="([^"]*)"', chunk)}


def check_regimes(page: str, rep: Report) -> list[str]:
    """Every regime of the sweep (at least one of real attention) in the headline table, in
    words and with a panel in "Error vs budget"; every reference line (role baseline) measured
    and drawn in every regime."""
    problems = []
    regimes = [r.name for r in rep.acc.regimes]
    if not any(r.real for r in rep.acc.regimes):
        problems.append("no real-attention regime in the accuracy sweep (kind \"real\")")
    header = re.search(r'<table id="headline-table">.*?</thead>', page, re.S)
    words = section_chunk(page, "regimes") or ""
    panels = panel_lines(section_chunk(page, "err-budget") or "")
    for regime in regimes:
        if header is None or f"<th>{esc(regime)}</th>" not in header.group(0):
            problems.append(f"regime missing from the headline table: {regime}")
        if f'data-regime="{esc(regime)}"' not in words:
            problems.append(f"regime missing from the regime-by-regime section: {regime}")
        if regime not in panels:
            problems.append(f"regime missing from Error vs budget: {regime}")
    for line in rep.meta.baselines():
        for regime in regimes:
            n = rep.acc.n_of(regime)
            if not any(k[0] == regime and k[1] == line and k[3] == n for k in rep.acc.results):
                problems.append(f"reference line missing: {line} has no result in {regime} at "
                                f"N = {n}")
            elif regime in panels and line not in panels[regime]:
                problems.append(f"reference line not drawn: {line} in the {regime} panel of "
                                "Error vs budget")
    return problems


def check_page(path: str, methods: list[str], rep: Report) -> list[str]:
    """Re-reads the written page and lists what is wrong with it (empty: all good)."""
    with open(path, encoding="utf-8") as f:
        page = f.read()
    problems = [f"section failed: {f}" for f in rep.failures]
    for sec in shown_sections(rep):
        chunk = section_chunk(page, sec.sid)
        if chunk is None or esc(sec.title) not in chunk:
            problems.append(f"missing section heading: {sec.title}")
        elif sec.has_chart and "<svg" not in chunk:
            problems.append(f"no chart (<svg>) in section: {sec.title}")
    problems += check_regimes(page, rep)
    if rep.peers is not None:
        chunk = section_chunk(page, "peers") or ""
        for impl in implementations(rep.peers):
            name = esc(str(impl.get("name") or impl["id"]))
            if f'data-method="{name}"' not in chunk:
                problems.append(f"implementation missing from the peers table: {name}")
    match = re.search(r'<table id="headline-table">(.*?)</table>', page, re.S)
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
