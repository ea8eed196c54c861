"""`defectlens serve | models | keys`: the commands an integrator scripts a station with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from defectlens.cli import main
from defectlens.inference.store import Store, open_database


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    return tmp_path / "home"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_keys_create_list_revoke(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "keys", "create", "--role", "line", "--name", "line1-plc")
    assert status == 0
    key = out.strip().splitlines()[-1]
    with open_database(f"sqlite:///{home / 'defectlens.db'}") as db:
        verified = Store(db).verify_api_key(key)
        assert verified is not None and (verified.id, verified.role) == (1, "line")
    status, out, _ = run(capsys, "keys", "list")
    assert status == 0 and "line1-plc" in out and key not in out
    status, out, _ = run(capsys, "keys", "revoke", "1")
    assert status == 0 and "revoked" in out
    with open_database(f"sqlite:///{home / 'defectlens.db'}") as db:
        assert Store(db).verify_api_key(key) is None
    status, _, err = run(capsys, "keys", "revoke", "7")
    assert status == 2 and "not found" in err


def test_models_promote_list_rollback(
    home: Path, model_versions: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = model_versions
    assert run(capsys, "models", "list")[1].startswith("no model versions")
    for folder in (first, second):
        status, out, err = run(capsys, "models", "promote", str(folder), "--station", "line1-cam1")
        assert status == 0, err
        assert f"{folder.name} (model version" in out
    status, out, _ = run(capsys, "models", "list")
    assert status == 0
    lines = out.splitlines()
    assert second.name in lines[1] and "line1-cam1" in lines[1]
    assert first.name in lines[2] and lines[2].rstrip().endswith("-")
    status, out, _ = run(capsys, "models", "rollback", "--station", "line1-cam1")
    assert status == 0 and first.name in out
    status, _, err = run(capsys, "models", "rollback", "--station", "line1-cam1")
    assert status == 2 and "nothing to roll back" in err


def test_models_promote_refuses_a_bad_folder(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "models", "promote", str(tmp_path / "none"), "--station", "s")
    assert status == 2 and "no such model version folder" in err
    status, _, err = run(capsys, "models", "promote", str(tmp_path), "--station", "a b")
    assert status == 2 and "--station 'a b'" in err


def test_help_lists_the_service_commands() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("defectlens")), "--help"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for command in ("serve", "models", "keys"):
        assert command in done.stdout


def test_serve_names_each_invalid_setting_and_does_not_start(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    monkeypatch.setenv("DEFECTLENS_PORT", "eighty")
    monkeypatch.setenv("DEFECTLENS_REQUEST_TIMEOUT_S", "-3")
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the service started"))
    status, _, err = run(capsys, "serve")
    assert status == 2
    assert "DEFECTLENS_PORT (or port in defectlens.yaml) = 'eighty'" in err
    assert "DEFECTLENS_REQUEST_TIMEOUT_S (or request_timeout_s in defectlens.yaml) = '-3'" in err
    assert "Traceback" not in err
