"""The line runner: a thread per configured station, feeding its source's parts to the
service layer, and what each station is doing (connected, last part, parts/min, NG rate,
last error) for `GET /v1/stations`, `/readyz` and `defectlens stations`.

A source that fails is reported and opened again with back-off (0.5 s doubling to 30 s);
the other stations go on. A PLC trigger that arrives while the source is down is answered
with the station's fail-safe verdict, stored like any part.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel

from defectlens.errors import Conflict, DefectLensError, InputError, NotFound, Unavailable
from defectlens.inference.engine_registry import StationNotServed
from defectlens.inference.line.model_check import check_station_model
from defectlens.inference.line.parts import LineAnswer, inspect_within, store_fail_safe
from defectlens.inference.line.sources import (
    FolderPart,
    FrameSource,
    HotFolder,
    SourceError,
    frame_source,
)
from defectlens.inference.line.stations import (
    HotFolderSource,
    LineConfig,
    ModbusLink,
    OpcUaLink,
    StationConfig,
    load_stations,
)
from defectlens.inference.service.core import InspectionService
from defectlens.inference.service.inspection import PartMetadata, inspect_part
from defectlens.inference.service.settings import ServiceSettings

log = logging.getLogger(__name__)

BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 30.0
RATE_WINDOW_S = 60.0


class StationLineStatus(BaseModel):
    """A configured station's line side, as the API, /readyz and the CLI show it."""

    station: str
    source: str
    """The source's kind and where it reads from."""
    plc: str | None = None
    connected: bool
    last_part_at: datetime | None = None
    parts_per_min: float = 0.0
    """Parts answered in the last minute."""
    ng_rate: float | None = None
    """Share of NG among the parts answered since the service started."""
    parts: int = 0
    fail_safe: int = 0
    """Parts answered with the fail-safe verdict (deadline, source down, error)."""
    late: int = 0
    """Parts answered after the deadline (already being stored when it passed)."""
    last_error: str | None = None
    last_error_at: datetime | None = None
    warnings: list[str] = []


@dataclass(frozen=True)
class _Trigger:
    serial: str | None
    deadline: float
    """`time.monotonic()` instant by which the part is answered."""
    answer: concurrent.futures.Future[LineAnswer]
    from_plc: bool
    """A PLC's part is on the conveyor: with the source down it gets the fail-safe verdict,
    stored. An API caller is told the source is down (`Unavailable`) and nothing is stored."""


class StationRunner:
    """One configured station: its source, its thread, its state."""

    def __init__(
        self, service: InspectionService, config: StationConfig, threads: Executor | None = None
    ) -> None:
        self.service = service
        self.config = config
        self.threads = threads
        """Where its triggered parts are inspected (the line's threads)."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._triggers: queue.Queue[_Trigger] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"line-{config.id}", daemon=True)
        self._connected = False
        self._recent: deque[float] = deque()
        self._parts = self._ng = self._fail_safe = self._late = 0
        self._last_part_at: datetime | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._warnings: list[str] = []
        self._waiting: str | None = None
        """Why the hot folder waits for a model (logged once, not on every poll)."""
        self.plc: str | None = None
        """Set by the PLC link that triggers this station."""
        self.model_warning: str | None = None
        """Set at start when the station's promoted model is not the one the file names."""
        source = config.source
        self._folder = HotFolder(source) if source.kind == "hot_folder" else None
        self._camera: FrameSource | None = None if self._folder else frame_source(source)

    # -- control -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def connected(self) -> bool:
        """Whether the source is open (read on every PLC poll: no lock, no status model)."""
        return self._connected

    @property
    def triggerable(self) -> bool:
        """Whether the station takes a frame on a trigger (a camera; not a hot folder)."""
        return self._camera is not None

    def trigger(
        self, serial: str | None = None, from_plc: bool = True
    ) -> concurrent.futures.Future[LineAnswer]:
        """A PLC's (or, `from_plc=False`, an API call's) trigger: grab one frame, inspect it,
        answer within the station's deadline counted from now."""
        answer: concurrent.futures.Future[LineAnswer] = concurrent.futures.Future()
        deadline = time.monotonic() + self.config.deadline_ms / 1000.0
        self._triggers.put(_Trigger(serial, deadline, answer, from_plc))
        return answer

    # -- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        backoff, retry_at = BACKOFF_FIRST_S, 0.0
        source = self.config.source
        interval = getattr(source, "rate_hz", None)
        next_tick = time.monotonic()
        while not self._stop.is_set():
            if not self._connected and time.monotonic() >= retry_at:
                try:
                    self._open()
                    backoff = BACKOFF_FIRST_S
                except SourceError as error:
                    self._failed(str(error))
                    retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, BACKOFF_MAX_S)
            try:
                if self._camera is not None:
                    # Triggers (PLC, API) are served at once; between them, the interval's parts.
                    if interval and time.monotonic() >= next_tick:
                        next_tick += 1.0 / interval
                        if self._connected:
                            deadline = time.monotonic() + self.config.deadline_ms / 1000.0
                            self._record(self._frame_part(None, deadline))
                        else:
                            next_tick = time.monotonic() + 1.0 / interval
                    wait = 0.05
                    if interval:
                        wait = min(wait, max(0.0, next_tick - time.monotonic()))
                    self._serve_trigger(wait)
                elif self._folder is not None:
                    if self._connected:
                        self._poll_folder()
                    source = self.config.source
                    poll_s = source.poll_s if isinstance(source, HotFolderSource) else 0.1
                    self._stop.wait(poll_s if self._connected else 0.1)
            except SourceError as error:
                self._close()
                self._failed(str(error))
                retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, BACKOFF_MAX_S)
            except Exception as error:  # a station's thread must not die: report, go on
                log.exception("station %s: line source failed", self.config.id)
                self._failed(f"unexpected error: {error}")
                self._stop.wait(backoff)
        self._close()
        self._drain()

    def _open(self) -> None:
        if self._folder is not None:
            self._folder.open()
        elif self._camera is not None:
            self._camera.open()
            self._warnings = list(getattr(self._camera, "warnings", []))
        with self._lock:
            self._connected = True
        log.info("station %s: source connected", self.config.id)

    def _close(self) -> None:
        with self._lock:
            self._connected = False
        try:
            if self._folder is not None:
                self._folder.close()
            elif self._camera is not None:
                self._camera.close()
        except Exception:  # closing a broken device must not hide why it broke
            log.exception("station %s: closing the source failed", self.config.id)

    def _serve_trigger(self, timeout: float) -> None:
        try:
            trigger = self._triggers.get(timeout=timeout)
        except queue.Empty:
            return
        answer = trigger.answer
        if not answer.set_running_or_notify_cancel():
            return
        try:
            if not self._connected:
                reason = f"source not connected: {self._last_error or 'not opened yet'}"
                self._source_down(trigger, reason)
                return
            try:
                outcome = self._frame_part(trigger.serial, trigger.deadline)
            except SourceError as error:
                self._source_down(trigger, str(error))
                raise
            self._record(outcome)
            answer.set_result(outcome)
        except SourceError:
            raise
        except BaseException as error:
            if not answer.done():
                answer.set_exception(error)
            raise

    def _source_down(self, trigger: _Trigger, reason: str) -> None:
        """Answer a trigger the source cannot serve: a PLC's part gets the fail-safe verdict
        (stored), an API call an `Unavailable` (nothing stored)."""
        if not trigger.from_plc:
            trigger.answer.set_exception(
                Unavailable(
                    f"station {self.config.id}: {reason}; nothing was inspected or stored",
                    retry_after_s=BACKOFF_FIRST_S,
                )
            )
            return
        result = store_fail_safe(
            self.service, self._metadata(trigger.serial, None), self.config.fail_safe, reason
        )
        outcome = LineAnswer(result, "source")
        self._record(outcome)
        trigger.answer.set_result(outcome)

    def _frame_part(self, serial: str | None, deadline: float) -> LineAnswer:
        assert self._camera is not None
        frame = self._camera.grab()
        metadata = self._metadata(serial, frame.captured_at, camera=frame.camera)
        return inspect_within(
            self.service, frame.data, metadata, deadline, self.config.fail_safe, self.threads
        )

    def _metadata(
        self,
        serial: str | None,
        captured_at: datetime | None,
        camera: str | None = None,
        key: str | None = None,
    ) -> PartMetadata:
        config = self.config
        return PartMetadata(
            station=config.id,
            line=config.line,
            product=config.product,
            serial=serial,
            camera=camera,
            captured_at=captured_at,
            idempotency_key=key,
        )

    def _poll_folder(self) -> None:
        assert self._folder is not None
        for part in self._folder.poll():
            if self._stop.is_set():
                return
            if not self._folder_part(part):
                return  # a transient error: the same file is tried again later

    def _folder_part(self, part: FolderPart) -> bool:
        folder = self._folder
        assert folder is not None
        try:
            data = part.path.read_bytes()
        except FileNotFoundError:
            return True  # taken away meanwhile
        except OSError as error:
            raise SourceError(f"hot folder: cannot read {part.path}: {error.strerror}") from None
        metadata = self._metadata(
            part.serial, part.captured_at, camera="hot_folder", key=part.idempotency_key
        )
        try:
            inspected = inspect_part(self.service, data, metadata)
        except (StationNotServed, NotFound) as error:
            before, self._waiting = self._waiting, str(error)
            self._failed(f"{part.path.name} waits: {error}", quiet=before == self._waiting)
            return False
        except InputError as error:  # this file cannot be inspected: failed/ with the reason
            moved = folder.finish(part, "failed", reason=str(error))
            self._failed(f"{part.path.name} moved to {moved.parent.name}/: {error}")
            return True
        except DefectLensError as error:  # busy, disk full, timeout: try again later
            self._failed(f"{part.path.name} waits: {error}")
            return False
        folder.finish(part, "done")
        self._record(LineAnswer(inspected.result))
        if self._waiting is not None:
            self._waiting = None
            log.info(
                "station %s: hot folder inspects again",
                self.config.id,
                extra={"station": self.config.id},
            )
        return True

    def _drain(self) -> None:
        """Triggers left at shutdown get no answer: their PLC times out and diverts them."""
        while True:
            try:
                trigger = self._triggers.get_nowait()
            except queue.Empty:
                return
            trigger.answer.cancel()

    # -- state -------------------------------------------------------------------------

    def _record(self, answer: LineAnswer) -> None:
        now = time.monotonic()
        with self._lock:
            self._parts += 1
            self._ng += answer.verdict == "NG"
            self._fail_safe += answer.fail_safe is not None
            self._late += answer.late
            self._recent.append(now)
            while self._recent and self._recent[0] < now - RATE_WINDOW_S:
                self._recent.popleft()
            self._last_part_at = datetime.now(UTC)

    def _failed(self, message: str, quiet: bool = False) -> None:
        """Report `message` as the station's last error; `quiet` when it repeats a state
        already logged."""
        if not quiet:
            log.warning(
                "station %s: %s", self.config.id, message, extra={"station": self.config.id}
            )
        with self._lock:
            self._last_error, self._last_error_at = message, datetime.now(UTC)

    def status(self) -> StationLineStatus:
        source = self.config.source
        where = getattr(source, "path", None) or getattr(source, "folder", None)
        where = where if where is not None else getattr(source, "device", "")
        now = time.monotonic()
        with self._lock:
            recent = sum(1 for t in self._recent if t >= now - RATE_WINDOW_S)
            return StationLineStatus(
                station=self.config.id,
                source=f"{source.kind} {where}",
                plc=self.plc,
                connected=self._connected,
                last_part_at=self._last_part_at,
                parts_per_min=float(recent),
                ng_rate=self._ng / self._parts if self._parts else None,
                parts=self._parts,
                fail_safe=self._fail_safe,
                late=self._late,
                last_error=self._last_error,
                last_error_at=self._last_error_at,
                warnings=[*self._warnings, *filter(None, [self.model_warning])],
            )


class LineRunner:
    """Every configured station of this service, and their PLC links."""

    def __init__(self, service: InspectionService, config: LineConfig, source: Path) -> None:
        self.service = service
        self.config = config
        self.source = source
        self.threads = ThreadPoolExecutor(
            config.parts_in_parallel or len(os.sched_getaffinity(0)), "line-inspect"
        )
        """The triggered parts' inspection threads, one a core by default: parts that come
        together are inspected a core each in trigger order, so the first are answered (and
        their results committed) while the last still run, instead of all sharing the cores
        and finishing together."""
        self.stations = {s.id: StationRunner(service, s, self.threads) for s in config.stations}
        self.links: list[_Link] = []

    def start(self) -> None:
        for station in self.config.stations:
            self.service.store.ensure_station(station.id, line=station.line)
            warning = check_station_model(self.service, station, self.source)
            self.stations[station.id].model_warning = warning
        runners = list(self.stations.values())
        # The PLC links before the stations: a server that cannot listen (port taken) fails
        # the start with no station thread left running behind it.
        try:
            if any(isinstance(s.plc, ModbusLink) for s in self.config.stations):
                from defectlens.inference.line.modbus import ModbusPlcServer

                server = ModbusPlcServer(self.config.modbus, runners)
                server.start()
                self.links.append(server)
            if any(isinstance(s.plc, OpcUaLink) for s in self.config.stations):
                from defectlens.inference.line.opcua import (
                    OpcUaPlcHandshake,
                    service_opcua_server,
                )

                sinks = self.service.delivery.sinks if self.service.delivery else []
                handshake = OpcUaPlcHandshake(service_opcua_server(sinks), runners)
                handshake.start()
                self.links.append(handshake)
        except BaseException:
            for link in self.links:
                link.stop()
            raise
        for runner in runners:
            runner.start()

    def trigger(
        self, station: str, serial: str | None = None
    ) -> concurrent.futures.Future[LineAnswer]:
        """An API call's trigger (`POST /v1/stations/{id}/trigger`): the station's source
        takes one frame, inspected as a PLC's part is. `NotFound` for a station not in the
        stations file, `Conflict` for a hot folder."""
        runner = self.stations.get(station)
        if runner is None:
            raise NotFound(f"station {station!r} is not in the stations file {self.source}")
        if not runner.triggerable:
            raise Conflict(
                f"station {station!r} reads a hot folder: its parts arrive as files and cannot "
                "be triggered; only a camera station (camera or simulated) can"
            )
        return runner.trigger(serial, from_plc=False)

    def stop(self) -> None:
        for link in self.links:
            link.stop()
        for runner in self.stations.values():
            runner.stop()
        self.threads.shutdown(wait=True)  # parts in flight store their results
        with contextlib.suppress(OSError):
            snapshot_path(self.service.settings).unlink(missing_ok=True)

    def statuses(self) -> list[StationLineStatus]:
        return [runner.status() for runner in self.stations.values()]

    def problems(self) -> list[str]:
        """For /readyz: each station whose source is not connected."""
        return [
            f"station {s.station}: source {s.source} not connected: {s.last_error or 'opening'}"
            for s in self.statuses()
            if not s.connected
        ]

    def write_snapshot(self) -> None:
        """`<home>/run/<instance>.stations.json`, read by `defectlens stations`."""
        path = snapshot_path(self.service.settings)
        body = {
            "file": str(self.source),
            "updated_at": datetime.now(UTC).isoformat(),
            "stations": [s.model_dump(mode="json") for s in self.statuses()],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(body, indent=2), encoding="utf-8")
        os.replace(temporary, path)


class _Link(Protocol):
    """A PLC link the runner started and stops (Modbus, OPC UA)."""

    def stop(self) -> None: ...


def stations_file(settings: ServiceSettings) -> Path | None:
    """`DEFECTLENS_STATIONS_FILE`, else `<home>/stations.yaml` when it exists."""
    if settings.stations_file is not None:
        return settings.stations_file
    default = settings.home / "stations.yaml"
    return default if default.is_file() else None


def snapshot_path(settings: ServiceSettings) -> Path:
    return settings.home / "run" / f"{settings.instance_id}.stations.json"


async def trigger_station(
    line: LineRunner | None, station: str, serial: str | None = None
) -> LineAnswer:
    """An API call's trigger, awaited without holding the event loop: the stored answer.
    `NotFound` without a stations file or for a station not in it, `Conflict` for a hot
    folder, `Unavailable` when the source is down or the service stops meanwhile."""
    if line is None:
        raise NotFound(
            f"station {station!r}: this service runs no stations file (DEFECTLENS_STATIONS_FILE "
            "or <home>/stations.yaml), so no station can be triggered"
        )
    future = line.trigger(station, serial)
    try:
        return await asyncio.wrap_future(future)
    except (asyncio.CancelledError, concurrent.futures.CancelledError):
        if not future.cancelled():
            raise  # the request itself was cancelled (the client went away)
        raise Unavailable(
            f"station {station!r}: the service is stopping; the part was not inspected"
        ) from None


def start_line(service: InspectionService) -> LineRunner | None:
    """Load the stations file (an `InputError` naming file and line if it is wrong) and
    start its stations; None when there is no stations file."""
    path = stations_file(service.settings)
    if path is None:
        return None
    runner = LineRunner(service, load_stations(path), path)
    runner.start()
    log.info("line side: %d station(s) from %s", len(runner.stations), path)
    return runner
