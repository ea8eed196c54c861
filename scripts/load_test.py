"""Load test of the inspection service over loopback, beside the raw ONNX Runtime figures.

Starts `defectlens serve` on 127.0.0.1 (a free port, a temporary workspace, a `line` key),
sends synthetic part images from 1, 4 and 16 concurrent clients (bare HTTP/1.1 keep-alive
connections: one blocking client, as a line station calls, at 1 client and asyncio ones for
the concurrent levels; or `--client httpx`), and prints per level: throughput, p50/p99
end-to-end latency and errors. In the same run, before and after the service, it times the
same model in this process with `Engine.run` on the same images and thread count (one caller,
then 4 callers in parallel), and prints the service overhead (p50 end-to-end minus p50 model
time) and the throughput ratio at 4 clients versus the faster raw 4-caller figure (and, for
reference, versus the raw model split as the service runs it by default). Then it
repeats both comparisons in `--rounds` short rounds that alternate the raw model and the
service (1 client: `--pair-chunk` raw runs, then as many requests, in turn; then raw 4
callers, 4 clients), so that each pair is measured within moments of each other, and prints
the median and range over the rounds: the machine's speed drifts by ±20% from minute to
minute.

    .venv/bin/python scripts/load_test.py --model MODEL_DIR      # a version folder
    .venv/bin/python scripts/load_test.py                        # trains a 256 px model first

The load generator shares the machine's cores with the service, as a line's PLC would not:
the figures are a lower bound for the service. It prints the CPU each side used per part;
httpx costs several times the bare client's CPU, taken from the service's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import cv2
import httpx
import numpy as np

from defectlens.datasets.images import decode_image
from defectlens.datasets.synthetic import DEFECT_KINDS, generate_dataset, make_part
from defectlens.inference.engine import Engine

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STATION = "bench"


@dataclass
class Level:
    clients: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    model_ms: list[float]
    engine_ms: list[float]
    """The service's `timings_ms.total`: decode, preprocess, model and postprocess."""
    service_cpu_s: float
    """CPU time the service process used during the level (NaN where it cannot be read)."""
    client_cpu_s: float
    """CPU time this process (the load generator) used during the level."""

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model version folder (default: train one)")
    parser.add_argument("--requests", type=int, default=200, help="requests per level")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    parser.add_argument("--images", type=int, default=24, help="distinct part images")
    parser.add_argument("--timeout", type=float, default=600, help="stop after this many s")
    parser.add_argument(
        "--rounds", type=int, default=5, help="paired rounds of raw model and service (0: none)"
    )
    parser.add_argument(
        "--round-requests", type=int, default=60, help="requests (and raw runs) per round step"
    )
    parser.add_argument(
        "--pair-chunk",
        type=int,
        default=10,
        help="1-client step of a round: this many raw runs, then this many requests, in turn",
    )
    parser.add_argument(
        "--client",
        choices=("socket", "httpx"),
        default="socket",
        help="load generator: bare HTTP/1.1, blocking at 1 client and on asyncio streams above "
        "(light), or httpx.AsyncClient at every level",
    )
    parser.add_argument(
        "--spin",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the service's DEFECTLENS_ONNX_SPINNING (default: the service's default)",
    )
    parser.add_argument(
        "--split",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the service's DEFECTLENS_ONNX_SPLIT_OVERLAPPING (default: the service's default)",
    )
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout

    with tempfile.TemporaryDirectory(prefix="defectlens-load-") as tmp:
        home = Path(tmp) / "home"
        model = args.model or train_model(Path(tmp))
        engine = Engine(model, threads=args.threads)
        size = engine.card.input.height
        images = part_images(args.images, size)
        print(f"model {engine.card.name} {engine.card.version}: {size} px, {args.threads} threads")
        spin = "service default" if args.spin is None else str(args.spin).lower()
        split = "service default" if args.split is None else str(args.split).lower()
        print(
            f"service: DEFECTLENS_ONNX_SPINNING {spin}, DEFECTLENS_ONNX_SPLIT_OVERLAPPING {split}"
        )
        print(
            f"raw model: Engine.run, one {args.threads}-thread session (and, for reference, split)"
        )
        print(f"load generator: {args.client} client, in this process")
        print(f"{len(images)} synthetic parts, {args.requests} requests per level, loopback\n")
        # The raw model is timed before and after the service (the machine's speed drifts);
        # the ratio takes the faster of the two, the stricter comparison.
        batches = model_batches(engine, images)
        raw_before = raw_model(engine, batches, args.requests, parallel=4)
        # For reference: the raw model as the service runs it by default, overlapping runs
        # on a second, single-threaded session.
        split_engine = Engine(model, threads=args.threads, single_thread_session=True)
        split_batches = model_batches(split_engine, images)
        split_before = raw_throughput(
            split_engine, split_batches, args.requests, parallel=4, split=True
        )[0]

        settings: dict[str, str] = {}
        if args.spin is not None:
            settings["DEFECTLENS_ONNX_SPINNING"] = str(args.spin).lower()
        if args.split is not None:
            settings["DEFECTLENS_ONNX_SPLIT_OVERLAPPING"] = str(args.split).lower()
        server, port, key = start_service(model, home, args.threads, settings, "load-test")
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server, deadline, home)
            levels = [int(n) for n in args.levels.split(",")]
            paired = Paired(
                engine, images, batches, args.rounds, args.round_requests, args.pair_chunk
            )
            results, rounds = asyncio.run(
                run_levels(
                    url, key, images, levels, args.requests, deadline, server.pid, args.client,
                    paired,
                )
            )  # fmt: skip
        finally:
            stop(server)
        raw_after = raw_model(engine, batches, args.requests, parallel=4)
        split_after = raw_throughput(
            split_engine, split_batches, args.requests, parallel=4, split=True
        )[0]

    print_report(results, raw_before, raw_after, args.threads, max(split_before, split_after))
    print_rounds(rounds, args.round_requests, args.pair_chunk, paired.floor_ms)
    failed = any(level.errors for level in results) or any(r.errors for r in rounds)
    return 1 if failed else 0


def train_model(tmp: Path) -> Path:
    """A 256 px model on generated parts, through the `defectlens train` command."""
    data = generate_dataset(tmp / "data", seed=0)
    print("training a 256 px model on generated parts (about a minute)...", flush=True)
    output = run(
        [str(BIN / "defectlens"), "train", str(ROOT / "configs" / "anomaly.yaml"),
         "--data", str(data), "--out", str(tmp / "models")],
        dict(os.environ),
    )  # fmt: skip
    return Path(output.strip().splitlines()[-1])


def part_images(count: int, size: int) -> list[bytes]:
    """PNG-encoded synthetic parts: mostly good, every fourth one with a defect."""
    rng = np.random.default_rng(7)
    out = []
    for index in range(count):
        defect = DEFECT_KINDS[index // 4 % len(DEFECT_KINDS)] if index % 4 == 3 else None
        image, _ = make_part(rng, size=size, defect=defect)
        ok, encoded = cv2.imencode(".png", image)
        assert ok
        out.append(encoded.tobytes())
    return out


async def run_levels(
    url: str,
    key: str,
    images: list[bytes],
    levels: list[int],
    requests: int,
    deadline: float,
    server_pid: int,
    client_kind: str,
    paired: Paired,
) -> tuple[list[Level], list[Round]]:
    headers = {"X-API-Key": key, "Content-Type": "image/png"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as http:

        def connect(clients: int) -> Poster:
            """A poster for one of `clients` concurrent clients."""
            if client_kind == "httpx":
                return HttpxPoster(http)
            return BlockingPoster(url, key) if clients == 1 else SocketPoster(url, key)

        warm = connect(1)
        for image in images[:8]:  # warm-up: connections, caches, the first SQLite pages
            await warm.post(f"/v1/inspect?station={STATION}", image)
        await warm.close()
        out = []
        for clients in levels:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                print(f"time is up before {clients} clients; stopping")
                break
            level = await asyncio.wait_for(
                one_level(connect, images, clients, requests, server_pid), remaining
            )
            out.append(level)
            print(
                f"  {clients:>2} clients: {level.throughput:7.1f} parts/s, "
                f"p50 {percentile(level.latencies_ms, 50):6.1f} ms, "
                f"p99 {percentile(level.latencies_ms, 99):6.1f} ms, errors {level.errors}",
                flush=True,
            )
        await paired.measure_floor(connect)
        rounds = []
        for index in range(paired.rounds):
            if time.monotonic() >= deadline:
                print("time is up before the paired rounds end; stopping")
                break
            rounds.append(await paired.round(connect, server_pid))
            last = rounds[-1]
            print(
                f"  round {index + 1}: raw model p50 {last.raw_ms:.2f} ms, "
                f"overhead {last.overhead_ms:.2f} ms "
                f"({last.own_overhead_ms:.2f} around the service's own model time), "
                f"ratio {last.ratio:.2f}",
                flush=True,
            )
        return out, rounds


@dataclass
class Round:
    """One paired round: each service figure next to the raw model's, measured in turn."""

    raw_ms: float
    """p50 raw model with 1 caller in the round: how fast the machine was then."""
    overhead_ms: float
    """p50 end to end at 1 client − p50 raw model with 1 caller."""
    own_overhead_ms: float
    """p50 over the same requests of end to end − the model time the service reported for
    that request: what the service adds around its own model run, immune to drift."""
    ratio: float
    """parts/s at 4 clients ÷ raw runs/s with 4 callers."""
    errors: int


class Paired:
    """Alternates the raw model (in this process) and the service, a short step each."""

    def __init__(
        self,
        engine: Engine,
        images: list[bytes],
        batches: list[np.ndarray],
        rounds: int,
        count: int,
        chunk: int,
    ) -> None:
        self.engine = engine
        self.images = images
        self.batches = batches
        self.rounds = rounds
        self.count = count
        self.chunk = max(1, chunk)
        self.floor_ms: dict[str, float] = {}
        """p50 of requests the service answers without the model, by what they were."""

    async def measure_floor(self, connect: Callable[[int], Poster]) -> None:
        """One client, one request at a time: the service's answer without the model."""
        poster = connect(1)
        for name, expected, path, body in (
            ("an empty body (422: HTTP, key check, error)", 422,
             f"/v1/inspect?station={STATION}", b""),
            ("an unknown station (404: also the thread hop, one store read)", 404,
             "/v1/inspect?station=no-such-station", self.images[0]),
        ):  # fmt: skip
            times = []
            for _ in range(self.count):
                start = time.perf_counter()
                status, _ = await poster.post(path, body)
                times.append((time.perf_counter() - start) * 1000)
                if status != expected:
                    raise SystemExit(f"floor: {path} answered {status}, expected {expected}")
            self.floor_ms[name] = percentile(times, 50)
        await poster.close()

    async def round(self, connect: Callable[[int], Poster], server_pid: int) -> Round:
        raw_one, one, around, errors = await self.one_client(connect)
        raw_four = raw_throughput(self.engine, self.batches, self.count, parallel=4)[0]
        four = await one_level(connect, self.images, 4, self.count, server_pid)
        raw_p50 = percentile(raw_one, 50)
        overhead = percentile(one, 50) - raw_p50
        ratio = four.throughput / raw_four
        return Round(raw_p50, overhead, percentile(around, 50), ratio, errors + four.errors)

    async def one_client(
        self, connect: Callable[[int], Poster]
    ) -> tuple[list[float], list[float], list[float], int]:
        """(raw ms, end-to-end ms, end-to-end − the service's model ms, errors) of `count`
        raw runs and `count` requests from one client, taken `chunk` at a time in turn: each
        half of the pair sees the same phases of the machine, to within a chunk's time."""
        poster = connect(1)
        raw: list[float] = []
        latencies: list[float] = []
        around: list[float] = []
        errors = 0
        for index in range(self.count):
            if index % self.chunk == 0:
                runs = min(self.chunk, self.count - index)
                raw += raw_calls(self.engine, self.batches, runs, first=index)
            path = f"/v1/inspect?station={STATION}&serial=LT-pair-{index}"
            answer = await timed_post(poster, path, self.images[index % len(self.images)])
            if answer is not None and answer[0] == 200:
                latencies.append(answer[1])
                around.append(answer[1] - answer[2]["timings_ms"]["model"])
            else:
                errors += 1
        await poster.close()
        return raw, latencies, around, errors


class Poster(Protocol):
    """One client's connection: POST an image, get (status, body). The body is parsed after
    the clock stops (`timed_post`): parsing is the client's time, not the service's."""

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


class HttpxPoster:
    """Through a shared `httpx.AsyncClient` (its connection pool)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        response = await self.http.post(path, content=body)
        return response.status_code, response.content

    async def close(self) -> None:
        pass


class SocketPoster:
    """A bare HTTP/1.1 keep-alive connection on asyncio streams: about a tenth of httpx's
    CPU per request, so the load generator takes less of the cores the service runs on."""

    def __init__(self, url: str, key: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))
        self.head = f"Host: {host}\r\nX-API-Key: {key}\r\nContent-Type: image/png\r\n"
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(*self.address)
        reader, writer = self.streams
        try:
            request = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
            writer.write(request.encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length = next(
                int(line.split(":", 1)[1])
                for line in lines
                if line.lower().startswith("content-length:")
            )
            payload = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration) as error:
            await self.close()
            raise httpx.TransportError(f"{type(error).__name__}: {error}") from error
        return status, payload

    async def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class LineClient:
    """One blocking HTTP/1.1 keep-alive connection, the way a line station calls the service:
    send the part, wait for the answer. After the answer's bytes arrive it only reads them,
    where an asyncio client first wakes its event loop and resumes a task (0.08 ms later
    than this one at the median, requests alternating between the two against one service),
    so at one client it adds the least to the end-to-end figure."""

    def __init__(self, url: str, key: str) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))
        self.head = f"Host: {host}\r\nX-API-Key: {key}\r\nContent-Type: image/png\r\n"
        self.connection: socket.socket | None = None
        self.reader: BinaryIO | None = None

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """(status, body) of one POST; `OSError` or `ValueError` if the connection fails."""
        if self.connection is None or self.reader is None:
            self.connection = socket.create_connection(self.address)
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reader = self.connection.makefile("rb")
        request = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
        try:
            self.connection.sendall(request.encode() + body)
            status_line = self.reader.readline()
            fields = status_line.split(b" ", 2)
            if len(fields) < 2:
                raise ValueError(f"not an HTTP status line: {status_line!r}")
            status = int(fields[1])
            length = 0
            while (line := self.reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            payload = self.reader.read(length)
            if len(payload) < length:
                raise ValueError(f"the answer ended after {len(payload)} of {length} bytes")
        except (OSError, ValueError):
            self.close()
            raise
        return status, payload

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = self.reader = None


class BlockingPoster:
    """A `LineClient` behind the `Poster` interface, for a level of one client: its `post`
    blocks the event loop, which has nothing else to run then."""

    def __init__(self, url: str, key: str) -> None:
        self.client = LineClient(url, key)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            return self.client.post(path, body)
        except (OSError, ValueError) as error:
            raise httpx.TransportError(f"{type(error).__name__}: {error}") from error

    async def close(self) -> None:
        self.client.close()


async def timed_post(poster: Poster, path: str, body: bytes) -> tuple[int, float, Any] | None:
    """(status, end-to-end ms, JSON body of a 200 or None) of one request; None if the
    connection failed."""
    start = time.perf_counter()
    try:
        status, payload = await poster.post(path, body)
    except httpx.HTTPError:
        return None
    elapsed = (time.perf_counter() - start) * 1000
    return status, elapsed, json.loads(payload) if status == 200 else None


async def one_level(
    connect: Callable[[int], Poster],
    images: list[bytes],
    clients: int,
    requests: int,
    server_pid: int,
) -> Level:
    counter = iter(range(requests))
    latencies: list[float] = []
    model_ms: list[float] = []
    engine_ms: list[float] = []
    errors = 0

    async def client() -> None:
        nonlocal errors
        poster = connect(clients)
        for index in counter:
            path = f"/v1/inspect?station={STATION}&serial=LT-{clients}-{index}"
            answer = await timed_post(poster, path, images[index % len(images)])
            if answer is None:
                errors += 1
                continue
            status, ms, result = answer
            latencies.append(ms)
            if status == 200:
                model_ms.append(result["timings_ms"]["model"])
                engine_ms.append(result["timings_ms"]["total"])
            else:
                errors += 1
        await poster.close()

    start, service_cpu, client_cpu = time.perf_counter(), process_cpu(server_pid), cpu()
    await asyncio.gather(*(client() for _ in range(clients)))
    seconds = time.perf_counter() - start
    return Level(
        clients, requests, errors, seconds, latencies, model_ms, engine_ms,
        process_cpu(server_pid) - service_cpu, cpu() - client_cpu,
    )  # fmt: skip


def cpu() -> float:
    """CPU seconds this process has used, all threads."""
    times = os.times()
    return times.user + times.system


def process_cpu(pid: int) -> float:
    """CPU seconds process `pid` has used (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def model_batches(engine: Engine, images: list[bytes]) -> list[np.ndarray]:
    """The images as the model's input batches of one, warmed up."""
    batches = [engine.prepare(decode_image(data, "part"))[np.newaxis] for data in images]
    for batch in batches[:4]:
        engine.run(batch)
    return batches


def raw_calls(engine: Engine, batches: list[np.ndarray], runs: int, first: int = 0) -> list[float]:
    """Milliseconds of each `Engine.run` from one caller (images from index `first` on)."""
    times = []
    for index in range(first, first + runs):
        start = time.perf_counter()
        engine.run(batches[index % len(batches)])
        times.append((time.perf_counter() - start) * 1000)
    return times


def raw_throughput(
    engine: Engine, batches: list[np.ndarray], runs: int, parallel: int, split: bool = False
) -> tuple[float, float]:
    """(runs/s, CPU ms per run) of `Engine.run` from `parallel` callers at once; `split`: on
    the single-threaded session, as the service runs parts that overlap."""

    def work(index: int) -> None:
        engine.run(batches[index % len(batches)], single_thread=split)

    start, used = time.perf_counter(), cpu()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(work, range(runs)))
    return runs / (time.perf_counter() - start), (cpu() - used) * 1000 / runs


def raw_model(
    engine: Engine, batches: list[np.ndarray], runs: int, parallel: int
) -> tuple[list[float], float, float]:
    """(per-call ms of `Engine.run` from one caller, runs/s with `parallel` callers, CPU ms
    per run with `parallel` callers)."""
    return raw_calls(engine, batches, runs), *raw_throughput(engine, batches, runs, parallel)


def print_report(
    levels: list[Level],
    raw_before: tuple[list[float], float, float],
    raw_after: tuple[list[float], float, float],
    threads: int,
    raw_split: float,
) -> None:
    # The faster of the two timings of the raw model, the stricter comparison.
    raw_one = min(raw_before[0], raw_after[0], key=lambda times: percentile(times, 50))
    raw_parallel = max(raw_before[1], raw_after[1])
    raw_p50 = percentile(raw_one, 50)
    raw_throughput = 1000 / statistics.fmean(raw_one)
    print(f"\nraw ONNX Runtime (Engine.run, {threads} threads, same images, same process run):")
    before, after = percentile(raw_before[0], 50), percentile(raw_after[0], 50)
    print(
        f"  1 caller : p50 {raw_p50:.2f} ms, p99 {percentile(raw_one, 99):.2f} ms, "
        f"{raw_throughput:.1f} runs/s (p50 before the service {before:.2f}, after {after:.2f})"
    )
    print(
        f"  4 callers: {raw_parallel:.1f} runs/s (before the service {raw_before[1]:.1f}, after "
        f"{raw_after[1]:.1f}), {min(raw_before[2], raw_after[2]):.1f} ms CPU per run"
    )
    print(f"  4 callers, overlapping runs on one thread each (split): {raw_split:.1f} runs/s")
    print("\nservice over loopback:")
    header = ("clients", "parts/s", "p50 ms", "p99 ms", "model p50", "errors", "CPU ms/part")
    print("  " + " ".join(f"{name:>{len(name) if len(name) > 7 else 7}}" for name in header))
    for level in levels:
        p50, p99 = percentile(level.latencies_ms, 50), percentile(level.latencies_ms, 99)
        done = max(1, level.requests - level.errors)
        service_cpu = level.service_cpu_s * 1000 / done
        client_cpu = level.client_cpu_s * 1000 / done
        print(
            f"  {level.clients:>7} {level.throughput:>7.1f} {p50:>7.1f} {p99:>7.1f} "
            f"{percentile(level.model_ms, 50):>9.1f} {level.errors:>7} "
            f"{service_cpu:>5.1f} + {client_cpu:.1f}"
        )
    print("  (CPU ms/part: the service process + the load generator, per answered part)")
    by_clients = {level.clients: level for level in levels}
    if 1 in by_clients:
        one = by_clients[1]
        note = phase_note(before, after, percentile(one.model_ms, 50))
        if note:
            print(f"\n{note}")
        overhead = percentile(one.latencies_ms, 50) - raw_p50
        own = percentile(one.latencies_ms, 50) - percentile(one.model_ms, 50)
        print(f"\np50 service overhead at 1 client (end-to-end - raw model): {overhead:.2f} ms")
        # The same difference with the model time the service measured on the same requests:
        # immune to the machine being busier in one phase than in the other.
        print(f"  (end-to-end - the service's own model time, same requests: {own:.2f} ms)")
        engine_side = percentile(one.engine_ms, 50) - percentile(one.model_ms, 50)
        print(
            f"  of which decode, preprocess and postprocess: {engine_side:.2f} ms; HTTP, auth, "
            f"thread hop, image retention and the stored result: {own - engine_side:.2f} ms"
        )
    if 4 in by_clients:
        ratio = by_clients[4].throughput / raw_parallel
        print(f"throughput at 4 clients / raw model with 4 callers: {ratio:.2f}")
        split_ratio = by_clients[4].throughput / raw_split
        print(f"  (/ the split raw model with 4 callers: {split_ratio:.2f})")


SPEED_CHANGE = 1.2
"""A ratio of model times that means the machine changed speed between two measurements."""


def phase_note(raw_before_ms: float, raw_after_ms: float, service_model_ms: float) -> str | None:
    """A warning when the raw model's p50 before and after the service, or the model's p50
    inside the service at 1 client, differ by more than `SPEED_CHANGE`: the machine changed
    speed during the run, so the whole-level comparisons mix two speeds."""
    times = (raw_before_ms, raw_after_ms, service_model_ms)
    if min(times) <= 0 or max(times) / min(times) <= SPEED_CHANGE:
        return None
    return (
        f"note: the machine changed speed during the run (model p50: raw before "
        f"{raw_before_ms:.2f} ms, raw after {raw_after_ms:.2f} ms, in the service at 1 client "
        f"{service_model_ms:.2f} ms); the whole-level figures below compare different speeds: "
        "read the paired rounds"
    )


def print_rounds(rounds: list[Round], count: int, chunk: int, floor_ms: dict[str, float]) -> None:
    if floor_ms:
        print("\nfloor at 1 client, p50 end to end:")
        for name, ms in floor_ms.items():
            print(f"  {ms:6.2f} ms  {name}")
    if not rounds:
        return
    overheads = [r.overhead_ms for r in rounds]
    ratios = [r.ratio for r in rounds]
    errors = sum(r.errors for r in rounds)
    print(
        f"\npaired rounds ({len(rounds)}; per step {count} raw runs and {count} requests, at 1 "
        f"client {chunk} of each in turn; {errors} errors):"
    )
    print(
        f"  p50 overhead at 1 client: median {statistics.median(overheads):.2f} ms "
        f"({min(overheads):.2f}–{max(overheads):.2f})"
    )
    around = [r.own_overhead_ms for r in rounds]
    print(
        f"    the same requests against the model time the service reported for each: "
        f"median {statistics.median(around):.2f} ms ({min(around):.2f}–{max(around):.2f})"
    )
    print(
        f"  throughput ratio at 4 clients: median {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}–{max(ratios):.2f})"
    )


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def start_service(
    model: Path, home: Path, threads: int, settings: dict[str, str], key_name: str
) -> tuple[subprocess.Popen[str], int, str]:
    """`defectlens serve` on a free loopback port, on a SQLite workspace at `home` with
    `threads` ONNX Runtime threads, no deployment polling and the `DEFECTLENS_*` `settings`,
    with `model` promoted to the station: (the process, its port, a new `line` key). Not yet
    ready."""
    env = {
        **os.environ,
        "DEFECTLENS_HOME": str(home),
        "DEFECTLENS_THREADS": str(threads),
        "DEFECTLENS_DEPLOYMENT_POLL_S": "0",
        **settings,
    }
    env.pop("DEFECTLENS_DATABASE_URL", None)
    cli = [str(BIN / "defectlens")]
    run([*cli, "models", "promote", str(model), "--station", STATION], env)
    key = run([*cli, "keys", "create", "--role", "line", "--name", key_name], env)
    port = free_port()
    # The service logs a line per request: to a file, since a pipe nobody reads would fill
    # and stall it.
    with open(home / "service.log", "w") as log_file:
        server = subprocess.Popen(
            [*cli, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
        )
    return server, port, key.strip().splitlines()[-1]


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[str], deadline: float, home: Path) -> None:
    limit = min(deadline, time.monotonic() + 120)
    while time.monotonic() < limit:
        if server.poll() is not None:
            log_tail = (home / "service.log").read_text(errors="replace")[-4000:]
            raise SystemExit(f"the service exited:\n{log_tail}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the service did not become ready in time")


def stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
