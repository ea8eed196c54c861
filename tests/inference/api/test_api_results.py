"""Traceability: results by id, by serial and other filters, and keyset pagination."""

from __future__ import annotations

from api_service import Service

from defectlens.inference.store import StoredImage  # noqa: F401  (documents what is stored)


def test_pages_cover_every_result_once_newest_first(service: Service, good_part: bytes) -> None:
    ids = [service.inspect(good_part, serial=f"P{i}").json()["result_id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = service.client.get("/v1/results", params=params, headers=service.auth("manager"))
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [item["result_id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(ids, reverse=True)


def test_find_a_part_by_serial_and_filters(service: Service, good_part: bytes) -> None:
    for serial in ("A-1", "B-2", "A-1"):
        assert service.inspect(good_part, serial=serial, line="L1").status_code == 200
    reader = service.auth("line")
    by_serial = service.client.get("/v1/results", params={"serial": "A-1"}, headers=reader).json()
    assert [item["serial"] for item in by_serial["items"]] == ["A-1", "A-1"]
    ok = service.client.get("/v1/results", params={"verdict": "OK", "line": "L1"}, headers=reader)
    assert len(ok.json()["items"]) == 3
    ng = service.client.get("/v1/results", params={"verdict": "NG"}, headers=reader)
    assert ng.json()["items"] == []
    first = by_serial["items"][-1]
    window = service.client.get(
        "/v1/results", params={"since": first["received_at"], "station": "s1"}, headers=reader
    )
    assert len(window.json()["items"]) == 3
    before = service.client.get(
        "/v1/results", params={"until": first["received_at"]}, headers=reader
    )
    assert before.json()["items"] == []


def test_bad_queries_are_4xx_with_a_message(service: Service) -> None:
    reader = service.auth("qa")
    missing = service.client.get("/v1/results/01ZZZZZZZZZZZZZZZZZZZZZZZZ", headers=reader)
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    for params, words in (
        ({"limit": 0}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"verdict": "MAYBE"}, "verdict"),
        ({"since": "soon"}, "since"),
        ({"since": "2026-11-27T00:00:00Z", "until": "2026-11-26T00:00:00Z"}, "since"),
    ):
        response = service.client.get("/v1/results", params=params, headers=reader)
        assert response.status_code == 422, (params, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and words in detail, detail
