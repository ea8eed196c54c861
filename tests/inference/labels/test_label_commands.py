"""`defectlens labels ...` and `defectlens datasets ...` on a workspace of their own (SQLite):
what they print, and exit status 2 with the report when nothing can be imported."""

from __future__ import annotations

from pathlib import Path

import pytest
from label_folders import coco_folder

from defectlens.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DEFECTLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    return tmp_path / "home"


def test_import_list_freeze_show_and_export(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = coco_folder(tmp_path / "batch1", ok=3, ng=3)  # NG 3 and 5 also have a dent
    ng_only = coco_folder(tmp_path / "ng", ok=0, ng=2, first=50)
    assert main(["labels", "import", str(ng_only), "--format", "coco"]) == 2
    out, err = capsys.readouterr()
    assert "skipped 2: 2 unknown class" in out
    assert "nothing imported" in err and "--create-classes" in err

    assert main(["labels", "add-class", "scratch", "--plc-code", "4"]) == 0
    assert main(["labels", "import", str(folder), "--format", "coco", "--author", "qa:ann"]) == 0
    out, _ = capsys.readouterr()
    assert "imported 4 images" in out and "skipped 2: 2 unknown class" in out

    assert main(["labels", "classes"]) == 0
    assert main(["labels", "list", "--verdict", "NG"]) == 0
    out, _ = capsys.readouterr()
    assert "scratch  PLC code 4" in out
    assert out.count("batch1") == 1

    assert main(["datasets", "freeze", "batch1", "--seed", "3", "--author", "qa:ann"]) == 0
    out, _ = capsys.readouterr()
    version_dir = Path(out.strip().splitlines()[-1])
    assert version_dir.parent == home / "datasets" / "batch1"
    assert "batch1" in out and "4 images" in out
    version = version_dir.name
    assert main(["datasets", "freeze", "batch1", "--seed", "3"]) == 0
    assert "unchanged since it was frozen" in capsys.readouterr().out

    assert main(["datasets", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith(version) and "4 images  qa:ann" in listed
    assert main(["datasets", "show", version[:5]]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"batch1 {version}") and "coco.json" in out and "good" in out

    assert main(["datasets", "export", version, str(tmp_path / "yolo"), "--format", "yolo"]) == 0
    assert (tmp_path / "yolo" / "data.yaml").is_file()
    assert main(["labels", "export", str(tmp_path / "voc"), "--format", "voc"]) == 0
    assert len(list((tmp_path / "voc" / "Annotations").glob("*.xml"))) == 4


def test_bad_options_exit_2_with_one_line(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["labels", "import", str(tmp_path / "nope"), "--format", "yolo"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["datasets", "freeze", "x", "--split", "0.5,0.5"]) == 2
    assert "three fractions" in capsys.readouterr().err
    assert main(["datasets", "show", "abc"]) == 2
    assert "datasets list" in capsys.readouterr().err
    assert main(["labels", "import", str(tmp_path), "--format", "masks", "--mask-values", "x"]) == 2
    assert "VALUE=CLASS" in capsys.readouterr().err
