"""The page: sections in order, CSS, the HTML document, and the markdown headline."""
from __future__ import annotations

import datetime
import html
import re
import sys

from .data import Report
from .fmt import DASH, esc
from .sections import conclusion, footnotes, headline_table, picks_table, shown_sections
from .tables import table_markdown

CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 15px; line-height: 1.45;
       color: #222; max-width: 1200px; margin: 0 auto; padding: 0 16px 40px; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 2px solid #ddd; }
h3 { margin: 1.4em 0 0.4em; font-size: 16px; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 13.5px;
        font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6d6d6; padding: 4px 7px; vertical-align: top; }
td { text-align: right; white-space: nowrap; } thead th { background: #f0f0f0; }
th.group { text-align: center; }
th[scope=row] { text-align: left; background: #fafafa; white-space: nowrap; }
.scroll { overflow-x: auto; } #headline-table td, #headline-table th { padding: 3px 5px; }
#headline-table td { white-space: normal; }
tbody tr:nth-child(even) td { background: #fbfbfb; }
td.worse, tbody tr:nth-child(even) td.worse { background: #fbd9d3; color: #7a1a0a; }
table.kv td { text-align: left; white-space: normal; }
small { color: #666; } .lead { font-size: 16px; background: #eef5fb; padding: 10px 14px;
        border-left: 4px solid #0072B2; }
.notes { font-size: 13px; color: #444; } .caption { font-size: 13px; color: #444; margin: 2px 0; }
.missing { color: #8a5a00; } .warn { background: #fff4d6; padding: 6px 10px; font-size: 14px; }
.panels { display: flex; flex-wrap: wrap; gap: 12px 28px; }
.panel { width: 540px; } .wide { margin: 8px 0 14px; } svg { max-width: 100%; height: auto; }
pre { background: #f5f5f5; padding: 10px; overflow-x: auto; font-size: 13px; }
nav { font-size: 14px; } nav a { margin-right: 12px; }
#picks-table td:nth-child(2), #picks-table td:nth-child(3) { text-align: left; white-space: normal; }
#peers-table th[scope=row] { white-space: normal; }
table.kv th[scope=row] { white-space: normal; min-width: 9em; }
.regime h3 small { font-weight: normal; }
"""


def build_sections(rep: Report) -> list[tuple[str, str, str]]:
    """(id, title, html) per section; a section that fails shows a note, the rest go on."""
    out = []
    for sec in shown_sections(rep):
        try:
            body = sec.build(rep)
        except Exception as e:  # noqa: BLE001 - one broken section must not lose the report
            rep.failures.append(f"{sec.title}: {type(e).__name__}: {e}")
            print(f"report.py: warning: section '{sec.title}' failed: {type(e).__name__}: {e}",
                  file=sys.stderr)
            body = f'<p class="warn">This section could not be drawn ({esc(type(e).__name__)}).</p>'
        out.append((sec.sid, sec.title, body))
    return out


def render_page(rep: Report) -> str:
    """The whole HTML page."""
    sections = build_sections(rep)
    ctx = rep.bench.context
    nav = " ".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    intro = (f"{esc(ctx.get('fastattn_cpu') or 'unknown CPU')}, "
             f"{esc(ctx.get('fastattn_compiler') or 'unknown compiler')}, "
             f"{esc(rep.bench.gemm)}; benchmarks run {esc(ctx.get('date') or DASH)}, "
             f"page generated {generated} by bench/report.py.")
    body = "".join(f'<h2 id="{sid}">{esc(title)}</h2>\n{html_}\n' for sid, title, html_ in sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastattn benchmark report</title><style>{CSS}</style></head>
<body><h1>fastattn benchmark report</h1>
<p>How close each approximation of softmax attention comes to exact attention, and how much faster
it is: which method, at which sequence length N and feature count m, beats exact attention by how
much, at what error, on which kind of inputs. {intro}</p>
<nav>{nav}</nav>
{body}</body></html>
"""


def render_markdown(rep: Report) -> str:
    """The headline table, its notes and conclusion as GitHub markdown."""
    notes = "\n".join(f"- {n}".replace("✗ shaded", "⚠") for n in footnotes(rep))
    lead = re.sub(r"</?b>", "**", conclusion(rep))
    picks = table_markdown(picks_table(rep))
    return (f"{table_markdown(headline_table(rep))}\n\n{notes}\n\n{html.unescape(lead)}\n\n"
            f"{picks}\n")
