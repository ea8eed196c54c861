"""Stations and model versions: list, create, promote, roll back."""

from __future__ import annotations

import pathlib
from typing import Annotated

from fastapi import APIRouter, Path, Request

from defectlens.inference.api import schemas
from defectlens.inference.api.dependencies import Deployer, Reader, Service, check_station
from defectlens.inference.api.state import line_of
from defectlens.inference.service import deployments

router = APIRouter(prefix="/v1", tags=["models"])

StationId = Annotated[str, Path(pattern=schemas.STATION_ID_PATTERN)]


@router.get("/models", response_model=list[schemas.ModelVersion])
def list_models(service: Service, caller: Reader) -> list[schemas.ModelVersion]:
    """Registered model versions, newest first, with their validation metrics and the stations
    they are active on."""
    return [schemas.ModelVersion.of(v) for v in deployments.deployed_versions(service.store)]


@router.get("/stations", response_model=list[schemas.Station])
def list_stations(service: Service, caller: Reader, request: Request) -> list[schemas.Station]:
    """Every station, its active model, whether this instance serves it and, for a station
    of the stations file, its line side (source connected, last part, parts/min, NG rate,
    last error)."""
    line = line_of(request)
    sides = {s.station: s for s in line.statuses()} if line is not None else {}
    return [
        schemas.Station.model_validate(s).model_copy(update={"line_side": sides.get(s.id)})
        for s in deployments.station_states(service)
    ]


@router.post("/stations", response_model=schemas.Station, status_code=201)
def create_station(
    service: Service, caller: Deployer, body: schemas.StationCreate
) -> schemas.Station:
    """Create a station (an existing one gets the given line and description)."""
    check_station(caller, body.id)
    station = deployments.create_station(service, body.id, body.line, body.description)
    return schemas.Station.model_validate(station)


@router.post(
    "/stations/{station_id}/promote",
    response_model=schemas.Deployment,
    responses={
        404: {"description": "unknown station or model version"},
        422: {
            "description": "the model does not verify or load, or its folder is outside the "
            "workspace's models folder and not registered"
        },
    },
)
def promote(
    service: Service, caller: Deployer, station_id: StationId, body: schemas.PromoteRequest
) -> schemas.Deployment:
    """Make a model version the station's active one: a registered version's id, or a
    version folder inside the workspace's models folder. The new model is loaded and warmed
    before it takes over; inspections in flight finish on the old one."""
    check_station(caller, station_id)
    deployment = deployments.promote(
        service,
        station_id,
        caller.name,
        model_version_id=body.model_version_id,
        model_dir=pathlib.Path(body.model_dir) if body.model_dir is not None else None,
    )
    return schemas.Deployment.of(deployment)


@router.post(
    "/stations/{station_id}/rollback",
    response_model=schemas.Deployment,
    responses={
        404: {"description": "unknown station"},
        409: {"description": "nothing to roll back to"},
    },
)
def rollback(service: Service, caller: Deployer, station_id: StationId) -> schemas.Deployment:
    """Go back to the model the station ran before the current one."""
    check_station(caller, station_id)
    return schemas.Deployment.of(deployments.rollback(service, station_id, caller.name))
