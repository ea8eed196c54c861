"""API keys: shown once, stored as a sha256, verified in constant time, revocable."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from defectlens.errors import InputError
from defectlens.inference.store import Database, Store
from defectlens.inference.store.tables import ApiKeyRow


def test_create_verify_revoke(store: Store, db: Database) -> None:
    line_id, line_key = store.create_key("line", "station S1")
    qa_id, qa_key = store.create_key("qa", "alice")
    assert line_key.startswith("dl_") and len(line_key) > 40
    assert store.verify_key(line_key) == (line_id, "line")
    assert store.verify_key(qa_key) == (qa_id, "qa")

    with db.read() as session:
        stored = session.scalars(select(ApiKeyRow).where(ApiKeyRow.id == line_id)).one()
        sha256, prefix = stored.sha256, stored.prefix
        everything = " ".join(
            str(value) for row in session.scalars(select(ApiKeyRow)) for value in vars(row).values()
        )
    assert line_key not in everything and line_key.split("_", 2)[2] not in everything
    assert sha256 == hashlib.sha256(line_key.encode()).hexdigest() and prefix in line_key

    revoked = store.revoke_key(line_id, actor="admin")
    assert revoked.revoked_at is not None
    assert store.verify_key(line_key) is None
    assert store.verify_key(qa_key) == (qa_id, "qa")
    assert store.revoke_key(line_id).revoked_at == revoked.revoked_at  # again: no change
    assert [(k.id, k.role, k.revoked_at is None) for k in store.list_keys()] == [
        (line_id, "line", False),
        (qa_id, "qa", True),
    ]
    actions = [e.action for e in store.audit_entries()]
    assert actions == ["key.revoke", "key.create", "key.create"]


def test_wrong_and_malformed_keys(store: Store) -> None:
    _, key = store.create_key("admin", "root")
    prefix = key.split("_")[1]
    for candidate in ("", "dl_", "nope", key[:-1], key + "x", f"dl_{prefix}_forged", "dl_zz_x"):
        assert store.verify_key(candidate) is None


def test_unknown_role_lists_the_roles(store: Store) -> None:
    with pytest.raises(InputError, match="line, qa, manager, admin"):
        store.create_key("operator", "x")
    with pytest.raises(InputError, match="not found"):
        store.revoke_key(12345)
