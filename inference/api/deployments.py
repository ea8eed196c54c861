"""Stations and their models: register a version folder, promote, roll back, and keep the
loaded engines in step with the store (at start, after a change here, and by polling for
changes made elsewhere, e.g. `defectlens models promote` or another service instance).

The new engine is always loaded and warmed before the store or the station switches to it,
so a model that cannot load never becomes active and an inspection never waits on a load.
"""

from __future__ import annotations

import logging
from pathlib import Path

from defectlens.errors import InputError, ModelError
from defectlens.inference.api import schemas
from defectlens.inference.api.auth import Caller
from defectlens.inference.api.errors import Conflict, NotFound
from defectlens.inference.api.state import ServiceState
from defectlens.inference.engine import Engine
from defectlens.inference.engine_registry import EngineRegistry
from defectlens.inference.store import Deployment, ModelVersion, Store
from defectlens.modelcard import ModelCard
from defectlens.prediction import ModelRef

log = logging.getLogger(__name__)


def register_model_dir(store: Store, model_dir: Path) -> ModelVersion:
    """Register a model version folder (its `model.json`) and return the stored version.

    Raises `ModelError` if the folder is not a model version.
    """
    folder = Path(model_dir).expanduser().resolve()
    if not (folder / "model.json").is_file():
        raise ModelError(
            f"{model_dir}: not a model version folder (no model.json); give the folder "
            "`defectlens train` printed last, e.g. models/anomaly/20261126T143000Z-3fa2c1"
        )
    card = ModelCard.read(folder / "model.json")
    version_id = store.register_model_version(
        card.name, card.version, card.family, folder, card.sha256, dict(card.metrics)
    )
    version = store.get_model_version(version_id)
    assert version is not None
    return version


def resolve_model(
    state: ServiceState, request: schemas.PromoteRequest
) -> tuple[ModelVersion, Engine]:
    """The version a promote request names, with its engine loaded and warmed."""
    if request.model_version_id is not None:
        version = state.store.get_model_version(request.model_version_id)
        if version is None:
            raise NotFound(
                f"model version {request.model_version_id} is not registered; "
                "GET /v1/models lists them"
            )
        return version, state.registry.load(Path(version.path))
    assert request.model_dir is not None
    folder = Path(request.model_dir)
    engine = state.registry.load(folder)  # refuses a folder that does not verify and load
    return register_model_dir(state.store, folder), engine


def promote(
    state: ServiceState, station: str, request: schemas.PromoteRequest, caller: Caller
) -> schemas.Deployment:
    """Make a model version the station's active one and swap it in."""
    require_station(state.store, station)
    version, engine = resolve_model(state, request)
    deployment = state.store.promote(station, version.id, actor=caller.name)
    state.registry.serve(station, engine)
    state.metrics.model_swaps.labels(station).inc()
    return deployment_schema(state.store, deployment)


def rollback(state: ServiceState, station: str, caller: Caller) -> schemas.Deployment:
    """Re-activate the station's previous model, loading it before the switch."""
    require_station(state.store, station)
    target = _rollback_target(state.store, station)
    if target is not None:
        state.registry.load(Path(target.path))
    try:
        deployment = state.store.rollback(station, actor=caller.name)
    except InputError as exc:  # the station exists: what is left is "nothing to roll back"
        raise Conflict(str(exc)) from None
    engine = state.registry.load(Path(deployment.model_version.path))
    state.registry.serve(station, engine)
    state.metrics.model_swaps.labels(station).inc()
    return deployment_schema(state.store, deployment)


def sync_engines(store: Store, registry: EngineRegistry) -> int:
    """Load the active model of every station whose engine differs from the store's record;
    returns how many stations changed. A model that fails to load leaves the station marked
    unavailable (reported on /readyz) and the others serving."""
    changed = 0
    for deployment in store.active_deployments():
        folder = Path(deployment.model_version.path).resolve()
        station = deployment.station_id
        if folder in (registry.serving_folder(station), registry.failed_folder(station)):
            continue  # up to date, or already failed: /readyz says so; promote another
        if registry.try_swap(station, folder):
            changed += 1
    return changed


def require_station(store: Store, station: str) -> None:
    if store.get_station(station) is None:
        raise NotFound(f"station {station!r} is not known; create it first (POST /v1/stations)")


def station_schemas(state: ServiceState) -> list[schemas.Station]:
    """Every station with its active model and whether this instance serves it."""
    active = {d.station_id: d.model_version for d in state.store.active_deployments()}
    stations = state.store.list_stations()
    statuses = {s.station: s for s in state.registry.statuses([s.id for s in stations])}
    out = []
    for station in stations:
        version = active.get(station.id)
        status = statuses[station.id]
        out.append(
            schemas.Station(
                id=station.id,
                line=station.line,
                description=station.description,
                model=ModelRef(name=version.name, version=version.version) if version else None,
                serving=status.model is not None,
                problem=status.problem,
            )
        )
    return out


def create_station(state: ServiceState, body: schemas.StationCreate) -> schemas.Station:
    """Create a station (or update its line and description if it exists)."""
    state.store.ensure_station(body.id, line=body.line, description=body.description)
    return next(s for s in station_schemas(state) if s.id == body.id)


def model_version_schemas(store: Store) -> list[schemas.ModelVersion]:
    """Every registered version, newest first, with the stations it is active on."""
    stations_of: dict[int, list[str]] = {}
    for deployment in store.active_deployments():
        stations_of.setdefault(deployment.model_version.id, []).append(deployment.station_id)
    return [version_schema(v, stations_of.get(v.id, [])) for v in store.list_model_versions()]


def version_schema(version: ModelVersion, stations: list[str]) -> schemas.ModelVersion:
    return schemas.ModelVersion(
        id=version.id,
        name=version.name,
        version=version.version,
        family=version.family,
        path=version.path,
        sha256=version.sha256,
        created_at=version.created_at,
        metrics=version.metrics,
        stations=stations,
    )


def deployment_schema(store: Store, deployment: Deployment) -> schemas.Deployment:
    return schemas.Deployment(
        station=deployment.station_id,
        model=version_schema(deployment.model_version, [deployment.station_id]),
        promoted_at=deployment.promoted_at,
        promoted_by=deployment.promoted_by,
    )


def _rollback_target(store: Store, station: str) -> ModelVersion | None:
    """The version `Store.rollback` will re-activate (the newest earlier deployment that was
    not itself rolled back), so it can be loaded first; None if there is none."""
    history = store.deployment_history(station)  # newest first
    active = next((d for d in history if d.active), None)
    if active is None:
        return None
    earlier = [d for d in history if d.id < active.id and d.rolled_back_at is None]
    return earlier[0].model_version if earlier else None
