"""The PLC handshake over OPC UA, on the service's one OPC UA server (the server that also
holds the MES results, `delivery/opcua.py`, with its login and certificate settings): per
station the handshake as variables, and a method for PLCs that call instead (docs/plc.md).

    Objects/DefectLens/Handshake/<station>/    ns = LINE_NAMESPACE_URI, NodeIds "<station>/<name>"
        Trigger, Serial, Ack                   written by the PLC
        Ready, Busy, ResultReady, Error,
        FailSafe, Verdict, DefectCode, Score,
        ElapsedMs, Counter, ResultId           written by the service (read-only to clients)
        Inspect(Serial) -> (Verdict, DefectCode, ResultId)

The variables follow the Modbus cycle: the PLC writes Serial, then Trigger = true; the service
sets Busy, answers within the deadline (ResultReady last); the PLC writes Ack = true and the
service clears the answer and is Ready again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.common.callback import CallbackType, ServerItemCallback

from defectlens.errors import InputError
from defectlens.inference.delivery.opcua import OpcUaSink
from defectlens.inference.line.handshake import PlcAnswer, plc_answer
from defectlens.inference.line.parts import LineAnswer
from defectlens.inference.line.runner import StationRunner
from defectlens.inference.line.stations import OpcUaLink

log = logging.getLogger(__name__)

LINE_NAMESPACE_URI = "urn:defectlens:line"
STATUS_REFRESH_S = 0.5
"""How often an idle station's Ready and Error follow its source."""

_V = ua.VariantType
PLC_VARIABLES: dict[str, ua.VariantType] = {
    "Trigger": _V.Boolean,
    "Serial": _V.String,
    "Ack": _V.Boolean,
}
SERVICE_VARIABLES: dict[str, ua.VariantType] = {
    "Ready": _V.Boolean,
    "Busy": _V.Boolean,
    "ResultReady": _V.Boolean,
    "Error": _V.Boolean,
    "FailSafe": _V.Boolean,
    "Verdict": _V.String,
    "DefectCode": _V.UInt16,
    "Score": _V.Double,
    "ElapsedMs": _V.Double,
    "Counter": _V.UInt32,
    "ResultId": _V.String,
}
_KINDS = {**PLC_VARIABLES, **SERVICE_VARIABLES}
_ZERO: dict[ua.VariantType, Any] = {
    _V.Boolean: False,
    _V.String: "",
    _V.UInt16: 0,
    _V.UInt32: 0,
    _V.Double: 0.0,
}
_CLEARED: dict[str, Any] = {
    "Trigger": False,
    "Ack": False,
    "FailSafe": False,
    "Verdict": "",
    "DefectCode": 0,
    "Score": 0.0,
    "ElapsedMs": 0.0,
    "ResultId": "",
    "Busy": False,
    "ResultReady": False,
}
_CALLBACK_PRIORITY = 40
"""asyncua keeps one listener per priority and event: a priority of the line's own."""


@dataclass
class _Station:
    runner: StationRunner
    ids: dict[str, ua.NodeId]
    counter: int = 0
    triggered_at: float = 0.0
    phase: str = "ready"
    """`ready`, `busy` (inspecting), `answered` (ResultReady, waiting for Ack)."""
    by_id: dict[ua.NodeId, str] = field(default_factory=dict)


def service_opcua_server(sinks: list[Any]) -> OpcUaSink:
    """The service's OPC UA server among the delivery sinks; `InputError` when none runs."""
    for sink in sinks:
        if isinstance(sink, OpcUaSink):
            return sink
    raise InputError(
        "a station's plc link is opcua, and the service runs no OPC UA server: set "
        "DEFECTLENS_OPCUA_ENDPOINT (with DEFECTLENS_OPCUA_USERNAME and _PASSWORD, or the "
        "certificate settings). The handshake shares that server with the MES results "
        "(docs/plc.md)"
    )


class OpcUaPlcHandshake:
    """Every station with `plc: {protocol: opcua}`, on the service's OPC UA server."""

    def __init__(self, server: OpcUaSink, runners: list[StationRunner]) -> None:
        self.server = server
        self.runners = [r for r in runners if isinstance(r.config.plc, OpcUaLink)]
        self.ns = 0
        self._stations: dict[str, _Station] = {}
        self._refresh: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._on_loop(self._start(), timeout_s=30)
        for station in self._stations.values():
            station.runner.plc = f"opcua {self.server.endpoint} {self._path(station)}"

    def stop(self) -> None:
        """Stop acting on writes (the server itself stops with the delivery sinks)."""
        self._on_loop(self._stop(), timeout_s=10)

    def _on_loop(self, coroutine: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.server.loop).result(timeout_s)

    def _path(self, station: _Station) -> str:
        return f"Objects/DefectLens/Handshake/{station.runner.config.id}"

    # -- on the server's loop ----------------------------------------------------------

    async def _start(self) -> None:
        server = self.server.server
        assert self.server.root is not None  # the sink started
        self.ns = ns = await server.register_namespace(LINE_NAMESPACE_URI)
        folder = await self.server.root.add_object(
            _node_id("Handshake", ns), ua.QualifiedName("Handshake", ns)
        )
        for runner in self.runners:
            name = runner.config.id
            parent = await folder.add_object(_node_id(name, ns), ua.QualifiedName(name, ns))
            station = _Station(runner, {})
            for leaf, kind in _KINDS.items():
                node = await parent.add_variable(
                    _node_id(f"{name}/{leaf}", ns),
                    ua.QualifiedName(leaf, ns),
                    ua.Variant(_ZERO[kind], kind),
                )
                if leaf in PLC_VARIABLES:
                    await node.set_writable()
                station.ids[leaf] = node.nodeid
                station.by_id[node.nodeid] = leaf
            await parent.add_method(
                _node_id(f"{name}/Inspect", ns),
                ua.QualifiedName("Inspect", ns),
                self._method(station),
                [_argument("Serial", _V.String, "the part serial (empty: none)")],
                [
                    _argument("Verdict", _V.String, "OK or NG; empty when nothing was stored"),
                    _argument("DefectCode", _V.UInt16, "as the DefectCode variable"),
                    _argument("ResultId", _V.String, "the stored result's id"),
                ],
            )
            self._stations[name] = station
            await self._idle(station)
        server.subscribe_server_callback(CallbackType.PostWrite, self._written)
        self._refresh = asyncio.get_running_loop().create_task(self._follow_sources())

    async def _stop(self) -> None:
        self.server.server.unsubscribe_server_callback(CallbackType.PostWrite, self._written)
        if self._refresh is not None:
            self._refresh.cancel()

    async def _set(self, station: _Station, values: dict[str, Any]) -> None:
        write = self.server.server.write_attribute_value
        for leaf, value in values.items():
            await write(station.ids[leaf], ua.DataValue(ua.Variant(value, _KINDS[leaf])))

    async def _idle(self, station: _Station) -> None:
        connected = station.runner.connected
        await self._set(station, {"Ready": True, "Error": not connected})

    async def _follow_sources(self) -> None:
        """Between parts, Error follows the station's source (as on Modbus)."""
        while True:
            await asyncio.sleep(STATUS_REFRESH_S)
            try:
                for station in self._stations.values():
                    if station.phase == "ready":
                        await self._idle(station)
            except Exception:  # the loop must go on: the next pass writes them again
                log.exception("OPC UA handshake: updating Ready/Error failed")

    async def _written(self, event: ServerItemCallback, _dispatcher: Any) -> None:
        """After every client write: a Trigger or Ack of a station moves its handshake."""
        params: ua.WriteParameters = event.request_params
        results: list[ua.StatusCode] = event.response_params or []
        for write, status in zip(params.NodesToWrite, results, strict=False):
            if not status.is_good() or write.AttributeId != ua.AttributeIds.Value:
                continue
            for station in self._stations.values():
                leaf = station.by_id.get(write.NodeId)
                if leaf == "Trigger" and write.Value.Value.Value:
                    await self._triggered(station)
                elif leaf == "Ack" and write.Value.Value.Value:
                    await self._acknowledged(station)

    async def _triggered(self, station: _Station) -> None:
        if station.phase != "ready":
            return  # only acted on while Ready (as on Modbus)
        station.phase = "busy"
        station.triggered_at = time.perf_counter()
        serial_value = self.server.server.read_attribute_value(station.ids["Serial"]).Value
        serial = str(serial_value.Value).strip() if serial_value and serial_value.Value else None
        await self._set(station, {"Ready": False, "Busy": True})
        loop = asyncio.get_running_loop()
        future = station.runner.trigger(serial or None)
        future.add_done_callback(
            lambda done: asyncio.run_coroutine_threadsafe(self._answer(station, done), loop)
        )

    async def _answer(self, station: _Station, done: concurrent.futures.Future[LineAnswer]) -> None:
        answer = plc_answer(station.runner.config.id, done, station.runner.service.registry)
        station.counter = (station.counter + 1) & 0xFFFFFFFF
        elapsed = (time.perf_counter() - station.triggered_at) * 1000.0
        await self._set(
            station,
            {
                "Verdict": answer.verdict or "",
                "DefectCode": answer.defect_code,
                "Score": answer.score,
                "ElapsedMs": round(elapsed, 1),
                "ResultId": answer.result_id or "",
                "FailSafe": answer.fail_safe,
                "Error": answer.error,
                "Counter": station.counter,
                "Busy": False,
                "ResultReady": True,  # last: a PLC that sees it reads a whole answer
            },
        )
        station.phase = "answered"

    async def _acknowledged(self, station: _Station) -> None:
        if station.phase != "answered":
            return
        await self._set(station, _CLEARED)
        station.phase = "ready"
        await self._idle(station)

    def _method(self, station: _Station) -> Any:
        async def inspect(parent: ua.NodeId, serial: ua.Variant) -> list[ua.Variant]:
            text = str(serial.Value).strip() if serial.Value else ""
            answer: PlcAnswer = plc_answer(
                station.runner.config.id,
                await _settled(station.runner.trigger(text or None)),
                station.runner.service.registry,
            )
            return [
                ua.Variant(answer.verdict or "", _V.String),
                ua.Variant(answer.defect_code, _V.UInt16),
                ua.Variant(answer.result_id or "", _V.String),
            ]

        return inspect


async def _settled(
    future: concurrent.futures.Future[LineAnswer],
) -> concurrent.futures.Future[LineAnswer]:
    """`future` once it is done, awaited without blocking the server's loop."""
    await asyncio.wait([asyncio.wrap_future(future)])
    return future


def _node_id(text: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(ns))


def _argument(name: str, kind: ua.VariantType, description: str) -> ua.Argument:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(ua.Int32(kind.value))
    argument.ValueRank = -1
    argument.Description = ua.LocalizedText(description)
    return argument
