"""Results to the MES through the running service: an inspected part reaches a real webhook
receiver, signed; dead letters are listed and re-sent through the API; the backlog shows on
/metrics and a failing sink on /readyz."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from api_service import STATION, Service

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))  # receiver
from receiver import Receiver

from defectlens.errors import InputError
from defectlens.inference.delivery.opcua import read_station
from defectlens.inference.delivery.webhook import SIGNATURE_HEADER, verify_signature
from defectlens.inference.service.deliveries import sink_names
from defectlens.inference.service.settings import ServiceSettings

SECRET = "mes-secret"


def _wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    running.start()
    yield running
    running.stop()


def _webhook_service(
    make_service: Callable[..., Service], url: str, **overrides: object
) -> Service:
    return make_service(
        webhook_url=url,
        webhook_secret=SECRET,
        delivery_backoff_s=0.02,
        delivery_max_backoff_s=0.1,
        delivery_poll_s=0.02,
        **overrides,
    )


def test_an_inspected_part_reaches_the_webhook_signed(
    make_service: Callable[..., Service], receiver: Receiver, good_part: bytes
) -> None:
    service = _webhook_service(make_service, receiver.url)
    answer = service.inspect(good_part, serial="SN-1", line="L1")
    assert answer.status_code == 200
    result = answer.json()
    _wait_for(lambda: len(receiver.received) == 1)
    (got,) = receiver.received
    assert got.payload["result_id"] == result["result_id"]
    assert (got.payload["station"], got.payload["serial"]) == (STATION, "SN-1")
    assert got.payload["verdict"] == result["verdict"]
    assert got.headers["Idempotency-Key"] == result["result_id"]
    assert verify_signature(SECRET, got.headers[SIGNATURE_HEADER], got.body)
    _wait_for(lambda: not service.store.list_deliveries(state="pending"))
    metrics = service.client.get("/metrics").text
    assert 'defectlens_outbox_pending{sink="webhook"} 0.0' in metrics
    assert 'defectlens_delivery_lag_seconds_count{sink="webhook"} 1.0' in metrics


def test_dead_letters_are_listed_and_resent_through_the_api(
    make_service: Callable[..., Service], receiver: Receiver, good_part: bytes
) -> None:
    service = _webhook_service(make_service, receiver.url, delivery_max_attempts=2)
    receiver.stop()  # the MES is down long enough for the policy to give up
    result_id = service.inspect(good_part).json()["result_id"]
    listing = "/v1/deliveries?state=dead"
    _wait_for(lambda: len(service.client.get(listing, headers=service.auth("qa")).json()) == 1)
    (dead,) = service.client.get(listing, headers=service.auth("qa")).json()
    assert (dead["result_id"], dead["sink"], dead["state"]) == (result_id, "webhook", "dead")
    assert "ConnectError" in dead["last_error"]
    assert service.client.get(listing, headers=service.auth("line")).status_code == 403
    assert 'defectlens_outbox_dead{sink="webhook"} 1.0' in service.client.get("/metrics").text

    receiver.start()
    retry = f"/v1/deliveries/{dead['id']}/retry"
    answer = service.client.post(retry, headers=service.auth("qa"))
    assert answer.status_code == 200 and answer.json()["state"] == "pending"
    _wait_for(lambda: len(receiver.received) == 1)
    assert receiver.payloads()[0]["result_id"] == result_id
    assert (
        service.client.post("/v1/deliveries/999999/retry", headers=service.auth()).status_code
        == 404
    )
    huge = service.client.post(f"/v1/deliveries/{2**63}/retry", headers=service.auth())
    assert huge.status_code == 422  # not the database's overflow (500)

    # A key limited to another station sees none of this station's deliveries.
    service.store.ensure_station("s2")
    _, other = service.store.create_key("qa", "line-2 qa", stations=["s2"])
    scoped = {"X-API-Key": other}
    assert service.client.get("/v1/deliveries", headers=scoped).json() == []
    assert (
        service.client.get(f"/v1/deliveries?station={STATION}", headers=scoped).status_code == 403
    )
    assert service.client.post(retry, headers=scoped).status_code == 404


def test_a_sink_down_too_long_makes_the_service_not_ready(
    make_service: Callable[..., Service], receiver: Receiver, good_part: bytes
) -> None:
    service = _webhook_service(make_service, receiver.url, sink_down_ready_s=0.2)
    assert service.client.get("/readyz").status_code == 200
    receiver.stop()
    service.inspect(good_part)
    time.sleep(0.5)
    _wait_for(lambda: service.client.get("/readyz").status_code == 503)
    problems = service.client.get("/readyz").json()["problems"]
    assert any("sink webhook" in problem and "ConnectError" in problem for problem in problems)
    receiver.start()
    _wait_for(lambda: service.client.get("/readyz").status_code == 200)


def _opcua_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"opc.tcp://127.0.0.1:{probe.getsockname()[1]}/defectlens/"


def test_inspected_parts_reach_the_opcua_server_and_only_the_stations_sinks(
    make_service: Callable[..., Service], receiver: Receiver, good_part: bytes
) -> None:
    endpoint = _opcua_endpoint()
    service = _webhook_service(
        make_service,
        receiver.url,
        opcua_endpoint=endpoint,
        opcua_username="mes",
        opcua_password="pw",
        station_sinks={STATION: ["opcua"]},  # this station's results skip the webhook
    )
    answers = [service.inspect(good_part, serial=f"SN-{n}", line="L1").json() for n in range(2)]
    _wait_for(lambda: not service.store.list_deliveries(state="pending"))
    read = read_station(endpoint, STATION, "mes", "pw")
    assert read["Result/ResultId"] == answers[-1]["result_id"]
    assert (read["Result/PartId"], read["Result/Verdict"]) == ("SN-1", answers[-1]["verdict"])
    assert read["Result/ResultState"] == 1 and read["Result/ProcessingTimes/ProcessingDuration"]
    counts = {"OK": read["OkCount"], "NG": read["NgCount"]}
    assert counts == {v: sum(a["verdict"] == v for a in answers) for v in ("OK", "NG")}
    assert {d.sink for d in service.store.list_deliveries()} == {"opcua"}
    assert receiver.received == []


def test_station_sinks_choose_per_station_and_name_unset_sinks(tmp_path: Path) -> None:
    settings = ServiceSettings(
        home=tmp_path,
        webhook_url="http://mes/",
        mqtt_url="mqtt://broker:1883",
        station_sinks={"S1": ["mqtt"], "S2": []},
    )
    assert sink_names(settings, "S1") == ("mqtt",)
    assert sink_names(settings, "S2") == ()
    assert sink_names(settings, "S3") == sink_names(settings) == ("webhook", "mqtt")
    with pytest.raises(InputError, match="DEFECTLENS_OPCUA_ENDPOINT is not set"):
        ServiceSettings(home=tmp_path, station_sinks={"S1": ["opcua"]})
