"""The `Sink` interface: a sink sends one prepared payload and raises when it could not."""

from __future__ import annotations

from abc import ABC, abstractmethod
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
