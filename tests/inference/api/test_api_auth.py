"""Keys and roles: 401 without a valid key, 403 for a role that may not, the lab opt-out."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from api_service import STATION, Service

from defectlens.inference.api.auth import key_from_headers

# (method, path, body, roles allowed); admin is allowed everywhere.
ROUTES = [
    ("GET", "/v1/results", None, {"line", "qa", "manager"}),
    ("GET", "/v1/models", None, {"line", "qa", "manager"}),
    ("GET", "/v1/stations", None, {"line", "qa", "manager"}),
    ("POST", "/v1/stations", {"id": "s9"}, {"qa"}),
    ("POST", f"/v1/stations/{STATION}/rollback", None, {"qa"}),
]


def call(service: Service, method: str, path: str, body: object, headers: dict[str, str]) -> int:
    return service.client.request(method, path, json=body, headers=headers).status_code


@pytest.mark.parametrize(("method", "path", "body", "roles"), ROUTES)
def test_roles_per_route(
    service: Service, method: str, path: str, body: object, roles: set[str]
) -> None:
    assert call(service, method, path, body, {}) == 401
    assert call(service, method, path, body, {"X-API-Key": "dl_00000000_nope"}) == 401
    for role in ("line", "qa", "manager", "admin"):
        status = call(service, method, path, body, service.auth(role))
        if role in roles or role == "admin":
            assert status not in (401, 403), (role, path, status)
        else:
            assert status == 403, (role, path, status)


def test_inspect_roles(service: Service, good_part: bytes) -> None:
    assert service.inspect(good_part, role="line").status_code == 200
    assert service.inspect(good_part, role="qa").status_code == 200
    assert service.inspect(good_part, role="admin").status_code == 200
    forbidden = service.inspect(good_part, role="manager")
    assert forbidden.status_code == 403
    assert "role 'manager' may not inspect parts" in forbidden.json()["detail"]
    anonymous = service.client.post(
        "/v1/inspect", params={"station": STATION}, content=good_part,
        headers={"Content-Type": "image/png"},
    )  # fmt: skip
    assert anonymous.status_code == 401
    assert "X-API-Key" in anonymous.json()["detail"]
    assert "WWW-Authenticate" in anonymous.headers
    # The route checks the key itself (no FastAPI dependency): the same two headers work.
    bearer = {"Authorization": f"Bearer {service.keys['line']}", "Content-Type": "image/png"}
    url = f"/v1/inspect?station={STATION}"
    assert service.client.post(url, content=good_part, headers=bearer).status_code == 200
    unknown = {"X-API-Key": "dl_00000000_nope", "Content-Type": "image/png"}
    assert service.client.post(url, content=good_part, headers=unknown).status_code == 401
    assert service.stored_count() == 4


def test_inspect_documents_its_key_schemes(service: Service) -> None:
    spec = service.client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    security = spec["paths"]["/v1/inspect"]["post"]["security"]
    assert security == spec["paths"]["/v1/results"]["get"]["security"]
    assert {name for requirement in security for name in requirement} <= set(schemes)


def test_bearer_token_and_revocation(service: Service) -> None:
    bearer = {"Authorization": f"Bearer {service.keys['manager']}"}
    assert service.client.get("/v1/results", headers=bearer).status_code == 200
    key_id = next(k.id for k in service.store.list_keys() if k.name == "test-manager")
    service.store.revoke_key(key_id)
    revoked = service.client.get("/v1/results", headers=bearer)
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["detail"]


def test_probes_need_no_key(service: Service) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert service.client.get(path).status_code == 200, path


def test_auth_disabled_is_loud(
    make_service: Callable[..., Service], good_part: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        service = make_service(auth_disabled=True)
    assert any("AUTHENTICATION IS DISABLED" in r.message for r in caplog.records)
    anonymous = service.client.post(
        "/v1/inspect", params={"station": STATION}, content=good_part,
        headers={"Content-Type": "image/png"},
    )  # fmt: skip
    assert anonymous.status_code == 200
    assert service.client.get("/readyz").json()["auth"] == "disabled"


@pytest.mark.parametrize(
    ("x_api_key", "authorization", "key"),
    [("k1", None, "k1"), (None, "Bearer k2", "k2"), (None, "bearer  k3 ", "k3"),
     (" ", "Basic abc", None), (None, "Bearer ", None), ("k1", "Bearer k2", "k1")],
)  # fmt: skip
def test_key_from_headers(x_api_key: str | None, authorization: str | None, key: str) -> None:
    assert key_from_headers(x_api_key, authorization) == key
