"""`scripts/load_test.py`, the service's benchmark, as a smoke test on a tiny budget: it starts
the service and every request is answered without an error."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "load_test.py"


@pytest.mark.slow
def test_load_test_runs_without_errors(trained_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEFECTLENS_DATABASE_URL"}
    done = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--model", str(trained_model), "--levels", "1,4",
            "--requests", "12", "--images", "4", "--rounds", "2", "--round-requests", "8",
        ],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert re.search(r"^\s+1 clients: .* errors 0$", out, re.MULTILINE), out
    assert re.search(r"^\s+4 clients: .* errors 0$", out, re.MULTILINE), out
    assert re.search(r"paired rounds \(2; .*; 0 errors\)", out), out


def test_a_change_of_machine_speed_during_the_run_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # The whole-level figures compare the service's 1-client level with raw runs taken before
    # and after it; when the machine's speed changed in between, the report says so.
    spec = importlib.util.spec_from_file_location("load_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    load_test = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "load_test", load_test)  # its dataclasses look it up
    spec.loader.exec_module(load_test)
    assert load_test.phase_note(7.8, 8.1, 8.4) is None
    note = load_test.phase_note(7.7, 11.9, 8.0)
    assert note is not None and "raw after 11.90 ms" in note and "paired rounds" in note
    assert load_test.phase_note(7.6, 7.9, 12.0) is not None  # a slow level between fast raw runs
