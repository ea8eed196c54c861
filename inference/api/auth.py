"""Who is calling: the API key from `X-API-Key` or `Authorization: Bearer`, and its role.

Roles: `line` inspects; `qa` also creates stations, promotes and rolls back models, and
re-sends deliveries; `manager` reads results and reports; `admin` may do everything. No key
or an unknown, revoked or expired key: 401; a valid key whose role (or station scope) may
not call the route: 403. Verified keys are remembered for a few seconds
(`key_cache_s`) so the per-part path does not ask the database every time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

if TYPE_CHECKING:
    from defectlens.inference.store.records import VerifiedKey

Role = Literal["line", "qa", "manager", "admin"]
ROLES: tuple[Role, ...] = ("line", "qa", "manager", "admin")

# Who may call what; admin is added to every set. Reads of results, stations and models are
# open to every role: a line's operator panel shows the part it just inspected, and a
# station's model is no secret to the people who run it.
INSPECT: frozenset[Role] = frozenset({"line", "qa"})
READ: frozenset[Role] = frozenset({"line", "qa", "manager"})
DEPLOY: frozenset[Role] = frozenset({"qa"})
"""Create stations, promote and roll back models."""
ADMIN: frozenset[Role] = frozenset()


@dataclass(frozen=True)
class Caller:
    """An authenticated caller."""

    role: Role
    name: str
    """`key:<id>` of the caller's key (or `auth-disabled`), recorded as the actor in the
    audit log: unique and kept after the key is revoked, where key names may repeat."""
    key_id: int | None = None
    stations: tuple[str, ...] | None = None
    """The stations the key is limited to; None: every station."""

    def may_use_station(self, station: str) -> bool:
        return self.stations is None or station in self.stations


AUTH_DISABLED_CALLER = Caller(role="admin", name="auth-disabled")


def caller_of(found: VerifiedKey) -> Caller | None:
    """The caller a verified key stands for (None for a role this service does not know,
    which the table's CHECK constraint rules out)."""
    if found.role not in ROLES:
        return None
    return Caller(
        role=cast(Role, found.role),
        name=f"key:{found.id}",
        key_id=found.id,
        stations=found.stations,
    )


def allowed(role: Role, roles: frozenset[Role]) -> bool:
    """Whether a caller with `role` may use a route open to `roles` (admin always may)."""
    return role == "admin" or role in roles


def key_from_headers(x_api_key: str | None, authorization: str | None) -> str | None:
    """The presented key: `X-API-Key: KEY` or `Authorization: Bearer KEY`, else None."""
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class KeyCache:
    """Verified keys for `ttl_s` seconds, by the sha256 of the key (the key is not kept)."""

    def __init__(self, verify: Callable[[str], Caller | None], ttl_s: float) -> None:
        self._verify = verify
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Caller | None]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, Caller | None]:
        """(True, caller or None) if the key was verified less than `ttl_s` ago, else
        (False, None): then call `caller`, which asks the database."""
        entry = self._entries.get(_digest(key))
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def caller(self, key: str) -> Caller | None:
        """The caller the key belongs to, or None for an unknown or revoked key."""
        if self._ttl_s <= 0:
            return self._verify(key)
        digest = _digest(key)
        now = time.monotonic()
        entry = self._entries.get(digest)
        if entry is not None and entry[0] > now:
            return entry[1]
        found = self._verify(key)
        with self._lock:
            if len(self._entries) > 10_000:  # unknown keys must not grow it without end
                self._entries.clear()
            self._entries[digest] = (now + self._ttl_s, found)
        return found

    def clear(self) -> None:
        """Forget every verified key (after a revocation through this service)."""
        with self._lock:
            self._entries.clear()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
