"""What the store's functions return besides `InspectionResult`: plain frozen records, detached
from any database session, for the API and CLI to turn into their own responses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from defectlens.inference.store.tables import (
    ApiKeyRow,
    AuditLogRow,
    DeploymentRow,
    ModelVersionRow,
    StationRow,
)


class StoredImage(NamedTuple):
    """An image file the service has written for a result; `save_result` records it."""

    kind: str
    """`image` (the part as received) or `heatmap` (the overlay PNG)."""
    path: str
    """Relative to the workspace's image folder (preferred) or absolute."""
    bytes: int
    """The file's size."""


@dataclass(frozen=True)
class Station:
    id: str
    line: str | None
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: StationRow) -> Station:
        return cls(row.id, row.line, row.description, row.created_at)


@dataclass(frozen=True)
class ModelVersion:
    id: int
    name: str
    version: str
    family: str
    path: str
    sha256: str
    metrics: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: ModelVersionRow) -> ModelVersion:
        return cls(
            row.id,
            row.name,
            row.version,
            row.family,
            row.path,
            row.sha256,
            dict(row.metrics),
            row.created_at,
        )


@dataclass(frozen=True)
class Deployment:
    id: int
    station_id: str
    model_version: ModelVersion
    promoted_at: datetime
    promoted_by: str
    active: bool
    rolled_back_at: datetime | None
    """When a rollback left this deployment; a rolled-back version is never rolled back to."""

    @classmethod
    def of(cls, row: DeploymentRow) -> Deployment:
        return cls(
            row.id,
            row.station_id,
            ModelVersion.of(row.model_version),
            row.promoted_at,
            row.promoted_by,
            row.active,
            row.rolled_back_at,
        )


@dataclass(frozen=True)
class ApiKey:
    """A key's public facts; the key itself is shown once, by `create_key`, and never stored."""

    id: int
    prefix: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    stations: tuple[str, ...] | None
    """The stations it may act on; None: every station."""
    expires_at: datetime | None
    last_used_at: datetime | None
    """When it last let a caller in, to the minute; None: never."""

    @classmethod
    def of(cls, row: ApiKeyRow) -> ApiKey:
        return cls(
            row.id,
            row.prefix,
            row.role,
            row.name,
            row.created_at,
            row.revoked_at,
            None if row.stations is None else tuple(row.stations),
            row.expires_at,
            row.last_used_at,
        )


@dataclass(frozen=True)
class VerifiedKey:
    """A presented key that is valid now: who it is and what it may do."""

    id: int
    role: str
    name: str
    stations: tuple[str, ...] | None
    """The stations it may act on; None: every station."""
    expires_at: datetime | None
    """When it stops being valid (None: never); a cache of verified keys must not outlive it."""

    @classmethod
    def of(cls, row: ApiKeyRow) -> VerifiedKey:
        stations = None if row.stations is None else tuple(row.stations)
        return cls(row.id, row.role, row.name, stations, row.expires_at)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: AuditLogRow) -> AuditEntry:
        return cls(row.id, row.at, row.actor, row.action, row.target, dict(row.detail))
