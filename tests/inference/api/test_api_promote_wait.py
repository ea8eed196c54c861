"""`defectlens models promote | rollback` wait for the services running on the workspace: a
real service (polling every 0.2 s) reports itself in `<home>/run/`, and the CLI, run in the
test's thread while the service runs in TestClient's, says when it swapped."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api_service import STATION, Service

from defectlens.cli import main
from defectlens.inference.service.instances import (
    InstanceStatus,
    read_statuses,
    run_dir,
    status_path,
    write_status,
)

INSTANCE = "line1-box"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's workspace: the one `make_service` runs on (its SQLite database too)."""
    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    return tmp_path / "home"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out + err


def model_ref(folder: Path) -> str:
    card = json.loads((folder / "model.json").read_text())
    return f"{card['name']}/{card['version']}"


def serving(home: Path) -> str | None:
    (status,) = read_statuses(run_dir(home))
    return status.stations[STATION].model


def test_the_service_reports_itself_and_the_cli_waits_for_its_swap(
    home: Path,
    make_service: Callable[..., Service],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = make_service(deployment_poll_s=0.2, instance_id=INSTANCE)
    first, second = service.model_dirs
    path = status_path(run_dir(home), INSTANCE)
    written = InstanceStatus.model_validate_json(path.read_bytes())
    assert (written.instance_id, written.poll_s) == (INSTANCE, 0.2)
    assert written.stations[STATION].model == model_ref(first)
    assert written.updated_at > datetime.now(UTC) - timedelta(seconds=5)

    caplog.set_level(logging.INFO)
    caplog.clear()
    status, out = cli(capsys, "models", "promote", str(second), "--station", STATION)
    assert status == 0, out
    assert f"service {INSTANCE} (pid {written.pid}, host {written.host}) swapped after" in out
    assert serving(home) == model_ref(second)
    swaps = [r.getMessage() for r in caplog.records if "now serves" in r.getMessage()]
    assert swaps == [f"station {STATION} now serves {model_ref(second)} (was {model_ref(first)})"]

    status, out = cli(capsys, "models", "rollback", "--station", STATION)
    assert status == 0, out
    assert f"service {INSTANCE} (pid {written.pid}" in out and "swapped after" in out
    assert serving(home) == model_ref(first)

    service.client.__exit__(None, None, None)  # a clean shutdown removes the file
    assert not path.exists()
    assert read_statuses(run_dir(home)) == []


def test_no_running_service_is_said_and_a_stale_status_ignored(
    home: Path,
    make_service: Callable[..., Service],
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = make_service(deployment_poll_s=0.2, instance_id=INSTANCE)
    crashed = InstanceStatus.model_validate_json(status_path(run_dir(home), INSTANCE).read_bytes())
    service.client.__exit__(None, None, None)
    # What a crashed service leaves: its file, last refreshed a minute ago.
    last_seen = crashed.updated_at - timedelta(minutes=1)
    write_status(run_dir(home), crashed.model_copy(update={"updated_at": last_seen}))

    second = service.model_dirs[1]
    status, out = cli(capsys, "models", "promote", str(second), "--station", STATION)
    assert status == 0, out
    assert f"service {INSTANCE} (pid {crashed.pid}" in out and "not running (ignored)" in out
    card = json.loads((second / "model.json").read_text())
    assert (
        f"no service is running on this workspace; it will serve {card['name']} "
        f"{card['version']} when it starts" in out
    )
    assert "swapped" not in out


def test_a_model_the_service_cannot_load_is_reported(
    home: Path,
    make_service: Callable[..., Service],
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = make_service(deployment_poll_s=0.2, instance_id=INSTANCE)
    first = service.model_dirs[0]
    # A version in the workspace's models folder whose model.onnx no longer matches its
    # model.json: the CLI records it (it is already in the workspace), the service refuses it.
    broken = Path(shutil.copytree(first, first.with_name(f"{first.name}-altered")))
    card = json.loads((broken / "model.json").read_text())
    card["version"] = broken.name
    (broken / "model.json").write_text(json.dumps(card))
    with (broken / "model.onnx").open("ab") as onnx:
        onnx.write(b"\0")

    status, out = cli(capsys, "models", "promote", str(broken), "--station", STATION)
    assert status == 1, out
    assert f"service {INSTANCE} (pid" in out and "could not swap" in out
    assert str(broken.resolve()) in out and "failed to load" in out
    assert serving(home) is None


def test_a_service_that_does_not_poll_or_does_not_swap_in_time_is_named(
    home: Path,
    make_service: Callable[..., Service],
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = make_service(deployment_poll_s=0, instance_id=INSTANCE)
    first, second = service.model_dirs
    status, out = cli(capsys, "models", "promote", str(second), "--station", STATION)
    assert status == 1, out
    assert "DEFECTLENS_DEPLOYMENT_POLL_S=0): restart it" in out
    assert serving(home) == model_ref(first)

    # A service that runs (its file is fresh) but never swaps, e.g. stuck loading.
    stuck = read_statuses(run_dir(home))[0].model_copy(
        update={"instance_id": "stuck-box", "poll_s": 60.0}
    )
    write_status(run_dir(home), stuck)
    status, out = cli(
        capsys, "models", "promote", str(second), "--station", STATION, "--wait", "0.5"
    )
    assert status == 1, out
    assert "service stuck-box" in out and "has not swapped after 0.5 s" in out

    status, out = cli(capsys, "models", "promote", str(second), "--station", STATION, "--no-wait")
    assert status == 0, out
    assert len(out.splitlines()) == 1 and out.endswith("is active\n")
