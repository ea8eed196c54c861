"""Which inspection services run on a workspace and what each serves: every running instance
keeps a status file, `<home>/run/<instance id>.json`, and `wait_for_model` follows a
promotion until each of them serves it (what `defectlens models promote` waits on).

A service refreshes its file after every deployment poll (every `HEARTBEAT_S` when it does
not poll) and removes it when it stops cleanly; a file not refreshed for 3 intervals and
`STALE_MARGIN_S` more is a service that crashed, and is ignored.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from defectlens.inference.engine_registry import StationStatus

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
"""How often a service that does not poll for promotions still refreshes its status file."""
STALE_MARGIN_S = 5.0
"""Beyond 3 refresh intervals, how much longer a silent status file counts as running."""
WAIT_INTERVAL_S = 0.2
"""How often `wait_for_model` reads the status files."""


class StationServing(BaseModel):
    """What one instance does for one station."""

    model: str | None = None
    """`name/version` of the model it serves, or None."""
    problem: str | None = None
    """Why it serves none (no model promoted, the model failed to load), or None."""
    failed_folder: str | None = None
    """The model folder that failed to load, when that is the problem."""


class InstanceStatus(BaseModel):
    """The content of one status file."""

    instance_id: str
    pid: int
    host: str
    started_at: datetime
    updated_at: datetime
    """UTC; refreshed after every deployment poll."""
    poll_s: float = Field(ge=0)
    """The instance's `DEFECTLENS_DEPLOYMENT_POLL_S`; 0: it never picks up promotions made
    outside it."""
    stations: dict[str, StationServing] = {}

    @property
    def refresh_s(self) -> float:
        """How often the instance rewrites its file."""
        return self.poll_s if self.poll_s > 0 else HEARTBEAT_S

    @property
    def name(self) -> str:
        """How the CLI names the instance to a person."""
        return f"service {self.instance_id} (pid {self.pid}, host {self.host})"

    def age_s(self, now: datetime) -> float:
        """Seconds since the instance last wrote its file."""
        return (now - self.updated_at).total_seconds()

    def is_stale(self, now: datetime) -> bool:
        """Whether the instance stopped refreshing its file: it is not running."""
        return self.age_s(now) > 3 * self.refresh_s + STALE_MARGIN_S


def run_dir(home: Path) -> Path:
    """The workspace's folder of status files."""
    return home / "run"


def status_path(folder: Path, instance_id: str) -> Path:
    """The status file of an instance; its id made safe for a file name."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", instance_id).lstrip(".")
    return folder / f"{safe or '_'}.json"


def instance_status(
    instance_id: str,
    poll_s: float,
    started_at: datetime,
    stations: Sequence[StationStatus],
    now: datetime | None = None,
) -> InstanceStatus:
    """This process's status, from what its engine registry reports per station."""
    return InstanceStatus(
        instance_id=instance_id,
        pid=os.getpid(),
        host=socket.gethostname(),
        started_at=started_at,
        updated_at=now or datetime.now(UTC),
        poll_s=poll_s,
        stations={
            s.station: StationServing(
                model=s.model,
                problem=s.problem,
                failed_folder=str(s.failed_folder) if s.failed_folder is not None else None,
            )
            for s in stations
        },
    )


def write_status(folder: Path, status: InstanceStatus) -> Path:
    """Write the status file atomically (a temporary file renamed over it), so a reader never
    sees half of it. Not synced to disk: a lost file is rewritten at the next poll."""
    folder.mkdir(parents=True, exist_ok=True)
    path = status_path(folder, status.instance_id)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(status.model_dump_json(indent=2))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def remove_status(folder: Path, status: InstanceStatus) -> None:
    """Remove the instance's status file, unless another process (a second instance given the
    same id) has written it since."""
    path = status_path(folder, status.instance_id)
    current = _read(path)
    if current is not None and (current.pid, current.host, current.started_at) == (
        status.pid,
        status.host,
        status.started_at,
    ):
        path.unlink(missing_ok=True)


def read_statuses(folder: Path) -> list[InstanceStatus]:
    """Every status file in the folder, by instance id; files that cannot be read are left
    out (logged)."""
    statuses = [_read(path) for path in folder.glob("*.json")]
    return sorted((s for s in statuses if s is not None), key=lambda s: s.instance_id)


def running_instances(
    folder: Path, now: datetime | None = None
) -> tuple[list[InstanceStatus], list[InstanceStatus]]:
    """The instances that run (fresh status files) and those whose files are stale."""
    now = now or datetime.now(UTC)
    statuses = read_statuses(folder)
    return (
        [s for s in statuses if not s.is_stale(now)],
        [s for s in statuses if s.is_stale(now)],
    )


Outcome = Literal["swapped", "failed", "not polling", "stopped", "timed out"]


@dataclass(frozen=True)
class SwapOutcome:
    """How one running instance took a promotion."""

    instance: InstanceStatus
    outcome: Outcome
    """`swapped`: it serves the model; `failed`: the model failed to load there (`problem`);
    `not polling`: it never picks up promotions made outside it; `stopped`: it stopped
    running (removed or stopped refreshing its file); `timed out`: none of these in time."""
    after_s: float
    """Seconds from the start of the wait until the outcome was seen."""
    problem: str | None = None


def wait_for_model(
    folder: Path,
    instances: Sequence[InstanceStatus],
    station: str,
    model: str,
    model_dir: str,
    timeout_s: float,
    interval_s: float = WAIT_INTERVAL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[SwapOutcome]:
    """Read the status files every `interval_s` until each of `instances` serves `model`
    (`name/version`, whose folder is `model_dir`) for `station`, or cannot; yields each
    instance's outcome as soon as it is known, and `timed out` for the rest after
    `timeout_s`."""
    start = clock()
    waiting = {s.instance_id: s for s in instances}
    while True:
        elapsed = clock() - start
        now = datetime.now(UTC)
        current = {s.instance_id: s for s in read_statuses(folder)}
        for instance_id, earlier in list(waiting.items()):
            outcome = _outcome(current.get(instance_id), earlier, station, model, model_dir, now)
            if outcome is not None:
                del waiting[instance_id]
                status, kind, problem = outcome
                yield SwapOutcome(status, kind, elapsed, problem)
        if not waiting:
            return
        if elapsed >= timeout_s:
            for status in waiting.values():
                yield SwapOutcome(current.get(status.instance_id, status), "timed out", elapsed)
            return
        sleep(interval_s)


def _outcome(
    status: InstanceStatus | None,
    earlier: InstanceStatus,
    station: str,
    model: str,
    model_dir: str,
    now: datetime,
) -> tuple[InstanceStatus, Outcome, str | None] | None:
    """An instance's outcome from its latest status, or None while it is still to swap."""
    if status is None or status.is_stale(now):
        return earlier if status is None else status, "stopped", None
    serving = status.stations.get(station)
    if serving is not None and serving.model == model:
        return status, "swapped", None
    failed = serving.failed_folder if serving is not None else None
    if serving is not None and failed is not None and _same_folder(failed, model_dir):
        return status, "failed", serving.problem
    if status.poll_s == 0:
        return status, "not polling", None
    return None


def _same_folder(first: str, second: str) -> bool:
    return first == second or Path(first).resolve() == Path(second).resolve()


def _read(path: Path) -> InstanceStatus | None:
    try:
        return InstanceStatus.model_validate_json(path.read_bytes())
    except FileNotFoundError:  # removed since the folder was listed: the service stopped
        return None
    except (OSError, ValidationError) as exc:
        log.warning("ignoring the service status file %s: %s", path, exc)
        return None
