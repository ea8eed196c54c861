"""Stations and their models: import a version folder into the workspace, register, promote,
roll back, and keep the loaded engines in step with the store (at start, after a change
here, and by polling for changes made elsewhere, e.g. `defectlens models promote` or
another service instance).

The new engine is always loaded and warmed before the store or the station switches to it,
so a model that cannot load never becomes active and an inspection never waits on a load.
Only model versions inside the workspace's models folder, or already registered, may be
promoted: a caller of the API cannot make the service load files from anywhere else.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from defectlens.errors import Conflict, InputError, ModelError, NotFound
from defectlens.inference.engine import Engine
from defectlens.inference.engine_registry import EngineRegistry, StationStatus
from defectlens.inference.store import Deployment, ModelVersion, Station, Store
from defectlens.modelcard import ModelCard
from defectlens.prediction import ModelRef

if TYPE_CHECKING:
    from defectlens.inference.service.core import InspectionService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StationState:
    """A station, its promoted model, and whether this service instance serves it."""

    id: str
    line: str | None
    description: str | None
    model: ModelRef | None
    serving: bool
    problem: str | None


@dataclass(frozen=True)
class DeployedVersion:
    """A registered model version and the stations it is active on."""

    version: ModelVersion
    stations: list[str]


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


def import_model_dir(models_dir: Path, model_dir: Path) -> Path:
    """The version folder inside the workspace's `models_dir`: `model_dir` itself if it is
    already there, else a verified copy at `<models>/<name>/<version>` (written under a
    temporary name and renamed, so an interrupted copy leaves nothing half there). The
    service then runs without the training folder."""
    source = Path(model_dir).expanduser().resolve()
    root = models_dir.expanduser().resolve()
    if source.is_relative_to(root):
        return source
    Engine(source, threads=1, warmup=True)  # refuse a folder that does not verify and run
    card = ModelCard.read(source / "model.json")
    target = root / card.name / card.version
    if target.exists():
        if ModelCard.read(target / "model.json").sha256 != card.sha256:
            raise ModelError(
                f"{target} already holds {card.name} {card.version} with another model.onnx; "
                "a model version never changes: train a new version"
            )
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{card.version}.", dir=target.parent))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        Engine(staging, threads=1, warmup=False)  # the copy's bytes match model.json
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("model %s %s copied into the workspace at %s", card.name, card.version, target)
    return target


def deploy_model_dir(
    store: Store, models_dir: Path, model_dir: Path, station: str, actor: str
) -> Deployment:
    """Promote a version folder without a running service (the CLI, the demo): copy it into
    the workspace (`import_model_dir`, which verifies it loads), register it and record it
    as the station's active model, creating the station if new. A running service swaps to
    it within `deployment_poll_s`."""
    folder = import_model_dir(models_dir, model_dir)
    version = register_model_dir(store, folder)
    return store.promote(station, version.id, actor=actor)


def promote(
    service: InspectionService,
    station: str,
    actor: str,
    model_version_id: int | None = None,
    model_dir: Path | None = None,
) -> Deployment:
    """Make a model version (a registered id, or a folder in the workspace's models folder)
    the station's active one and swap it in. A model that fails to load is a `ModelError`
    and changes nothing."""
    require_station(service.store, station)
    version, engine = _resolve_model(service, model_version_id, model_dir)
    deployment = service.store.promote(station, version.id, actor=actor)
    service.registry.serve(station, engine)
    service.metrics.model_swaps.labels(station).inc()
    return deployment


def rollback(service: InspectionService, station: str, actor: str) -> Deployment:
    """Re-activate the station's previous model, loading it before the switch."""
    require_station(service.store, station)
    target = _rollback_target(service.store, station)
    if target is not None:
        service.registry.load(Path(target.path))
    try:
        deployment = service.store.rollback(station, actor=actor)
    except InputError as exc:  # the station exists: what is left is "nothing to roll back"
        raise Conflict(str(exc)) from None
    engine = service.registry.load(Path(deployment.model_version.path))
    service.registry.serve(station, engine)
    service.metrics.model_swaps.labels(station).inc()
    return deployment


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


def station_states(service: InspectionService) -> list[StationState]:
    """Every station with its active model and whether this instance serves it."""
    active = {d.station_id: d.model_version for d in service.store.active_deployments()}
    stations = service.store.list_stations()
    statuses = {s.station: s for s in service.registry.statuses([s.id for s in stations])}
    return [_station_state(station, active.get(station.id), statuses) for station in stations]


def create_station(
    service: InspectionService, station_id: str, line: str | None, description: str | None
) -> StationState:
    """Create a station (or update its line and description if it exists)."""
    service.store.ensure_station(station_id, line=line, description=description)
    return next(s for s in station_states(service) if s.id == station_id)


def deployed_versions(store: Store) -> list[DeployedVersion]:
    """Every registered version, newest first, with the stations it is active on."""
    stations_of: dict[int, list[str]] = {}
    for deployment in store.active_deployments():
        stations_of.setdefault(deployment.model_version.id, []).append(deployment.station_id)
    return [DeployedVersion(v, stations_of.get(v.id, [])) for v in store.list_model_versions()]


def _station_state(
    station: Station, version: ModelVersion | None, statuses: dict[str, StationStatus]
) -> StationState:
    status = statuses[station.id]
    return StationState(
        id=station.id,
        line=station.line,
        description=station.description,
        model=ModelRef(name=version.name, version=version.version) if version else None,
        serving=status.model is not None,
        problem=status.problem,
    )


def _resolve_model(
    service: InspectionService, model_version_id: int | None, model_dir: Path | None
) -> tuple[ModelVersion, Engine]:
    """The version a promote names, with its engine loaded and warmed."""
    store = service.store
    if model_version_id is not None:
        version = store.get_model_version(model_version_id)
        if version is None:
            raise NotFound(
                f"model version {model_version_id} is not registered; GET /v1/models lists them"
            )
        return version, service.registry.load(Path(version.path))
    if model_dir is None:
        raise InputError("give a model version id or a model version folder to promote")
    folder = Path(model_dir).expanduser().resolve()
    models_dir = service.settings.models_dir.expanduser().resolve()
    registered = store.get_model_version(folder)
    if registered is None and not folder.is_relative_to(models_dir):
        raise InputError(
            f"model_dir {model_dir}: only model versions inside the workspace's models folder "
            f"({models_dir}) or already registered can be promoted; copy it there with "
            "`defectlens models promote MODEL_DIR --station ID` on the service's machine"
        )
    engine = service.registry.load(folder)  # refuses a folder that does not verify and load
    return registered or register_model_dir(store, folder), engine


def _rollback_target(store: Store, station: str) -> ModelVersion | None:
    """The version `Store.rollback` will re-activate (the newest earlier deployment that was
    not itself rolled back), so it can be loaded first; None if there is none."""
    history = store.deployment_history(station)  # newest first
    active = next((d for d in history if d.active), None)
    if active is None:
        return None
    earlier = [d for d in history if d.id < active.id and d.rolled_back_at is None]
    return earlier[0].model_version if earlier else None
