"""Browser sign-in: a pasted API key starts a signed, HttpOnly, SameSite=Strict session
cookie that every `require()` check accepts; changes need the session's CSRF token; pages
without a session go to /signin while the API keeps answering 401; sign-out and revoking
the key end the session."""

from __future__ import annotations

import re

from api_service import STATION, Service
from fastapi.testclient import TestClient

from defectlens.inference.api import session
from defectlens.inference.api.session import COOKIE, CSRF_HEADER

PAGE = {"Accept": "text/html,application/xhtml+xml"}


def sign_in(service: Service, role: str = "qa", client: TestClient | None = None) -> str:
    """Sign the client in with the role's key; the CSRF token of the session."""
    client = client or service.client
    answer = client.post(
        "/signin", data={"key": service.keys[role], "next": "/review"}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    page = client.get("/review", headers=PAGE)
    assert page.status_code == 200, page.text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def test_a_page_without_a_session_goes_to_sign_in_and_the_api_answers_401(
    service: Service,
) -> None:
    page = service.client.get("/review?verdict=NG", headers=PAGE, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/signin?next=%2Freview%3Fverdict%3DNG"
    api = service.client.get("/v1/review", headers=PAGE)
    assert api.status_code == 401
    assert "no API key" in api.json()["detail"]
    form = service.client.get("/signin?next=/review", headers=PAGE)
    assert form.status_code == 200
    assert 'name="key"' in form.text and 'value="/review"' in form.text


def test_sign_in_sets_a_signed_http_only_strict_cookie_without_the_key(service: Service) -> None:
    answer = service.client.post(
        "/signin", data={"key": service.keys["qa"], "next": "/datasets"}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/datasets"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert service.keys["qa"] not in cookie and service.keys["qa"].split("_")[2] not in cookie
    # The session works on the API and on the existing pages (the reports page too).
    assert service.client.get("/v1/review").status_code == 200
    assert service.client.get("/v1/results").status_code == 200
    assert service.client.get("/reports", headers=PAGE).status_code == 200


def test_over_https_the_cookie_is_secure(service: Service) -> None:
    client = TestClient(service.client.app, base_url="https://testserver")
    answer = client.post("/signin", data={"key": service.keys["qa"]}, follow_redirects=False)
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"]


def test_a_wrong_key_is_refused_on_the_page(service: Service) -> None:
    for key, words in (("dl_00000000_nope", "not valid"), ("", "Paste an API key")):
        answer = service.client.post("/signin", data={"key": key}, follow_redirects=False)
        assert answer.status_code == 401
        assert words in answer.text
        assert "set-cookie" not in answer.headers


def test_sign_in_goes_on_only_to_a_path_of_this_service(service: Service) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        answer = service.client.post(
            "/signin", data={"key": service.keys["qa"], "next": target}, follow_redirects=False
        )
        assert answer.headers["location"] == "/review", target


def test_changes_need_the_session_csrf_token(service: Service) -> None:
    csrf = sign_in(service)
    refused = service.client.post("/v1/stations", json={"id": "s7"})
    assert refused.status_code == 403
    assert CSRF_HEADER in refused.json()["detail"]
    wrong = service.client.post("/v1/stations", json={"id": "s7"}, headers={CSRF_HEADER: "x"})
    assert wrong.status_code == 403
    assert service.store.get_station("s7") is None
    done = service.client.post("/v1/stations", json={"id": "s7"}, headers={CSRF_HEADER: csrf})
    assert done.status_code == 201, done.text
    # A key in the header needs no CSRF token: another site cannot make a browser send one.
    assert (
        service.client.post(
            "/v1/stations", json={"id": "s8"}, headers=service.auth("qa")
        ).status_code
        == 201
    )


def test_roles_hold_for_sessions_as_for_keys(service: Service) -> None:
    csrf = sign_in(service, "manager")
    answer = service.client.post(f"/v1/stations/{STATION}/rollback", headers={CSRF_HEADER: csrf})
    assert answer.status_code == 403
    assert "role 'manager' may not" in answer.json()["detail"]
    line = TestClient(service.client.app)
    line.post("/signin", data={"key": service.keys["line"]}, follow_redirects=False)
    assert line.get("/review", headers=PAGE).status_code == 403
    assert line.get("/v1/review").status_code == 403


def test_sign_out_ends_the_session(service: Service) -> None:
    csrf = sign_in(service)
    refused = service.client.post("/signout", data={"csrf": "wrong"}, follow_redirects=False)
    assert refused.status_code == 403
    answer = service.client.post("/signout", data={"csrf": csrf}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"
    assert f'{COOKIE}=""' in answer.headers["set-cookie"]
    assert service.client.get("/v1/review").status_code == 401


def test_revoking_the_key_ends_its_sessions(service: Service) -> None:
    sign_in(service)
    key_id = next(k.id for k in service.store.list_keys() if k.name == "test-qa")
    service.store.revoke_key(key_id)
    answer = service.client.get("/v1/review")  # key_cache_s is 0 in the test service
    assert answer.status_code == 401
    assert "no longer valid" in answer.json()["detail"]


def test_an_altered_or_expired_cookie_is_refused(service: Service) -> None:
    secret = b"s" * 32
    value, issued = session.issue(secret, 7, hours=1, now=1000.0)
    assert session.read(secret, value, now=1001.0) == issued
    assert session.read(secret, value, now=1000.0 + 3600) is None  # expired
    assert session.read(b"t" * 32, value, now=1001.0) is None  # another service's secret
    body, _, signature = value.rpartition(".")
    forged = body.replace(".7.", ".8.", 1) + "." + signature
    assert session.read(secret, forged, now=1001.0) is None
    service.client.cookies.set(COOKIE, forged)
    answer = service.client.get("/v1/review")
    assert answer.status_code == 401
    assert "sign in again" in answer.json()["detail"]
    assert service.client.get("/review", headers=PAGE, follow_redirects=False).status_code == 303
