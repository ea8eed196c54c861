"""The demo's line station on the session's model: the PLC (a pymodbus client) triggers each
part over Modbus and the demo prints what it saw; every part is stored with its serial."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from defectlens.demo_line import LINE_STATION, PARTS, run_line_demo
from defectlens.inference.store import Store, open_database


def test_the_demo_line_station_prints_what_the_plc_saw(
    tmp_path: Path,
    trained_model: Path,
    synthetic_data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    home = tmp_path / "home"
    models = home / "models" / trained_model.parent.name  # <models>/<name>/<version>
    version = Path(shutil.copytree(trained_model, models / trained_model.name))
    samples = sorted((synthetic_data / "test").glob("*/*.png"))
    run_line_demo(home, version, samples)
    out = capsys.readouterr().out
    seen = re.findall(r"(LINE-\d{4}) +(OK|NG) +(\d+) +([\d.]+) ms  (\w+)", out)
    assert [serial for serial, *_ in seen] == [f"LINE-{i:04d}" for i in range(1, PARTS + 1)], out
    assert {kind == "good" for *_, kind in seen} == {True, False}  # good and defective parts
    store = Store(open_database(f"sqlite:///{home / 'defectlens.db'}"))
    try:
        results, _ = store.list_results(station=LINE_STATION, limit=20)
        stored = {r.serial: r.verdict for r in results}
        active = store.active_model(LINE_STATION)
    finally:
        store.db.close()
    assert stored == {serial: verdict for serial, verdict, *_ in seen}
    assert active is not None and active.version == trained_model.name  # the file's model:
