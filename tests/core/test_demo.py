"""`defectlens demo` end to end: it trains, then runs every test part through the service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from defectlens.demo import STATION, run_demo
from defectlens.demo_line import PARTS as LINE_PARTS
from defectlens.inference.store import Store, open_database


@pytest.mark.slow
def test_demo_trains_then_inspects_every_test_part_through_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    assert run_demo(home) == 0
    out = capsys.readouterr().out
    parts = len(list((home / "datasets" / "synthetic-parts" / "test").glob("*/*.png")))
    assert parts == 70

    # The engine's and the service's counts are printed, and the service's agree with it.
    counts = re.findall(r"(\d+) parts: (\d+) OK, (\d+) NG, (\d+) verdicts match", out)
    assert len(counts) == 2, out
    engine, service = ([int(n) for n in found] for found in counts)
    assert service == engine and service[0] == parts and service[1] + service[2] == parts
    # The MES side got every part: the webhook, the OPC UA server (and MQTT when installed).
    assert f"MES webhook  {parts} results received" in out, out
    assert re.search(r"OPC UA .* PartId DEMO-\d{4}, Verdict (OK|NG), OkCount \d+", out), out
    for line in ("end to end", "model time"):
        assert re.search(rf"{line}\s+p50 +[\d.]+ ms +p95 +[\d.]+ ms +p99 +[\d.]+ ms", out), out

    # Every part was stored for the station, with the verdicts the service answered.
    store = Store(open_database(f"sqlite:///{(home / 'defectlens.db').resolve()}"))
    try:
        assert store.verdict_counts(station=STATION) == {
            "OK": service[1],
            "NG": service[2],
            "total": parts,
        }
        results, _ = store.list_results(station=STATION, limit=parts)
        assert {result.serial for result in results} == {f"DEMO-{i:04d}" for i in range(parts)}
        assert store.active_model(STATION) is not None
        assert [key.role for key in store.list_keys()] == ["line", "qa"]  # qa: the pages
    finally:
        store.db.close()
    assert f"stored results for {STATION}: {parts}" in out
    # It ends with the review queue's address and a qa key to sign in with (demo_qa.py).
    assert re.search(rf"review queue: http://127\.0\.0\.1:\d+/review\?station={STATION}", out), out
    assert re.search(r"qa key: +dl_[0-9a-f]{8}_", out), out
    # The line station: the PLC (Modbus) saw a verdict and defect code for each of its parts.
    seen = re.findall(r"LINE-\d{4} +(OK|NG) +\d+ +[\d.]+ ms  \w+", out)
    assert len(seen) == LINE_PARTS, out
