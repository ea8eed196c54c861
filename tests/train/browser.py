"""A page rendered by a real browser (headless Chromium) to PNG, as a person would see it.

Chromium comes with `bash scripts/dev.sh setup` (Debian package `chromium`). Without it the
tests that need it are skipped with that hint, or fail when the environment variable `CI` is
set (as tests/pg_server.py does for PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

INSTALL_HINT = "apt-get install chromium (Debian), or `bash scripts/dev.sh setup`"
WIDTH = 1280


def chromium() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        message = f"no chromium on PATH to render the report: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}. CI must install it.", pytrace=False)
        pytest.skip(message)
    return browser


def screenshot(page: Path, png: Path, height: int = 4000) -> np.ndarray:
    """Render `page` at WIDTH x `height` pixels into `png`; return the picture (BGR)."""
    with tempfile.TemporaryDirectory(prefix="dl-chromium-") as profile:
        done = subprocess.run(
            [
                chromium(),
                "--headless",
                "--no-sandbox",  # tests run as root, where Chromium's sandbox cannot start
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={WIDTH},{height}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0 and png.is_file(), f"chromium failed:\n{done.stderr[-3000:]}"
    picture = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert picture is not None, f"{png} is not an image"
    return picture


def distinct_colours(picture: np.ndarray) -> int:
    """How many different colours the picture holds: a blank or error page has a handful,
    a page with text, tables and plots thousands."""
    packed = picture.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)
    return int(np.unique(packed).size)
