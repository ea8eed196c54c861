"""A bounded schemathesis run against /openapi.json: whatever it sends, never a 5xx, and every
error is `{"detail": "<message>"}`.

Requests carry an admin key, so they reach the handlers instead of stopping at 401. (The
operations are walked here rather than through schemathesis' pytest plugin, which does not
load under pytest 9.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from api_service import Service
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi

from defectlens.inference.api.app import create_app

EXAMPLES_PER_MODE = 15
"""Valid and invalid cases each: 30 requests per operation."""


@pytest.fixture
def service_for_schema(make_service: Callable[..., Service]) -> Iterator[Service]:
    yield make_service(request_timeout_s=30)
    asgi.shutdown_lifespans()  # schemathesis keeps each app's lifespan open until told


def test_no_server_errors(service_for_schema: Service) -> None:
    # A second app on the same workspace: schemathesis runs its lifespan itself.
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", create_app(service_for_schema.settings)
    )
    headers = service_for_schema.auth("admin")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 12

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_MODE,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def check(case: Any) -> None:
                response = case.call(headers=headers)
                if response.status_code >= 500 or (
                    response.status_code >= 400 and not _has_detail(response)
                ):
                    failures.append(
                        f"{case.method} {case.formatted_path} {case.query} -> "
                        f"{response.status_code} {response.text[:300]}"
                    )

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (an operation without parameters or body).
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert not failures, "\n".join(failures[:20])


def _has_detail(response: Any) -> bool:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    return isinstance(detail, str) and bool(detail)
