"""`scripts/compare_serving.py`: two services side by side, compared part by part."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "compare_serving.py"


def compare(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DEFECTLENS_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_two_services_are_compared_without_errors(trained_model: Path) -> None:
    done = compare(
        "--a", str(trained_model), "--b", str(trained_model),
        "--b-env", "DEFECTLENS_ONNX_SPINNING=false",
        "--requests", "10", "--warmup", "2", "--images", "4",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for side in "AB":
        assert re.search(rf"^{side}: .*\(10 parts, 0 errors\)$", done.stdout, re.M), done.stdout


def test_bad_arguments_are_usage_errors(trained_model: Path, tmp_path: Path) -> None:
    done = compare("--a", str(trained_model), "--b", str(trained_model), "--a-env", "SPIN")
    assert done.returncode == 2 and "--a-env 'SPIN': expected NAME=VALUE" in done.stderr
    done = compare("--a", str(trained_model), "--b", str(tmp_path))
    assert done.returncode == 2 and "not a model version folder" in done.stderr
