"""Training jobs from the service: start a retrain from a recipe and a dataset version, list,
cancel, read a job's log. The training itself never runs here: a worker process takes the
job from the queue (`job_queue.py`, `train/worker.py`) and reports into the store.

On SQLite the service starts a local worker process the first time a job is queued (and at
start when jobs wait), unless `DEFECTLENS_LOCAL_WORKER=false`; on PostgreSQL workers run
wherever `defectlens worker` is started against the same database.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import make_url

from defectlens.errors import InputError, NotFound, RecipeError
from defectlens.inference.service.inspection import STATION_ID_PATTERN
from defectlens.inference.service.job_queue import enqueue_training
from defectlens.inference.store import Store
from defectlens.inference.store.jobs import TrainingJob
from defectlens.settings import Settings

log = logging.getLogger(__name__)

SHIPPED_RECIPES = "defectlens.configs"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_LOG_LINES = 2000
PARENT_ENV = "DEFECTLENS_WORKER_PARENT_PID"
"""Set for a local worker: the service's pid, which the worker watches (`train/worker.py`)."""


class JobRequest(BaseModel):
    """What a retrain needs: a recipe and the data, optionally the station it is for."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    recipe: str = Field(
        min_length=1,
        max_length=256,
        description="a shipped recipe's name (`defectlens recipes list`) or a recipe YAML file "
        "inside the workspace (absolute, or relative to DEFECTLENS_HOME)",
    )
    data: str = Field(
        min_length=1,
        max_length=1024,
        description="a dataset version id, or a dataset folder inside the workspace "
        "(absolute, or relative to DEFECTLENS_HOME)",
    )
    station: str | None = Field(
        default=None, pattern=STATION_ID_PATTERN, description="the station the model is for"
    )
    name: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="the model's name (default: the recipe's)",
    )


def start_job(
    store: Store,
    settings: Settings,
    request: JobRequest,
    actor: str,
    local_worker: LocalWorker | None = None,
) -> TrainingJob:
    """Store a queued job (with its audit entry) and hand it to the queue, starting the
    service's `local_worker` if it has one. The recipe is read now, so a later edit of its
    file does not change the job. A queue that cannot take it fails the job at once, saying
    why."""
    recipe = read_recipe(settings, request.recipe)
    if request.name is not None:
        recipe["name"] = request.name
    data_path = training_data(resolve_data(store, settings, request.data), recipe)
    if request.station is not None and store.get_station(request.station) is None:
        raise NotFound(f"station {request.station!r} is not known; create it first")
    job = store.create_job(
        request.recipe, recipe, request.data, str(data_path), request.station, actor
    )
    try:
        enqueue_training(settings, job.id)
    except Exception as error:  # the broker's own errors: unreachable, no permission
        reason = f"the job queue did not take the job: {type(error).__name__}: {error}"
        log.error("training job %d: %s", job.id, reason)
        return store.finish_job(job.id, "failed", error=reason)
    log.info("training job %d queued by %s: %s on %s", job.id, actor, request.recipe, data_path)
    if local_worker is not None:
        local_worker.ensure_running()
    return job


def cancel_job(store: Store, job_id: int, actor: str) -> TrainingJob:
    """Cancel a queued or running job (a running one stops within a couple of seconds: its
    worker terminates the training process, which leaves no model version behind)."""
    return store.request_cancel(job_id, actor)


def job_log(store: Store, job_id: int, lines: int = 200) -> list[str]:
    """The last `lines` lines of a job's log as the store keeps them (the whole log is
    `<home>/jobs/<id>/train.log` on the worker's machine)."""
    if not 1 <= lines <= MAX_LOG_LINES:
        raise InputError(f"lines={lines}: ask for 1 to {MAX_LOG_LINES} lines")
    return store.get_job(job_id).log_tail.splitlines()[-lines:]


def read_recipe(settings: Settings, recipe: str) -> dict[str, Any]:
    """The recipe as a mapping: a shipped recipe by name, else a YAML file inside the
    workspace. Checked here only as far as a worker needs to start; the training command
    checks every field and a job with a wrong one fails saying which."""
    shipped = resources.files(SHIPPED_RECIPES) / f"{recipe}.yaml"
    if re.fullmatch(MODEL_NAME_PATTERN, recipe) and shipped.is_file():
        text, where = shipped.read_text(encoding="utf-8"), f"shipped recipe {recipe}"
    else:
        path = inside_workspace(settings, recipe, "recipe")
        if not path.is_file():
            raise RecipeError(
                f"recipe {recipe!r}: neither a shipped recipe (`defectlens recipes list`) nor "
                f"a file ({path} does not exist)"
            )
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RecipeError(f"{where}: not valid YAML ({error})") from None
    if not isinstance(loaded, dict):
        raise RecipeError(f"{where}: a recipe is a mapping of settings (name: ..., family: ...)")
    return loaded


def resolve_data(store: Store, settings: Settings, data: str) -> Path:
    """The folder a job trains on: a registered dataset version's, else a folder inside the
    workspace."""
    version = store.dataset_version_path(data)
    folder = Path(version) if version is not None else inside_workspace(settings, data, "data")
    if not folder.is_dir():
        what = f"dataset version {data}" if version is not None else f"data {data!r}"
        raise InputError(
            f"{what}: the folder {folder} does not exist; give a dataset version id or a "
            "dataset folder inside the workspace"
        )
    return folder


def training_data(folder: Path, recipe: dict[str, Any]) -> Path:
    """What the training reads from a folder: of a dataset version, its `good/` for an
    anomaly recipe (fitted on good parts) and its `coco.json` for a detector; any other
    folder as it is."""
    if not (folder / "manifest.json").is_file():
        return folder
    family = recipe.get("family", "anomaly")
    path = folder / ("coco.json" if family == "detection" else "good")
    if not path.exists():
        raise InputError(
            f"dataset version {folder.name}: it has no {path.name}, which a {family} recipe "
            "trains on; freeze a version with such labels"
        )
    return path


def inside_workspace(settings: Settings, given: str, what: str) -> Path:
    """`given` as a path inside the workspace (relative paths are taken from it); a caller
    of the API cannot make a worker read files from anywhere else."""
    home = settings.home.expanduser().resolve()
    path = Path(given).expanduser()
    path = (path if path.is_absolute() else home / path).resolve()
    if not path.is_relative_to(home):
        raise InputError(
            f"{what} {given!r}: only files inside the workspace ({home}) can be used; copy it "
            "there first"
        )
    return path


def uses_local_worker(settings: Settings) -> bool:
    """Whether this service runs the workspace's worker itself: on SQLite, unless turned off
    (`DEFECTLENS_LOCAL_WORKER=false`)."""
    enabled = bool(getattr(settings, "local_worker", True))
    backend = make_url(settings.resolved_database_url).get_backend_name()
    return enabled and backend == "sqlite"


class LocalWorker:
    """The `defectlens worker` process a service on SQLite runs beside itself, started when
    the first job is queued and stopped with the service."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        """Start the worker if it is not running (again, if it died)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            log_dir = self.settings.home / "jobs"
            log_dir.mkdir(parents=True, exist_ok=True)
            env = {
                **os.environ,
                "DEFECTLENS_HOME": str(self.settings.home.resolve()),
                PARENT_ENV: str(os.getpid()),  # it stops when this process is gone
            }
            if self.settings.database_url:
                env["DEFECTLENS_DATABASE_URL"] = self.settings.database_url
            with open(log_dir / "worker.log", "ab") as output:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "defectlens.cli", "worker"],
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,  # a Ctrl-C at the service's terminal is ours
                )
            log.info("started the local training worker (pid %d)", self._process.pid)

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the worker: a job it runs is interrupted (and fails, saying the worker
        stopped), then it exits; killed if it has not after `timeout_s`."""
        with self._lock:
            process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("the local training worker did not stop in %g s; killing it", timeout_s)
            process.kill()
            process.wait()


def start_local_worker(store: Store, settings: Settings) -> LocalWorker | None:
    """A `LocalWorker` for a service on SQLite (None otherwise), started at once if jobs are
    waiting in the queue."""
    if not uses_local_worker(settings):
        return None
    worker = LocalWorker(settings)
    if store.list_jobs(status="queued", limit=1):
        worker.ensure_running()
    return worker
