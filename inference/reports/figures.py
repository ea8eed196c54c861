"""The report's figures from counts: rates, first-pass yield, Pareto, p-chart, trend.

Pure functions over the counts the SQL aggregates return (`queries.py`); a rate of no parts
is None, never 0 or a division error.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from defectlens.inference.reports.run_rules import broken_rules

Z95 = 1.959963984540054
"""The normal quantile of a two-sided 95% confidence interval."""


@dataclass(frozen=True)
class Counts:
    """Parts of one group: inspections, NG verdicts, first inspections and first-pass OKs."""

    key: str
    parts: int
    ng: int
    first: int
    first_ok: int

    @property
    def ng_rate(self) -> float | None:
        return rate(self.ng, self.parts)

    @property
    def first_pass_yield(self) -> float | None:
        """The share of parts that passed at their first inspection at the station (a part
        re-inspected after rework counts once, by its serial)."""
        return rate(self.first_ok, self.first)


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class ParetoRow:
    defect_class: str
    count: int
    share: float
    cumulative: float


def pareto(counts: dict[str, int]) -> list[ParetoRow]:
    """Defect classes by count, most first (ties by name), with share and cumulative share."""
    total = sum(counts.values())
    rows: list[ParetoRow] = []
    running = 0
    for name, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if count <= 0:
            continue
        running += count
        rows.append(ParetoRow(name, count, count / total, running / total))
    return rows


@dataclass(frozen=True)
class PChartPoint:
    label: str
    n: int
    ng: int
    p: float | None
    """NG proportion of the subgroup (None: no parts, no point)."""
    lcl: float | None
    ucl: float | None
    out_of_control: bool
    rules: tuple[int, ...] = ()
    """The Western Electric run rules (1-4) this point completes, when asked for."""


@dataclass(frozen=True)
class PChart:
    centre: float | None
    """p-bar: all NG over all parts of the chart."""
    points: list[PChartPoint]


def p_chart(
    subgroups: list[tuple[str, int, int]], sigmas: float = 3.0, run_rules: bool = False
) -> PChart:
    """A p-chart of (label, parts, NG) subgroups: centre p-bar = sum NG / sum parts, limits
    p-bar +- sigmas * sqrt(p-bar (1 - p-bar) / n) per subgroup (so they widen for small
    subgroups), clipped to [0, 1]; a point outside its limits is out of control. A subgroup
    without parts has no point and no limits. `run_rules` adds the Western Electric rules
    each point completes (`run_rules.broken_rules`, on z = (p - p-bar) / sigma of its n)."""
    total = sum(n for _, n, _ in subgroups)
    centre = rate(sum(ng for _, _, ng in subgroups), total)
    points = []
    for label, n, ng in subgroups:
        if not n or centre is None:
            points.append(PChartPoint(label, n, ng, None, None, None, False))
            continue
        spread = sigmas * _sigma(centre, n)
        lcl, ucl = max(0.0, centre - spread), min(1.0, centre + spread)
        p = ng / n
        points.append(PChartPoint(label, n, ng, p, lcl, ucl, p > ucl or p < lcl))
    if run_rules and centre is not None and 0.0 < centre < 1.0:
        z = [
            None if point.p is None else (point.p - centre) / _sigma(centre, point.n)
            for point in points
        ]
        points = [
            dataclasses.replace(point, rules=rules)
            for point, rules in zip(points, broken_rules(z), strict=True)
        ]
    return PChart(centre, points)


def _sigma(centre: float, n: int) -> float:
    return math.sqrt(centre * (1.0 - centre) / n)


@dataclass(frozen=True)
class Trend:
    """The NG rate of a period against a baseline period."""

    key: str
    rate: float | None
    baseline_rate: float | None
    change: float | None
    """Relative change (rate / baseline - 1): -0.26 is 26% fewer NG parts."""
    low: float | None
    high: float | None
    """The 95% confidence interval of `change` (from the log of the rate ratio)."""
    target: float
    """The reduction aimed at, e.g. 0.20."""

    @property
    def significant(self) -> bool:
        """Whether the interval excludes no change: the difference is not chance alone."""
        return self.low is not None and self.high is not None and (self.high < 0 or self.low > 0)

    @property
    def target_met(self) -> bool:
        return self.change is not None and -self.change >= self.target


def trend(current: Counts, baseline: Counts, target: float = 0.2) -> Trend:
    """`current` against `baseline`. The interval is that of the rate ratio's logarithm,
    se = sqrt(1/x1 - 1/n1 + 1/x0 - 1/n0) (Katz), turned back into a relative change; it is
    None when either period has no NG part (the logarithm is then undefined)."""
    now, before = current.ng_rate, baseline.ng_rate
    if now is None or before is None or before == 0:
        return Trend(current.key, now, before, None, None, None, target)
    change = now / before - 1.0
    if current.ng == 0:
        return Trend(current.key, now, before, change, None, None, target)
    se = math.sqrt(1 / current.ng - 1 / current.parts + 1 / baseline.ng - 1 / baseline.parts)
    log_ratio = math.log(now / before)
    low = math.exp(log_ratio - Z95 * se) - 1.0
    high = math.exp(log_ratio + Z95 * se) - 1.0
    return Trend(current.key, now, before, change, low, high, target)
