"""Delivery fixtures: a real HTTP receiver and a SQLite store in the test's folder."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # receiver
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))  # store_factories
from receiver import Receiver

from defectlens.inference.store import Store, open_database


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    database = open_database(f"sqlite:///{tmp_path / 'store.db'}")
    yield Store(database)
    database.close()
