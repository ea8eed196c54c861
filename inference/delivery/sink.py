"""The `Sink` interface: a sink sends one prepared payload and raises when it could not."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Any

from defectlens.errors import DefectLensError


class DeliveryFailed(DefectLensError):
    """The payload did not reach the receiver (down, timed out, an error answer): the
    worker tries again later."""


class DeliveryRejected(DeliveryFailed):
    """The receiver answered that it will not take this payload (e.g. HTTP 400): trying
    again is unlikely to help, so the row goes to dead letters after a few such answers."""


class Sink(ABC):
    """Where results go: one sink a kind of receiver (`name`: the outbox rows' `sink`)."""

    name: str

    @abstractmethod
    def send(self, payload: dict[str, Any], result_id: str) -> None:
        """Deliver `payload` (the result `result_id`'s) and return once the receiver has
        acknowledged it; raise `DeliveryFailed` (or `DeliveryRejected`) otherwise. Called
        from one thread at a time, a station's results in order."""

    def close(self) -> None:  # noqa: B027  (a sink without connections has nothing to close)
        """Release connections; the worker calls it when it stops."""


class RecentIds:
    """The last `size` result ids a sink has counted: delivery is at least once, so a result
    sent again (an unacknowledged send, rows sent again after a crash) is not counted twice."""

    def __init__(self, size: int = 10_000) -> None:
        self._order: deque[str] = deque()
        self._ids: set[str] = set()
        self._size = size

    def __contains__(self, result_id: object) -> bool:
        return result_id in self._ids

    def add(self, result_id: str) -> bool:
        """Remember `result_id`; False if it was remembered already."""
        if result_id in self._ids:
            return False
        self._order.append(result_id)
        self._ids.add(result_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return True
