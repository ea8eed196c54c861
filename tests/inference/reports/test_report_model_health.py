"""Model health: score drift against the validation scores, parts near the threshold and QA
overrides, by hand-computed figures; and from the rollups of a seeded store."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest
from report_seed import Seed
from sqlalchemy import insert

from defectlens.inference.reports import queries
from defectlens.inference.reports.calendar import plant_zone, window
from defectlens.inference.reports.model_health import (
    BINS,
    ModelCounts,
    model_health,
    stability_index,
    validation_shares,
)
from defectlens.inference.reports.report import models_health
from defectlens.inference.store import Database
from defectlens.inference.store.tables import LabelRow, ModelVersionRow

SMOOTH = 1e-4


@pytest.mark.parametrize(
    ("quantiles", "first_shares"),
    [
        ([0.0, 0.1], [0.5, 0.5, 0.0]),  # uniform on [0, 0.1): half in each of two bins
        ([0.0, 0.05, 0.2], [0.5, 1 / 6, 1 / 6, 1 / 6, 0.0]),  # median at 0.05
        ([0.3, 0.3], [0.0] * 6 + [1.0, 0.0]),  # every score 0.3: all in [0.30, 0.35)
        ([-1.0, 3.0], [0.25 + 0.0125] + [0.0125] * 6),  # below 0 in the first bin
    ],
)
def test_validation_shares(quantiles: list[float], first_shares: list[float]) -> None:
    shares = validation_shares(quantiles)
    assert len(shares) == BINS and sum(shares) == pytest.approx(1.0)
    assert shares[: len(first_shares)] == pytest.approx(first_shares)


@pytest.mark.parametrize(
    ("expected", "counts", "index"),
    [
        ([0.5, 0.5], [50, 50], 0.0),
        ([0.5, 0.5], [75, 25], 0.25 * math.log(1.5) + 0.25 * math.log(2)),  # 0.2747
        ([1.0, 0.0], [0, 10], 2 * (1 - SMOOTH) * math.log(1 / SMOOTH)),  # empty bins smoothed
        ([0.5, 0.5], [0, 0], None),
    ],
)
def test_stability_index(expected: list[float], counts: list[int], index: float | None) -> None:
    assert stability_index(expected, counts) == pytest.approx(index)


def test_model_health_figures_and_alert() -> None:
    counts = ModelCounts("m", "v1", parts=200, ng=12, near_threshold=10, labelled=20, overridden=5)
    scores = [100, 100] + [0] * (BINS - 2)
    health = model_health(counts, scores, [0.0, 0.1], alert_level=0.25)
    assert (health.ng_rate, health.near_threshold_share, health.override_rate) == (
        0.06,
        0.05,
        0.25,
    )
    assert health.drift == pytest.approx(0.0) and not health.alert
    shifted = model_health(counts, [0, 100, 100] + [0] * (BINS - 3), [0.0, 0.1], 0.25)
    assert shifted.drift is not None and shifted.drift > 0.25 and shifted.alert
    unknown = model_health(counts, scores, None, 0.25)  # a card from before the quantiles
    assert unknown.drift is None and not unknown.alert
    none = model_health(ModelCounts("m", "v1", 0, 0, 0, 0, 0), [], [0.0, 0.1], 0.25)
    assert (none.ng_rate, none.override_rate, none.drift, none.alert) == (None, None, None, False)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[arg-type, misc]


def test_model_health_from_the_store(db: Database, seed: Seed) -> None:
    zone = plant_zone("UTC")
    scope = queries.Scope(*window(date(2026, 5, 4), date(2026, 5, 4), zone))
    # v1: scores 0.01 and 0.02 (bin 0), 0.07 (bin 1), 0.9 (bin 18, NG); 0.52 is near 0.5.
    seed(utc(2026, 5, 4, 8), "OK", score=0.01, label=("NG", "dent"))  # QA overrides it
    seed(utc(2026, 5, 4, 9), "OK", score=0.02, label=("OK", None))
    seed(utc(2026, 5, 4, 10), "OK", score=0.07)
    ng = seed(utc(2026, 5, 4, 11), "NG", score=0.9, label=("NG", "dent"))
    seed(utc(2026, 5, 4, 12), "NG", score=0.52, model_version="v2")
    seed(utc(2026, 5, 5, 12), "NG", score=0.9)  # the next day: outside
    with db.write() as session:
        first = session.scalars(
            insert(LabelRow).returning(LabelRow.id),
            [{"result_id": ng, "label": "OK", "author": "qa2"}],
        ).one()  # a correction: the NG part is OK after all
        session.execute(
            insert(LabelRow),
            [{"result_id": ng, "label": "OK", "author": "qa3", "overrides_label_id": first}],
        )
        session.execute(
            insert(ModelVersionRow),
            [
                {
                    "name": "m",
                    "version": "v1",
                    "family": "anomaly",
                    "path": "/models/m/v1",
                    "sha256": "0" * 64,
                    "metrics": {"good_score_quantiles": [0.0, 0.1]},
                }
            ],
        )
    assert queries.by_model(db, scope) == [
        ModelCounts("m", "v1", parts=4, ng=1, near_threshold=0, labelled=4, overridden=2),
        ModelCounts("m", "v2", parts=1, ng=1, near_threshold=1, labelled=0, overridden=0),
    ]
    bins = queries.score_bins(db, scope)
    assert bins[("m", "v1")][:2] == [2, 1] and bins[("m", "v1")][18] == 1
    v1, v2 = models_health(db, scope, alert_level=0.25)
    # shares 0.5, 0.25, 0.25 (bin 18) against 0.5, 0.5, 0 (smoothed to 1e-4).
    expected = 0.25 * math.log(2) + (0.25 - SMOOTH) * math.log(0.25 / SMOOTH)
    assert v1.drift == pytest.approx(expected) and v1.alert
    assert v1.override_rate == 0.5
    assert v2.drift is None and v2.near_threshold_share == 1.0
