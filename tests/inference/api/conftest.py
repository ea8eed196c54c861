"""Service fixtures: the real app (FastAPI TestClient) on a real store, with the small model
the session trains once (tests/conftest.py) promoted to station `s1`, and one key per role.

The store is SQLite in a temporary workspace; tests that ask for `database_url` with the
`postgresql` parameter get a real PostgreSQL server (tests/pg_server.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, for pg_server
from api_service import STATION, Service
from pg_server import postgres_server  # noqa: F401  (the session fixture)

from defectlens.inference.api.app import create_app
from defectlens.inference.api.auth import ROLES
from defectlens.inference.service.deployments import register_model_dir
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Store, open_database


@pytest.fixture(scope="session")
def model_versions(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two model version folders: the session's trained model and a copy under another
    version name (same graph), so promotions and rollbacks have something to switch."""
    root = tmp_path_factory.mktemp("service-models")
    first = Path(shutil.copytree(trained_model, root / "test-parts" / trained_model.name))
    card = json.loads((first / "model.json").read_text())
    second = root / "test-parts" / f"{card['version']}-b"
    shutil.copytree(first, second)
    card["version"] = second.name
    (second / "model.json").write_text(json.dumps(card, indent=2))
    return [first, second]


@pytest.fixture(scope="session")
def part_images(synthetic_data: Path) -> dict[str, list[Path]]:
    """Synthetic part images by kind: `train` (good parts the model learned), `good`, and each
    defect kind (test parts with masks under ground_truth/)."""
    images = {"train": sorted((synthetic_data / "train" / "good").glob("*.png"))}
    for folder in sorted((synthetic_data / "test").iterdir()):
        images[folder.name] = sorted(folder.glob("*.png"))
    return images


@pytest.fixture
def good_part(part_images: dict[str, list[Path]]) -> bytes:
    """A part the model was fitted on: OK with a wide margin."""
    return part_images["train"][0].read_bytes()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite in the test's workspace, or (parameter `postgresql`) a fresh PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgresql":
        return str(request.getfixturevalue("postgres_server").create_database())
    return f"sqlite:///{tmp_path / 'home' / 'defectlens.db'}"


@pytest.fixture
def make_service(
    tmp_path: Path, database_url: str, model_versions: list[Path]
) -> Iterator[Callable[..., Service]]:
    """Start a service with settings overrides; `s1` runs the first model version."""
    stack: list[TestClient] = []
    stores: list[Store] = []
    keys: dict[str, str] = {}
    # The versions inside the workspace's models folder, where the service may load them.
    models = tmp_path / "home" / "models"
    in_workspace = [
        Path(shutil.copytree(d, models / d.parent.name / d.name)) for d in model_versions
    ]

    def start(promote: bool = True, **overrides: Any) -> Service:
        values: dict[str, Any] = {
            "home": tmp_path / "home",
            "database_url": database_url,
            "deployment_poll_s": 0,
            "key_cache_s": 0,
            "threads": 1,
        }
        values.update(overrides)
        settings = ServiceSettings(**values)
        store = Store(open_database(database_url))
        stores.append(store)
        if not keys:  # the first service of a test sets the store up
            store.ensure_station(STATION, line="L1")
            if promote:
                version = register_model_dir(store, in_workspace[0])
                store.promote(STATION, version.id, actor="test")
            keys.update({role: store.create_key(role, f"test-{role}")[1] for role in ROLES})
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        stack.append(client)
        return Service(client, settings, store, keys, in_workspace)

    yield start
    for client in reversed(stack):
        client.__exit__(None, None, None)
    for store in stores:
        store.db.close()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    """The default service: SQLite, `s1` serving the first model version."""
    return make_service()
