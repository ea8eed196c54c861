"""The outbox on both databases: claims in per-station order with leases, outcomes, dead
letters and their retry, the backlog; and migration 0003 on rows from before it."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text
from store_factories import T0, make_result

from defectlens.errors import Conflict, NotFound
from defectlens.inference.store import Store, upgrade
from defectlens.inference.store.connect import make_engine
from defectlens.inference.store.tables import utc_now


def _save(store: Store, n: int, station: str = "S1", sinks: tuple[str, ...] = ("webhook",)) -> str:
    result = make_result(n, station=station)
    store.save_result(result, sinks=sinks, payload={"result_id": result.result_id, "n": n})
    return result.result_id


def test_claim_hands_out_due_rows_in_order_with_their_payload_and_leases_them(
    store: Store,
) -> None:
    ids = [_save(store, n) for n in range(3)]
    claimed = store.claim_deliveries("webhook", limit=10, lease_s=60)
    assert [d.result_id for d in claimed] == ids
    assert [d.payload["n"] for d in claimed] == [0, 1, 2]
    assert {d.station for d in claimed} == {"S1"} and all(d.attempts == 0 for d in claimed)
    assert store.claim_deliveries("webhook") == []  # leased
    assert store.claim_deliveries("mqtt") == []  # no rows for that sink
    later = utc_now() + timedelta(seconds=61)
    assert len(store.claim_deliveries("webhook", now=later)) == 3  # the lease ran out


def test_a_failed_row_holds_back_only_its_own_stations_later_rows(store: Store) -> None:
    first = _save(store, 0, "S1")
    _save(store, 1, "S1")
    other = _save(store, 2, "S2")
    claimed = store.claim_deliveries("webhook")
    head = next(d for d in claimed if d.result_id == first)
    retry_at = utc_now() + timedelta(seconds=30)
    store.mark_failed(head.id, "receiver down", retry_at)
    store.release_deliveries([d.id for d in claimed if d.result_id not in (first, other)])
    store.mark_delivered([d.id for d in claimed if d.result_id == other])
    assert store.claim_deliveries("webhook") == []  # S1's second waits for its first
    again = store.claim_deliveries("webhook", now=retry_at + timedelta(seconds=1))
    assert [d.result_id for d in again][:1] == [first] and again[0].attempts == 1
    record = store.get_delivery(head.id)
    assert record is not None and record.last_error == "receiver down"


def test_dead_letters_free_the_station_are_listed_and_retried(store: Store) -> None:
    first = _save(store, 0)
    second = _save(store, 1)
    head = store.claim_deliveries("webhook", limit=1)[0]
    store.mark_failed(head.id, "400 bad payload", utc_now() + timedelta(hours=1), dead=True)
    assert [d.result_id for d in store.claim_deliveries("webhook")] == [second]
    dead = store.list_deliveries(state="dead")
    assert [(d.result_id, d.state, d.attempts) for d in dead] == [(first, "dead", 1)]
    assert dead[0].last_error == "400 bad payload" and dead[0].dead_at is not None
    retried = store.retry_delivery(head.id)
    assert retried.state == "pending" and retried.attempts == 0
    assert [d.result_id for d in store.claim_deliveries("webhook")] == [first]
    store.mark_delivered([head.id])
    with pytest.raises(Conflict, match="delivered"):
        store.retry_delivery(head.id)
    with pytest.raises(NotFound):
        store.retry_delivery(10**9)


def test_backlog_counts_pending_and_dead_per_sink(store: Store) -> None:
    for n in range(3):
        _save(store, n, sinks=("webhook", "mqtt"))
    store.mark_delivered([d.id for d in store.claim_deliveries("mqtt")])
    head = store.claim_deliveries("webhook", limit=1)[0]
    store.mark_failed(head.id, "gone", utc_now(), dead=True)
    backlog = {b.sink: b for b in store.outbox_backlog()}
    assert set(backlog) == {"webhook"}
    assert (backlog["webhook"].pending, backlog["webhook"].dead) == (2, 1)
    oldest = backlog["webhook"].oldest_pending_at
    assert oldest is not None and abs((utc_now() - oldest).total_seconds()) < 60


def test_concurrent_claims_never_hand_out_a_row_twice_nor_out_of_order(store: Store) -> None:
    for n in range(60):
        _save(store, n, station=f"S{n % 3}")
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def claim() -> None:
        while True:
            rows = store.claim_deliveries("webhook", limit=7)
            if not rows:
                return
            with lock:
                seen.extend((d.station, d.result_id) for d in rows)
            store.mark_delivered([d.id for d in rows])

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 60 and len(set(seen)) == 60
    for station in ("S0", "S1", "S2"):
        ids = [result_id for s, result_id in seen if s == station]
        assert ids == sorted(ids)


def test_0003_names_the_station_of_existing_rows_and_goes_back(database_url: str) -> None:
    upgrade(database_url, "0002")
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO results (result_id, verdict, score, threshold, station, "
                    "received_at, model_name, model_version, timings_ms) VALUES ('R1', 'NG', "
                    "0.9, 0.5, 'S7', :at, 'm', 'v', '{}')"
                ),
                {"at": T0},
            )
            connection.execute(
                text(
                    "INSERT INTO outbox (result_id, sink, payload, created_at, attempts, "
                    "next_attempt_at) VALUES ('R1', 'webhook', '{}', :at, 0, :at)"
                ),
                {"at": T0},
            )
        upgrade(database_url)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT station, dead_at FROM outbox")).all()
            assert rows == [("S7", None)]
        upgrade(database_url, "0002")
        with engine.connect() as connection:
            assert connection.execute(text("SELECT sink FROM outbox")).all() == [("webhook",)]
    finally:
        engine.dispose()
