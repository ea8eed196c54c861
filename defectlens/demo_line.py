"""The demo's line station: a simulated camera in a stations file, triggered over Modbus TCP
by a PLC (a real pymodbus client here), and what the PLC side saw for a handful of parts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

LINE_STATION = "demo-line-cam"
MODBUS_ADDRESS = 100
PARTS = 6
DEADLINE_MS = 500.0


def run_line_demo(home: Path, version: Path, samples: list[Path]) -> None:
    """Start the service with a stations file of one camera station replaying a few test
    parts (good and defective, alternating), whose `model:` names the demo's model (promoted
    to it at start); act as its PLC for each part and print serial, verdict, defect code and
    trigger-to-answer time."""
    import yaml
    from pymodbus.client import ModbusTcpClient

    from defectlens.demo import LINE, _free_port, _running_service
    from defectlens.inference.line import modbus
    from defectlens.inference.line.modbus_plc import ModbusPlc
    from defectlens.inference.service import ServiceSettings

    card = json.loads((version / "model.json").read_text(encoding="utf-8"))
    good = [p for p in samples if p.parent.name == "good"]
    defective = [p for p in samples if p.parent.name != "good"]
    chosen = [part for pair in zip(good, defective[::5], strict=False) for part in pair][:PARTS]
    folder = home / "line-demo"
    if folder.exists():
        shutil.rmtree(folder)
    camera = folder / "camera"
    camera.mkdir(parents=True)
    for index, path in enumerate(chosen):  # the camera replays them in name order
        shutil.copy(path, camera / f"{index:02d}-{path.parent.name}.png")
    port = _free_port()
    stations = folder / "stations.yaml"
    stations.write_text(
        yaml.safe_dump(
            {
                "modbus": {"host": "127.0.0.1", "port": port},
                "stations": [
                    {
                        "id": LINE_STATION,
                        "line": LINE,
                        "model": f"{card['name']}/{card['version']}",
                        "source": {"kind": "simulated", "folder": "camera"},
                        "plc": {"address": MODBUS_ADDRESS},
                        "deadline_ms": DEADLINE_MS,
                    }
                ],
            },
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    settings = ServiceSettings(
        home=home, host="127.0.0.1", port=_free_port(), stations_file=stations
    )
    print(
        f"    station {LINE_STATION} ({stations.relative_to(home)}), a simulated "
        f"camera\n    triggered over Modbus TCP (127.0.0.1:{port}) by a PLC, a pymodbus client"
    )
    with _running_service(settings), ModbusTcpClient("127.0.0.1", port=port) as client:
        plc = ModbusPlc(client, MODBUS_ADDRESS, give_up_s=10 * DEADLINE_MS / 1000)
        counter = plc.read()[modbus.COUNTER]
        print(f"    what the PLC saw (registers {MODBUS_ADDRESS}-{MODBUS_ADDRESS + 15}):")
        print(f"      {'serial':<10} {'verdict':<8} {'defect code':<12} trigger-to-answer  part")
        for index, path in enumerate(chosen):
            serial = f"LINE-{index + 1:04d}"
            counter, answer, elapsed_ms = plc.cycle(serial, counter)
            if answer is None:
                print(f"      {serial:<10} no answer within {plc.give_up_s:g} s")
                continue
            verdict = {modbus.OK: "OK", modbus.NG: "NG"}.get(answer[modbus.VERDICT], "-")
            fail_safe = ", fail-safe" if answer[modbus.STATUS] & modbus.FAIL_SAFE else ""
            print(
                f"      {serial:<10} {verdict:<8} {answer[modbus.DEFECT_CODE]:<12} "
                f"{elapsed_ms:14.1f} ms  {path.parent.name}{fail_safe}"
            )
