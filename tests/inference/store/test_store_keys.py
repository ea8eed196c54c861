"""API keys: shown once, stored as a sha256, verified in constant time, revocable; scoped to
stations, expiring, their last use recorded; refusals logged by prefix."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select

from defectlens.cli import main
from defectlens.errors import InputError
from defectlens.inference.store import Database, Store, VerifiedKey, open_database
from defectlens.inference.store.tables import ApiKeyRow


def test_create_verify_revoke(store: Store, db: Database) -> None:
    line_id, line_key = store.create_key("line", "station S1")
    qa_id, qa_key = store.create_key("qa", "alice")
    assert line_key.startswith("dl_") and len(line_key) > 40
    assert _id_role(store.verify_api_key(line_key)) == (line_id, "line")
    assert _id_role(store.verify_api_key(qa_key)) == (qa_id, "qa")

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
    assert store.verify_api_key(line_key) is None
    assert _id_role(store.verify_api_key(qa_key)) == (qa_id, "qa")
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
        assert store.verify_api_key(candidate) is None


def test_unknown_role_lists_the_roles(store: Store) -> None:
    with pytest.raises(InputError, match="line, qa, manager, admin"):
        store.create_key("operator", "x")
    with pytest.raises(InputError, match="not found"):
        store.revoke_key(12345)


def test_scope_expiry_and_last_use(store: Store) -> None:
    soon = datetime.now(UTC) + timedelta(days=1)
    key_id, key = store.create_key(
        "line", "line 1 PLC", stations=["S1", "S2", "S1"], expires_at=soon
    )
    any_id, any_key = store.create_key("manager", "plant manager")

    verified = store.verify_api_key(key)
    assert verified == VerifiedKey(key_id, "line", "line 1 PLC", ("S1", "S2"), soon)
    assert store.verify_api_key(any_key) == VerifiedKey(
        any_id, "manager", "plant manager", None, None
    )

    listed = {k.id: k for k in store.list_keys()}
    assert listed[key_id].stations == ("S1", "S2") and listed[key_id].expires_at == soon
    assert listed[any_id].stations is None and listed[any_id].expires_at is None
    assert listed[key_id].last_used_at is not None

    after_expiry = soon + timedelta(seconds=1)
    assert store.verify_api_key(key, now=after_expiry) is None
    assert store.verify_api_key(key, now=soon - timedelta(seconds=1)) is not None
    [create] = store.audit_entries(target=f"key:{key_id}")
    assert create.detail["stations"] == ["S1", "S2"]
    assert create.detail["expires_at"] == soon.isoformat()


def test_last_use_is_written_at_most_once_a_minute(store: Store, db: Database) -> None:
    key_id, key = store.create_key("line", "plc")
    assert last_used(db, key_id) is None
    t0 = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
    writes: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        writes.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        for seconds in range(0, 59, 5):  # 12 requests within the first minute: one write
            assert store.verify_api_key(key, now=t0 + timedelta(seconds=seconds)) is not None
        assert last_used(db, key_id) == t0
        assert store.verify_api_key(key, now=t0 + timedelta(seconds=61)) is not None
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert last_used(db, key_id) == t0 + timedelta(seconds=61)
    assert sum(statement.lstrip().upper().startswith("UPDATE") for statement in writes) == 2


def test_refused_keys_are_logged_by_prefix_never_the_key(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    revoked_id, revoked = store.create_key("qa", "old laptop")
    store.revoke_key(revoked_id)
    _, expiring = store.create_key(
        "qa", "contractor", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    _, good = store.create_key("qa", "alice")
    forged = f"dl_{good.split('_')[1]}_forged-secret"
    later = datetime.now(UTC) + timedelta(hours=2)
    caplog.set_level(logging.WARNING, logger="defectlens.inference.store.keys")

    assert store.verify_api_key(revoked) is None
    assert store.verify_api_key(expiring, now=later) is None
    assert store.verify_api_key(forged) is None
    assert store.verify_api_key("not-a-key-at-all") is None
    assert store.verify_api_key(good) is not None

    reasons = [(r.__dict__["reason"], r.__dict__["key_prefix"]) for r in caplog.records]
    assert reasons == [
        ("revoked", revoked.split("_")[1]),
        ("expired", expiring.split("_")[1]),
        ("unknown", good.split("_")[1]),
        ("malformed", None),
    ]
    logged = caplog.text
    for secret in (revoked, expiring, good, forged, "not-a-key-at-all"):
        assert secret not in logged
    assert "forged-secret" not in logged


def test_bad_scopes_and_expiries(store: Store) -> None:
    with pytest.raises(InputError, match="at least one station"):
        store.create_key("line", "x", stations=[])
    with pytest.raises(InputError, match="empty"):
        store.create_key("line", "x", stations=["S1", " "])
    with pytest.raises(InputError, match=r"stations\.id"):
        store.create_key("line", "x", stations=["S" * 65])
    with pytest.raises(InputError, match="list of station ids"):
        store.create_key("line", "x", stations="S1")
    with pytest.raises(InputError, match="not in the future"):
        store.create_key("line", "x", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert store.list_keys() == []


def test_keys_cli_creates_scoped_expiring_keys_and_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    argv = ["keys", "create", "--role", "line", "--name", "line1-plc"]
    assert main([*argv, "--station", "S1", "--station", "S2", "--expires-in-days", "30"]) == 0
    out = capsys.readouterr().out
    assert "stations S1, S2" in out and "expires" in out
    key = out.strip().splitlines()[-1]
    with open_database(f"sqlite:///{tmp_path / 'home' / 'defectlens.db'}") as db:
        verified = Store(db).verify_api_key(key)
    assert verified is not None and verified.stations == ("S1", "S2")
    assert verified.expires_at is not None
    assert timedelta(days=29.9) < verified.expires_at - datetime.now(UTC) <= timedelta(days=30)

    assert main(["keys", "list"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert "expires" in header and "last used" in header and "stations" in header
    assert row.endswith("S1, S2") and f"{verified.expires_at:%Y-%m-%d}" in row

    assert main([*argv, "--expires-in-days", "0"]) == 2
    assert "--expires-in-days 0" in capsys.readouterr().err


def last_used(db: Database, key_id: int) -> datetime | None:
    with db.read() as session:
        row = session.get(ApiKeyRow, key_id)
        assert row is not None
        return row.last_used_at


def _id_role(verified: VerifiedKey | None) -> tuple[int, str] | None:
    return None if verified is None else (verified.id, verified.role)
