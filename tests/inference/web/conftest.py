"""Web fixtures: the API tests' service fixtures (tests/inference/api/conftest.py: the real
app on a real store, the session's small model on station `s1`, a key per role), taken from
that file rather than written twice, and a browser session per role."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

API_TESTS = Path(__file__).resolve().parents[1] / "api"
sys.path.insert(0, str(API_TESTS))  # api_service, which the API fixtures import

_spec = importlib.util.spec_from_file_location("api_fixtures", API_TESTS / "conftest.py")
assert _spec is not None and _spec.loader is not None
api_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_fixtures)

postgres_server = api_fixtures.postgres_server
model_versions = api_fixtures.model_versions
part_images = api_fixtures.part_images
good_part = api_fixtures.good_part
database_url = api_fixtures.database_url
make_service = api_fixtures.make_service
service = api_fixtures.service
