"""Two services side by side, one part to each in turn: which answers faster, request by request.

    .venv/bin/python scripts/compare_serving.py --a MODEL_DIR --b MODEL_DIR
    .venv/bin/python scripts/compare_serving.py --a MODEL_DIR --b MODEL_DIR \\
        --b-env DEFECTLENS_ONNX_SPINNING=false

Starts `defectlens serve` twice on loopback, each with its own temporary workspace and `line`
key, warms both, then sends the same synthetic parts to both from one blocking HTTP/1.1
client each, in turn, in a shuffled order. Per side it prints the p50 end to end, the p50
model time the service reported, and the p50 of end to end minus that model time: what the
service adds around its model. Then it pairs the last figure request by request: the median
difference, how many pairs went each way, and the median of each block of 100 pairs. Both
sides see the machine in the same moments, so a difference of a tenth of a millisecond shows
on a machine whose speed drifts by a fifth from minute to minute.

Use it to compare a new model version with the one on the line (model time and the whole
answer), or one service setting with another (`DEFECTLENS_*` variables, `--a-env`/`--b-env`).
Both services share the machine's cores with each other and with this client.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from load_test import STATION, LineClient, part_images, start_service, stop, wait_ready

BLOCK = 100


@dataclass
class Side:
    """One service, its client connection, and what it answered."""

    name: str
    server: subprocess.Popen[str]
    client: LineClient
    answers: list[tuple[float, float] | None] = field(default_factory=list)
    """Per part sent, in order: (end to end ms, the model ms the service reported), or None
    for an error; the two sides pair up part by part."""

    def post(self, body: bytes) -> None:
        """Send one part and record its answer."""
        start = time.perf_counter()
        try:
            status, payload = self.client.post(f"/v1/inspect?station={STATION}", body)
        except (OSError, ValueError):
            self.answers.append(None)
            return
        elapsed = (time.perf_counter() - start) * 1000
        ok = status == 200
        self.answers.append((elapsed, json.loads(payload)["timings_ms"]["model"]) if ok else None)

    @property
    def errors(self) -> int:
        return sum(answer is None for answer in self.answers)


def settings(parser: argparse.ArgumentParser, pairs: list[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            parser.error(f"{flag} {pair!r}: expected NAME=VALUE")
        out[name] = value
    return out


def start(name: str, model: Path, extra: dict[str, str], threads: int, home: Path) -> Side:
    server, port, key = start_service(model, home, threads, extra, f"compare-{name}")
    side = Side(name, server, LineClient(f"http://127.0.0.1:{port}", key))
    wait_ready(f"http://127.0.0.1:{port}", server, time.monotonic() + 120, home)
    return side


def report(a: Side, b: Side) -> None:
    for side in (a, b):
        answered = [answer for answer in side.answers if answer is not None]
        if not answered:
            print(f"{side.name}: no part answered ({side.errors} errors)")
            return
        print(
            f"{side.name}: p50 end to end {statistics.median(t for t, _ in answered):.2f} ms, "
            f"model {statistics.median(m for _, m in answered):.2f} ms, around the model "
            f"{statistics.median(t - m for t, m in answered):.2f} ms ({len(answered)} parts, "
            f"{side.errors} errors)"
        )
    # What each service added around its model, part by part where both answered.
    pairs = [
        (x[0] - x[1], y[0] - y[1])
        for x, y in zip(a.answers, b.answers, strict=True)
        if x is not None and y is not None
    ]
    differences = [x - y for x, y in pairs]
    slower = sum(d > 0 for d in differences)
    print(
        f"{a.name} - {b.name}, around the model, request by request: median "
        f"{statistics.median(differences):+.3f} ms; {a.name} slower in {slower} of "
        f"{len(differences)} pairs"
    )
    blocks = []
    for first in range(0, len(pairs) - BLOCK + 1, BLOCK):
        block = pairs[first : first + BLOCK]
        blocks.append(
            statistics.median(x for x, _ in block) - statistics.median(y for _, y in block)
        )
    if blocks:
        print(f"  each block of {BLOCK} pairs: " + " ".join(f"{d:+.2f}" for d in blocks))


def send_in_turn(a: Side, b: Side, images: list[bytes], warmup: int, requests: int) -> None:
    """Warm both sides (answers not kept), then send each part to both, in a shuffled order
    per part, so both meet the machine in the same moments."""
    for index in range(warmup):
        a.post(images[index % len(images)])
        b.post(images[index % len(images)])
    for side in (a, b):
        side.answers.clear()
    order = random.Random(0)
    for index in range(requests):
        image = images[index % len(images)]
        for side in order.sample([a, b], 2):
            side.post(image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="model version folder of side A")
    parser.add_argument("--b", type=Path, required=True, help="model version folder of side B")
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--requests", type=int, default=600, help="parts sent to each side")
    parser.add_argument("--warmup", type=int, default=40, help="parts sent to each side first")
    parser.add_argument("--images", type=int, default=24, help="distinct synthetic parts")
    parser.add_argument("--threads", type=int, default=2, help="DEFECTLENS_THREADS of both")
    args = parser.parse_args()
    env_a = settings(parser, args.a_env, "--a-env")
    env_b = settings(parser, args.b_env, "--b-env")
    for folder in (args.a, args.b):
        if not (folder / "model.json").is_file():
            parser.error(f"{folder}: not a model version folder (no model.json)")
    with tempfile.TemporaryDirectory(prefix="defectlens-compare-") as tmp:
        sides: list[Side] = []
        try:
            for name, model, extra in (("A", args.a, env_a), ("B", args.b, env_b)):
                sides.append(start(name, model, extra, args.threads, Path(tmp) / name))
            a, b = sides
            size = max(
                json.loads((folder / "model.json").read_text())["input"]["height"]
                for folder in (args.a, args.b)
            )
            send_in_turn(a, b, part_images(args.images, size), args.warmup, args.requests)
        finally:
            for side in sides:
                side.client.close()
                stop(side.server)
        report(a, b)
    return 1 if a.errors or b.errors else 0


if __name__ == "__main__":
    sys.exit(main())
