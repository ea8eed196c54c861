"""The training-job worker: takes jobs from the queue (`inference/service/job_queue.py`) and
runs each as a child process, `defectlens train RECIPE --data PATH --out DIR`, reporting its
stage, log and outcome into the store as it goes.

Cancel terminates the child the way Ctrl-C does, so the training removes its temporary
folder: no half model version is left. A finished training's version folder is imported
into the workspace and registered (`import_model_dir`, `register_model_dir`), never promoted.
`defectlens worker` runs one; on PostgreSQL any number, on any machine, share the queue.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml
from celery.worker import state as celery_state

from defectlens.errors import DefectLensError
from defectlens.inference.service.deployments import import_model_dir, register_model_dir
from defectlens.inference.service.job_queue import (
    TRAIN_TASK,
    TRAINING_QUEUE,
    job_queue,
    jobs_dir,
)
from defectlens.inference.service.jobs import PARENT_ENV
from defectlens.inference.store import Store, open_database
from defectlens.inference.store.jobs import JobProgress, TrainingJob
from defectlens.modelcard import ModelCard
from defectlens.settings import Settings

log = logging.getLogger(__name__)

REPORT_EVERY_S = 1.0
"""How often a running job's progress reaches the store, and a cancel is looked for."""
INTERRUPT_GRACE_S = 20.0
"""How long an interrupted training may take to clean up before it is killed."""
TAIL_LINES = 400

# The training command's stage lines (`train_model`'s `say`), in order, and the share of the
# whole run done when each starts: a bar for the page, not a time estimate.
STAGES: tuple[tuple[str, str, float], ...] = (
    ("checking ", "check", 2.0),
    ("data: ", "split", 8.0),
    ("fitting ", "fit", 10.0),
    ("calibrating ", "calibrate", 60.0),
    ("exporting ", "export", 75.0),
    ("evaluating ", "evaluate", 85.0),
    ("held-out evaluation", "report", 97.0),
)
EPOCH = re.compile(r"\bepoch\s+(\d+)(?:\s*/\s*(\d+))?", re.IGNORECASE)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class TrainingProgress:
    """What the training's output has said so far."""

    stage: str = "starting"
    percent: float = 0.0
    epoch: int | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))

    def read(self, line: str) -> None:
        """Take one line of the training's output."""
        self.tail.append(line)
        for prefix, stage, percent in STAGES:
            if line.startswith(prefix):
                self.stage, self.percent = stage, max(self.percent, percent)
        match = EPOCH.search(line)
        if match:
            self.epoch = int(match.group(1))
            if match.group(2) and self.stage == "fit":  # epochs spread over the fit's share
                share = int(match.group(1)) / max(1, int(match.group(2)))
                self.percent = max(self.percent, 10.0 + 50.0 * min(1.0, share))

    def report(self) -> JobProgress:
        return JobProgress(self.stage, self.percent, self.epoch, "\n".join(self.tail))


def run_training_job(settings: Settings, store: Store, job_id: int) -> TrainingJob | None:
    """Run one queued job to its end; None if it was not queued any more (cancelled before
    it started, or taken by another worker)."""
    job = store.claim_job(job_id, worker_name())
    if job is None:
        log.info("training job %d is not queued any more; skipped", job_id)
        return None
    folder = (jobs_dir(settings) / str(job.id)).resolve()
    out = folder / "out"
    progress = TrainingProgress()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out, ignore_errors=True)
        recipe_file = folder / "recipe.yaml"
        recipe_file.write_text(yaml.safe_dump(job.recipe, sort_keys=False), encoding="utf-8")
        if not Path(job.data_path).exists():
            return store.finish_job(
                job.id,
                "failed",
                error=f"the data folder {job.data_path} does not exist on worker "
                f"{worker_name()}; give data every worker can read",
            )
        command = [
            sys.executable,
            "-m",
            "defectlens.cli",
            "train",
            str(recipe_file),
            "--data",
            job.data_path,
            "--out",
            str(out),
        ]
        with open(folder / "train.log", "a", encoding="utf-8") as log_file:
            log_file.write(f"$ defectlens train {recipe_file} --data {job.data_path} --out {out}\n")
            outcome = _run_child(store, job.id, command, progress, log_file)
        tail = "\n".join(progress.tail)
        if outcome.cancelled:
            return store.finish_job(
                job.id, "cancelled", error="cancelled while it ran; nothing was kept", log_tail=tail
            )
        if outcome.stopping:
            return store.finish_job(
                job.id,
                "failed",
                error=f"the worker {worker_name()} was stopped while the job ran; nothing was "
                "kept. Start the job again",
                log_tail=tail,
            )
        if outcome.code != 0:
            return store.finish_job(
                job.id, "failed", error=failure_of(outcome.code, list(progress.tail)), log_tail=tail
            )
        version_dir = Path(progress.tail[-1].strip()) if progress.tail else out
        if not (version_dir.is_relative_to(out) and (version_dir / "model.json").is_file()):
            return store.finish_job(
                job.id,
                "failed",
                error="the training ended without naming the version folder it wrote (its "
                "last line); see the log",
                log_tail=tail,
            )
        imported = import_model_dir(settings.models_dir, version_dir)
        version = register_model_dir(store, imported)
        card = ModelCard.read(imported / "model.json")
        log.info("training job %d produced %s %s", job.id, version.name, version.version)
        return store.finish_job(
            job.id,
            "succeeded",
            model_version_id=version.id,
            metrics=_json_safe(dict(card.metrics)),
            log_tail=tail,
        )
    except DefectLensError as error:
        return store.finish_job(
            job.id, "failed", error=str(error), log_tail="\n".join(progress.tail)
        )
    except Exception as error:
        log.exception("training job %d failed in the worker", job.id)
        return store.finish_job(
            job.id,
            "failed",
            error=f"the worker failed: {type(error).__name__}: {error}",
            log_tail="\n".join(progress.tail),
        )
    finally:
        # the version, if any, is in the workspace's models now; a cancelled or failed
        # training's leftovers go too
        shutil.rmtree(out, ignore_errors=True)


@dataclass(frozen=True)
class ChildOutcome:
    code: int
    cancelled: bool
    stopping: bool


def _run_child(
    store: Store, job_id: int, command: list[str], progress: TrainingProgress, log_file: IO[str]
) -> ChildOutcome:
    """Run the training, reading its output into the log and `progress`, reporting every
    `REPORT_EVERY_S`; interrupt it on a cancel or when the worker is told to stop."""
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # the worker's own signals are not the training's
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True)
    reader.start()
    cancelled = stopping = False
    interrupted_at: float | None = None
    next_report = 0.0
    ended = False
    while not ended:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            line = ""
        while line is not None:
            if line:
                log_file.write(line + "\n")
                progress.read(line)
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
        else:
            ended = True  # the output closed: the child is ending
        now = time.monotonic()
        if now >= next_report or ended:
            log_file.flush()
            cancel_asked = store.report_progress(job_id, progress.report())
            next_report = now + REPORT_EVERY_S
            if cancel_asked and not cancelled:
                cancelled = True
                _interrupt(child, "cancelled", log_file)
                interrupted_at = now
        if _worker_stopping() and not stopping and not cancelled:
            stopping = True
            _interrupt(child, "the worker is stopping", log_file)
            interrupted_at = now
        if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE_S:
            child.kill()
    code = child.wait()
    reader.join(timeout=5)
    return ChildOutcome(code, cancelled, stopping)


def _read_lines(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    assert stream is not None
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _interrupt(child: subprocess.Popen[str], why: str, log_file: IO[str]) -> None:
    """Ctrl-C for the training: it removes its temporary folder and exits."""
    log_file.write(f"--- {why}: interrupting the training ---\n")
    if child.poll() is None:
        child.send_signal(signal.SIGINT)


def _worker_stopping() -> bool:
    return bool(celery_state.should_stop) or bool(celery_state.should_terminate)


def failure_of(code: int, tail: list[str]) -> str:
    """Why the training failed, from its last words: its error message (with the lines that
    follow it, e.g. the files it names), else the last line of a traceback."""
    for index in range(len(tail) - 1, -1, -1):
        line = tail[index]
        if line.startswith(("defectlens: error:", "defectlens: failed:")):
            message = "\n".join(tail[index:]).split(":", 2)[2].strip()
            return message[:4000]
    meaningful = [line for line in tail if line.strip()]
    last = meaningful[-1].strip() if meaningful else "no output"
    return f"the training exited with status {code}: {last}"[:4000]


def _json_safe(value: object) -> dict[str, object]:
    import json

    return dict(json.loads(json.dumps(value, default=float)))


def mark_lost_jobs(store: Store) -> int:
    """Fail the jobs an earlier worker on this machine left running when it died (its
    process is gone); returns how many."""
    host = socket.gethostname()
    lost = 0
    for job in store.list_jobs(status="running", limit=1000):
        if job.worker is None or not job.worker.startswith(f"{host}:"):
            continue
        pid = int(job.worker.rsplit(":", 1)[1])
        if pid != os.getpid() and not _alive(pid):
            store.finish_job(
                job.id,
                "failed",
                error=f"its worker ({job.worker}) stopped while it ran; start the job again",
                log_tail=job.log_tail,
            )
            lost += 1
    return lost


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(pid: int, every_s: float = 2.0) -> None:
    """Stop this worker (as SIGTERM does: a running job is interrupted and says so) once the
    process that started it is gone, e.g. a service killed outright, so that no orphaned
    local worker outlives it."""

    def watch() -> None:
        while _alive(pid) and os.getppid() == pid:
            time.sleep(every_s)
        log.warning("the service that started this worker (pid %d) is gone; stopping", pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_worker(settings: Settings, loglevel: str = "INFO") -> None:
    """Take training jobs from the workspace's queue until stopped (SIGTERM or Ctrl-C)."""
    database = open_database(settings.resolved_database_url)
    store = Store(database)
    try:
        parent = os.environ.get(PARENT_ENV)
        if parent and parent.isdigit():
            watch_parent(int(parent))
        lost = mark_lost_jobs(store)
        if lost:
            log.warning("marked %d job(s) failed: their worker on this machine had stopped", lost)
        app = job_queue(settings)

        @app.task(name=TRAIN_TASK)
        def train_job(job_id: int) -> None:
            run_training_job(settings, store, int(job_id))

        app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                f"--queues={TRAINING_QUEUE}",
                f"--loglevel={loglevel}",
                f"--hostname=defectlens-{worker_name()}",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        database.close()
