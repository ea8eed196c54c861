"""The Western Electric run rules, point by point on hand-made z sequences."""

from __future__ import annotations

import pytest

from defectlens.inference.reports.figures import p_chart
from defectlens.inference.reports.run_rules import broken_rules

N = None


@pytest.mark.parametrize(
    ("z", "expected"),
    [
        # rule 1: beyond 3 sigma, either side; exactly 3 is not beyond
        ([0.5, 3.2, -3.1, 0.0], [(), (1,), (1,), ()]),
        ([3.2, -3.1, 3.0], [(1,), (1,), (2,)]),  # 3.0 is not beyond 3, but two of three beyond 2
        # rule 2: two of three beyond 2 sigma on one side, flagged where completed
        ([2.5, 0.0, 2.1], [(), (), (2,)]),
        ([2.5, 2.1, 0.0], [(), (2,), ()]),
        ([2.5, -2.5, 2.1], [(), (), (2,)]),  # the upper two of three
        ([2.5, -2.5, -0.5], [(), (), ()]),  # one each side: no rule
        ([2.5, 0.0, 0.0, 2.1], [(), (), (), ()]),  # four apart: not within three
        # rule 3: four of five beyond 1 sigma on one side
        ([-1.5, -1.2, 0.3, -1.1, -1.8], [(), (), (), (), (3,)]),
        ([1.5, 1.2, 0.3, 1.1, 0.9], [(), (), (), (), ()]),  # only three beyond
        # rule 4: eight in a row on one side (and it stays broken while the run goes on)
        ([0.1] * 9, [()] * 7 + [(4,), (4,)]),
        ([0.1] * 7 + [-0.1], [()] * 8),
        # points without parts are skipped, not a break of the run
        ([0.2, 0.2, N, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2], [()] * 8 + [(4,)]),
        # several rules at once
        ([1.5, 1.5, 1.5, 2.5, 3.5, 2.2, 0.5, 0.5], [(), (), (), (3,), (1, 2, 3), (2, 3), (), (4,)]),
        ([2.5, 3.5, 1.0], [(), (1, 2), ()]),  # the completing point must be beyond too
    ],
)
def test_broken_rules(z: list[float | None], expected: list[tuple[int, ...]]) -> None:
    assert broken_rules(z) == expected


def test_p_chart_runs_the_rules_on_request_with_limits_by_subgroup_size() -> None:
    # p-bar = (48 + 64) / 2400 = 0.04667: the first eight days (p 0.06, z +0.63) lie above
    # it, the next eight (n 200, p 0.04, z -0.45) below; an empty day between is skipped.
    subgroups = [(f"a{i}", 100, 6) for i in range(8)] + [("empty", 0, 0)]
    subgroups += [(f"b{i}", 200, 8) for i in range(8)]
    assert all(point.rules == () for point in p_chart(subgroups).points)
    rules = [point.rules for point in p_chart(subgroups, run_rules=True).points]
    assert rules == [()] * 7 + [(4,)] + [()] * 8 + [(4,)]
