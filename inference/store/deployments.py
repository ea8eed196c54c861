"""Stations, model versions and deployments: which model version runs where, with history.

A promotion or rollback is one transaction with its audit entry; deployment rows are never
deleted, and the database itself keeps one active deployment per station.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from defectlens.errors import InputError
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.records import Deployment, ModelVersion, Station
from defectlens.inference.store.tables import (
    Base,
    DeploymentRow,
    ModelVersionRow,
    StationRow,
    utc_now,
)


class DeploymentStore:
    """Stations, model versions and their deployments."""

    db: Database

    # -- stations ----------------------------------------------------------------------------

    def ensure_station(
        self, station_id: str, line: str | None = None, description: str | None = None
    ) -> Station:
        """The station, created if new; a given `line` or `description` replaces the stored one."""
        with self.db.write() as session:
            row = _ensure_station(session, station_id)
            if line is not None:
                row.line = line
            if description is not None:
                row.description = description
            check_row(row)
            session.flush()
            return Station.of(row)

    def get_station(self, station_id: str) -> Station | None:
        with self.db.read() as session:
            row = session.get(StationRow, station_id)
            return None if row is None else Station.of(row)

    def list_stations(self) -> list[Station]:
        with self.db.read() as session:
            return [Station.of(row) for row in session.scalars(select(StationRow).order_by("id"))]

    # -- model versions ----------------------------------------------------------------------

    def register_model_version(
        self,
        name: str,
        version: str,
        family: str,
        path: str | Path,
        sha256: str,
        metrics: dict[str, Any] | None = None,
    ) -> int:
        """The id of the model version, registering it if new. Registering the same name and
        version again returns the same id; with a different sha256 it is an `InputError`
        (a model version never changes)."""
        values = {
            "name": name,
            "version": version,
            "family": family,
            "path": _model_path(path),
            "sha256": sha256,
            "metrics": metrics or {},
            "created_at": utc_now(),
        }
        check_row(ModelVersionRow(**values))
        with self.db.write() as session:
            session.execute(_insert_ignore(session, ModelVersionRow, values))
            row = session.scalars(
                select(ModelVersionRow).where(
                    ModelVersionRow.name == name, ModelVersionRow.version == version
                )
            ).one()
            if row.sha256 != sha256:
                raise InputError(
                    f"model {name} {version} is already registered with sha256 {row.sha256}, "
                    f"not {sha256}: a model version never changes; train a new version"
                )
            return row.id

    def list_model_versions(self) -> list[ModelVersion]:
        """Every registered model version, newest registration first."""
        with self.db.read() as session:
            rows = session.scalars(select(ModelVersionRow).order_by(ModelVersionRow.id.desc()))
            return [ModelVersion.of(row) for row in rows]

    def get_model_version(self, model: int | str | Path) -> ModelVersion | None:
        """A model version by id or by its folder's path."""
        with self.db.read() as session:
            row = _find_model_version(session, model)
            return None if row is None else ModelVersion.of(row)

    # -- deployments -------------------------------------------------------------------------

    def promote(self, station_id: str, model: int | str | Path, actor: str) -> Deployment:
        """Deploy a registered model version (by id or folder path) to a station, creating the
        station if new. The previous deployment stays in the history, inactive. Promoting the
        version already active changes nothing."""
        with self.db.write() as session:
            version = _find_model_version(session, model)
            if version is None:
                raise InputError(
                    f"model {model}: not a registered model version; register the folder first "
                    "(`defectlens models promote MODEL_DIR` does both)"
                )
            station = _ensure_station(session, station_id, lock=True)
            current = _active_deployment(session, station.id)
            if current is not None and current.model_version_id == version.id:
                return Deployment.of(current)
            if current is not None:
                current.active = False
                session.flush()  # the one-active-per-station index sees one row at a time
            row = DeploymentRow(
                station_id=station.id,
                model_version=version,
                promoted_by=actor,
                active=True,
                promoted_at=utc_now(),
            )
            session.add(row)
            session.flush()
            record_audit(
                session,
                actor,
                "promote",
                f"station:{station.id}",
                {
                    "deployment_id": row.id,
                    "model_version_id": version.id,
                    "model": f"{version.name} {version.version}",
                    "previous_deployment_id": current.id if current else None,
                },
            )
            return Deployment.of(row)

    def rollback(self, station_id: str, actor: str) -> Deployment:
        """Re-activate the deployment that preceded the active one (skipping any that were
        rolled back). `InputError` if there is none."""
        with self.db.write() as session:
            if session.get(StationRow, station_id, with_for_update=True) is None:
                raise InputError(f"station {station_id!r} not found; nothing to roll back")
            current = _active_deployment(session, station_id)
            if current is None:
                raise InputError(f"station {station_id}: no active model, nothing to roll back")
            previous = session.scalars(
                select(DeploymentRow)
                .where(
                    DeploymentRow.station_id == station_id,
                    DeploymentRow.id < current.id,
                    DeploymentRow.rolled_back_at.is_(None),
                )
                .order_by(DeploymentRow.id.desc())
                .limit(1)
            ).first()
            if previous is None:
                model = current.model_version
                raise InputError(
                    f"station {station_id}: nothing to roll back to; {model.name} "
                    f"{model.version} is its first deployment"
                )
            current.active = False
            current.rolled_back_at = utc_now()
            session.flush()
            previous.active = True
            session.flush()
            record_audit(
                session,
                actor,
                "rollback",
                f"station:{station_id}",
                {
                    "from_deployment_id": current.id,
                    "to_deployment_id": previous.id,
                    "model_version_id": previous.model_version_id,
                    "model": f"{previous.model_version.name} {previous.model_version.version}",
                },
            )
            return Deployment.of(previous)

    def active_model(self, station_id: str) -> ModelVersion | None:
        deployment = self.active_deployment(station_id)
        return None if deployment is None else deployment.model_version

    def active_deployment(self, station_id: str) -> Deployment | None:
        with self.db.read() as session:
            row = _active_deployment(session, station_id)
            return None if row is None else Deployment.of(row)

    def active_deployments(self) -> list[Deployment]:
        """The active deployment of every station that has one (what to load at start)."""
        with self.db.read() as session:
            rows = session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.active.is_(True))
                .order_by(DeploymentRow.station_id)
            )
            return [Deployment.of(row) for row in rows]

    def deployment_history(self, station_id: str) -> list[Deployment]:
        """Every deployment of the station, newest first."""
        with self.db.read() as session:
            rows = session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.station_id == station_id)
                .order_by(DeploymentRow.id.desc())
            )
            return [Deployment.of(row) for row in rows]


def _insert_ignore(session: Session, table: type[Base], values: dict[str, Any]) -> Any:
    """INSERT that does nothing when a unique key is taken (SQLite and PostgreSQL)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).values(**values).on_conflict_do_nothing()


def _ensure_station(session: Session, station_id: str, lock: bool = False) -> StationRow:
    if not station_id or not station_id.strip():
        raise InputError("station id is empty")
    check_row(StationRow(id=station_id))
    session.execute(
        _insert_ignore(session, StationRow, {"id": station_id, "created_at": utc_now()})
    )
    row = session.get(StationRow, station_id, with_for_update=lock)
    assert row is not None
    return row


def _active_deployment(session: Session, station_id: str) -> DeploymentRow | None:
    return session.scalars(
        select(DeploymentRow).where(
            DeploymentRow.station_id == station_id, DeploymentRow.active.is_(True)
        )
    ).first()


def _model_path(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


def _find_model_version(session: Session, model: int | str | Path) -> ModelVersionRow | None:
    if isinstance(model, bool):
        raise InputError(f"model {model!r}: expected a model version id or folder path")
    if isinstance(model, int):
        return session.get(ModelVersionRow, model)
    return session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.path == _model_path(model))
        .order_by(ModelVersionRow.id.desc())
    ).first()
