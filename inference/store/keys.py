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

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from defectlens.errors import InputError
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.records import ApiKey
from defectlens.inference.store.tables import ROLES, ApiKeyRow, utc_now

log = logging.getLogger(__name__)

KEY_PREFIX = "dl"
_PREFIX_HEX_DIGITS = 8
_DUMMY_SHA256 = "0" * 64


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

    def create_key(self, role: str, name: str, actor: str = "cli") -> tuple[int, str]:
        """A new key for `role`: its id and the plaintext, which is shown once and not stored."""
        if role not in ROLES:
            raise InputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
        for _attempt in range(3):
            prefix, plaintext = new_key()
            row = ApiKeyRow(
                prefix=prefix,
                sha256=hash_key(plaintext),
                role=role,
                name=name,
                created_at=utc_now(),
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
                        {"role": role, "name": name, "prefix": prefix},
                    )
                    return row.id, plaintext
            except IntegrityError:  # the random prefix was taken: draw another
                log.info("API key prefix %s taken; drawing another", prefix)
        raise RuntimeError("could not draw an unused API key prefix in three tries")

    def verify_key(self, plaintext: str) -> tuple[int, str] | None:
        """(key id, role) for a valid, unrevoked key; None otherwise. The hash comparison
        takes the same time whether or not the prefix exists."""
        prefix = key_prefix(plaintext)
        with self.db.read() as session:
            row = (
                session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == prefix)).first()
                if prefix is not None
                else None
            )
            stored = row.sha256 if row is not None else _DUMMY_SHA256
            matches = hashes_match(plaintext, stored)
            if row is None or not matches or row.revoked_at is not None:
                return None
            return row.id, row.role

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
