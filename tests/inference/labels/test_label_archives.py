"""What the API may import from: a folder inside the workspace only, or a zip that unpacks
inside its own folder, within a size ratio, without links."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from defectlens.datasets.versions import assign_splits
from defectlens.errors import InputError, NotFound, TooLarge
from defectlens.inference.service.label_archives import unpacked, upload_folder, workspace_path
from defectlens.settings import Settings


def a_zip(members: dict[str, bytes], link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo(link)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("relative", "error", "message"),
    [
        ("/etc", InputError, "inside the workspace"),
        ("../x", InputError, "inside the workspace"),
        ("labels/../../x", InputError, "inside the workspace"),
        (".", InputError, "inside the workspace"),
        ("labels/a\x00b", InputError, "not usable"),
        ("labels/" + "x" * 5000, InputError, "not usable"),
        ("labels/incoming/nothing", NotFound, "not found"),
    ],
)
def test_only_folders_inside_the_workspace(
    tmp_path: Path, relative: str, error: type[Exception], message: str
) -> None:
    settings = Settings(home=tmp_path / "home")
    (settings.home / "labels").mkdir(parents=True)
    with pytest.raises(error, match=message):
        workspace_path(settings, relative)


def test_a_zip_unpacks_in_its_folder_which_goes_afterwards(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    data = a_zip({"batch/images/a.png": b"png", "batch/labels.json": b"{}"})
    with unpacked(settings, io.BytesIO(data)) as root:
        assert root.name == "batch" and (root / "images" / "a.png").read_bytes() == b"png"
    assert list(upload_folder(settings).iterdir()) == []


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (a_zip({"../evil": b"x"}), InputError, "stay in the zip"),
        (a_zip({"/abs": b"x"}), InputError, "stay in the zip"),
        (a_zip({"a.txt": b"x"}, link="b"), InputError, "links"),
        (a_zip({"big": b"\0" * 1_000_000}), TooLarge, "50 times"),
        (b"PK not really", InputError, "not a zip"),
    ],
)
def test_a_hostile_zip_is_refused_and_nothing_stays(
    tmp_path: Path, data: bytes, error: type[Exception], message: str
) -> None:
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(error, match=message), unpacked(settings, io.BytesIO(data)):
        pass
    assert list(upload_folder(settings).iterdir()) == []


def test_split_fractions_must_be_finite() -> None:
    with pytest.raises(InputError, match="none below 0"):
        assign_splits([], [], 0, {"train": float("nan"), "val": 0.5, "test": 0.5})
