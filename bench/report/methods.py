"""The methods as the report knows them: a registry of MethodInfo (order, colour, marker, role,
target, parameters) with the lookups the analysis, the tables and the figures use. The metadata
itself comes from the inputs (bench/method_info.hpp writes it into both JSON files), so the
report holds no table of methods."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

EXACT = "Exact"  # the method every time is compared with
BASELINE = "uniform"  # the flag baseline: ignore the keys, output the mean of the values
ROLES = ("exact", "approximation", "baseline")
# Colours for methods without metadata (Paul Tol's muted scheme: distinct from the others).
SPARE_COLORS = ["#882255", "#44AA99", "#117733", "#332288", "#AA4499", "#DDCC77"]


@dataclass(frozen=True)
class MethodInfo:
    """One method: its role ("exact": error 0 by definition; "approximation"; "baseline": a
    reference line such as uniform), what its error is measured against, which sweep parameters
    change it, and how the report draws it."""
    name: str
    label: str = ""
    role: str = "approximation"
    target: str = "softmax"
    params: tuple[str, ...] = ("m",)
    cost: str = ""
    color: str = "#777777"
    marker: str = "circle"
    spec: str = ""


@dataclass
class Methods:
    """The registry: methods in display order; a method without metadata gets a spare colour,
    the role "approximation" and the parameter m, and sorts before the baseline."""
    infos: list[MethodInfo]
    _extra: dict[str, MethodInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: dict[str, MethodInfo] = {}
        for info in self.infos:
            seen.setdefault(info.name, info)
        self.infos = list(seen.values())
        self._rank = {info.name: i for i, info in enumerate(self.infos)}

    def info(self, name: str) -> MethodInfo:
        """The method's metadata (made up once, with a spare colour, if it has none)."""
        if name in self._rank:
            return self.infos[self._rank[name]]
        if name not in self._extra:
            col = SPARE_COLORS[len(self._extra) % len(SPARE_COLORS)]
            self._extra[name] = MethodInfo(name, color=col)
        return self._extra[name]

    def known(self, name: str) -> bool:
        """True if the inputs described this method."""
        return name in self._rank

    def color(self, name: str) -> str:
        """The method's colour, the same in every chart."""
        return self.info(name).color

    def order(self, names: Iterable[str]) -> list[str]:
        """Distinct names in display order; unknown ones alphabetically before the baseline."""
        unknown = self._rank.get(BASELINE, len(self.infos)) - 0.5
        return sorted(set(names), key=lambda m: (self._rank.get(m, unknown), m))

    def param(self, name: str) -> str:
        """The parameter the accuracy sweep varies for this method ("m", "window", "k"; "" if
        none): its first one."""
        params = self.info(name).params
        return params[0] if params else ""

    def baselines(self) -> list[str]:
        """The reference lines the inputs describe (role baseline), in display order."""
        return [info.name for info in self.infos if info.role == "baseline"]

    def reference(self, param: str) -> Optional[str]:
        """The reference line that varies `param` ("k": the oracle top-k, "window": EVA's window
        alone), or None."""
        return next((info.name for info in self.infos
                     if info.role == "baseline" and info.params[:1] == (param,)), None)

    def uses_m(self, name: str) -> bool:
        """True if the method's cost and error depend on the feature count m."""
        return "m" in self.info(name).params

    def is_exact(self, name: str) -> bool:
        """True for exact attention (any kernel): error 0 by definition."""
        return self.info(name).role == "exact"

    def is_approximation(self, name: str) -> bool:
        """True for the methods the report compares against exact attention."""
        return self.info(name).role == "approximation"
