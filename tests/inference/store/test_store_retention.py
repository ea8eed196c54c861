"""Image retention: by age and by byte budget, oldest first, never a labeled image."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from store_factories import T0, make_result

from defectlens.errors import InputError
from defectlens.inference.store import Database, Store
from defectlens.inference.store.tables import ImageRow


def seed(store: Store, images_dir: Path, days: int, size: int = 100) -> list[str]:
    """One result a day for `days` days, each with an image and a heat map of `size` bytes."""
    ids = []
    for day in range(days):
        result = make_result(day * 86400, verdict="NG")
        files = []
        for kind in ("image", "heatmap"):
            relative = f"{day:02d}/{result.result_id}_{kind}.png"
            (images_dir / relative).parent.mkdir(parents=True, exist_ok=True)
            (images_dir / relative).write_bytes(b"x" * size)
            files.append((kind, relative, size))
        store.save_result(result, images=files)
        ids.append(result.result_id)
    return ids


def kept(db: Database) -> list[str]:
    with db.read() as session:
        return sorted(session.scalars(select(ImageRow.path)))


def files(images_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(images_dir)) for p in images_dir.rglob("*.png"))


def test_age_limit_keeps_labeled_images(store: Store, db: Database, tmp_path: Path) -> None:
    ids = seed(store, tmp_path, days=10)
    store.add_label(ids[0], "NG", author="alice", defect_class="scratch")
    label = store.add_label(ids[1], "OK", author="bob")
    store.add_label(ids[1], "NG", author="alice", overrides_label_id=label)
    now = T0 + timedelta(days=10)

    outcome = store.apply_retention(tmp_path, max_age_days=5.5, max_bytes=None, now=now)

    # days 0..4 are older than 5.5 days; days 0 and 1 are labeled
    assert outcome == {"deleted": 6, "freed_bytes": 600}
    assert kept(db) == files(tmp_path)
    assert {p[:2] for p in kept(db)} == {"00", "01", "05", "06", "07", "08", "09"}
    assert store.apply_retention(tmp_path, 5.5, None, now=now) == {"deleted": 0, "freed_bytes": 0}


def test_byte_budget_deletes_oldest_first(store: Store, db: Database, tmp_path: Path) -> None:
    ids = seed(store, tmp_path, days=6)  # 12 files of 100 bytes
    store.add_label(ids[1], "NG", author="alice")

    outcome = store.apply_retention(tmp_path, max_age_days=None, max_bytes=800)

    # 1200 bytes, budget 800: the oldest unlabeled go until 800 fit: days 0 and 2
    assert outcome == {"deleted": 4, "freed_bytes": 400}
    assert {p[:2] for p in kept(db)} == {"01", "03", "04", "05"}
    assert kept(db) == files(tmp_path)

    # a budget only the labeled images fit: everything else goes, the labeled stay
    outcome = store.apply_retention(tmp_path, max_age_days=None, max_bytes=0)
    assert outcome == {"deleted": 6, "freed_bytes": 600}
    assert {p[:2] for p in kept(db)} == {"01"}


def test_missing_files_and_files_outside_the_folder(
    store: Store, db: Database, tmp_path: Path
) -> None:
    images_dir = tmp_path / "images"
    ids = seed(store, images_dir, days=2)
    (images_dir / kept(db)[0]).unlink()  # someone deleted it by hand: the row still goes
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"keep me")
    store.save_result(make_result(5, verdict="NG"), images=[("image", str(outside), 7)])
    store.save_result(make_result(6, verdict="NG"), images=[("image", "../precious.png", 7)])

    outcome = store.apply_retention(
        images_dir, max_age_days=0, max_bytes=None, now=T0 + timedelta(days=9)
    )

    assert outcome == {"deleted": 4, "freed_bytes": 400}
    assert outside.exists() and len(kept(db)) == 2  # never outside the image folder
    assert files(images_dir) == [] and ids


def test_bad_limits(store: Store, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="negative"):
        store.apply_retention(tmp_path, max_age_days=-1, max_bytes=None)
    with pytest.raises(InputError, match="negative"):
        store.apply_retention(tmp_path, max_age_days=None, max_bytes=-1)
