"""The same service on a real PostgreSQL server: inspect, trace, page, promote, roll back,
and an outage of the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from api_service import STATION, Service
from pg_server import PostgresServer

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def test_round_trip_pages_and_deployments(service: Service, good_part: bytes) -> None:
    ids = [service.inspect(good_part, serial=f"PG-{i}").json()["result_id"] for i in range(5)]
    reader = service.auth("manager")
    one = service.client.get("/v1/results", params={"serial": "PG-3"}, headers=reader).json()
    assert [item["result_id"] for item in one["items"]] == [ids[3]]
    first = service.client.get("/v1/results", params={"limit": 3}, headers=reader).json()
    rest = service.client.get(
        "/v1/results", params={"limit": 3, "cursor": first["next_cursor"]}, headers=reader
    ).json()
    assert [i["result_id"] for i in first["items"] + rest["items"]] == ids[::-1]
    assert rest["next_cursor"] is None

    second = service.model_dirs[1]
    promoted = service.client.post(
        f"/v1/stations/{STATION}/promote", json={"model_dir": str(second)},
        headers=service.auth("qa"),
    )  # fmt: skip
    assert promoted.status_code == 200, promoted.text
    assert service.inspect(good_part).json()["model"]["version"] == second.name
    back = service.client.post(f"/v1/stations/{STATION}/rollback", headers=service.auth("qa"))
    assert back.status_code == 200
    assert service.inspect(good_part).json()["model"]["version"] == service.model_dirs[0].name
    assert service.client.get("/readyz").json()["ready"] is True
    assert service.inspect(b"", serial="bad").status_code == 422
    assert service.stored_count() == 7


def test_a_database_outage_is_a_503_that_writes_nothing_and_the_service_recovers(
    service: Service, part_images: dict[str, list[Path]], postgres_server: PostgresServer
) -> None:
    ng_part = part_images["missing"][0].read_bytes()
    first = service.inspect(ng_part)
    assert first.status_code == 200 and first.json()["verdict"] == "NG"  # its image is kept
    images_before = service.image_files()
    database = service.settings.resolved_database_url.rsplit("/", 1)[1]
    postgres_server.set_reachable(database, False)  # also ends the service's connections

    lost = service.inspect(ng_part, serial="during-outage")
    assert lost.status_code == 503, lost.text
    detail = lost.json()["detail"]
    assert "result store" in detail and database in detail and "nothing was written" in detail
    assert service.image_files() == images_before  # the image kept for it is removed again
    assert service.client.get("/healthz").status_code == 200
    assert service.client.get("/readyz").status_code == 503

    # The store comes back: the same service answers again, with what it held before.
    postgres_server.set_reachable(database, True)
    back = service.inspect(ng_part, serial="after-outage")
    assert back.status_code == 200, back.text
    assert service.client.get("/readyz").status_code == 200
    assert service.stored_count() == 2
