"""Request and response bodies of the HTTP API (pydantic), kept apart from the store's tables.

The inspection result itself is `defectlens.result.InspectionResult`, the one contract shared
with the store and the MES payload.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from defectlens.inference.line.runner import StationLineStatus
from defectlens.inference.service.deployments import DeployedVersion
from defectlens.inference.service.inspection import STATION_ID_PATTERN
from defectlens.inference.store import Deployment as DeploymentRecord
from defectlens.prediction import ModelRef
from defectlens.result import InspectionResult

MAX_ROW_ID = 2**63 - 1
"""The largest row id either database holds (64-bit): a larger id asked for is a 422, not a
database error."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ResultPage(BaseModel):
    """A page of results, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[InspectionResult]
    next_cursor: str | None = None


class StationCreate(_Body):
    id: str = Field(pattern=STATION_ID_PATTERN, examples=["line1-cam1"])
    line: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=2000)


class Station(BaseModel):
    """A station as `deployments.station_states` describes it."""

    model_config = ConfigDict(protected_namespaces=(), from_attributes=True)

    id: str
    line: str | None = None
    description: str | None = None
    model: ModelRef | None = None
    """The model version promoted for the station (from the store)."""
    serving: bool = False
    """Whether this service instance has that model loaded and answers inspections."""
    problem: str | None = None
    line_side: StationLineStatus | None = None
    """For a station in the stations file: its source, PLC link, last part, parts/min, NG
    rate and last error."""


class ModelVersion(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    id: int
    name: str
    version: str
    family: str
    path: str
    sha256: str
    created_at: datetime | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    stations: list[str] = Field(default_factory=list)
    """Stations on which this version is the active one."""

    @classmethod
    def of(cls, deployed: DeployedVersion) -> ModelVersion:
        return cls.model_validate({**asdict(deployed.version), "stations": deployed.stations})


class PromoteRequest(_Body):
    """Which model version to promote: a registered version's id, or a version folder on
    the service's machine (registered on the way)."""

    model_dir: str | None = Field(default=None, min_length=1, max_length=4096)
    model_version_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)

    @model_validator(mode="after")
    def _exactly_one(self) -> PromoteRequest:
        if (self.model_dir is None) == (self.model_version_id is None):
            raise ValueError("give exactly one of model_dir and model_version_id")
        return self


class Deployment(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    station: str
    model: ModelVersion
    promoted_at: datetime
    promoted_by: str

    @classmethod
    def of(cls, deployment: DeploymentRecord) -> Deployment:
        version = DeployedVersion(deployment.model_version, [deployment.station_id])
        return cls(
            station=deployment.station_id,
            model=ModelVersion.of(version),
            promoted_at=deployment.promoted_at,
            promoted_by=deployment.promoted_by,
        )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class StationReadiness(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    station: str
    model: str | None
    ready: bool
    problem: str | None = None


class Readiness(BaseModel):
    ready: bool
    database: str
    """`ok`, or why the database cannot be reached."""
    auth: Literal["enabled", "disabled"]
    free_disk_bytes: int
    """Free bytes on the disk that holds the retained images."""
    stations: list[StationReadiness]
    problems: list[str] = Field(default_factory=list)
