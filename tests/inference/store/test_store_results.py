"""Results: round trip, traceability filters, pagination, atomic writes, aggregates."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from store_factories import DEFECTS, T0, make_result

from defectlens.errors import InputError
from defectlens.inference.store import (
    Database,
    DuplicatePart,
    ResultExists,
    Store,
    StoredImage,
    open_database,
)
from defectlens.inference.store.results import insert_rows, result_rows
from defectlens.inference.store.tables import ImageRow, OutboxRow, ResultDefectRow, ResultRow
from defectlens.result import InspectionResult


def counts(db: Database) -> dict[str, int]:
    with db.read() as session:
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
            for table in (ResultRow, ResultDefectRow, ImageRow, OutboxRow)
        }


def test_round_trip_with_defects_images_and_outbox(store: Store, db: Database) -> None:
    result = make_result(
        verdict="NG",
        score=0.91,
        defects=DEFECTS,
        image_url="/v1/results/x/image",
        heatmap_url="/v1/results/x/heatmap",
    )
    store.save_result(
        result,
        images=[
            StoredImage("image", "2026/11/26/a.png", 5000),
            ("heatmap", "2026/11/26/a_h.png", 900),
        ],
        sinks=["webhook", "mqtt"],
    )
    loaded = store.get_result(result.result_id)
    assert loaded == result
    assert loaded is not None and loaded.received_at.tzinfo is not None
    assert [d.class_ for d in loaded.defects] == ["scratch", "dent"]
    assert counts(db) == {"results": 1, "result_defects": 2, "images": 2, "outbox": 2}
    with db.read() as session:
        payload = session.scalars(select(OutboxRow.payload)).first()
    assert payload is not None and payload["result_id"] == result.result_id
    assert payload["defects"][0]["class"] == "scratch"  # the MES payload uses the contract's names
    assert store.get_result("0" * 26) is None


def test_times_in_other_zones_come_back_as_the_same_instant_in_utc(store: Store) -> None:
    plant_time = datetime(2026, 11, 26, 18, 30, tzinfo=timezone(timedelta(hours=9)))
    result = make_result(received_at=plant_time, captured_at=None)
    store.save_result(result)
    loaded = store.get_result(result.result_id)
    assert loaded is not None and loaded.received_at == plant_time
    assert loaded.received_at.utcoffset() == timedelta(0)


def test_filters_and_pagination_newest_first(store: Store) -> None:
    saved = []
    for n in range(25):
        result = make_result(
            n,
            verdict="NG" if n % 5 == 0 else "OK",
            station="S1" if n % 2 == 0 else "S2",
            line="L1" if n < 20 else "L2",
        )
        store.save_result(result)
        saved.append(result.result_id)

    pages, cursor = [], None
    while True:
        page, cursor = store.list_results(limit=10, cursor=cursor)
        pages.append([r.result_id for r in page])
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [result_id for page in pages for result_id in page] == saved[::-1]

    ng, _ = store.list_results(verdict="NG")
    assert [r.result_id for r in ng] == [saved[n] for n in (20, 15, 10, 5, 0)]
    s1_ng, _ = store.list_results(station="S1", verdict="NG")
    assert {r.station for r in s1_ng} == {"S1"} and len(s1_ng) == 3
    assert len(store.list_results(line="L2")[0]) == 5
    by_serial, _ = store.list_results(serial="SN00007")
    assert [r.result_id for r in by_serial] == [saved[7]]
    window, _ = store.list_results(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=6))
    assert [r.result_id for r in window] == saved[5:2:-1]
    # pages of a filtered query keep the filter
    first, cursor = store.list_results(station="S2", limit=4)
    second, _ = store.list_results(station="S2", limit=4, cursor=cursor)
    assert {r.station for r in first + second} == {"S2"}
    assert first[-1].result_id > second[0].result_id


def test_bad_list_arguments_are_input_errors(store: Store) -> None:
    with pytest.raises(InputError, match="limit 1001"):
        store.list_results(limit=1001)
    with pytest.raises(InputError, match="limit 0"):
        store.list_results(limit=0)
    with pytest.raises(InputError, match="verdict"):
        store.list_results(verdict="MAYBE")
    with pytest.raises(InputError, match="time range"):
        store.list_results(since=T0, until=T0)
    assert store.list_results(limit=1000) == ([], None)


def test_a_duplicate_result_id_writes_nothing(store: Store, db: Database) -> None:
    first = make_result(defects=DEFECTS[:1])
    store.save_result(first, images=[("image", "a.png", 10)], sinks=["webhook"])
    before = counts(db)
    retry = first.model_copy(update={"verdict": "NG", "defects": first.defects * 3})
    with pytest.raises(ResultExists, match=first.result_id):
        store.save_result(retry, images=[("image", "b.png", 10)], sinks=["webhook", "mqtt"])
    assert counts(db) == before
    assert store.get_result(first.result_id) == first


def test_invalid_fields_write_nothing(store: Store, db: Database) -> None:
    with pytest.raises(InputError, match="image kind"):
        store.save_result(make_result(1), images=[("image", "a.png", 1), ("thumbnail", "t.png", 1)])
    with pytest.raises(InputError, match=r"results\.serial"):
        store.save_result(make_result(2, serial="S" * 500))
    with pytest.raises(InputError, match="NUL"):
        store.save_result(make_result(3, product="bottle\x00"))
    with pytest.raises(InputError, match="out of range"):
        store.save_result(
            make_result(4, defects=[{**DEFECTS[0], "box": (0, 0, 2**40, 1)}], verdict="NG")
        )
    assert counts(db) == {"results": 0, "result_defects": 0, "images": 0, "outbox": 0}


def test_a_child_row_the_database_refuses_undoes_the_whole_insert(db: Database) -> None:
    # A failure in a later table (here a defect of a result that does not exist) undoes the
    # rows before it.
    parent = result_rows(make_result(5), (), (), "default")[0]
    orphan = result_rows(make_result(7, verdict="NG", defects=DEFECTS), (), (), "default")[1]
    with pytest.raises(IntegrityError), db.write() as session:
        insert_rows(session, [parent, orphan])
    assert counts(db)["results"] == 0
    with db.write() as session:  # the connection is usable again
        insert_rows(session, [parent])
    assert counts(db)["results"] == 1


def test_sqlite_holds_no_connection_or_lock_between_parts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    service, other = open_database(url), open_database(url)  # e.g. the CLI beside the service
    try:
        mine, theirs = Store(service), Store(other)
        mine.save_result(make_result(1))
        assert service.engine.pool.checkedout() == 0
        second = make_result(2)
        theirs.save_result(second)  # not locked out by the service
        mine.save_result(make_result(3))
        with pytest.raises(ResultExists):  # written through the other connection, seen here
            mine.save_result(second)
        assert [r.serial for r in theirs.list_results(limit=10)[0]] == [
            "SN00003",
            "SN00002",
            "SN00001",
        ]
        assert service.engine.pool.checkedout() == 0
    finally:
        service.close()
        other.close()


def test_verdict_counts_by_station_and_time(store: Store) -> None:
    for n in range(12):
        store.save_result(
            make_result(n, verdict="NG" if n % 3 == 0 else "OK", station="S1" if n < 8 else "S2")
        )
    assert store.verdict_counts() == {"OK": 8, "NG": 4, "total": 12}
    assert store.verdict_counts(station="S2") == {"OK": 3, "NG": 1, "total": 4}
    assert store.verdict_counts(
        since=T0 + timedelta(seconds=6), until=T0 + timedelta(seconds=9)
    ) == {
        "OK": 2,
        "NG": 1,
        "total": 3,
    }
    assert store.verdict_counts(station="nowhere") == {"OK": 0, "NG": 0, "total": 0}


def test_concurrent_writers_lose_nothing(store: Store, db: Database) -> None:
    # The service saves from a thread pool; on SQLite writers queue on the busy timeout.
    results = [make_result(n, defects=DEFECTS) for n in range(60)]

    def save(chunk: list[InspectionResult]) -> None:
        for result in chunk:
            store.save_result(result, images=[("image", f"{result.result_id}.png", 10)])

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(save, [results[i::6] for i in range(6)]))
    assert counts(db) == {"results": 60, "result_defects": 120, "images": 60, "outbox": 0}


def test_a_retried_part_gets_the_stored_result_back(store: Store, db: Database) -> None:
    first = make_result(1, verdict="NG", defects=DEFECTS)
    store.save_result(first, images=[("image", "a.png", 10)], sinks=["mqtt"], idempotency_key="K1")
    before = counts(db)
    retry = make_result(2)  # the retry is inspected again: a new id, maybe another verdict
    with pytest.raises(DuplicatePart, match="K1") as caught:
        store.save_result(retry, images=[("image", "b.png", 10)], idempotency_key="K1")
    assert caught.value.existing == first
    assert isinstance(caught.value, InputError)
    assert counts(db) == before and store.get_result(retry.result_id) is None
    assert store.find_result_by_idempotency_key("S1", "K1") == first
    assert store.find_result_by_idempotency_key("S1", "K2") is None
    assert store.find_result_by_idempotency_key("S2", "K1") is None
    # the key is the station's: another station may use it; parts without a key never clash
    store.save_result(make_result(3, station="S2"), idempotency_key="K1")
    store.save_result(make_result(4))
    store.save_result(make_result(5))
    assert counts(db)["results"] == 4
    with pytest.raises(InputError, match="empty"):
        store.save_result(make_result(6), idempotency_key=" ")
    with pytest.raises(InputError, match=r"results\.idempotency_key"):
        store.save_result(make_result(7), idempotency_key="k" * 129)
    # a retry of the very same result id with its key is the duplicate part, too
    with pytest.raises(DuplicatePart):
        store.save_result(first, idempotency_key="K1")


def test_two_retries_racing_store_one_result(db: Database) -> None:
    # The first retry's transaction has inserted but not committed when the second inserts:
    # the database's unique index holds the second until the first commits, then refuses it,
    # and the second caller gets the first's result.
    store = Store(db)
    winner, loser = make_result(1, verdict="NG"), make_result(2)
    other = open_database(db.engine.url, migrate=False)  # the other retry's connection
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            with other.write() as session:
                insert_rows(session, result_rows(winner, (), (), "default", "K1"))
                racing = pool.submit(store.save_result, loser, idempotency_key="K1")
                time.sleep(0.5)
                assert not racing.done()  # waiting for the first to commit or roll back
            with pytest.raises(DuplicatePart) as caught:
                racing.result(timeout=10)
    finally:
        other.close()
    assert caught.value.existing == winner
    assert counts(db)["results"] == 1


def test_many_retries_at_once_store_one_result(store: Store, db: Database) -> None:
    parts = [make_result(n) for n in range(8)]

    def save(part: InspectionResult) -> str:
        images = [("image", f"{part.result_id}.png", 1)]
        try:
            store.save_result(part, images=images, idempotency_key="retry-me")
        except DuplicatePart as duplicate:
            return duplicate.existing.result_id
        return part.result_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(save, parts))
    assert counts(db) == {"results": 1, "result_defects": 0, "images": 1, "outbox": 0}
    stored = store.find_result_by_idempotency_key("S1", "retry-me")
    assert stored is not None and answers == [stored.result_id] * 8
