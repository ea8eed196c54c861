"""Stations, model versions and deployments: promote, rollback, history and audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.errors import InputError
from defectlens.inference.store import Store


def register(store: Store, tmp_path: Path, version: str) -> int:
    return store.register_model_version(
        "bottle", version, "anomaly", tmp_path / "models" / "bottle" / version, f"{version:0>64}",
        {"image_auroc": 0.99},
    )  # fmt: skip


def active_id(store: Store, station: str) -> int | None:
    model = store.active_model(station)
    return None if model is None else model.id


def test_stations(store: Store) -> None:
    assert store.get_station("S1") is None
    store.ensure_station("S1", line="L1")
    store.ensure_station("S1")  # again: nothing changes
    store.ensure_station("S0", line="L1", description="first camera")
    assert store.get_station("S1") is not None
    assert [(s.id, s.line) for s in store.list_stations()] == [("S0", "L1"), ("S1", "L1")]
    assert store.ensure_station("S1", line="L2").line == "L2"
    with pytest.raises(InputError, match=r"stations\.id"):
        store.ensure_station("S" * 65)


def test_register_model_version_is_idempotent(store: Store, tmp_path: Path) -> None:
    first = register(store, tmp_path, "v1")
    assert register(store, tmp_path, "v1") == first
    assert register(store, tmp_path, "v2") != first
    with pytest.raises(InputError, match="never changes"):
        store.register_model_version("bottle", "v1", "anomaly", tmp_path, "f" * 64)
    versions = store.list_model_versions()
    assert [v.version for v in versions] == ["v2", "v1"]
    assert versions[1].metrics == {"image_auroc": 0.99}
    assert store.get_model_version(tmp_path / "models" / "bottle" / "v1") == versions[1]


def test_promote_rollback_history_and_audit(store: Store, tmp_path: Path) -> None:
    v1, v2, v3, v4 = (register(store, tmp_path, f"v{n}") for n in range(1, 5))
    assert active_id(store, "S1") is None
    store.promote("S1", v1, actor="alice")  # creates the station
    assert store.get_station("S1") is not None
    store.promote("S1", tmp_path / "models" / "bottle" / "v2", actor="alice")  # by folder
    store.promote("S1", v3, actor="bob")
    again = store.promote("S1", v3, actor="bob")  # already active: no new deployment
    assert again.active and len(store.deployment_history("S1")) == 3

    back = store.rollback("S1", actor="carol")
    assert back.model_version.id == v2 and back.active
    assert active_id(store, "S1") == v2
    store.rollback("S1", actor="carol")
    assert active_id(store, "S1") == v1
    with pytest.raises(InputError, match="nothing to roll back to"):
        store.rollback("S1", actor="carol")

    # A promote after rollbacks; its rollback returns to what ran before it (v1), never to a
    # version that was rolled back.
    store.promote("S1", v4, actor="alice")
    assert store.rollback("S1", actor="carol").model_version.id == v1

    history = store.deployment_history("S1")
    assert [d.model_version.version for d in history] == ["v4", "v3", "v2", "v1"]
    assert [d.active for d in history] == [False, False, False, True]
    assert all(d.rolled_back_at is not None for d in history[:3])
    assert [d.promoted_by for d in history] == ["alice", "bob", "alice", "alice"]

    audit = store.audit_entries(target="station:S1")
    assert [(a.actor, a.action) for a in audit] == [
        ("carol", "rollback"),
        ("alice", "promote"),
        ("carol", "rollback"),
        ("carol", "rollback"),
        ("bob", "promote"),
        ("alice", "promote"),
        ("alice", "promote"),
    ]
    assert audit[0].detail["model"] == "bottle v1"
    assert [d.station_id for d in store.active_deployments()] == ["S1"]


def test_stations_are_independent(store: Store, tmp_path: Path) -> None:
    v1, v2 = register(store, tmp_path, "v1"), register(store, tmp_path, "v2")
    store.promote("S1", v1, actor="qa")
    store.promote("S2", v2, actor="qa")
    store.promote("S2", v1, actor="qa")
    assert active_id(store, "S1") == v1
    assert store.rollback("S2", actor="qa").model_version.id == v2
    assert len(store.deployment_history("S1")) == 1


def test_bad_promote_and_rollback(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a registered model version"):
        store.promote("S1", tmp_path / "nowhere", actor="qa")
    with pytest.raises(InputError, match="not a registered model version"):
        store.promote("S1", 999, actor="qa")
    with pytest.raises(InputError, match="not found"):
        store.rollback("S9", actor="qa")
    store.ensure_station("S1")
    with pytest.raises(InputError, match="no active model"):
        store.rollback("S1", actor="qa")
    store.promote("S1", register(store, tmp_path, "v1"), actor="qa")
    with pytest.raises(InputError, match="first deployment"):
        store.rollback("S1", actor="qa")
    assert store.audit_entries() and len(store.audit_entries()) == 1
