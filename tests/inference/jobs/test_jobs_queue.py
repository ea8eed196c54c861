"""Training jobs through the real queue (Celery over kombu's SQLAlchemy transport): a local
worker process on SQLite trains a tiny model from a job, a job cancelled mid-run leaves
nothing behind, a failing job says why; on PostgreSQL the same code path carries a job."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for pg_server
from pg_server import postgres_server  # noqa: F401  (the session fixture)

from defectlens.cli import main
from defectlens.datasets.synthetic import generate_dataset
from defectlens.inference.service.jobs import JobRequest, LocalWorker, start_job
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Store, open_database
from defectlens.inference.store.jobs import TrainingJob

FINISHED = ("succeeded", "failed", "cancelled")
pytestmark = [
    pytest.mark.slow,  # trains tiny models in worker processes
    # kombu's SQLAlchemy transport declares a relationship SQLAlchemy 2.1 deprecates
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny generated parts (64 px): a job trains on them in seconds."""
    return generate_dataset(
        tmp_path_factory.mktemp("parts") / "parts",
        train_good=12,
        test_good=4,
        test_defect_per_kind=1,
        size=64,
        seed=1,
    )


@pytest.fixture
def workspace(tmp_path: Path, parts: Path, small_recipe: Path) -> Path:
    """A workspace with the session's small recipe at 64 px (and a wrong copy of it) and the
    tiny parts under data/."""
    raw = yaml.safe_load(small_recipe.read_text())
    raw.update(name="cells", image_size=64)
    raw["backbone"]["context_neighbourhood"] = 3  # the feature map is 4x4
    raw["threshold"] = {"policy": "target_frr", "target": 0.2, "good_holdout": 0.15}
    home = tmp_path / "home"
    (home / "recipes").mkdir(parents=True)
    (home / "recipes" / "tiny.yaml").write_text(yaml.safe_dump(raw))
    (home / "recipes" / "wrong.yaml").write_text(yaml.safe_dump({**raw, "image_size": 33}))
    shutil.copytree(parts, home / "data")  # a link out of the workspace would be refused
    return home


@pytest.fixture
def local(workspace: Path) -> Iterator[tuple[Store, ServiceSettings, LocalWorker]]:
    """A SQLite store in the workspace and the local worker a service would run."""
    settings = ServiceSettings(home=workspace)
    store = Store(open_database(settings.resolved_database_url))
    worker = LocalWorker(settings)
    yield store, settings, worker
    worker.stop()
    store.db.close()


def wait_for(
    store: Store, job_id: int, done: tuple[str, ...], timeout_s: float = 240
) -> TrainingJob:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job.status in done:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {store.get_job(job_id).status} after {timeout_s} s")


def test_a_job_trains_in_the_local_worker_and_registers_an_unpromoted_version(
    local: tuple[Store, ServiceSettings, LocalWorker], workspace: Path
) -> None:
    store, settings, worker = local
    request = JobRequest(recipe="recipes/tiny.yaml", data="data", name="retrained")
    job = start_job(store, settings, request, "key:7", worker)
    assert job.status == "queued"
    assert job.recipe["name"] == "retrained" and job.data_path == str(workspace / "data")

    running = wait_for(store, job.id, ("running", *FINISHED))
    assert running.worker is not None
    done = wait_for(store, job.id, FINISHED)
    assert done.status == "succeeded", done.error
    assert done.stage == "done" and done.percent == 100.0
    version = store.get_model_version(done.model_version_id or 0)
    assert version is not None and version.name == "retrained"
    assert Path(version.path).is_relative_to(settings.models_dir.resolve())
    assert "fp" in done.metrics or "counts" in done.metrics
    assert store.active_deployments() == []  # registered, never promoted
    log_file = workspace / "jobs" / str(job.id) / "train.log"
    assert "fitting the model on" in log_file.read_text()
    assert "held-out evaluation" in done.log_tail
    assert not (workspace / "jobs" / str(job.id) / "out").exists()  # imported, then removed
    actions = [(e.action, e.actor, e.target) for e in store.audit_entries(action="job")]
    assert actions == [("job.start", "key:7", f"job:{job.id}")]


def test_a_job_cancelled_mid_run_stops_and_leaves_no_version(
    local: tuple[Store, ServiceSettings, LocalWorker], workspace: Path
) -> None:
    store, settings, worker = local
    job = start_job(
        store, settings, JobRequest(recipe="recipes/tiny.yaml", data="data"), "qa", worker
    )
    deadline = time.monotonic() + 120
    while store.get_job(job.id).stage in (None, "starting"):  # the training has started
        assert time.monotonic() < deadline, "the job never reported a stage"
        time.sleep(0.1)
    assert store.request_cancel(job.id, "key:3").status == "running"
    done = wait_for(store, job.id, FINISHED, timeout_s=60)
    assert done.status == "cancelled", (done.status, done.error)
    assert done.model_version_id is None
    assert store.list_model_versions() == []
    assert not any(settings.models_dir.glob("*/*")) if settings.models_dir.exists() else True
    assert not (workspace / "jobs" / str(job.id) / "out").exists()
    assert (
        "interrupting the training" in (workspace / "jobs" / str(job.id) / "train.log").read_text()
    )


def test_a_failing_job_says_why(local: tuple[Store, ServiceSettings, LocalWorker]) -> None:
    store, settings, worker = local
    job = start_job(
        store, settings, JobRequest(recipe="recipes/wrong.yaml", data="data"), "qa", worker
    )
    done = wait_for(store, job.id, FINISHED)
    assert done.status == "failed"
    assert done.error is not None and "image_size" in done.error and "32" in done.error


def test_the_queue_on_postgresql_carries_a_job_to_a_worker(
    workspace: Path, request: pytest.FixtureRequest
) -> None:
    """The same code path on PostgreSQL: the queue's tables live in the plant's database and
    a worker started by hand (`defectlens worker`) takes the job."""
    url = str(request.getfixturevalue("postgres_server").create_database())
    settings = ServiceSettings(home=workspace, database_url=url)
    store = Store(open_database(url))
    worker = LocalWorker(settings)  # the same process `defectlens worker` is
    try:
        job = start_job(store, settings, JobRequest(recipe="recipes/wrong.yaml", data="data"), "qa")
        assert not (workspace / "jobs" / "queue.sqlite").exists()
        worker.ensure_running()
        done = wait_for(store, job.id, FINISHED)
        assert done.status == "failed" and "image_size" in (done.error or "")
        assert done.worker is not None
    finally:
        worker.stop()
        store.db.close()


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_the_jobs_command_runs_a_job_and_says_why_it_failed(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEFECTLENS_HOME", str(workspace))
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    code, out, _ = cli("jobs", "start", "recipes/wrong.yaml", "--data", "data", "--wait")
    assert code == 1 and "failed" in out and "image_size" in out
    code, out, _ = cli("jobs", "list")
    assert code == 0 and out.split()[1] == "failed"
    code, out, _ = cli("jobs", "logs", "1", "--lines", "5")
    assert code == 0 and "defectlens: error:" in out
    code, _, err = cli("jobs", "cancel", "1")
    assert code == 2 and "already failed" in err
    code, _, err = cli("jobs", "start", "anomaly", "--data", "/")
    assert code == 2 and "inside the workspace" in err


def test_a_local_worker_stops_when_its_service_is_killed(workspace: Path) -> None:
    """A service killed outright (kill -9) leaves no worker behind."""
    service = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from defectlens.inference.service.jobs import LocalWorker\n"
            "from defectlens.inference.service.settings import ServiceSettings\n"
            f"worker = LocalWorker(ServiceSettings(home={str(workspace)!r}))\n"
            "worker.ensure_running()\n"
            "print(worker.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert service.stdout is not None
    worker_pid = int(service.stdout.readline())
    service.kill()
    service.wait()
    deadline = time.monotonic() + 60
    while True:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        # an exited child of the killed service is reaped by init; until then it is a zombie
        status = Path(f"/proc/{worker_pid}/stat")
        if status.exists() and status.read_text().split(")")[-1].split()[0] == "Z":
            break
        assert time.monotonic() < deadline, "the worker outlived its service"
        time.sleep(0.2)
