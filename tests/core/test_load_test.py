"""`scripts/load_test.py`, the service's benchmark, end to end on a tiny budget: it starts the
service, answers every request and prints each figure the README quotes."""

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
def test_load_test_prints_levels_raw_figures_and_paired_rounds(trained_model: Path) -> None:
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
    assert re.search(r"p50 service overhead at 1 client .*: -?\d+\.\d\d ms", out), out
    assert re.search(r"throughput at 4 clients / raw model with 4 callers: \d+\.\d\d", out), out
    round_line = (
        r"round \d: raw model p50 \d+\.\d\d ms, overhead -?\d+\.\d\d ms "
        r"\(-?\d+\.\d\d around .*\), ratio \d+\.\d\d"
    )
    assert len(re.findall(round_line, out)) == 2, out
    assert re.search(r"reported for each: median -?\d+\.\d\d ms", out), out
    assert re.search(r"^\s+\d+\.\d\d ms  an empty body \(422", out, re.MULTILINE), out
    assert re.search(r"^\s+\d+\.\d\d ms  an unknown station \(404", out, re.MULTILINE), out
    assert re.search(r"paired rounds \(2; .*; 0 errors\)", out), out
    assert re.search(r"throughput ratio at 4 clients: median \d+\.\d\d", out), out


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
