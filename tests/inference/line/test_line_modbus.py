"""The PLC handshake over Modbus TCP, with a real pymodbus client acting as the PLC."""

from __future__ import annotations

import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient

from defectlens.inference.line import handshake, modbus
from defectlens.inference.line.runner import LineRunner
from defectlens.inference.line.stations import LineConfig
from defectlens.inference.service.core import InspectionService

STATION = "s1"


def _line(service: InspectionService, folder: Path, deadline_ms: float = 2000) -> LineRunner:
    config = LineConfig.model_validate(
        {
            "modbus": {"port": 0},
            "stations": [
                {
                    "id": STATION,
                    "line": "L1",
                    "source": {"kind": "simulated", "folder": str(folder)},
                    "plc": {"address": 100},
                    "deadline_ms": deadline_ms,
                }
            ],
        }
    )
    runner = LineRunner(service, config, folder / "stations.yaml")
    runner.start()
    return runner


def _plc_cycle(client: ModbusTcpClient, base: int, serial: str, timeout: float = 5) -> list[int]:
    """What a PLC does: wait for READY, write the serial and TRIGGER, wait for RESULT READY,
    read the answer, ACK, wait for READY again."""
    _wait_status(client, base, modbus.READY, timeout)
    client.write_registers(base + modbus.SERIAL, modbus.encode_serial(serial), device_id=1)
    client.write_register(base + modbus.TRIGGER, 1, device_id=1)
    _wait_status(client, base, modbus.RESULT_READY, timeout)
    answer = client.read_holding_registers(base, count=16, device_id=1).registers
    client.write_register(base + modbus.ACK, 1, device_id=1)
    _wait_status(client, base, modbus.READY, timeout)
    return list(answer)


def _wait_status(client: ModbusTcpClient, base: int, bit: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = client.read_holding_registers(base + modbus.STATUS, count=1, device_id=1)
        if status.registers[0] & bit:
            return
        time.sleep(0.005)
    raise AssertionError(f"status bit {bit} not set within {timeout} s")


def test_plc_triggers_and_gets_ok_stored_with_serial(
    service: InspectionService, good_images: Path
) -> None:
    line = _line(service, good_images)
    try:
        server = line.links[0]
        assert isinstance(server, modbus.ModbusPlcServer)
        with ModbusTcpClient("127.0.0.1", port=server.port) as client:
            answer = _plc_cycle(client, 100, "SN-0001")
            second = _plc_cycle(client, 100, "SN-0002")
            # the service's registers are read-only to the PLC
            refused = client.write_register(100 + modbus.VERDICT, 1, device_id=1)
            assert refused.isError()
        status = line.statuses()[0]
    finally:
        line.stop()
    assert answer[modbus.VERDICT] == modbus.OK
    assert answer[modbus.STATUS] & modbus.RESULT_READY
    assert not answer[modbus.STATUS] & modbus.FAIL_SAFE
    assert answer[modbus.COUNTER] == 1 and second[modbus.COUNTER] == 2
    assert 0 < answer[modbus.ELAPSED_MS] < 2000
    stored, _ = service.store.list_results(limit=10)
    serials = sorted(r.serial for r in stored if r.serial)
    assert serials == ["SN-0001", "SN-0002"]
    assert status.parts == 2 and status.ng_rate == 0.0 and status.connected


def test_a_part_that_misses_its_deadline_gets_the_fail_safe_and_is_stored(
    service: InspectionService, good_images: Path
) -> None:
    line = _line(service, good_images, deadline_ms=1)  # no inspection answers in 1 ms
    try:
        server = line.links[0]
        assert isinstance(server, modbus.ModbusPlcServer)
        with ModbusTcpClient("127.0.0.1", port=server.port) as client:
            answer = _plc_cycle(client, 100, "LATE-1")
    finally:
        line.stop()
    assert answer[modbus.VERDICT] == modbus.NG
    assert answer[modbus.STATUS] & modbus.FAIL_SAFE
    assert answer[modbus.DEFECT_CODE] == handshake.CODE_DEADLINE
    stored, _ = service.store.list_results(limit=10)
    assert [(r.serial, r.verdict, r.defects[0].class_) for r in stored] == [
        ("LATE-1", "NG", "fail_safe")
    ]


def test_a_trigger_while_the_camera_is_gone_is_answered_fail_safe(
    service: InspectionService, tmp_path: Path
) -> None:
    line = _line(service, tmp_path / "no-such-folder")
    try:
        server = line.links[0]
        assert isinstance(server, modbus.ModbusPlcServer)
        with ModbusTcpClient("127.0.0.1", port=server.port) as client:
            status = client.read_holding_registers(100 + modbus.STATUS, count=1, device_id=1)
            assert status.registers[0] & modbus.ERROR
            answer = _plc_cycle(client, 100, "GONE-1")
        assert line.problems() and "not connected" in line.problems()[0]
    finally:
        line.stop()
    assert answer[modbus.VERDICT] == modbus.NG
    assert answer[modbus.DEFECT_CODE] == handshake.CODE_SOURCE
    assert service.store.list_results(limit=10)[0][0].serial == "GONE-1"
