"""`scripts/shadow_cost.py`: two services side by side, B with a shadow run on the station."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "shadow_cost.py"


@pytest.mark.slow
def test_the_shadow_run_sees_every_part_sent_to_b(trained_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DEFECTLENS_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(trained_model),
         "--requests", "6", "--warmup", "2", "--images", "2"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(r"^offer\(\) for a station without a shadow run: \d+ ns$", done.stdout, re.M)
    for side in "AB":
        assert re.search(rf"^{side}: .*\(6 parts, 0 errors\)$", done.stdout, re.M), done.stdout
    # 2 warm-up parts and 6 measured ones, each shadowed or, with the queue full, skipped
    found = re.search(r"seen (\d+), shadowed (\d+), skipped \(queue full\) (\d+)", done.stdout)
    assert found, done.stdout
    seen, shadowed, skipped = (int(n) for n in found.groups())
    assert seen == 8 and shadowed + skipped == 8
