"""The outbox: results waiting to be delivered to each sink (MES webhook, MQTT, OPC UA).

`save_result` writes a result's outbox rows in its own transaction; the delivery worker
(`inference/delivery/`) claims due rows here, sends them and records the outcome. A claim
leases its rows (their next try moves `lease_s` ahead), so another worker or instance leaves
them alone while they are sent, and a worker that dies mid-send lets them come due again: a
row is delivered at least once. A station's rows go to a sink in order: a row is claimed only
when every earlier row of its station for that sink is delivered, dead, or claimed with it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, case, exists, func, select, text, update
from sqlalchemy.orm import Session, aliased

from defectlens.errors import Conflict, InputError, NotFound
from defectlens.inference.store.database import Database
from defectlens.inference.store.tables import OutboxRow, to_utc, utc_now

DeliveryState = Literal["pending", "delivered", "dead"]
DELIVERY_STATES: tuple[DeliveryState, ...] = ("pending", "delivered", "dead")
MAX_ERROR_CHARS = 2000
"""The longest last error kept on a row (a receiver's whole error page is not needed)."""


@dataclass(frozen=True)
class Delivery:
    """A claimed outbox row: what to send, to which sink."""

    id: int
    result_id: str
    sink: str
    station: str
    payload: dict[str, Any]
    attempts: int
    """Tries before this one."""
    created_at: datetime
    """When the result was stored (lag is measured from here)."""


@dataclass(frozen=True)
class DeliveryRecord:
    """An outbox row's state, for the API and the CLI."""

    id: int
    result_id: str
    sink: str
    station: str
    state: DeliveryState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    delivered_at: datetime | None
    dead_at: datetime | None
    last_error: str | None

    @classmethod
    def of(cls, row: OutboxRow) -> DeliveryRecord:
        return cls(
            row.id,
            row.result_id,
            row.sink,
            row.station,
            _state(row),
            row.attempts,
            row.created_at,
            row.next_attempt_at,
            row.delivered_at,
            row.dead_at,
            row.last_error,
        )


@dataclass(frozen=True)
class Backlog:
    """One sink's rows still to deliver, and how long the oldest has waited."""

    sink: str
    pending: int
    dead: int
    oldest_pending_at: datetime | None


def _state(row: OutboxRow) -> DeliveryState:
    if row.delivered_at is not None:
        return "delivered"
    return "dead" if row.dead_at is not None else "pending"


_PENDING = and_(OutboxRow.delivered_at.is_(None), OutboxRow.dead_at.is_(None))


class OutboxStore:
    """Claiming, marking, listing and re-sending outbox rows."""

    db: Database

    def claim_deliveries(
        self, sink: str, limit: int = 100, lease_s: float = 60.0, now: datetime | None = None
    ) -> list[Delivery]:
        """Up to `limit` due rows of `sink` in id order, leased for `lease_s`: each one's
        earlier rows of its station are delivered, dead or in this claim. On PostgreSQL the
        claims of one sink take turns (a transaction-scoped advisory lock) and skip rows
        another transaction holds (`FOR UPDATE SKIP LOCKED`); on SQLite the write lock
        serialises them."""
        moment = to_utc(now) if now is not None else utc_now()
        earlier = aliased(OutboxRow)
        waiting_before = exists().where(
            earlier.sink == OutboxRow.sink,
            earlier.station == OutboxRow.station,
            earlier.id < OutboxRow.id,
            earlier.delivered_at.is_(None),
            earlier.dead_at.is_(None),
            earlier.next_attempt_at > moment,
        )
        query = (
            select(OutboxRow)
            .where(OutboxRow.sink == sink, _PENDING, OutboxRow.next_attempt_at <= moment)
            .where(~waiting_before)
            .order_by(OutboxRow.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self.db.write() as session:
            _take_turn(session, sink)
            rows = list(session.scalars(query))
            if not rows:
                return []
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_([row.id for row in rows]))
                .values(next_attempt_at=moment + timedelta(seconds=lease_s))
            )
            return [
                Delivery(
                    row.id,
                    row.result_id,
                    row.sink,
                    row.station,
                    dict(row.payload),
                    row.attempts,
                    row.created_at,
                )
                for row in rows
            ]

    def mark_delivered(self, ids: Sequence[int], now: datetime | None = None) -> None:
        """The sink acknowledged these rows."""
        if not ids:
            return
        moment = to_utc(now) if now is not None else utc_now()
        with self.db.write() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)), OutboxRow.delivered_at.is_(None))
                .values(
                    delivered_at=moment,
                    attempts=OutboxRow.attempts + 1,
                    last_error=None,
                    dead_at=None,
                )
            )

    def mark_failed(
        self, delivery_id: int, error: str, next_attempt_at: datetime, dead: bool = False
    ) -> None:
        """A try failed with `error`: try again at `next_attempt_at`, or (`dead`) never
        again until someone retries it."""
        values: dict[str, Any] = {
            "attempts": OutboxRow.attempts + 1,
            "last_error": error[:MAX_ERROR_CHARS],
            "next_attempt_at": to_utc(next_attempt_at),
        }
        if dead:
            values["dead_at"] = utc_now()
        with self.db.write() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == delivery_id, OutboxRow.delivered_at.is_(None))
                .values(**values)
            )

    def release_deliveries(self, ids: Sequence[int], now: datetime | None = None) -> None:
        """Claimed rows that were not tried (an earlier row of their station failed): due
        again at once, behind that row, without counting a try."""
        if not ids:
            return
        moment = to_utc(now) if now is not None else utc_now()
        with self.db.write() as session:
            session.execute(
                update(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)), _PENDING)
                .values(next_attempt_at=moment)
            )

    def list_deliveries(
        self,
        state: DeliveryState | None = None,
        sink: str | None = None,
        station: str | None = None,
        limit: int = 100,
    ) -> list[DeliveryRecord]:
        """Outbox rows newest first, filtered."""
        if not 1 <= limit <= 1000:
            raise InputError(f"limit {limit}: must be between 1 and 1000")
        query = select(OutboxRow).order_by(OutboxRow.id.desc()).limit(limit)
        if state == "pending":
            query = query.where(_PENDING)
        elif state == "delivered":
            query = query.where(OutboxRow.delivered_at.is_not(None))
        elif state == "dead":
            query = query.where(OutboxRow.delivered_at.is_(None), OutboxRow.dead_at.is_not(None))
        elif state is not None:
            raise InputError(f"state {state!r}: expected one of {', '.join(DELIVERY_STATES)}")
        if sink is not None:
            query = query.where(OutboxRow.sink == sink)
        if station is not None:
            query = query.where(OutboxRow.station == station)
        with self.db.read() as session:
            return [DeliveryRecord.of(row) for row in session.scalars(query)]

    def get_delivery(self, delivery_id: int) -> DeliveryRecord | None:
        with self.db.read() as session:
            row = session.get(OutboxRow, delivery_id)
            return None if row is None else DeliveryRecord.of(row)

    def retry_delivery(self, delivery_id: int, now: datetime | None = None) -> DeliveryRecord:
        """Send a dead (or waiting) row again at once, with its tries counted from zero.
        `NotFound` for an unknown id, `Conflict` for a delivered row."""
        moment = to_utc(now) if now is not None else utc_now()
        with self.db.write() as session:
            row = session.get(OutboxRow, delivery_id, with_for_update=True)
            if row is None:
                raise NotFound(f"delivery {delivery_id} not found")
            if row.delivered_at is not None:
                raise Conflict(
                    f"delivery {delivery_id} (result {row.result_id} to {row.sink}) was "
                    f"delivered at {row.delivered_at.isoformat()}; nothing to retry"
                )
            row.dead_at = None
            row.attempts = 0
            row.next_attempt_at = moment
            session.flush()
            return DeliveryRecord.of(row)

    def outbox_backlog(self) -> list[Backlog]:
        """Per sink with rows not delivered: rows pending, rows dead, and when the oldest
        pending row was stored."""
        is_dead = OutboxRow.dead_at.is_not(None)
        query = (
            select(
                OutboxRow.sink,
                func.count(case((~is_dead, 1))),
                func.count(case((is_dead, 1))),
                func.min(case((~is_dead, OutboxRow.created_at))),
            )
            .where(OutboxRow.delivered_at.is_(None))
            .group_by(OutboxRow.sink)
            .order_by(OutboxRow.sink)
        )
        with self.db.read() as session:
            return [
                Backlog(sink, int(pending), int(dead), _utc_or_none(oldest))
                for sink, pending, dead, oldest in session.execute(query)
            ]


def _utc_or_none(value: Any) -> datetime | None:
    """A MIN over a CASE loses the column's type on SQLite: parse its text there."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return to_utc(value)


def _take_turn(session: Session, sink: str) -> None:
    """On PostgreSQL, wait for the other claims of `sink` to commit, so a claim never sees a
    station's earlier rows as free while another transaction is leasing them (SKIP LOCKED
    alone would skip those and hand out the later rows first)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"defectlens.outbox:{sink}".encode()) - 2**31
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
