"""The API routes the pages call, with the browser's session as the caller: the review queue
(`GET /v1/review`, this package's own route) and the role checks of the actions the pages
take (a `line` key cannot label or promote; `manager` reads but does not change)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from api_service import STATION, Service
from fastapi.testclient import TestClient
from test_signin import PAGE

from defectlens.inference.api.session import CSRF_HEADER


def browser(service: Service, role: str) -> tuple[TestClient, str]:
    """A client signed in with the role's key, and its session's CSRF token."""
    client = TestClient(service.client.app)
    answer = client.post("/signin", data={"key": service.keys[role]}, follow_redirects=False)
    assert answer.status_code == 303
    page = client.get("/models", headers=PAGE)
    assert page.status_code == 200 if role != "line" else 403
    token = client.cookies["defectlens_session"].split(".")[3]
    return client, token


@pytest.fixture
def parts(
    make_service: Callable[..., Service], part_images: dict[str, list[Path]]
) -> tuple[Service, dict[str, str]]:
    service = make_service(keep_ok_fraction=1.0)
    kinds = [k for k in part_images if k not in ("train", "good")]
    ng = service.inspect(part_images[kinds[0]][0].read_bytes(), serial="NG1").json()
    ok = service.inspect(part_images["train"][0].read_bytes(), serial="OK1").json()
    return service, {"NG": ng["result_id"], "OK": ok["result_id"]}


def test_the_review_route_orders_filters_and_checks_roles(
    parts: tuple[Service, dict[str, str]],
) -> None:
    service, ids = parts
    answer = service.client.get("/v1/review", headers=service.auth("manager"))
    assert answer.status_code == 200
    page = answer.json()
    assert page["total"] == 2
    assert [(i["result_id"], i["reason"]) for i in page["items"]] == [
        (ids["NG"], "ng"),
        (ids["OK"], "ok_sample"),
    ]
    only_ok = service.client.get("/v1/review?verdict=OK", headers=service.auth("qa")).json()
    assert [i["result_id"] for i in only_ok["items"]] == [ids["OK"]]
    assert service.client.get("/v1/review", headers=service.auth("line")).status_code == 403
    bad = service.client.get("/v1/review?limit=0", headers=service.auth("qa"))
    assert bad.status_code == 422 and "limit" in bad.json()["detail"]
    other = service.client.get("/v1/review?station=elsewhere", headers=service.auth("qa"))
    assert other.json()["total"] == 0


def test_a_station_scoped_key_sees_only_its_stations(
    parts: tuple[Service, dict[str, str]],
) -> None:
    service, _ = parts
    _id, scoped = service.store.create_key("qa", "scoped", stations=["s9"])
    answer = service.client.get("/v1/review", headers={"X-API-Key": scoped})
    assert answer.json()["total"] == 0  # s1's parts are not its to see
    refused = service.client.get(f"/v1/review?station={STATION}", headers={"X-API-Key": scoped})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("role", "label", "promote"),
    [("qa", 201, 200), ("manager", 403, 403), ("line", 403, 403), ("admin", 201, 200)],
)
def test_what_each_role_may_do_from_the_pages(
    parts: tuple[Service, dict[str, str]], role: str, label: int, promote: int
) -> None:
    service, ids = parts
    client, csrf = browser(service, role)
    headers = {CSRF_HEADER: csrf}
    body = {
        "verdict": "NG",
        "defect_class": "crack",
        "regions": [{"class": "crack", "box": [10, 10, 40, 30]}],
    }
    labelled = client.post(f"/v1/labels/results/{ids['NG']}", json=body, headers=headers)
    assert labelled.status_code == label, labelled.text
    version = service.store.active_model(STATION)
    assert version is not None
    promoted = client.post(
        f"/v1/stations/{STATION}/promote", json={"model_version_id": version.id}, headers=headers
    )
    assert promoted.status_code == promote, promoted.text
    # The same action without the page's token is refused whatever the role.
    no_token = client.post(f"/v1/labels/results/{ids['NG']}", json=body)
    assert no_token.status_code == 403


def test_a_label_saved_from_the_page_leaves_the_queue_and_the_next_part_follows(
    parts: tuple[Service, dict[str, str]],
) -> None:
    service, ids = parts
    client, csrf = browser(service, "qa")
    saved = client.post(
        f"/v1/labels/results/{ids['OK']}", json={"verdict": "OK"}, headers={CSRF_HEADER: csrf}
    )
    assert saved.status_code == 201, saved.text
    queue = client.get("/v1/review").json()
    assert [i["result_id"] for i in queue["items"]] == [ids["NG"]]  # agreeing label: done
    after = client.get(f"/review/next?after={ids['OK']}", headers=PAGE, follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith(f"/review/{ids['NG']}")
    client.post(
        f"/v1/labels/results/{ids['NG']}", json={"verdict": "OK"}, headers={CSRF_HEADER: csrf}
    )
    # The model said NG, the label says OK: it disagrees, and nothing is left to label.
    queue = client.get("/v1/review").json()
    assert [(i["result_id"], i["reason"]) for i in queue["items"]] == [(ids["NG"], "disagrees")]
    done = client.get(f"/review/next?after={ids['NG']}", headers=PAGE, follow_redirects=False)
    assert done.headers["location"] == "/review?"
