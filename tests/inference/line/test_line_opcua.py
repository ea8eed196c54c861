"""The PLC handshake over OPC UA, on the service's OPC UA server, with a real asyncua client
acting as the PLC: the variable handshake, the `Inspect` method, the fail-safe, the error bit
and the login."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua

from defectlens.errors import InputError
from defectlens.inference.line import handshake
from defectlens.inference.line.opcua import LINE_NAMESPACE_URI
from defectlens.inference.line.runner import LineRunner
from defectlens.inference.line.sources import Frame, FrameSource
from defectlens.inference.line.stations import LineConfig
from defectlens.inference.service.core import InspectionService
from defectlens.inference.service.deliveries import start_delivery
from defectlens.inference.service.deployments import register_model_dir
from defectlens.inference.service.settings import ServiceSettings
from defectlens.inference.store import Store, open_database

STATION = "s1"
USER, PASSWORD = "plc", "s3cret"


def _endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"opc.tcp://127.0.0.1:{probe.getsockname()[1]}/defectlens/"


@pytest.fixture
def opcua_service(tmp_path: Path, trained_model: Path) -> Iterator[InspectionService]:
    """A service whose settings run the OPC UA server (with a login), as `serve` starts it."""
    home = tmp_path / "home"
    model = Path(shutil.copytree(trained_model, home / "models" / "m" / trained_model.name))
    url = f"sqlite:///{home / 'defectlens.db'}"
    store = Store(open_database(url))
    store.ensure_station(STATION, line="L1")
    store.promote(STATION, register_model_dir(store, model).id, actor="test")
    store.db.close()
    settings = ServiceSettings(
        home=home,
        database_url=url,
        deployment_poll_s=0,
        threads=1,
        opcua_endpoint=_endpoint(),
        opcua_username=USER,
        opcua_password=PASSWORD,
    )
    service = InspectionService.open(settings)
    start_delivery(service)
    yield service
    service.close()


def _line(service: InspectionService, folder: Path, deadline_ms: float = 5000) -> LineRunner:
    config = LineConfig.model_validate(
        {
            "stations": [
                {
                    "id": STATION,
                    "source": {"kind": "simulated", "folder": str(folder)},
                    "plc": {"protocol": "opcua"},
                    "deadline_ms": deadline_ms,
                }
            ]
        }
    )
    runner = LineRunner(service, config, folder / "stations.yaml")
    runner.start()
    return runner


class _HeldCamera:
    """The station's simulated camera, holding each frame until the test lets it go: the
    PLC can then see BUSY for as long as the part is in the service's hands."""

    def __init__(self, camera: FrameSource) -> None:
        self.camera = camera
        self.grabbing = threading.Event()
        self.release = threading.Event()

    def open(self) -> None:
        self.camera.open()

    def grab(self) -> Frame:
        self.grabbing.set()
        self.release.wait(10)
        return self.camera.grab()

    def close(self) -> None:
        self.camera.close()


class _Plc:
    """An asyncua client as the PLC: the station's handshake variables by name."""

    def __init__(self, client: Client, ns: int) -> None:
        self.client = client
        self.ns = ns

    def node(self, leaf: str) -> Any:
        return self.client.get_node(ua.NodeId(ua.String(f"{STATION}/{leaf}"), ua.Int16(self.ns)))

    async def read(self, *leaves: str) -> dict[str, Any]:
        return {leaf: await self.node(leaf).read_value() for leaf in leaves}

    async def wait(self, leaf: str, value: Any, timeout: float = 10) -> None:
        for _ in range(int(timeout / 0.005)):
            if await self.node(leaf).read_value() == value:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{leaf} did not become {value!r} within {timeout} s")

    async def trigger(self, serial: str) -> None:
        await self.wait("Ready", True)
        await self.node("Serial").write_value(ua.Variant(serial, ua.VariantType.String))
        await self.node("Trigger").write_value(ua.Variant(True, ua.VariantType.Boolean))

    async def answer_and_ack(self) -> dict[str, Any]:
        await self.wait("ResultReady", True)
        answer = await self.read(
            "Verdict", "DefectCode", "FailSafe", "Error", "ResultId", "Counter", "ElapsedMs"
        )
        await self.node("Ack").write_value(ua.Variant(True, ua.VariantType.Boolean))
        await self.wait("Ready", True)
        return answer


async def _as_plc(endpoint: str, work: Any, user: str = USER, password: str = PASSWORD) -> Any:
    client = Client(endpoint, timeout=5)
    client.set_user(user)
    client.set_password(password)
    async with client:
        ns = await client.get_namespace_index(LINE_NAMESPACE_URI)
        return await work(_Plc(client, ns))


def test_plc_triggers_sees_busy_reads_the_answer_and_ack_clears_it(
    opcua_service: InspectionService, good_images: Path
) -> None:
    line = _line(opcua_service, good_images)
    held = _HeldCamera(line.stations[STATION]._camera)  # type: ignore[arg-type]
    line.stations[STATION]._camera = held
    endpoint = str(opcua_service.settings.opcua_endpoint)

    async def cycles(plc: _Plc) -> tuple[dict[str, Any], ...]:
        await plc.trigger("SN-0001")
        assert await asyncio.to_thread(held.grabbing.wait, 10)
        busy = await plc.read("Busy", "Ready", "ResultReady")
        held.release.set()
        first = await plc.answer_and_ack()
        cleared = await plc.read("Trigger", "Ack", "Verdict", "ResultReady", "Busy", "ResultId")
        await plc.trigger("SN-0002")
        second = await plc.answer_and_ack()
        with pytest.raises(ua.UaStatusCodeError):  # the service's variables are read-only
            await plc.node("Verdict").write_value(ua.Variant("OK", ua.VariantType.String))
        return busy, first, cleared, second

    try:
        busy, first, cleared, second = asyncio.run(_as_plc(endpoint, cycles))
    finally:
        line.stop()
    assert busy == {"Busy": True, "Ready": False, "ResultReady": False}
    assert first["Verdict"] == "OK" and first["DefectCode"] == handshake.NO_DEFECT
    assert not first["FailSafe"] and not first["Error"]
    assert first["Counter"] == 1 and second["Counter"] == 2 and second["Verdict"] == "OK"
    assert first["ElapsedMs"] > 0
    assert cleared == {
        "Trigger": False,
        "Ack": False,
        "Verdict": "",
        "ResultReady": False,
        "Busy": False,
        "ResultId": "",
    }
    stored = {r.result_id: r for r in opcua_service.store.list_results(limit=10)[0]}
    assert stored[first["ResultId"]].serial == "SN-0001"
    assert stored[second["ResultId"]].serial == "SN-0002"
    assert stored[first["ResultId"]].verdict == "OK"


def test_the_inspect_method_answers_verdict_defect_code_and_result_id(
    opcua_service: InspectionService, good_images: Path
) -> None:
    line = _line(opcua_service, good_images)
    endpoint = str(opcua_service.settings.opcua_endpoint)

    async def call(plc: _Plc) -> list[Any]:
        station = plc.client.get_node(ua.NodeId(ua.String(STATION), ua.Int16(plc.ns)))
        method = ua.NodeId(ua.String(f"{STATION}/Inspect"), ua.Int16(plc.ns))
        answer: list[Any] = await station.call_method(
            method, ua.Variant("M-1", ua.VariantType.String)
        )
        return answer

    try:
        verdict, code, result_id = asyncio.run(_as_plc(endpoint, call))
    finally:
        line.stop()
    assert (verdict, code) == ("OK", handshake.NO_DEFECT)
    stored = opcua_service.store.list_results(limit=10)[0]
    assert [(r.result_id, r.serial, r.verdict) for r in stored] == [(result_id, "M-1", "OK")]


def test_a_part_past_its_deadline_gets_the_fail_safe_and_is_stored_as_such(
    opcua_service: InspectionService, good_images: Path
) -> None:
    line = _line(opcua_service, good_images, deadline_ms=1)  # nothing answers in 1 ms
    endpoint = str(opcua_service.settings.opcua_endpoint)

    async def cycle(plc: _Plc) -> dict[str, Any]:
        await plc.trigger("LATE-1")
        return await plc.answer_and_ack()

    try:
        answer = asyncio.run(_as_plc(endpoint, cycle))
    finally:
        line.stop()
    assert answer["Verdict"] == "NG" and answer["FailSafe"]
    assert answer["DefectCode"] == handshake.CODE_DEADLINE
    stored = opcua_service.store.list_results(limit=10)[0]
    assert [(r.result_id, r.serial, r.verdict, r.defects[0].class_) for r in stored] == [
        (answer["ResultId"], "LATE-1", "NG", "fail_safe")
    ]


def test_the_error_bit_is_set_while_the_source_is_down_and_the_part_is_failed_safe(
    opcua_service: InspectionService, tmp_path: Path
) -> None:
    line = _line(opcua_service, tmp_path / "no-such-folder")
    endpoint = str(opcua_service.settings.opcua_endpoint)

    async def cycle(plc: _Plc) -> tuple[dict[str, Any], dict[str, Any]]:
        await plc.wait("Error", True)
        idle = await plc.read("Ready", "Error")
        await plc.trigger("GONE-1")
        return idle, await plc.answer_and_ack()

    try:
        idle, answer = asyncio.run(_as_plc(endpoint, cycle))
    finally:
        line.stop()
    assert idle == {"Ready": True, "Error": True}
    assert answer["Verdict"] == "NG" and answer["FailSafe"]
    assert answer["DefectCode"] == handshake.CODE_SOURCE
    assert opcua_service.store.list_results(limit=10)[0][0].serial == "GONE-1"


def test_a_plc_with_the_wrong_password_is_refused(
    opcua_service: InspectionService, good_images: Path
) -> None:
    line = _line(opcua_service, good_images)
    endpoint = str(opcua_service.settings.opcua_endpoint)

    async def read_ready(plc: _Plc) -> Any:
        return await plc.node("Ready").read_value()

    try:
        with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
            asyncio.run(_as_plc(endpoint, read_ready, password="wrong"))
        assert asyncio.run(_as_plc(endpoint, read_ready)) is True
    finally:
        line.stop()


def test_an_opcua_station_without_the_services_opcua_server_does_not_start(
    service: InspectionService, good_images: Path
) -> None:
    with pytest.raises(InputError, match="DEFECTLENS_OPCUA_ENDPOINT"):
        _line(service, good_images)
