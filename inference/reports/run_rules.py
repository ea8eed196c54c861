"""The Western Electric run rules of a control chart, on each point's distance from the
centre line in standard deviations (z; for a p-chart, (p - p-bar) / sqrt(p-bar (1 - p-bar) / n),
so the rules hold while the limits vary with the subgroup size).

Pure functions. A point without parts (z None) is skipped: the rules look at consecutive
points that have one. A rule is flagged on the point that completes it.
"""

from __future__ import annotations

from collections.abc import Sequence

RULES: dict[int, str] = {
    1: "one point beyond 3 sigma",
    2: "two of three points in a row beyond 2 sigma, on one side",
    3: "four of five points in a row beyond 1 sigma, on one side",
    4: "eight points in a row on one side of the centre line",
}


def _k_of_n_beyond(window: Sequence[float], k: int, limit: float) -> bool:
    """The window's last point and k - 1 more of it lie beyond `limit` sigma on one side."""
    last = window[-1]
    for side in (1.0, -1.0):
        if side * last > limit and sum(side * z > limit for z in window) >= k:
            return True
    return False


def broken_rules(z: Sequence[float | None]) -> list[tuple[int, ...]]:
    """For each point, the numbers of the rules (1-4) it completes; () for none and for a
    point without a z."""
    found: list[tuple[int, ...]] = []
    seen: list[float] = []
    for value in z:
        if value is None:
            found.append(())
            continue
        seen.append(value)
        rules = []
        if abs(value) > 3:
            rules.append(1)
        if _k_of_n_beyond(seen[-3:], 2, 2.0):  # the first two points may already
            rules.append(2)
        if _k_of_n_beyond(seen[-5:], 4, 1.0):
            rules.append(3)
        if len(seen) >= 8 and (all(v > 0 for v in seen[-8:]) or all(v < 0 for v in seen[-8:])):
            rules.append(4)
        found.append(tuple(rules))
    return found
