"""The line side under load: N simulated-camera stations, each triggered by a Modbus PLC.

    .venv/bin/python scripts/line_benchmark.py --model MODEL_DIR     # a version folder
    .venv/bin/python scripts/line_benchmark.py                       # trains a 256 px model first

Starts `defectlens serve` on loopback (a temporary workspace) with a stations file of
`--stations` simulated cameras replaying generated part images, each with a Modbus `plc:`
block and `deadline_ms`. This process then acts as one PLC per station, each with its own
pymodbus client, following docs/plc.md: at `--rate` parts/s it waits for READY, writes the
SERIAL and TRIGGER, polls STATUS until RESULT READY, reads the answer and writes ACK. Per
station it prints trigger-to-answer p50/p99, parts/s, deadline misses (fail-safe answers),
late answers (past the deadline with the part's own verdict) and lost parts (a trigger never
answered); then it reads `GET /v1/results?station=...` and checks that every answered part is
stored with the verdict the PLC saw. Exit status 1 on a lost part or an answered part not
stored as answered.

The PLCs share the machine's cores with the service, and poll STATUS every `--poll-ms`
(the resolution of the trigger-to-answer figures), as a PLC scan would. After their warm-up
parts they start together, so the stations trigger in the same moment (the worst case for
queueing), or with `--spread` evenly offset over a part's period.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml
from load_test import (
    BIN,
    free_port,
    part_images,
    percentile,
    run,
    start_service,
    stop,
    train_model,
    wait_ready,
)
from pymodbus.client import ModbusTcpClient

from defectlens.inference.line import handshake, modbus
from defectlens.inference.line.modbus_plc import ModbusPlc
from defectlens.inference.line.stations import MODBUS_BLOCK
from defectlens.modelcard import ModelCard

DEVICE = 1
FIRST_ADDRESS = 100


@dataclass
class StationRun:
    """What one PLC saw on its station."""

    station: str
    address: int
    latencies_ms: list[float] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    """Serial -> the verdict the PLC read (OK or NG), for every answered part."""
    deadline_misses: int = 0
    late: int = 0
    lost: list[str] = field(default_factory=list)
    scheduled_s: float = 0.0
    """The parts triggered over the rate: the run's length if every part kept its slot."""
    first_trigger: float = 0.0
    last_answer: float = 0.0
    error: str | None = None

    @property
    def parts_per_s(self) -> float:
        span = max(self.last_answer - self.first_trigger, self.scheduled_s)
        return len(self.answers) / span if span > 0 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model version folder (default: train one)")
    parser.add_argument("--stations", type=int, default=4, help="simulated camera stations")
    parser.add_argument("--rate", type=float, default=5.0, help="parts/s per station")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the PLCs trigger")
    parser.add_argument("--deadline-ms", type=float, default=200.0, help="each station's deadline")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--images", type=int, default=24, help="distinct part images")
    parser.add_argument("--warmup", type=int, default=3, help="parts per station not counted")
    parser.add_argument("--poll-ms", type=float, default=2.0, help="the PLC's STATUS poll")
    parser.add_argument(
        "--parts-in-parallel",
        type=int,
        help="the stations file's parts_in_parallel (default: the service's, one a core)",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="spread the stations' triggers evenly over a part's period (default: all stations "
        "trigger together, the worst case for queueing)",
    )
    args = parser.parse_args()
    if args.stations < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--stations, --rate and --seconds must be positive")

    with tempfile.TemporaryDirectory(prefix="defectlens-line-") as tmp:
        home = Path(tmp) / "home"
        model = args.model or train_model(Path(tmp))
        card = ModelCard.model_validate_json((model / "model.json").read_text(encoding="utf-8"))
        parts = Path(tmp) / "parts"
        parts.mkdir()
        for index, image in enumerate(part_images(args.images, card.input.height)):
            (parts / f"part-{index:03d}.png").write_bytes(image)
        stations = [f"cam{index + 1}" for index in range(args.stations)]
        modbus_port = free_port()
        stations_file = write_stations(
            Path(tmp), stations, parts, modbus_port, args.deadline_ms, args.parts_in_parallel
        )
        env = {**os.environ, "DEFECTLENS_HOME": str(home)}
        env.pop("DEFECTLENS_DATABASE_URL", None)
        for station in stations:
            run(
                [str(BIN / "defectlens"), "models", "promote", str(model), "--station", station],
                env,
            )
        reader = run(
            [str(BIN / "defectlens"), "keys", "create", "--role", "manager", "--name", "bench"], env
        ).strip().splitlines()[-1]  # fmt: skip
        settings = {"DEFECTLENS_STATIONS_FILE": str(stations_file)}
        server, port, _ = start_service(model, home, args.threads, settings, "line-benchmark")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server, time.monotonic() + 180, home)
            print(
                f"model {card.name} {card.version}: {card.input.height} px, {args.threads} "
                f"threads; {args.stations} stations at {args.rate:g} parts/s for "
                f"{args.seconds:g} s, deadline {args.deadline_ms:g} ms, parts in parallel "
                f"{args.parts_in_parallel or 'one a core'}, PLC poll "
                f"{args.poll_ms:g} ms, {args.warmup} warm-up parts per station not counted, "
                f"triggers {'spread over the period' if args.spread else 'in phase'}",
                flush=True,
            )
            runs = [
                StationRun(station, FIRST_ADDRESS + index * MODBUS_BLOCK)
                for index, station in enumerate(stations)
            ]
            start = Start(args.stations)
            plcs = [
                threading.Thread(
                    target=act_as_plc,
                    args=(one, modbus_port, args, start, index / args.stations / args.rate),
                    daemon=True,
                )
                for index, one in enumerate(runs)
            ]
            for plc in plcs:
                plc.start()
            for plc in plcs:
                plc.join()
            stored = {one.station: stored_verdicts(url, reader, one.station) for one in runs}
        finally:
            stop(server)
    return report(runs, stored)


def write_stations(
    folder: Path,
    stations: list[str],
    parts: Path,
    port: int,
    deadline_ms: float,
    parts_in_parallel: int | None = None,
) -> Path:
    """The stations file: one simulated camera per station, each with its Modbus block."""
    config: dict[str, object] = {
        "modbus": {"host": "127.0.0.1", "port": port, "device_id": DEVICE},
        "stations": [
            {
                "id": station,
                "line": "bench",
                "source": {"kind": "simulated", "folder": str(parts)},
                "plc": {"address": FIRST_ADDRESS + index * MODBUS_BLOCK},
                "deadline_ms": deadline_ms,
            }
            for index, station in enumerate(stations)
        ],
    }
    if parts_in_parallel is not None:
        config["parts_in_parallel"] = parts_in_parallel
    path = folder / "stations.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class Start:
    """One moment every PLC counts its parts from, once they have all done their warm-up."""

    def __init__(self, stations: int) -> None:
        self.at = 0.0
        self.barrier = threading.Barrier(stations, action=self._set)

    def _set(self) -> None:
        self.at = time.monotonic() + 0.1

    def wait(self) -> float:
        self.barrier.wait()
        return self.at


def act_as_plc(
    one: StationRun, port: int, args: argparse.Namespace, common: Start, offset_s: float
) -> None:
    """One station's PLC: warm-up parts, then from the common start (plus `offset_s` with
    `--spread`) a part every 1/rate s for `seconds`."""
    # A PLC gives up on an answer after a while and diverts the part; here well past any
    # late answer, so that a part counted lost was never answered.
    give_up_s = max(5.0, 10 * args.deadline_ms / 1000)
    poll_s = args.poll_ms / 1000
    with ModbusTcpClient("127.0.0.1", port=port, timeout=give_up_s) as client:
        plc = ModbusPlc(client, one.address, poll_s, give_up_s, DEVICE)
        try:
            counter = plc.read()[modbus.COUNTER]
            for index in range(args.warmup):
                counter = plc.cycle(f"W-{one.station}-{index}", counter)[0]
            count = round(args.seconds * args.rate)
            start = common.wait() + (offset_s if args.spread else 0.0)
            one.first_trigger = start
            one.scheduled_s = count / args.rate
            for index in range(count):
                pause = start + index / args.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                serial = f"{one.station}-{index:06d}"
                counter, answer, elapsed_ms = plc.cycle(serial, counter)
                if answer is None:
                    one.lost.append(serial)
                    continue
                one.last_answer = time.monotonic()
                one.latencies_ms.append(elapsed_ms)
                one.answers[serial] = "NG" if answer[modbus.VERDICT] == modbus.NG else "OK"
                if answer[modbus.STATUS] & modbus.FAIL_SAFE:
                    one.deadline_misses += answer[modbus.DEFECT_CODE] == handshake.CODE_DEADLINE
                elif elapsed_ms > args.deadline_ms:
                    one.late += 1
        except (OSError, TimeoutError, RuntimeError) as error:  # BrokenBarrierError included
            one.error = str(error) or type(error).__name__
            common.barrier.abort()  # the other PLCs stop waiting for this one


def stored_verdicts(url: str, key: str, station: str) -> dict[str, str]:
    """Serial -> verdict of every result stored for `station`, through the HTTP API."""
    verdicts: dict[str, str] = {}
    cursor: str | None = None
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as http:
        while True:
            params: dict[str, str | int] = {"station": station, "limit": 500}
            if cursor:
                params["cursor"] = cursor
            response = http.get("/v1/results", params=params)
            response.raise_for_status()
            page = response.json()
            for item in page["items"]:
                if item.get("serial"):
                    verdicts[item["serial"]] = item["verdict"]
            cursor = page.get("next_cursor")
            if not cursor:
                return verdicts


def report(runs: list[StationRun], stored: dict[str, dict[str, str]]) -> int:
    """Print a line per station and the totals; 1 if a part was lost or not stored as answered."""
    failed = False
    for one in runs:
        in_store = stored[one.station]
        unstored = [s for s, verdict in one.answers.items() if in_store.get(s) != verdict]
        failed = failed or bool(one.lost or unstored or one.error)
        latencies = one.latencies_ms or [float("nan")]
        print(
            f"  {one.station}: {len(one.answers)} parts, {one.parts_per_s:5.2f} parts/s, "
            f"p50 {percentile(latencies, 50):6.1f} ms, p99 {percentile(latencies, 99):6.1f} ms, "
            f"deadline misses {one.deadline_misses}, late {one.late}, lost {len(one.lost)}, "
            f"stored {len(one.answers) - len(unstored)}/{len(one.answers)}"
        )
        if one.error:
            print(f"    the PLC stopped: {one.error}")
        for serial in unstored[:5]:
            print(f"    {serial}: answered {one.answers[serial]}, stored {in_store.get(serial)}")
    every = [latency for one in runs for latency in one.latencies_ms] or [float("nan")]
    print(
        f"  all: {sum(len(one.answers) for one in runs)} parts, "
        f"{sum(one.parts_per_s for one in runs):5.2f} parts/s, "
        f"p50 {statistics.median(every):6.1f} ms, p99 {percentile(every, 99):6.1f} ms, "
        f"deadline misses {sum(one.deadline_misses for one in runs)}, "
        f"late {sum(one.late for one in runs)}, lost {sum(len(one.lost) for one in runs)}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
