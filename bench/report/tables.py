"""Table models rendered as HTML and as GitHub markdown, and the error cell shared by tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .data import ErrStat
from .fmt import DASH, esc, fmt_num
from .methods import BASELINE, Methods


@dataclass
class Cell:
    """A table cell: main text, optional second line, flag (worse than the baseline)."""
    text: str = DASH
    sub: str = ""
    flag: bool = False


@dataclass
class Table:
    """A table model rendered both as HTML and as markdown."""
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    groups: list[tuple[str, int]] = field(default_factory=list)  # (title, span) over columns
    table_id: str = ""


FLAG_TITLE = "error ≥ the uniform baseline's: worse than ignoring the keys"


def table_html(t: Table) -> str:
    """The table as HTML (row headers carry data-method so --check can find them)."""
    ident = f' id="{t.table_id}"' if t.table_id else ""
    out = [f"<table{ident}>", "<thead>"]
    if t.groups:
        group_cells = "".join(f'<th colspan="{span}" class="group">{esc(g)}</th>'
                              for g, span in t.groups if span)
        out.append(f"<tr><th></th>{group_cells}</tr>")
    out.append("<tr>" + "".join(f"<th>{esc(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for head, cells in t.rows:
        row = f'<tr><th scope="row" data-method="{esc(head)}">{esc(head)}'
        if head == BASELINE:
            row += "<br><small>(ignore the keys)</small>"
        row += "</th>"
        for c in cells:
            cls = ' class="worse"' if c.flag else ""
            title = f' title="{FLAG_TITLE}"' if c.flag else ""
            mark = "✗\u00a0" if c.flag else ""
            sub = f"<br><small>{esc(c.sub)}</small>" if c.sub else ""
            row += f"<td{cls}{title}>{mark}{esc(c.text)}{sub}</td>"
        out.append(row + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


def table_markdown(t: Table) -> str:
    """The table as GitHub markdown (groups folded into the column names)."""
    names, i = [], 0
    for g, span in t.groups or [("", len(t.columns) - 1)]:
        names += [f"{g}: {c}" if g else c for c in t.columns[1 + i:1 + i + span]]
        i += span
    names = [t.columns[0]] + names + t.columns[1 + i:]
    out = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for head, cells in t.rows:
        texts = [("⚠ " if c.flag else "") + c.text + (f" ({c.sub})" if c.sub else "")
                 for c in cells]
        out.append("| " + " | ".join([head] + texts).replace("\n", " ") + " |")
    return "\n".join(out).replace("\u00a0", " ")


def simple_table(columns: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A plain HTML table of strings (first column as row header)."""
    klass = f' class="{cls}"' if cls else ""
    out = [f"<table{klass}><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns)
           + "</tr></thead><tbody>"]
    for r in rows:
        out.append(f'<tr><th scope="row">{esc(r[0])}</th>'
                   + "".join(f"<td>{esc(c)}</td>" for c in r[1:]) + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


def error_cell(err: Optional[ErrStat], base: Optional[ErrStat], method: str,
               meta: Methods, show_setting: bool = False) -> Cell:
    """The error, flagged when not below the baseline; † for a non-softmax target. A mean over
    seeds reads "mean ± std"; a pooled error (real attention) "pooled" with its 10th-90th
    percentile over (sequence, head) below. show_setting: the setting below too (reference
    lines, whose k or W differs between regimes)."""
    if meta.is_exact(method):
        return Cell("0 (exact)")
    if err is None:
        return Cell()
    dagger = "\u00a0†" if err.target != "softmax" else ""
    flag = method != BASELINE and base is not None and err.value >= base.value
    subs = []
    if err.statistic == "pooled":
        text = f"{fmt_num(err.value)}{dagger}"
        if err.lo is not None and err.hi is not None:
            subs.append(f"[{fmt_num(err.lo, 2)}–{fmt_num(err.hi, 2)}]")
    else:
        std = f"\u00a0±\u00a0{fmt_num(err.std, 2)}" if err.std is not None else ""
        text = f"{fmt_num(err.value)}{std}{dagger}"
    if show_setting and err.setting:
        subs.append(err.setting)
    return Cell(text, "; ".join(subs), flag=flag)
