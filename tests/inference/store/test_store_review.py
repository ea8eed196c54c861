"""The review queue's order and filters, computed by the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from store_factories import T0, make_result

from defectlens.errors import InputError
from defectlens.inference.store import Store
from defectlens.inference.store.review import ReviewFilters, review_items

# (n, verdict, score): each result keeps its image unless said otherwise.
PARTS = [
    (0, "OK", 0.10),  # OK, far from the threshold: the random OK sample
    (1, "NG", 0.95),  # NG, sure
    (2, "OK", 0.42),  # OK near the threshold (0.5 - 0.15 <= 0.42)
    (3, "NG", 0.55),  # NG near the threshold: first of the NG parts
    (4, "OK", 0.20),  # labelled NG: disagrees with the model
    (5, "NG", 0.80),  # labelled NG: agrees, so not in the queue
    (6, "OK", 0.30),  # OK sample
]
NO_IMAGE = 7  # an NG part whose image was not kept: never in the queue or gallery


@pytest.fixture
def parts(store: Store) -> dict[int, str]:
    ids = {}
    for n, verdict, score in PARTS:
        result = make_result(n, verdict=verdict, score=score, station="S2" if n == 6 else "S1")
        store.save_result(result, images=[("image", f"{n}.png", 10)])
        ids[n] = result.result_id
    lost = make_result(NO_IMAGE, verdict="NG", score=0.99)
    store.save_result(lost, images=[])
    store.add_label(ids[4], "NG", "qa:li", "scratch")
    store.add_label(ids[5], "OK", "qa:li")
    store.add_label(ids[5], "NG", "qa:wang")  # the latest label counts: it agrees
    return ids


def order(store: Store, parts: dict[int, str], **filters: object) -> list[tuple[int, str]]:
    by_id = {result_id: n for n, result_id in parts.items()}
    items, total = review_items(store.db, ReviewFilters(**filters), "queue")  # type: ignore[arg-type]
    assert total == len(items)
    return [(by_id[item.result_id], item.reason) for item in items]


def test_the_queue_orders_parts_by_value_to_label(store: Store, parts: dict[int, str]) -> None:
    queue = order(store, parts)
    # NG nearest the threshold first, then OK near it, then the OK sample (in the order of
    # their ids' random bits, so only as a set), then the label that disagrees.
    assert queue[:3] == [(3, "ng"), (1, "ng"), (2, "near_threshold")]
    assert sorted(queue[3:5]) == [(0, "ok_sample"), (6, "ok_sample")]
    assert queue[5:] == [(4, "disagrees")]


def test_the_gallery_shows_every_part_with_an_image_newest_first(
    store: Store, parts: dict[int, str]
) -> None:
    items, total = review_items(store.db, ReviewFilters(), "newest")
    assert total == 7
    assert [item.result_id for item in items] == [parts[n] for n in range(6, -1, -1)]
    agreed = next(item for item in items if item.result_id == parts[5])
    assert (agreed.reason, agreed.label, agreed.labelled_by) == ("agrees", "NG", "qa:wang")


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"station": "S2"}, {6}),
        ({"stations": ("S2",)}, {6}),
        ({"verdict": "NG"}, {1, 3}),
        ({"labelled": True}, {4}),
        ({"labelled": False}, {0, 1, 2, 3, 6}),
        ({"min_score": 0.4, "max_score": 0.9}, {2, 3}),
        ({"since": T0 + timedelta(seconds=2), "until": T0 + timedelta(seconds=4)}, {2, 3}),
    ],
)
def test_filters(
    store: Store, parts: dict[int, str], filters: dict[str, object], expected: set[int]
) -> None:
    assert {n for n, _ in order(store, parts, **filters)} == expected


def test_bad_page_or_verdict_is_an_input_error(store: Store) -> None:
    with pytest.raises(InputError, match="limit 0"):
        review_items(store.db, ReviewFilters(), limit=0)
    with pytest.raises(InputError, match="verdict 'maybe'"):
        review_items(store.db, ReviewFilters(verdict="maybe"))
