"""The service starts on a machine without PyTorch: importing it must not import torch."""

from __future__ import annotations

import subprocess
import sys


def test_app_imports_without_torch() -> None:
    code = (
        "import sys\n"
        "import defectlens.inference.api.app\n"
        "import defectlens.inference.commands\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules)\n"
        "train = sorted(m for m in sys.modules if m.startswith(('defectlens.train', "
        "'defectlens.models')))\n"
        "print(heavy + train)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
