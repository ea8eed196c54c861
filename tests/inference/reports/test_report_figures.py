"""Rates, Pareto, p-chart limits and the baseline trend against hand-computed answers."""

from __future__ import annotations

import math

import pytest

from defectlens.inference.reports.figures import Counts, p_chart, pareto, rate, trend
from defectlens.inference.reports.render import trend_sentence


def test_rates_of_a_group_and_of_no_parts() -> None:
    counts = Counts("S1", parts=40, ng=3, first=32, first_ok=30)
    assert counts.ng_rate == 0.075
    assert counts.first_pass_yield == 30 / 32
    empty = Counts("S2", 0, 0, 0, 0)
    assert empty.ng_rate is None and empty.first_pass_yield is None
    assert rate(0, 5) == 0.0


def test_pareto_orders_by_count_with_cumulative_share() -> None:
    rows = pareto({"dent": 2, "scratch": 5, "crack": 2, "stain": 1, "none": 0})
    assert [(r.defect_class, r.count) for r in rows] == [
        ("scratch", 5),
        ("crack", 2),
        ("dent", 2),
        ("stain", 1),
    ]
    assert [r.share for r in rows] == [0.5, 0.2, 0.2, 0.1]
    assert [round(r.cumulative, 10) for r in rows] == [0.5, 0.7, 0.9, 1.0]
    assert pareto({}) == []


def test_p_chart_limits_vary_with_subgroup_size() -> None:
    # p-bar = 20 / 400 = 0.05; sigma_i = sqrt(0.05 * 0.95 / n_i)
    chart = p_chart([("d1", 100, 4), ("d2", 25, 6), ("d3", 0, 0), ("d4", 275, 10)])
    assert chart.centre == 0.05
    d1, d2, d3, d4 = chart.points
    assert d1.ucl == pytest.approx(0.05 + 3 * math.sqrt(0.0475 / 100))  # 0.11538
    assert d1.lcl == 0.0  # 0.05 - 0.0654 clipped at 0
    assert d2.ucl == pytest.approx(0.05 + 3 * math.sqrt(0.0475 / 25))  # 0.18077
    assert d2.p == 0.24 and d2.out_of_control
    assert (d3.p, d3.ucl, d3.out_of_control) == (None, None, False)
    assert d4.lcl == pytest.approx(0.05 - 3 * math.sqrt(0.0475 / 275))  # 0.01056
    assert d4.p == pytest.approx(10 / 275) and not d4.out_of_control
    assert not d1.out_of_control


def test_p_chart_flags_a_point_below_the_lower_limit() -> None:
    chart = p_chart([("a", 1000, 100), ("b", 1000, 100), ("c", 1000, 10)])
    assert chart.centre == 0.07
    assert [p.out_of_control for p in chart.points] == [True, True, True]
    assert chart.points[2].p < chart.points[2].lcl


def test_p_chart_of_no_parts() -> None:
    chart = p_chart([("a", 0, 0)])
    assert chart.centre is None and chart.points[0].p is None


def test_trend_against_the_baseline_with_its_interval() -> None:
    result = trend(Counts("all", 1000, 31, 0, 0), Counts("all", 1000, 42, 0, 0), target=0.2)
    assert result.change == pytest.approx(31 / 42 - 1)  # -26.19%
    se = math.sqrt(1 / 31 - 1 / 1000 + 1 / 42 - 1 / 1000)
    assert result.low == pytest.approx(math.exp(math.log(31 / 42) - 1.959964 * se) - 1)
    assert result.high == pytest.approx(math.exp(math.log(31 / 42) + 1.959964 * se) - 1)
    assert result.target_met and not result.significant  # 1000 parts are too few to tell
    # se = sqrt(1/31 - 1/1000 + 1/42 - 1/1000) = 0.23252, log(31/42) = -0.30368:
    # exp(-0.30368 -+ 1.95996 * 0.23252) - 1 = -53.2% and +16.4%
    assert trend_sentence(result) == (
        "NG rate 3.1% vs 4.2% in the baseline, down 26% (95% CI -53% to +16%; target -20%)"
    )
    assert trend_sentence(result, "zh") == (
        "不合格率 3.1%，基准期 4.2%，下降 26%（95%置信区间 -53% 至 +16%；目标 -20%）"
    )
    big = trend(Counts("all", 100_000, 3100, 0, 0), Counts("all", 100_000, 4200, 0, 0))
    assert big.significant and big.high is not None and big.high < -0.2


@pytest.mark.parametrize(
    ("current", "baseline", "change", "has_interval", "english", "chinese"),
    [
        (
            Counts("x", 0, 0, 0, 0),
            Counts("x", 10, 1, 0, 0),
            None,
            False,
            "no parts in the period or the baseline: no comparison",
            "期间或基准期没有零件：无法比较",
        ),
        (
            Counts("x", 10, 1, 0, 0),
            Counts("x", 10, 0, 0, 0),
            None,
            False,
            "NG rate 10.0% vs 0.0% in the baseline (no NG in the baseline: no relative change)",
            "不合格率 10.0%，基准期 0.0%（基准期没有不合格：无相对变化）",
        ),
        (
            Counts("x", 10, 0, 0, 0),
            Counts("x", 10, 2, 0, 0),
            -1.0,
            False,
            "NG rate 0.0% vs 20.0% in the baseline, down 100% (target -20%)",
            "不合格率 0.0%，基准期 20.0%，下降 100%（目标 -20%）",
        ),
        # 60/1000 against 40/1000: +50%; se = sqrt(1/60 - 1/1000 + 1/40 - 1/1000) = 0.19917,
        # exp(log 1.5 -+ 1.95996 * 0.19917) - 1 = +1.5% and +121.6%
        (
            Counts("x", 1000, 60, 0, 0),
            Counts("x", 1000, 40, 0, 0),
            pytest.approx(0.5),
            True,
            "NG rate 6.0% vs 4.0% in the baseline, up 50% (95% CI +2% to +122%; target -20%)",
            "不合格率 6.0%，基准期 4.0%，上升 50%（95%置信区间 +2% 至 +122%；目标 -20%）",
        ),
    ],
)
def test_trend_in_words(
    current: Counts,
    baseline: Counts,
    change: object,
    has_interval: bool,
    english: str,
    chinese: str,
) -> None:
    result = trend(current, baseline)
    assert result.change == change
    assert (result.low is not None) == has_interval
    assert trend_sentence(result) == english
    assert trend_sentence(result, "zh") == chinese
