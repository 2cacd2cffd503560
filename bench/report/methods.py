"""The methods: display order, colour, marker and role of each (reference, approximation,
baseline)."""
from __future__ import annotations

from typing import Iterable

# Display order and one colour (Okabe-Ito, colour-blind safe) and marker per method.
METHOD_ORDER = ["Exact", "FAVOR+", "FAVOR-hyp", "FAVOR++", "RFA", "EVA-Reference",
                "EVA-Disjoint", "Exact-reference", "uniform"]
COLORS = {"Exact": "#000000", "FAVOR+": "#0072B2", "FAVOR-hyp": "#56B4E9", "FAVOR++": "#009E73",
          "RFA": "#E69F00", "EVA-Reference": "#D55E00", "EVA-Disjoint": "#CC79A7",
          "Exact-reference": "#777777", "uniform": "#999999"}
EXTRA_COLORS = ["#882255", "#44AA99", "#117733", "#332288", "#AA4499", "#DDCC77"]
MARKERS = {"Exact": "circle", "FAVOR+": "square", "FAVOR-hyp": "diamond", "FAVOR++": "triangle",
           "RFA": "triangle-down", "EVA-Reference": "circle", "EVA-Disjoint": "cross",
           "Exact-reference": "circle-open"}
# Methods whose cost and error do not depend on the feature count m.
M_INDEPENDENT = {"Exact", "Exact-reference", "EVA-Reference", "EVA-Disjoint", "uniform"}
REFERENCES = {"Exact", "Exact-reference"}
BASELINE = "uniform"

_extra_colors: dict[str, str] = {}


def color(method: str) -> str:
    """The method's colour, the same in every chart (unknown methods get the next spare one)."""
    if method in COLORS:
        return COLORS[method]
    if method not in _extra_colors:
        _extra_colors[method] = EXTRA_COLORS[len(_extra_colors) % len(EXTRA_COLORS)]
    return _extra_colors[method]


def order_methods(names: Iterable[str]) -> list[str]:
    """Known methods in display order, unknown ones alphabetically before the baseline."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return sorted(set(names), key=lambda m: (rank.get(m, len(METHOD_ORDER) - 1.5), m))


def is_approximation(method: str) -> bool:
    """True for the methods the report compares against exact attention."""
    return method not in REFERENCES and method != BASELINE
