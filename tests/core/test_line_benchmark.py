"""`scripts/line_benchmark.py`, the line side's benchmark, as a smoke test on a tiny budget: the
service starts with its simulated stations, the Modbus PLCs get every part answered, and every
answered part is stored with the verdict the PLC read. No timing thresholds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "line_benchmark.py"


@pytest.mark.slow
def test_line_benchmark_loses_no_part(trained_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEFECTLENS_DATABASE_URL"}
    done = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--model", str(trained_model), "--stations", "2",
            "--rate", "5", "--seconds", "1", "--warmup", "1", "--images", "4",
            "--deadline-ms", "2000",
        ],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    for station in ("cam1", "cam2"):
        line = re.search(rf"^\s+{station}: (\d+) parts, .* lost 0, stored (\d+)/(\d+)$", out, re.M)
        assert line is not None, out
        assert line[1] == line[2] == line[3] == "5", out
    assert re.search(r"^\s+all: 10 parts, .* lost 0$", out, re.M), out
