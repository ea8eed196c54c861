"""Stations and model versions: list, create, promote, roll back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from defectlens.inference.api import deployments, schemas
from defectlens.inference.api.dependencies import Deployer, Reader, State

router = APIRouter(prefix="/v1", tags=["models"])

StationId = Annotated[str, Path(pattern=schemas.STATION_ID_PATTERN)]


@router.get("/models", response_model=list[schemas.ModelVersion])
def list_models(state: State, caller: Reader) -> list[schemas.ModelVersion]:
    """Registered model versions, newest first, with their validation metrics and the stations
    they are active on."""
    return deployments.model_version_schemas(state.store)


@router.get("/stations", response_model=list[schemas.Station])
def list_stations(state: State, caller: Reader) -> list[schemas.Station]:
    """Every station, its active model, and whether this instance serves it."""
    return deployments.station_schemas(state)


@router.post("/stations", response_model=schemas.Station, status_code=201)
def create_station(state: State, caller: Deployer, body: schemas.StationCreate) -> schemas.Station:
    """Create a station (an existing one gets the given line and description)."""
    return deployments.create_station(state, body)


@router.post(
    "/stations/{station_id}/promote",
    response_model=schemas.Deployment,
    responses={
        404: {"description": "unknown station or model version"},
        422: {"description": "the model folder does not verify or load"},
    },
)
def promote(
    state: State, caller: Deployer, station_id: StationId, body: schemas.PromoteRequest
) -> schemas.Deployment:
    """Make a model version the station's active one. The new model is loaded and warmed
    before it takes over; inspections in flight finish on the old one."""
    return deployments.promote(state, station_id, body, caller)


@router.post(
    "/stations/{station_id}/rollback",
    response_model=schemas.Deployment,
    responses={
        404: {"description": "unknown station"},
        409: {"description": "nothing to roll back to"},
    },
)
def rollback(state: State, caller: Deployer, station_id: StationId) -> schemas.Deployment:
    """Go back to the model the station ran before the current one."""
    return deployments.rollback(state, station_id, caller)
