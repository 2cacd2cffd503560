"""Number, time and text formatting shared by every part of the report."""
from __future__ import annotations

import html
import math
import statistics
from typing import Any, Iterable, Optional

DASH = "—"


def finite(x: Any) -> Optional[float]:
    """x as a float if it is a finite number, else None (null, NaN, strings, booleans)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def fmt_num(x: Optional[float], sig: int = 3) -> str:
    """x to `sig` significant digits; scientific (2.42e4) outside [0.001, 10000)."""
    if x is None or not math.isfinite(x):
        return DASH
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= 4 or mag < -3:
        mantissa, exponent = f"{x:.{sig - 1}e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    decimals = sig - 1 - mag
    if decimals < 0:  # 1214 -> 1210
        return str(int(round(x, decimals)))
    return f"{x:.{decimals}f}"


def fmt_time(ms: Optional[float]) -> str:
    """A duration given in ms, in µs, ms or s, whichever reads best."""
    if ms is None:
        return DASH
    if ms < 1.0:
        return f"{fmt_num(ms * 1e3)}\u00a0µs"
    if ms >= 1e3:
        return f"{fmt_num(ms / 1e3)}\u00a0s"
    return f"{fmt_num(ms)}\u00a0ms"


def fmt_ratio(x: Optional[float]) -> str:
    """A speedup or ratio such as 7.38×."""
    return DASH if x is None else f"{fmt_num(x)}×"


def fmt_n(n: Optional[float]) -> str:
    """A token count: integers as such, interpolated values to 3 significant digits."""
    if n is None:
        return DASH
    return str(int(n)) if float(n).is_integer() else fmt_num(n)


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, or None when either is missing or b is zero."""
    return a / b if a is not None and b else None


def esc(text: Any) -> str:
    """HTML-escape anything."""
    return html.escape(str(text), quote=True)


def median(values: Iterable[float]) -> Optional[float]:
    """The median of the finite values, or None."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(vals) if vals else None
