"""Time-ordered result ids: a 48-bit millisecond timestamp and 80 random bits, Crockford base32.

26 characters, sortable as text in creation order (ULID layout), so the newest results come
first under `ORDER BY result_id DESC` and pagination needs no second column.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base32: no I, L, O, U, so an id read aloud or off a label is unambiguous."""

ID_LENGTH = 26
_RANDOM_BITS = 80
_TIME_BITS = 48

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_result_id(now: datetime | None = None) -> str:
    """A fresh id; ids made by this process within one millisecond still sort in call order."""
    global _last_ms, _last_random
    moment = now if now is not None else datetime.now(UTC)
    ms = int(moment.timestamp() * 1000)
    if not 0 <= ms < 1 << _TIME_BITS:
        raise ValueError(f"timestamp {moment.isoformat()} is outside the id's 48-bit range")
    with _lock:
        if ms == _last_ms and _last_random + 1 < 1 << _RANDOM_BITS:
            # Same millisecond: step the random part so the order of calls is kept.
            random = _last_random + 1
        else:
            random = secrets.randbits(_RANDOM_BITS)
        _last_ms, _last_random = ms, random
    return _encode(ms, 10) + _encode(random, 16)


def id_time(result_id: str) -> datetime:
    """The creation time encoded in an id (millisecond precision, UTC)."""
    if not is_result_id(result_id):
        raise ValueError(f"{result_id!r} is not a 26-character Crockford base32 id")
    ms = 0
    for char in result_id[:10].upper():
        ms = ms * 32 + ALPHABET.index(char)
    return datetime.fromtimestamp(ms / 1000, UTC)


def is_result_id(text: str) -> bool:
    """Whether `text` has the shape of an id made by `new_result_id`."""
    return (
        len(text) == ID_LENGTH
        and all(char in ALPHABET for char in text.upper())
        and text[0] in "01234567"  # 26 chars hold 130 bits; the top two are always zero
    )
