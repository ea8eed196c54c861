"""`defectlens stations list`: each station of the file with its source and PLC link, also
when no service runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.cli import main


def test_stations_list_names_each_plc_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "stations.yaml"
    path.write_text(
        "stations:\n"
        "  - id: modbus-cam\n    source: {kind: simulated, folder: x}\n    plc: {address: 100}\n"
        "  - id: opcua-cam\n    source: {kind: simulated, folder: x}\n    plc: {protocol: opcua}\n"
        "  - id: api-cam\n    source: {kind: simulated, folder: x}\n"
    )
    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DEFECTLENS_STATIONS_FILE", str(path))
    assert main(["stations", "list"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert rows["modbus-cam"][:2] == ["simulated", "@100"]
    assert rows["opcua-cam"][:2] == ["simulated", "opcua"]
    assert rows["api-cam"][:2] == ["simulated", "-"]
    assert "(no running service)" in " ".join(rows["api-cam"])
