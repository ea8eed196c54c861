"""Result ids: 26 Crockford base32 characters that sort in creation order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from defectlens.inference.store.ids import ALPHABET, id_time, is_result_id, new_result_id


def test_ids_sort_by_time_and_within_one_millisecond() -> None:
    t0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    later = new_result_id(t0 + timedelta(milliseconds=1))
    earlier = new_result_id(t0)
    same_ms = [new_result_id(t0) for _ in range(50)]
    assert earlier < later
    assert same_ms == sorted(same_ms)
    assert len(set(same_ms)) == 50


def test_id_shape_and_encoded_time() -> None:
    moment = datetime(2026, 11, 26, 8, 0, 0, 123000, tzinfo=UTC)
    result_id = new_result_id(moment)
    assert len(result_id) == 26 and set(result_id) <= set(ALPHABET)
    assert is_result_id(result_id)
    assert id_time(result_id) == moment
    assert not is_result_id("not-an-id") and not is_result_id("I" * 26)
