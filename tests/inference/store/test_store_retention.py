"""Image retention: by age and by byte budget, oldest first, never a labeled image, each
service instance its own; the sweep of files no result names."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from store_factories import T0, make_result

from defectlens.errors import InputError
from defectlens.inference.store import Database, Store
from defectlens.inference.store.tables import ImageRow

NOW = datetime.now(UTC)


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


def test_services_sharing_a_database_each_look_after_their_own_images(
    db: Database, tmp_path: Path
) -> None:
    # Two services (line 1 and line 2) on one database, each with its own image folder.
    line1, line2 = Store(db, instance="line1"), Store(db, instance="line2")
    dir1, dir2 = tmp_path / "line1", tmp_path / "line2"
    seed(line1, dir1, days=4)
    seed(line2, dir2, days=4)
    with db.read() as session:
        instances = session.execute(
            select(ImageRow.instance, func.count()).group_by(ImageRow.instance)
        ).all()
    assert sorted(instances) == [("line1", 8), ("line2", 8)]

    now = T0 + timedelta(days=4)
    assert line1.apply_retention(dir1, max_age_days=2.5, max_bytes=None, now=now) == {
        "deleted": 4,
        "freed_bytes": 400,
    }
    # the budget is line 1's alone: its 400 bytes fit 500, whatever line 2 holds
    assert line1.apply_retention(dir1, max_age_days=None, max_bytes=500) == {
        "deleted": 0,
        "freed_bytes": 0,
    }
    assert len(files(dir2)) == 8 and len(files(dir1)) == 4
    assert kept_of(db, "line2") == files(dir2)
    assert kept_of(db, "line1") == files(dir1)
    # pointed at the other's folder by mistake, a service still only deletes its own rows
    assert line1.apply_retention(dir2, max_age_days=0, max_bytes=None, now=now) == {
        "deleted": 4,
        "freed_bytes": 400,
    }
    assert kept_of(db, "line2") == files(dir2) and len(files(dir2)) == 8


def test_orphan_sweep_deletes_only_old_unnamed_files(
    store: Store, db: Database, tmp_path: Path
) -> None:
    images_dir = tmp_path / "images"
    seed(store, images_dir, days=2)
    named_absolute = images_dir / "abs" / "named.png"
    named_absolute.parent.mkdir()
    named_absolute.write_bytes(b"x" * 10)
    store.save_result(make_result(7), images=[("image", str(named_absolute), 10)])
    crashed = images_dir / "00" / "crashed-before-commit.png"  # written, result never stored
    crashed.write_bytes(b"x" * 30)
    temporary = images_dir / "01" / ".part.png.k2j3h4g5"  # an interrupted atomic write
    temporary.write_bytes(b"x" * 7)
    in_flight = images_dir / "01" / "result-on-its-way.png"
    in_flight.write_bytes(b"x" * 5)
    for path in images_dir.rglob("*"):
        if path.is_file() and path != in_flight:
            os.utime(path, (NOW.timestamp() - 7200, NOW.timestamp() - 7200))
    os.utime(in_flight, (NOW.timestamp() - 60, NOW.timestamp() - 60))
    before = kept(db)

    outcome = store.sweep_orphan_files(images_dir, now=NOW)

    assert outcome == {"deleted": 2, "freed_bytes": 37}
    assert not crashed.exists() and not temporary.exists()
    assert in_flight.exists() and named_absolute.exists()
    assert kept(db) == before
    assert all((images_dir / path).exists() for path in before if not path.startswith("/"))
    assert store.sweep_orphan_files(images_dir, now=NOW) == {"deleted": 0, "freed_bytes": 0}
    # with no grace period the file on its way goes too
    assert store.sweep_orphan_files(images_dir, older_than_s=0) == {"deleted": 1, "freed_bytes": 5}


def test_orphan_sweep_never_leaves_the_image_folder(store: Store, tmp_path: Path) -> None:
    images_dir, outside = tmp_path / "images", tmp_path / "elsewhere"
    (images_dir / "day").mkdir(parents=True)
    outside.mkdir()
    precious = outside / "precious.png"
    precious.write_bytes(b"keep me")
    (images_dir / "link-to-file.png").symlink_to(precious)
    (images_dir / "day" / "link-to-folder").symlink_to(outside, target_is_directory=True)
    old = NOW.timestamp() - 7200
    os.utime(precious, (old, old))
    for link in (images_dir / "link-to-file.png", images_dir / "day" / "link-to-folder"):
        os.utime(link, (old, old), follow_symlinks=False)

    assert store.sweep_orphan_files(images_dir, now=NOW) == {"deleted": 0, "freed_bytes": 0}
    assert precious.read_bytes() == b"keep me"
    assert (images_dir / "link-to-file.png").is_symlink()
    assert (images_dir / "day" / "link-to-folder").is_symlink()
    # a folder that does not exist (yet) has nothing to sweep
    assert store.sweep_orphan_files(tmp_path / "none") == {"deleted": 0, "freed_bytes": 0}
    with pytest.raises(InputError, match="negative"):
        store.sweep_orphan_files(images_dir, older_than_s=-1)


def test_orphan_sweep_keeps_what_any_stored_result_needs(db: Database, tmp_path: Path) -> None:
    mine, other = Store(db, instance="line1"), Store(db, instance="line2")
    images_dir = tmp_path / "images"
    seed(other, images_dir, days=1)  # named, but by another instance's rows
    seed(mine, images_dir / "mine", days=1)
    for path in images_dir.rglob("*.png"):
        os.utime(path, (NOW.timestamp() - 7200, NOW.timestamp() - 7200))
    assert mine.sweep_orphan_files(images_dir / "mine", now=NOW)["deleted"] == 0
    # Line 2's folder holds line 1's folder by mistake (or line 1 was renamed): its files are
    # named after stored results, so they are no orphans to line 2 either.
    assert other.sweep_orphan_files(images_dir, now=NOW)["deleted"] == 0
    assert len(files(images_dir)) == 4


def test_instance_names_are_checked(db: Database) -> None:
    with pytest.raises(InputError, match="empty"):
        Store(db, instance=" ")
    with pytest.raises(InputError, match=r"images\.instance"):
        Store(db, instance="x" * 65)
    assert Store(db).instance == "default"


def kept_of(db: Database, instance: str) -> list[str]:
    with db.read() as session:
        return sorted(session.scalars(select(ImageRow.path).where(ImageRow.instance == instance)))
