"""The synthetic parts generator: determinism, masks, colour and all-or-nothing writing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defectlens.datasets import synthetic
from defectlens.datasets.images import read_image, read_mask
from defectlens.datasets.layout import open_dataset
from defectlens.datasets.synthetic import DEFECT_KINDS, generate_dataset, make_part
from defectlens.errors import DataError, InputError


def files_of(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    options = {"train_good": 3, "test_good": 2, "test_defect_per_kind": 1, "size": 96}
    first = files_of(generate_dataset(tmp_path / "a", seed=7, **options))
    again = files_of(generate_dataset(tmp_path / "b", seed=7, **options))
    other = files_of(generate_dataset(tmp_path / "c", seed=8, **options))
    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first if "train" in name)


def test_default_dataset_layout_and_masks(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "plates")
    dataset = open_dataset(root)
    assert dataset.counts() == {"train_good": 60, "good": 20} | {k: 6 for k in DEFECT_KINDS}
    image = read_image(dataset.test[0].path)
    assert image.shape == (256, 256)
    defective = [s for s in dataset.test if s.is_defective]
    assert all(s.mask_path is not None for s in defective)
    assert [p.name for p in tmp_path.iterdir()] == ["plates"]  # no staging folder left


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defect_masks_are_visible_but_small(kind: str, seed: int) -> None:
    image, mask = make_part(np.random.default_rng(seed), 256, kind)
    assert image.shape == (256, 256)
    assert image.dtype == np.uint8
    assert mask.shape == (256, 256)
    assert mask.dtype == np.bool_
    assert synthetic.MIN_DEFECT_AREA <= mask.mean() <= synthetic.MAX_DEFECT_AREA


@pytest.mark.parametrize("seed", range(3))
def test_good_parts_have_empty_masks_and_differ(seed: int) -> None:
    rng = np.random.default_rng(seed)
    first, mask = make_part(rng)
    second, _ = make_part(rng)
    assert not mask.any()
    assert not np.array_equal(first, second)


def test_colour_parts(tmp_path: Path) -> None:
    image, mask = make_part(np.random.default_rng(0), 128, "spot", color=True)
    assert image.shape == (128, 128, 3)
    assert mask.any()
    root = generate_dataset(
        tmp_path / "blue", train_good=2, test_good=1, test_defect_per_kind=1, color=True
    )
    sample = next(s for s in open_dataset(root).test if s.is_defective)
    rgb = read_image(sample.path)
    assert rgb.shape == (256, 256, 3)
    # anodised blue: the plate is bluer than it is red
    assert rgb[..., 2].mean() > rgb[..., 0].mean() + 10
    assert sample.mask_path is not None
    assert read_mask(sample.mask_path, rgb.shape[:2]).any()


def test_unknown_defect_kind() -> None:
    with pytest.raises(InputError, match="unknown defect kind 'dent'"):
        make_part(np.random.default_rng(0), defect="dent")


def test_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "plates").mkdir()
    (tmp_path / "plates" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="already exists"):
        generate_dataset(tmp_path / "plates")
    assert (tmp_path / "plates" / "keep.txt").read_text() == "mine"


def test_interrupted_generation_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interruption half way (simulated: Ctrl-C cannot be sent from a test) leaves no folder."""
    real_make_part = synthetic.make_part
    calls = 0

    def interrupted(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt
        return real_make_part(*args, **kwargs)

    monkeypatch.setattr(synthetic, "make_part", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(tmp_path / "plates", train_good=10)
    assert list(tmp_path.iterdir()) == []
