"""The delivery worker: one thread per sink claims due outbox rows, sends them in order per
station, and records each outcome: delivered, a later try (exponential back-off with jitter),
or a dead letter after too many failures.

A failed row holds back its station's later rows for that sink (they are released untried);
other stations go on. A thread wakes when `notify()` says a result was stored, and at least
every `poll_s` for rows whose back-off has run out.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from defectlens.inference.delivery.sink import DeliveryFailed, DeliveryRejected, Sink
from defectlens.inference.store.outbox import Delivery
from defectlens.inference.store.tables import utc_now

log = logging.getLogger(__name__)


class Outbox(Protocol):
    """The store operations the worker uses (`Store` has them, from `store/outbox.py`)."""

    def claim_deliveries(
        self, sink: str, limit: int = ..., lease_s: float = ..., now: datetime | None = ...
    ) -> list[Delivery]: ...
    def mark_delivered(self, ids: Sequence[int], now: datetime | None = ...) -> None: ...
    def mark_failed(
        self, delivery_id: int, error: str, next_attempt_at: datetime, dead: bool = ...
    ) -> None: ...
    def release_deliveries(self, ids: Sequence[int], now: datetime | None = ...) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed row is tried again, and when it becomes a dead letter."""

    max_attempts: int = 100
    """Failures of any kind after which a row is dead."""
    max_rejections: int = 3
    """A row the receiver rejected (`DeliveryRejected`) is dead after this many tries."""
    backoff_s: float = 1.0
    """The wait after the first failure; it doubles with each further one..."""
    max_backoff_s: float = 30.0
    """...up to this. Each wait is drawn between half and all of it (jitter), so instances
    and stations do not retry in step."""

    def delay_s(self, failures: int, draw: float) -> float:
        """The wait after the `failures`-th failure (1 for the first); `draw` in [0, 1)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(failures - 1, 60))
        return ceiling * (0.5 + 0.5 * draw)

    def is_dead(self, failures: int, rejected: bool) -> bool:
        return failures >= self.max_attempts or (rejected and failures >= self.max_rejections)


@dataclass(frozen=True)
class SinkHealth:
    """What one sink's thread has seen since the worker started."""

    sink: str
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    failing_since: float | None = None
    """Wall time (time.time()) of the first failure since the last success; None when the
    last try succeeded."""
    last_error: str | None = None
    last_delivered_at: float | None = None


LagObserver = Callable[[str, float], None]
"""Called with (sink, seconds from stored to acknowledged) for every delivered row."""


class DeliveryWorker:
    """Delivers the outbox to `sinks`, a thread per sink, until `stop()`."""

    def __init__(
        self,
        outbox: Outbox,
        sinks: Sequence[Sink],
        policy: RetryPolicy | None = None,
        batch: int = 100,
        lease_s: float = 60.0,
        poll_s: float = 0.5,
        on_delivered: LagObserver | None = None,
        on_failed: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.sinks = list(sinks)
        self.policy = policy or RetryPolicy()
        self.batch = batch
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.on_delivered = on_delivered
        self.on_failed = on_failed
        self._random = random.Random()
        self._lock = threading.Lock()
        self._health = {sink.name: SinkHealth(sink.name) for sink in self.sinks}
        self._wake = {sink.name: threading.Event() for sink in self.sinks}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for sink in self.sinks:
            thread = threading.Thread(
                target=self._run, args=(sink,), name=f"deliver-{sink.name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def notify(self) -> None:
        """A result was stored: wake every sink's thread."""
        for event in self._wake.values():
            event.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the rows being sent; rows claimed and not tried come due again when
        their lease ends."""
        self._stop.set()
        self.notify()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", sink.name)

    def health(self) -> dict[str, SinkHealth]:
        with self._lock:
            return dict(self._health)

    def _run(self, sink: Sink) -> None:
        wake = self._wake[sink.name]
        while not self._stop.is_set():
            wake.clear()
            try:
                sent = self.deliver_once(sink)
            except Exception:  # the store did not answer: wait and claim again
                log.exception("delivery to %s: claiming from the outbox failed", sink.name)
                sent = 0
            if sent == 0:
                wake.wait(self.poll_s)

    def deliver_once(self, sink: Sink) -> int:
        """Claim due rows of `sink` and send them, a station's in order; returns how many
        were tried."""
        claimed = self.outbox.claim_deliveries(sink.name, self.batch, self.lease_s)
        delivered: list[Delivery] = []
        held_back: list[int] = []
        blocked: set[str] = set()
        tried = 0
        for delivery in claimed:
            if delivery.station in blocked or self._stop.is_set():
                held_back.append(delivery.id)
                continue
            tried += 1
            try:
                sink.send(delivery.payload, delivery.result_id)
            except Exception as error:
                blocked.add(delivery.station)
                self._failed(sink, delivery, error)
                continue
            delivered.append(delivery)
            # Mark as we go when a sink is slow, so a crash re-sends little.
            if len(delivered) >= 20:
                self._delivered(sink, delivered)
                delivered = []
        self._delivered(sink, delivered)
        self.outbox.release_deliveries(held_back)
        return tried

    def _delivered(self, sink: Sink, rows: list[Delivery]) -> None:
        if not rows:
            return
        now = utc_now()
        self.outbox.mark_delivered([row.id for row in rows], now)
        with self._lock:
            health = self._health[sink.name]
            self._health[sink.name] = replace(
                health,
                delivered=health.delivered + len(rows),
                failing_since=None,
                last_delivered_at=time.time(),
            )
        if self.on_delivered is not None:
            for row in rows:
                self.on_delivered(sink.name, (now - row.created_at).total_seconds())

    def _failed(self, sink: Sink, delivery: Delivery, error: Exception) -> None:
        failures = delivery.attempts + 1
        rejected = isinstance(error, DeliveryRejected)
        dead = self.policy.is_dead(failures, rejected)
        delay = self.policy.delay_s(failures, self._random.random())
        message = str(error) if isinstance(error, DeliveryFailed) else repr(error)
        self.outbox.mark_failed(
            delivery.id, message, utc_now() + timedelta(seconds=delay), dead=dead
        )
        with self._lock:
            health = self._health[sink.name]
            self._health[sink.name] = replace(
                health,
                failed=health.failed + 1,
                dead=health.dead + (1 if dead else 0),
                failing_since=health.failing_since or time.time(),
                last_error=message,
            )
        if self.on_failed is not None:
            self.on_failed(sink.name, dead)
        extra = {"result_id": delivery.result_id, "station": delivery.station}
        if dead:
            log.error(
                "delivery of %s to %s is a dead letter after %d tries: %s",
                delivery.result_id,
                sink.name,
                failures,
                message,
                extra=extra,
            )
        else:
            log.warning(
                "delivery of %s to %s failed (try %d), again in %.1f s: %s",
                delivery.result_id,
                sink.name,
                failures,
                delay,
                message,
                extra=extra,
            )
