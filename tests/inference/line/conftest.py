"""Line-side fixtures: a real `InspectionService` (SQLite in a temporary workspace) with the
session's small model promoted to station `s1`, and folders of part images."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from defectlens.inference.service.core import InspectionService
from defectlens.inference.service.deployments import register_model_dir
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Store, open_database

STATION = "s1"


@pytest.fixture
def service(tmp_path: Path, trained_model: Path) -> Iterator[InspectionService]:
    home = tmp_path / "home"
    model = Path(
        shutil.copytree(trained_model, home / "models" / "test-parts" / trained_model.name)
    )
    url = f"sqlite:///{home / 'defectlens.db'}"
    store = Store(open_database(url))
    store.ensure_station(STATION, line="L1")
    store.promote(STATION, register_model_dir(store, model).id, actor="test")
    store.db.close()
    settings = ServiceSettings(home=home, database_url=url, deployment_poll_s=0, threads=1)
    opened = InspectionService.open(settings)
    yield opened
    opened.close()


@pytest.fixture
def good_images(synthetic_data: Path, tmp_path: Path) -> Path:
    """A folder of four good part images."""
    folder = tmp_path / "good"
    folder.mkdir()
    for path in sorted((synthetic_data / "train" / "good").glob("*.png"))[:4]:
        shutil.copy(path, folder / path.name)
    return folder
