"""The OPC UA sink: an OPC UA server (asyncua) inside the service, holding per station the
last result in the fields of OPC 40100 (Machine Vision) `ResultDataType` where they fit, and
OK/NG counters. A result counts as delivered once it is written to the address space.

    Objects/DefectLens/<station>/            ns = NAMESPACE_URI, string NodeIds:
        Result/ResultId, PartId, ...         "<station>/Result/<field>"
        Result/ProcessingTimes/StartTime...  "<station>/Result/ProcessingTimes/<field>"
        OkCount, NgCount, CountsSince, Line  "<station>/<field>"

`ResultId` is written after the other fields: a client that watches it reads a whole result.
The server runs its own asyncio loop in a thread; `send` hands each write to it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

from defectlens.errors import InputError
from defectlens.inference.delivery.sink import DeliveryFailed, RecentIds, Sink

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:defectlens:results"
RESULT_STATE_COMPLETED = 1
"""OPC 40100 ResultStateDataType: 1 = Completed (processing carried out correctly); the
verdict is in `Verdict` (and `ResultContent`), not in the state."""
"""Result ids remembered per station, so a result sent again is not counted twice."""

Value = tuple[Any, ua.VariantType]

RESULT_FIELDS: dict[str, ua.VariantType] = {
    "PartId": ua.VariantType.String,
    "ProductId": ua.VariantType.String,
    "ResultState": ua.VariantType.Int32,
    "CreationTime": ua.VariantType.DateTime,
    "InternalRecipeId": ua.VariantType.String,
    "InternalConfigurationId": ua.VariantType.String,
    "Verdict": ua.VariantType.String,
    "Score": ua.VariantType.Double,
    "Threshold": ua.VariantType.Double,
    "DefectCount": ua.VariantType.Int32,
    "ResultContent": ua.VariantType.String,
    "ResultId": ua.VariantType.String,
}
PROCESSING_FIELDS: dict[str, ua.VariantType] = {
    "StartTime": ua.VariantType.DateTime,
    "EndTime": ua.VariantType.DateTime,
    "ProcessingDuration": ua.VariantType.Double,
}


def _time(text: Any) -> datetime | None:
    return None if text is None else datetime.fromisoformat(str(text))


def result_values(payload: dict[str, Any]) -> dict[str, Any]:
    """The Result variables of one payload, by path under the station (`ProcessingTimes/`
    for the ProcessingTimesDataType fields; durations in milliseconds, as OPC UA's
    Duration)."""
    received = _time(payload.get("received_at"))
    took = payload.get("processing_ms")
    done = None if received is None or took is None else received + timedelta(milliseconds=took)
    model = payload.get("model") or {}
    return {
        "PartId": payload.get("serial"),
        "ProductId": payload.get("product"),
        "ResultState": RESULT_STATE_COMPLETED,
        "CreationTime": done or received,
        "InternalRecipeId": f"{model.get('name')}/{model.get('version')}",
        "InternalConfigurationId": model.get("version"),
        "Verdict": payload["verdict"],
        "Score": float(payload["score"]),
        "Threshold": float(payload["threshold"]),
        "DefectCount": len(payload.get("defects") or []),
        "ResultContent": json.dumps(payload, separators=(",", ":"), sort_keys=True),
        "ProcessingTimes/StartTime": received,
        "ProcessingTimes/EndTime": done,
        "ProcessingTimes/ProcessingDuration": None if took is None else float(took),
        "ResultId": payload["result_id"],  # last: a client watching it reads a whole result
    }


def _node_id(text: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(ns))


class _Users(UserManager):
    """One user name and password; anything else is refused."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username == self.username and hmac.compare_digest(
            (password or "").encode(), self.password.encode()
        ):
            return User(role=UserRole.User, name=username)
        log.warning("OPC UA client refused: user %r", username)
        return None


@dataclass
class _Station:
    nodes: dict[str, Node]
    counts: dict[str, int] = field(default_factory=lambda: {"OK": 0, "NG": 0})
    last_id: str = ""
    seen: RecentIds = field(default_factory=RecentIds)


class OpcUaSink(Sink):
    """Serves results at `endpoint` (opc.tcp://host:port/path). With `username`, clients
    must log in (anonymous refused); with `certificate` and `private_key` (PEM or DER), only
    Basic256Sha256 signed and encrypted endpoints are offered."""

    name = "opcua"

    def __init__(
        self,
        endpoint: str,
        username: str | None = None,
        password: str | None = None,
        certificate: Path | None = None,
        private_key: Path | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise InputError(
                f"DEFECTLENS_OPCUA_ENDPOINT {endpoint!r}: expected opc.tcp://host:port/path"
            )
        if (certificate is None) != (private_key is None):
            raise InputError(
                "DEFECTLENS_OPCUA_CERTIFICATE and DEFECTLENS_OPCUA_PRIVATE_KEY go together: "
                "set both, or neither for an unencrypted server"
            )
        if username and not password:
            raise InputError("DEFECTLENS_OPCUA_USERNAME is set without DEFECTLENS_OPCUA_PASSWORD")
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.since = datetime.now(UTC)
        self._stations: dict[str, _Station] = {}
        self.ns = 0
        self.root: Node | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="opcua", daemon=True)
        self._thread.start()
        users = _Users(username, password or "") if username else None
        self.server = Server(user_manager=users)
        try:
            self._call(self._start(users is not None, certificate, private_key), timeout_s=60)
        except OSError as error:
            self._stop_loop()
            raise InputError(
                f"OPC UA server cannot listen on {endpoint}: {error.strerror or error}. Free the "
                "port or set DEFECTLENS_OPCUA_ENDPOINT to another"
            ) from error
        except BaseException:
            self._stop_loop()
            raise

    async def _start(
        self, with_users: bool, certificate: Path | None, private_key: Path | None
    ) -> None:
        server = self.server
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("DefectLens inspection results")
        if certificate is not None and private_key is not None:
            await server.load_certificate(str(certificate))
            await server.load_private_key(str(private_key))
            # SignAndEncrypt only: a Sign endpoint would let a client read results in clear.
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens(
            [ua.UserNameIdentityToken] if with_users else [ua.AnonymousIdentityToken]
        )
        self.ns = await server.register_namespace(NAMESPACE_URI)
        self.root = await server.nodes.objects.add_object(
            _node_id("DefectLens", self.ns), ua.QualifiedName("DefectLens", self.ns)
        )
        await server.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop: the line's PLC handshake (`line/opcua.py`) shares this
        server and adds its nodes and answers on this loop."""
        return self._loop

    def _call(self, coroutine: Any, timeout_s: float | None = None) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s or self.timeout_s)
        except FutureTimeout as error:
            future.cancel()
            raise DeliveryFailed(
                f"OPC UA server {self.endpoint}: no write within {self.timeout_s:g} s"
            ) from error

    def send(self, payload: dict[str, Any], result_id: str) -> None:
        self._call(self._write(payload))

    def counts(self, station: str) -> dict[str, int]:
        """OK/NG results of `station` written since the server started."""
        found = self._stations.get(station)
        return dict(found.counts) if found else {"OK": 0, "NG": 0}

    async def _write(self, payload: dict[str, Any]) -> None:
        station_name = str(payload["station"])
        station = self._stations.get(station_name) or await self._add_station(station_name)
        result_id = str(payload["result_id"])
        if result_id in station.seen:
            return  # sent again (at least once): the address space has it already
        # Counted and remembered only once every write went through: a write that fails or
        # is cancelled by the timeout leaves the result unseen, so the retry writes it.
        verdict = str(payload["verdict"])
        counts = station.counts | {verdict: station.counts.get(verdict, 0) + 1}
        await self._set(station, "OkCount", counts["OK"])
        await self._set(station, "NgCount", counts["NG"])
        latest = result_id >= station.last_id  # else a dead letter sent again: counted only
        if latest:
            await self._set(station, "Line", payload.get("line"))
            for path, value in result_values(payload).items():
                await self._set(station, f"Result/{path}", value)
        station.seen.add(result_id)
        station.counts = counts
        if latest:
            station.last_id = result_id

    async def _set(self, station: _Station, path: str, value: Any) -> None:
        node = station.nodes[path]
        kind = _KINDS[path]
        now = datetime.now(UTC)
        if value is None and kind == ua.VariantType.DateTime:
            value = _NULL_TIME
        if value is None and kind not in _NULLABLE:  # e.g. no processing time: "no data"
            data = ua.DataValue(
                ua.Variant(),
                StatusCode=ua.StatusCode(ua.UInt32(ua.StatusCodes.BadNoData)),
                SourceTimestamp=cast(ua.DateTime, now),
            )
        else:
            data = ua.DataValue(ua.Variant(value, kind), SourceTimestamp=cast(ua.DateTime, now))
        await self.server.write_attribute_value(node.nodeid, data)

    async def _add_station(self, name: str) -> _Station:
        ns = self.ns

        def node_id(path: str) -> ua.NodeId:
            return _node_id(f"{name}/{path}" if path else name, ns)

        assert self.root is not None  # set by _start
        station_node = await self.root.add_object(node_id(""), ua.QualifiedName(name, ns))
        result_node = await station_node.add_object(
            node_id("Result"), ua.QualifiedName("Result", ns)
        )
        times_node = await result_node.add_object(
            node_id("Result/ProcessingTimes"), ua.QualifiedName("ProcessingTimes", ns)
        )
        nodes: dict[str, Node] = {}
        for path, kind in _KINDS.items():
            parent = station_node
            if path.startswith("Result/ProcessingTimes/"):
                parent = times_node
            elif path.startswith("Result/"):
                parent = result_node
            leaf = path.rsplit("/", 1)[-1]
            initial = None if kind in _NULLABLE else _ZERO[kind]
            nodes[path] = await parent.add_variable(
                node_id(path), ua.QualifiedName(leaf, ns), ua.Variant(initial, kind)
            )
        station = _Station(nodes)
        await self._set(station, "CountsSince", self.since)
        self._stations[name] = station
        return station

    def close(self) -> None:
        try:
            self._call(self.server.stop(), timeout_s=10)
        except Exception:
            log.exception("stopping the OPC UA server at %s failed", self.endpoint)
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


_KINDS: dict[str, ua.VariantType] = {
    **{f"Result/{name}": kind for name, kind in RESULT_FIELDS.items()},
    **{f"Result/ProcessingTimes/{name}": kind for name, kind in PROCESSING_FIELDS.items()},
    "OkCount": ua.VariantType.UInt64,
    "NgCount": ua.VariantType.UInt64,
    "CountsSince": ua.VariantType.DateTime,
    "Line": ua.VariantType.String,
}
_NULL_TIME = datetime(1601, 1, 1, tzinfo=UTC)
"""OPC UA's null DateTime (its minimum, 0)."""
_NULLABLE = frozenset({ua.VariantType.String})
_ZERO: dict[ua.VariantType, Any] = {
    ua.VariantType.DateTime: _NULL_TIME,
    ua.VariantType.Double: 0.0,
    ua.VariantType.Int32: 0,
    ua.VariantType.UInt64: 0,
}


async def _read_station(
    endpoint: str, station: str, username: str | None, password: str | None
) -> dict[str, Any]:
    from asyncua import Client

    client = Client(endpoint, timeout=5)
    if username:
        client.set_user(username)
        client.set_password(password or "")
    async with client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        values = {}
        for path in _KINDS:
            node = client.get_node(_node_id(f"{station}/{path}", ns))
            data = await node.read_data_value(raise_on_bad_status=False)
            values[path] = (
                data.Value.Value
                if data.StatusCode is not None and data.StatusCode.is_good() and data.Value
                else None
            )
        return values


def read_station(
    endpoint: str, station: str, username: str | None = None, password: str | None = None
) -> dict[str, Any]:
    """What an OPC UA client reads of `station` at `endpoint` (by path, e.g.
    `Result/ResultId`, `OkCount`; None where the server has no data): the MES side, for
    the demo and for checking a plant's setup."""
    return asyncio.run(_read_station(endpoint, station, username, password))
