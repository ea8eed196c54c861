"""Checking a whole data set before any work: every bad file named at once, or left out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from defectlens.datasets.check import BAD_FILES_LISTED, check_dataset, in_parallel
from defectlens.datasets.layout import open_dataset
from defectlens.errors import DataError


def write_png(path: Path, value: int = 128, size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size), value, np.uint8))
    return path


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    """An MVTec folder with a truncated image, an empty one, a GIF and a mask of the wrong size."""
    root = tmp_path / "tiles"
    for i in range(6):
        write_png(root / "train" / "good" / f"{i:03d}.png", value=10 * i)
    good = write_png(root / "test" / "good" / "g.png")
    (root / "train" / "good" / "003.png").write_bytes(good.read_bytes()[:60])
    (root / "train" / "good" / "004.png").write_bytes(b"")
    (root / "test" / "good" / "anim.png").write_bytes(b"GIF89a" + b"\0" * 40)
    write_png(root / "test" / "crack" / "c1.png", size=8)
    write_png(root / "ground_truth" / "crack" / "c1_mask.png", 255, size=16)
    write_png(root / "test" / "crack" / "c2.png", size=8)
    return root


def test_every_bad_file_is_named_in_one_error(damaged: Path) -> None:
    dataset = open_dataset(damaged)
    lines: list[str] = []
    with pytest.raises(DataError) as caught:
        check_dataset(dataset, say=lines.append)
    message = str(caught.value)
    head, *listed = message.splitlines()
    assert head.startswith(f"{damaged}: 4 files cannot be used") and "--skip-bad" in head
    assert [line.split(":")[0].strip() for line in listed] == [
        "train/good/003.png",
        "train/good/004.png",
        "ground_truth/crack/c1_mask.png",
        "test/good/anim.png",
    ]
    assert "not a readable image (60 bytes)" in listed[0]
    assert "the file is empty" in listed[1]
    assert "mask is 16×16 but its image is 8×8" in listed[2]
    assert "GIF images are not accepted" in listed[3]
    assert len(lines) == 1 and lines[0].startswith(f"checking 10 images and 1 mask in {damaged}")


def test_skip_bad_leaves_them_out_and_lists_them(damaged: Path) -> None:
    dataset = open_dataset(damaged)
    lines: list[str] = []
    checked = check_dataset(dataset, skip_bad=True, say=lines.append)
    assert [s.path.name for s in checked.dataset.train] == [
        "000.png",
        "001.png",
        "002.png",
        "005.png",
    ]
    assert [s.path.name for s in checked.dataset.test] == ["c2.png", "g.png"]  # c1: bad mask
    assert [bad["path"] for bad in checked.skipped()] == [
        "train/good/003.png",
        "train/good/004.png",
        "ground_truth/crack/c1_mask.png",
        "test/good/anim.png",
    ]
    assert lines[1] == "left out 4 bad files (--skip-bad):"
    assert len(lines) == 6
    good = damaged / "test" / "good" / "g.png"
    assert checked.sha256[good] == hashlib.sha256(good.read_bytes()).hexdigest()
    assert set(checked.sha256) == {s.path for s in checked.dataset.samples()}


def test_skip_bad_does_not_turn_a_broken_training_folder_into_a_test_only_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "train" / "good").mkdir(parents=True)
    (tmp_path / "train" / "good" / "a.png").write_bytes(b"")
    write_png(tmp_path / "test" / "good" / "b.png")
    with pytest.raises(DataError, match="none of the 1 images of train/good can be used"):
        check_dataset(open_dataset(tmp_path), skip_bad=True)


def test_a_long_list_is_cut_with_how_many_more(tmp_path: Path) -> None:
    for i in range(BAD_FILES_LISTED + 5):
        (tmp_path / f"{i:03d}.png").write_bytes(b"not an image")
    write_png(tmp_path / "fine.png")
    with pytest.raises(DataError) as caught:
        check_dataset(open_dataset(tmp_path))
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 + BAD_FILES_LISTED + 1
    assert lines[-1] == "  and 5 more"
    assert f"{BAD_FILES_LISTED + 5} files cannot be used (26 images checked)" in lines[0]


def test_only_the_samples_asked_for_are_checked(damaged: Path) -> None:
    dataset = open_dataset(damaged)
    fine = [s for s in dataset.test if s.path.name in ("c2.png", "g.png")]
    checked = check_dataset(dataset, samples=fine)
    assert checked.bad == [] and set(checked.sha256) == {s.path for s in fine}


def test_in_parallel_keeps_the_order() -> None:
    assert in_parallel(lambda n: n * n, list(range(50)), desc="square") == [
        n * n for n in range(50)
    ]
    assert in_parallel(str, [], desc="nothing") == []
