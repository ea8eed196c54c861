"""The OPC UA sink read by a real asyncua client: per station the last result in OPC 40100
ResultDataType fields and OK/NG counters, a result sent twice counted once (and one whose
write failed written again), and a client without the right password or encryption refused."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID
from store_factories import T0, make_result

from defectlens.errors import InputError
from defectlens.inference.delivery import DeliveryWorker, payload_of
from defectlens.inference.delivery.opcua import (
    NAMESPACE_URI,
    RESULT_STATE_COMPLETED,
    OpcUaSink,
    read_station,
    result_values,
)
from defectlens.inference.delivery.sink import DeliveryFailed
from defectlens.inference.store import Store

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def _endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"opc.tcp://127.0.0.1:{probe.getsockname()[1]}/defectlens/"


@pytest.fixture
def sink() -> Iterator[OpcUaSink]:
    running = OpcUaSink(_endpoint(), username="mes", password="s3cret")
    yield running
    running.close()


def test_result_values_follow_resultdatatype() -> None:
    payload = payload_of(make_result(2, verdict="NG", score=0.8, serial="SN-7"))
    values = result_values(payload)
    received = T0 + timedelta(seconds=2)
    assert values["ResultId"] == payload["result_id"]
    assert (values["PartId"], values["ProductId"]) == ("SN-7", "bottle-500ml")
    assert values["ResultState"] == RESULT_STATE_COMPLETED == 1
    assert values["ProcessingTimes/StartTime"] == received
    assert values["ProcessingTimes/EndTime"] == received + timedelta(milliseconds=6)
    assert values["ProcessingTimes/ProcessingDuration"] == 6.0
    assert values["CreationTime"] == received + timedelta(milliseconds=6)
    assert values["InternalRecipeId"] == "bottle/20261126T143000Z-3fa2c1"
    assert (values["Verdict"], values["Score"], values["Threshold"]) == ("NG", 0.8, 0.5)
    assert list(values)[-1] == "ResultId"  # written last


def test_a_client_reads_each_stations_last_result_and_counts(sink: OpcUaSink, store: Store) -> None:
    results = [
        make_result(0, station="S1"),
        make_result(1, station="S1", verdict="NG", score=0.9),
        make_result(2, station="S2", serial="B-1"),
    ]
    for result in results:
        store.save_result(result, sinks=["opcua"], payload=payload_of(result))
    worker = DeliveryWorker(store, [sink])
    assert worker.deliver_once(sink) == 3
    sink.send(payload_of(results[1]), results[1].result_id)  # sent again: counted once

    s1 = read_station(sink.endpoint, "S1", "mes", "s3cret")
    assert s1["Result/ResultId"] == results[1].result_id
    assert (s1["Result/Verdict"], s1["Result/PartId"]) == ("NG", "SN00001")
    assert s1["Result/ResultState"] == 1
    assert s1["Result/ProcessingTimes/ProcessingDuration"] == 6.0
    assert s1["Result/CreationTime"].replace(tzinfo=UTC) == (
        results[1].received_at + timedelta(milliseconds=6)
    )
    assert (s1["OkCount"], s1["NgCount"]) == (1, 1)
    assert s1["Line"] == "L1"
    s2 = read_station(sink.endpoint, "S2", "mes", "s3cret")
    assert (s2["Result/PartId"], s2["OkCount"], s2["NgCount"]) == ("B-1", 1, 0)
    assert not store.list_deliveries(state="pending")

    older = payload_of(make_result(3, station="S3")) | {"processing_ms": None}
    sink.send(older, older["result_id"])  # a payload stored before processing_ms existed
    s3 = read_station(sink.endpoint, "S3", "mes", "s3cret")
    assert (s3["Result/ProcessingTimes/ProcessingDuration"], s3["OkCount"]) == (None, 1)


def test_a_result_whose_write_timed_out_is_written_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = OpcUaSink(_endpoint(), timeout_s=0.5)
    # A write that hangs past the timeout cannot be provoked in asyncua's own address space:
    # the first write of the verdict is held back, so the sink's timeout cancels the result.
    write = sink._set
    held: list[str] = []

    async def slow_once(station: Any, path: str, value: Any) -> None:
        if path == "Result/Verdict" and not held:
            held.append(path)
            await asyncio.sleep(5)
        await write(station, path, value)

    monkeypatch.setattr(sink, "_set", slow_once)
    try:
        result = make_result(0, verdict="NG", score=0.9)
        with pytest.raises(DeliveryFailed, match="no write within"):
            sink.send(payload_of(result), result.result_id)
        sink.send(payload_of(result), result.result_id)  # the worker's retry
        s1 = read_station(sink.endpoint, "S1")
    finally:
        sink.close()
    assert held
    assert (s1["Result/ResultId"], s1["Result/Verdict"]) == (result.result_id, "NG")
    assert (s1["OkCount"], s1["NgCount"]) == (0, 1)
    assert sink.counts("S1") == {"OK": 0, "NG": 1}


async def _read_result_id(endpoint: str, user: str | None, password: str | None) -> Any:
    client = Client(endpoint, timeout=5)
    if user:
        client.set_user(user)
        client.set_password(password or "")
    async with client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        node = client.get_node(ua.NodeId(ua.String("S1/Result/ResultId"), ua.Int16(ns)))
        value = await node.read_value()
        with pytest.raises(ua.UaStatusCodeError):  # the MES reads; it does not write
            await node.write_value(ua.Variant("forged", ua.VariantType.String))
        return value


def test_a_client_without_the_password_is_refused(sink: OpcUaSink) -> None:
    result = make_result(0)
    sink.send(payload_of(result), result.result_id)
    for user, password in [(None, None), ("mes", "wrong"), ("other", "s3cret")]:
        with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
            asyncio.run(_read_result_id(sink.endpoint, user, password))
    assert asyncio.run(_read_result_id(sink.endpoint, "mes", "s3cret")) == result.result_id


def test_a_busy_port_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        endpoint = f"opc.tcp://127.0.0.1:{taken.getsockname()[1]}/defectlens/"
        with pytest.raises(InputError, match="cannot listen on"):
            OpcUaSink(endpoint)


async def _certificates(folder: Path) -> None:
    for name, use in [("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", CLIENT_AUTH)]:
        await setup_self_signed_certificate(
            folder / f"{name}.pem",
            folder / f"{name}.der",
            f"urn:defectlens:test:{name}",
            "localhost",
            [use],
            {"organizationName": "defectlens tests"},
        )


async def _read_encrypted(endpoint: str, folder: Path, mode: str = "SignAndEncrypt") -> Any:
    client = Client(endpoint, timeout=5)
    client.application_uri = "urn:defectlens:test:client"
    await client.set_security_string(
        f"Basic256Sha256,{mode},{folder / 'client.der'},{folder / 'client.pem'}"
    )
    client.set_user("mes")
    client.set_password("s3cret")
    async with client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        return await client.get_node(ua.NodeId(ua.String("S1/OkCount"), ua.Int16(ns))).read_value()


def test_with_a_certificate_only_encrypted_clients_read(tmp_path: Path) -> None:
    asyncio.run(_certificates(tmp_path))
    secured = OpcUaSink(
        _endpoint(),
        username="mes",
        password="s3cret",
        certificate=tmp_path / "server.der",
        private_key=tmp_path / "server.pem",
    )
    try:
        result = make_result(0)
        secured.send(payload_of(result), result.result_id)
        assert asyncio.run(_read_encrypted(secured.endpoint, tmp_path)) == 1
        with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
            read_station(secured.endpoint, "S1", "mes", "s3cret")  # no encryption: refused
        with pytest.raises((ua.UaError, ConnectionError, asyncio.TimeoutError)):
            asyncio.run(_read_encrypted(secured.endpoint, tmp_path, "Sign"))  # signed, in clear
    finally:
        secured.close()
