"""API keys: how a key is made, parsed and hashed, and the store's key records.

A key reads `dl_<prefix>_<secret>`: the prefix (8 hex digits) finds the row and is safe to
show in lists and logs; the secret is 32 random bytes, URL-safe base64. The store keeps only
the sha256 of the whole key.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from defectlens.errors import InputError
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.records import ApiKey, VerifiedKey
from defectlens.inference.store.tables import ROLES, ApiKeyRow, StationRow, to_utc, utc_now

log = logging.getLogger(__name__)

KEY_PREFIX = "dl"
_PREFIX_HEX_DIGITS = 8
_DUMMY_SHA256 = "0" * 64
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""A key's last use is recorded to this: no write per request."""


def new_key() -> tuple[str, str]:
    """A fresh (prefix, plaintext key)."""
    prefix = secrets.token_hex(_PREFIX_HEX_DIGITS // 2)
    return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def key_prefix(plaintext: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[2]:
        return None
    prefix = parts[1]
    if len(prefix) != _PREFIX_HEX_DIGITS or any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix


def hash_key(plaintext: str) -> str:
    """sha256 of the whole key, hex. Keys are 256-bit random, so no salt or slow hash is needed."""
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def hashes_match(plaintext: str, stored_sha256: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_key(plaintext), stored_sha256)


class KeyStore:
    """API key records: create, verify, list, revoke."""

    db: Database

    def create_key(
        self,
        role: str,
        name: str,
        actor: str = "cli",
        stations: Sequence[str] | None = None,
        expires_at: datetime | None = None,
    ) -> tuple[int, str]:
        """A new key for `role`: its id and the plaintext, which is shown once and not stored.

        `stations` limits the key to those stations (None: every station); `expires_at`
        (timezone-aware, or naive UTC) is when it stops working (None: never). `InputError`
        for an unknown role, an empty or invalid station list, or an expiry not in the future.
        """
        if role not in ROLES:
            raise InputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        scope = _station_scope(stations)
        expiry = None if expires_at is None else to_utc(expires_at)
        if expiry is not None and expiry <= utc_now():
            raise InputError(
                f"key expiry {expiry.isoformat()} is not in the future; give a later time"
            )
        for _attempt in range(3):
            prefix, plaintext = new_key()
            row = ApiKeyRow(
                prefix=prefix,
                sha256=hash_key(plaintext),
                role=role,
                name=name,
                created_at=utc_now(),
                stations=scope,
                expires_at=expiry,
            )
            check_row(row)
            try:
                with self.db.write() as session:
                    session.add(row)
                    session.flush()
                    record_audit(
                        session,
                        actor,
                        "key.create",
                        f"key:{row.id}",
                        {
                            "role": role,
                            "name": name,
                            "prefix": prefix,
                            "stations": scope,
                            "expires_at": None if expiry is None else expiry.isoformat(),
                        },
                    )
                    return row.id, plaintext
            except IntegrityError:  # the random prefix was taken: draw another
                log.info("API key prefix %s taken; drawing another", prefix)
        raise RuntimeError("could not draw an unused API key prefix in three tries")

    def verify_api_key(self, plaintext: str, now: datetime | None = None) -> VerifiedKey | None:
        """The key's identity and scope if it is valid at `now` (default: now); None for a
        malformed, unknown, revoked or expired key, which is logged as a warning with the
        key's prefix (never the key). The hash comparison takes the same time whether or not
        the prefix exists. The key's `last_used_at` is written at most once a minute."""
        moment = utc_now() if now is None else to_utc(now)
        prefix = key_prefix(plaintext)
        with self.db.read() as session:
            row = (
                session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).first()
                if prefix is not None
                else None
            )
            matches = hashes_match(plaintext, row.sha256 if row is not None else _DUMMY_SHA256)
            refused = _refusal(prefix, row if matches else None, moment)
            if refused is not None or row is None:
                log.warning(
                    "API key refused: %s (prefix %s)",
                    refused,
                    prefix or "-",
                    extra={"key_prefix": prefix, "reason": refused},
                )
                return None
            verified, last_used = VerifiedKey.of(row), row.last_used_at
        if last_used is None or moment - last_used >= LAST_USED_RESOLUTION:
            self._mark_used(verified.id, moment)
        return verified

    def active_key(self, key_id: int, now: datetime | None = None) -> VerifiedKey | None:
        """The key with id `key_id` if it is valid at `now` (default: now); None if unknown,
        revoked or expired. A browser session (signed with the key's id) is checked with it
        on each request, so revoking the key ends its sessions too."""
        moment = utc_now() if now is None else to_utc(now)
        with self.db.read() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None or _refusal("session", row, moment) is not None:
                return None
            return VerifiedKey.of(row)

    def _mark_used(self, key_id: int, moment: datetime) -> None:
        """Record that the key let a caller in, unless another service did within the
        minute. Bookkeeping only: a database too busy for it does not refuse the key."""
        try:
            with self.db.write() as session:
                session.execute(
                    update(ApiKeyRow)
                    .where(
                        ApiKeyRow.id == key_id,
                        or_(
                            ApiKeyRow.last_used_at.is_(None),
                            ApiKeyRow.last_used_at <= moment - LAST_USED_RESOLUTION,
                        ),
                    )
                    .values(last_used_at=moment)
                )
        except OperationalError:
            log.warning("API key %d: its last use could not be recorded", key_id, exc_info=True)

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included (they show their `revoked_at`)."""
        with self.db.read() as session:
            return [ApiKey.of(row) for row in session.scalars(select(ApiKeyRow).order_by("id"))]

    def revoke_key(self, key_id: int, actor: str = "cli") -> ApiKey:
        """Revoke a key at once; revoking it again changes nothing."""
        with self.db.write() as session:
            row = session.get(ApiKeyRow, key_id, with_for_update=True)
            if row is None:
                raise InputError(f"API key {key_id} not found; `defectlens keys list` shows them")
            if row.revoked_at is None:
                row.revoked_at = utc_now()
                record_audit(session, actor, "key.revoke", f"key:{row.id}", {"prefix": row.prefix})
            session.flush()
            return ApiKey.of(row)


def _station_scope(stations: Sequence[str] | None) -> list[str] | None:
    """The stations a key is limited to, each once, in the order given; None: every one."""
    if stations is None:
        return None
    if isinstance(stations, str):
        raise InputError(f"stations {stations!r}: give a list of station ids")
    scope = list(dict.fromkeys(stations))
    if not scope:
        raise InputError("stations: give at least one station, or none to allow every station")
    for station in scope:
        if not station or not station.strip():
            raise InputError("stations: a station id is empty")
        check_row(StationRow(id=station))
    return scope


def _refusal(prefix: str | None, row: ApiKeyRow | None, moment: datetime) -> str | None:
    """Why a presented key is refused at `moment` (None: it is valid); `row` is the stored
    key it matches, if any."""
    if prefix is None:
        return "malformed"
    if row is None:
        return "unknown"
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= moment:
        return "expired"
    return None
