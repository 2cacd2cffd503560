"""--check: re-reads the written page and lists what is incomplete or unclean in it."""
from __future__ import annotations

import re
from typing import Optional

from .data import Report
from .fmt import esc
from .sections import shown_sections


def section_chunk(page: str, sid: str) -> Optional[str]:
    """The HTML from a section's heading to the next heading, or None if absent."""
    start = page.find(f'<h2 id="{sid}">')
    if start < 0:
        return None
    end = page.find("<h2 ", start + 1)
    return page[start:end if end > 0 else len(page)]


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
