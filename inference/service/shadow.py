"""Shadow mode: a candidate model runs beside a station's production model on its live
parts, off the request path, without touching verdicts or the line's latency budget.

After a part's result is stored, `ShadowRunner.offer` (on the inspection thread, a dict
look-up when the station has no shadow run) hands the decoded image to one low-priority
thread with a bounded queue; a part that finds the queue full is skipped and counted. That
thread runs the candidate on a single-threaded ONNX Runtime session and stores its answer
beside the line's verdict. Runs end at their `until` or on a stop; another instance on the
same database picks a run up at its next poll (`sync`).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from defectlens.errors import Conflict, InputError, NotFound
from defectlens.inference.engine import Engine
from defectlens.inference.service.deployments import require_station
from defectlens.inference.service.images import (
    image_path,
    image_suffix,
    sync_folders,
    write_atomically,
)
from defectlens.inference.store import Store, StoredImage
from defectlens.inference.store.shadow import ShadowAnswer, ShadowFigures, ShadowRun
from defectlens.result import InspectionResult

if TYPE_CHECKING:
    from defectlens.inference.service.core import InspectionService

log = logging.getLogger(__name__)

MAX_SHADOW_DAYS = 30
SHADOW_NICENESS = 10
"""How much lower than the inspection threads the shadow thread runs (Linux: per thread)."""


@dataclass
class _ActiveRun:
    """A run this instance feeds: its candidate engine and the counts not yet stored."""

    run: ShadowRun
    engine: Engine
    until_ts: float
    seen: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class _Part:
    active: _ActiveRun
    result: InspectionResult
    image: np.ndarray
    data: bytes


class ShadowRunner:
    """The shadow runs this service instance feeds, and the thread that runs them."""

    def __init__(self, store: Store, images_dir: Path, queue_size: int) -> None:
        self.store = store
        self.images_dir = images_dir
        self._by_station: dict[str, _ActiveRun] = {}
        self._parts: queue.Queue[_Part | None] = queue.Queue(maxsize=queue_size)
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._thread.start()

    # -- the inspection threads' side: never waits ---------------------------------------

    def offer(self, result: InspectionResult, image: np.ndarray, data: bytes) -> None:
        """A stored part of any station: queued for its station's shadow run if one is on
        and the part is sampled, counted as skipped if the queue is full."""
        active = self._by_station.get(result.station)
        if active is None or time.time() >= active.until_ts:
            return
        sampled = active.run.sample_fraction >= 1.0 or random.random() < active.run.sample_fraction
        with self._count_lock:
            active.seen += 1
            if not sampled:
                return
            try:
                self._parts.put_nowait(_Part(active, result, image, data))
            except queue.Full:
                active.skipped += 1

    # -- starting, stopping, polling ------------------------------------------------------

    def activate(self, run: ShadowRun, engine: Engine | None = None) -> None:
        """Feed `run` from now on (its candidate loaded first, outside any lock)."""
        if run.station in self._by_station and self._by_station[run.station].run.id == run.id:
            return
        version = self.store.get_model_version(run.model_version_id)
        if version is None:
            raise InputError(f"model version {run.model_version_id} is not registered")
        engine = engine or candidate_engine(Path(version.path))
        self._flush(self._by_station.get(run.station))
        self._by_station[run.station] = _ActiveRun(run, engine, run.until.timestamp())
        log.info(
            "shadow run %d: %s/%s beside station %s's model, %.0f%% of parts, until %s",
            run.id,
            engine.card.name,
            engine.card.version,
            run.station,
            run.sample_fraction * 100,
            f"{run.until:%Y-%m-%d %H:%M} UTC",
            extra={"station": run.station},
        )

    def deactivate(self, station: str) -> None:
        """Stop feeding the station's run (its counts are stored)."""
        self._flush(self._by_station.pop(station, None))

    def sync(self) -> None:
        """Follow the store: runs started or stopped elsewhere, runs past their end; store
        the parts counted since the last pass."""
        wanted = {run.station: run for run in self.store.active_shadow_runs()}
        for station, active in list(self._by_station.items()):
            if wanted.get(station) is None or wanted[station].id != active.run.id:
                self.deactivate(station)
            else:
                self._flush(active)
        for station, run in wanted.items():
            if station not in self._by_station:
                try:
                    self.activate(run)
                except Exception:  # a candidate that no longer loads: the line goes on
                    log.exception("shadow run %d could not start here", run.id)

    def active_stations(self) -> list[str]:
        return sorted(self._by_station)

    def close(self) -> None:
        """Stop the thread (parts still queued are dropped) and store the counts."""
        for station in list(self._by_station):
            self.deactivate(station)
        while True:
            try:
                self._parts.get_nowait()
            except queue.Empty:
                break
        self._parts.put(None)
        self._thread.join(timeout=10)

    def _flush(self, active: _ActiveRun | None) -> None:
        if active is None:
            return
        with self._count_lock:
            seen, skipped = active.seen, active.skipped
            active.seen = active.skipped = 0
        try:
            self.store.count_shadow_parts(active.run.id, seen, skipped)
        except Exception:
            with self._count_lock:  # counted again at the next pass
                active.seen += seen
                active.skipped += skipped
            log.exception("shadow run %d: could not store its counts", active.run.id)

    # -- the shadow thread ------------------------------------------------------------------

    def _work(self) -> None:
        _lower_priority()
        while True:
            part = self._parts.get()
            if part is None:
                return
            try:
                self._shadow(part)
            except Exception:  # one part's failure must not stop the thread
                log.exception(
                    "shadow run %d: part %s failed", part.active.run.id, part.result.result_id
                )

    def _shadow(self, part: _Part) -> None:
        result, active = part.result, part.active
        prediction = active.engine.predict(part.image, source=result.result_id, with_map=False)
        answer = ShadowAnswer(
            result_id=result.result_id,
            verdict=prediction.verdict,
            score=prediction.score,
            threshold=prediction.threshold,
            defects=[d.model_dump(mode="json", by_alias=True) for d in prediction.defects],
            production_verdict=result.verdict,
            production_score=result.score,
            model_ms=prediction.timings_ms.model,
        )
        written: Path | None = None
        image: StoredImage | None = None
        if not answer.agrees and result.image_url is None:  # keep what QA must look at
            written = image_path(
                self.images_dir, result.result_id, result.received_at, image_suffix(part.data)
            )
            sync_folders(write_atomically(written, part.data))
            relative = written.relative_to(self.images_dir).as_posix()
            image = StoredImage("image", relative, len(part.data))
        try:
            self.store.save_shadow_answer(active.run.id, answer, image)
        except BaseException:
            if written is not None:
                written.unlink(missing_ok=True)
            raise


def candidate_engine(folder: Path) -> Engine:
    """The candidate's engine: one thread, sleeping between operators, so it takes one core
    at most and yields it at once."""
    return Engine(folder, threads=1, spin=False, warmup=True)


def begin_shadow(
    store: Store,
    station: str,
    model_version_id: int,
    sample_fraction: float,
    duration_h: float,
    actor: str,
) -> tuple[ShadowRun, Engine]:
    """Store a shadow run of a registered version beside the station's production model on
    `sample_fraction` of its parts for `duration_h` hours, with its audit entry; the
    candidate is loaded first, so one that does not load starts nothing. `Conflict` if it
    is the station's production model or a run is on. Services pick it up at their next
    poll; `start_shadow` also starts it in the calling service at once."""
    if not 0.0 < sample_fraction <= 1.0:
        raise InputError(f"sample_fraction {sample_fraction:g}: give a share above 0, at most 1")
    if not 0.0 < duration_h <= MAX_SHADOW_DAYS * 24:
        raise InputError(
            f"duration_h {duration_h:g}: give hours above 0, at most {MAX_SHADOW_DAYS * 24}"
        )
    require_station(store, station)
    version = store.get_model_version(model_version_id)
    if version is None:
        raise NotFound(
            f"model version {model_version_id} is not registered; GET /v1/models lists them"
        )
    active = store.active_deployment(station)
    if active is not None and active.model_version.id == model_version_id:
        raise Conflict(
            f"model version {model_version_id} is already station {station}'s production "
            "model; shadow a candidate instead"
        )
    engine = candidate_engine(Path(version.path))
    until = datetime.now(UTC) + timedelta(hours=duration_h)
    run = store.start_shadow_run(station, model_version_id, sample_fraction, until, actor)
    return run, engine


def start_shadow(
    service: InspectionService,
    station: str,
    model_version_id: int,
    sample_fraction: float,
    duration_h: float,
    actor: str,
) -> ShadowRun:
    """`begin_shadow`, and this service feeds the run from its next part on."""
    run, engine = begin_shadow(
        service.store, station, model_version_id, sample_fraction, duration_h, actor
    )
    if service.shadow is not None:
        service.shadow.activate(run, engine)
    return run


def stop_shadow(service: InspectionService, run_id: int, actor: str) -> ShadowRun:
    """Stop a run; this instance stops at once, others at their next poll."""
    run = service.store.stop_shadow_run(run_id, actor)
    runner = service.shadow
    if runner is not None:
        runner.deactivate(run.station)
    return run


def shadow_figures(service: InspectionService, run_id: int) -> ShadowFigures:
    """A run's figures, with this instance's latest counts stored first."""
    runner = service.shadow
    if runner is not None:
        runner.sync()
    return service.store.shadow_figures(run_id)


def start_shadow_runner(service: InspectionService) -> ShadowRunner:
    """The runner of a starting service, fed with the runs already on."""
    runner = ShadowRunner(
        service.store, service.settings.images_dir, service.settings.shadow_queue_size
    )
    service.shadow = runner
    try:
        runner.sync()
    except Exception:
        log.exception("shadow runs could not be read at start; the next poll retries")
    return runner


def _lower_priority() -> None:
    """Give this thread a lower CPU priority than the inspection threads (Linux schedules
    threads one by one; elsewhere this does nothing)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: it still runs
        log.debug("shadow thread runs at normal priority")
