"""A model version appears whole or not at all: written in a hidden staging folder, renamed
to its name (time and graph hash) at the end, removed on any error."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectlens.errors import RecipeError
from defectlens.modelcard import file_sha256
from defectlens.train.pipeline import staged_version


def test_a_version_is_named_by_its_graph_and_renamed_whole(tmp_path: Path) -> None:
    with staged_version(tmp_path / "parts") as staged:
        assert staged.folder.name.startswith(".staging-")
        graph = staged.folder / "model.onnx"
        graph.write_bytes(b"graph")
        version, _created, digest = staged.name(graph)
        (staged.folder / "model.json").write_text("{}")
    assert digest == file_sha256(tmp_path / "parts" / version / "model.onnx")
    assert version.endswith(f"-{digest[:6]}")
    assert staged.folder == tmp_path / "parts" / version
    assert sorted(p.name for p in staged.folder.iterdir()) == ["model.json", "model.onnx"]
    assert [p.name for p in (tmp_path / "parts").iterdir()] == [version]


def test_an_error_or_a_taken_name_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="export failed"), staged_version(tmp_path) as staged:
        (staged.folder / "model.onnx").write_bytes(b"half")
        raise ValueError("export failed")
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "taken").mkdir()
    with pytest.raises(RecipeError, match="already exists"), staged_version(tmp_path) as staged:
        staged.version = "taken"
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
