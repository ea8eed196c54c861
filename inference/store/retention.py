"""Image retention: delete retained images by age and by disk budget, never a labeled one, and
sweep the image folder of files no result names. Each service instance looks after its own
image folder and the image rows it stored, so services sharing one database leave each other's
images alone.

Each batch is one transaction that locks its rows, deletes the files, then the rows; a crash
between the two leaves rows whose files are gone, which the next run clears (a missing file is
fine). A file outside the image folder is never touched, and the sweep follows no symbolic
link.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from defectlens.errors import InputError
from defectlens.inference.store.database import Database
from defectlens.inference.store.tables import ImageRow, LabelRow, ResultRow, to_utc, utc_now

log = logging.getLogger(__name__)

BATCH = 500
SWEEP_GRACE_S = 3600.0
"""How old a file no result names must be before the sweep deletes it: a part's images are
written before its result is stored, so a younger file may be one whose result is on its way."""


class RetentionStore:
    """Deleting this instance's retained images by age and disk budget, and orphan files."""

    db: Database
    instance: str

    def apply_retention(
        self,
        images_dir: str | Path,
        max_age_days: float | None,
        max_bytes: int | None,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Delete this instance's retained images older than `max_age_days`, then its oldest
        ones until its images fit `max_bytes`; never an image whose result is labeled. Returns
        `{"deleted": files, "freed_bytes": bytes}`."""
        return apply_retention(
            self.db, self.instance, Path(images_dir), max_age_days, max_bytes, now
        )

    def sweep_orphan_files(
        self,
        images_dir: str | Path,
        older_than_s: float = SWEEP_GRACE_S,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Delete files under `images_dir` that no image row of this instance names and that
        were last modified more than `older_than_s` ago: images a crash left before their
        result was stored, and temporary files of interrupted writes. Returns
        `{"deleted": files, "freed_bytes": bytes}`."""
        return sweep_orphan_files(self.db, self.instance, Path(images_dir), older_than_s, now)


def apply_retention(
    db: Database,
    instance: str,
    images_dir: Path,
    max_age_days: float | None,
    max_bytes: int | None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete the instance's unlabeled images older than `max_age_days`, then its oldest
    unlabeled ones until its retained images total at most `max_bytes` (None: no limit).
    Labeled images count towards the budget but are kept. Returns
    `{"deleted": files, "freed_bytes": bytes}`."""
    if max_age_days is not None and max_age_days < 0:
        raise InputError(f"retention: max_age_days {max_age_days} is negative")
    if max_bytes is not None and max_bytes < 0:
        raise InputError(f"retention: max_bytes {max_bytes} is negative")
    root = images_dir.resolve()
    moment = to_utc(now) if now is not None else utc_now()
    deleted = freed = 0

    if max_age_days is not None:
        cutoff = moment - timedelta(days=max_age_days)
        after: tuple[datetime, int] | None = None
        while True:
            with db.write() as session:
                rows = list(session.scalars(_candidates(instance, after, cutoff)))
                if not rows:
                    break
                after = (rows[-1].created_at, rows[-1].id)
                count, size = _delete(session, root, rows)
            deleted, freed = deleted + count, freed + size

    if max_bytes is not None:
        with db.read() as session:
            total = session.scalar(
                select(func.coalesce(func.sum(ImageRow.bytes), 0)).where(
                    ImageRow.instance == instance
                )
            )
        excess = int(total or 0) - max_bytes
        after = None
        while excess > 0:
            with db.write() as session:
                rows = list(session.scalars(_candidates(instance, after, None)))
                if not rows:
                    break  # what is left is labeled: kept whatever the budget
                chosen = []
                for row in rows:
                    if excess <= 0:
                        break
                    chosen.append(row)
                    excess -= row.bytes
                after = (chosen[-1].created_at, chosen[-1].id)
                count, size = _delete(session, root, chosen)
            excess += sum(row.bytes for row in chosen) - size  # rows that could not go
            deleted, freed = deleted + count, freed + size

    if deleted:
        log.info(
            "retention: deleted %d images, freed %d bytes",
            deleted,
            freed,
            extra={"instance": instance},
        )
    return {"deleted": deleted, "freed_bytes": freed}


def _candidates(
    instance: str, after: tuple[datetime, int] | None, older_than: datetime | None
) -> Select[Any]:
    """The instance's unlabeled images, oldest first, locked for this transaction
    (PostgreSQL)."""
    labeled = or_(
        ImageRow.labeled.is_(True),
        exists().where(LabelRow.result_id == ImageRow.result_id),
    )
    query = select(ImageRow).where(ImageRow.instance == instance, ~labeled)
    if older_than is not None:
        query = query.where(ImageRow.created_at < older_than)
    if after is not None:
        created_at, image_id = after
        query = query.where(
            or_(
                ImageRow.created_at > created_at,
                and_(ImageRow.created_at == created_at, ImageRow.id > image_id),
            )
        )
    return query.order_by(ImageRow.created_at, ImageRow.id).limit(BATCH).with_for_update()


def _delete(session: Session, root: Path, rows: list[ImageRow]) -> tuple[int, int]:
    """Delete the files, then the rows of those whose file is gone. Returns (count, bytes)."""
    gone: list[ImageRow] = []
    for row in rows:
        path = (root / row.path).resolve()
        if not path.is_relative_to(root):
            log.warning("retention: %s is outside the image folder %s; kept", path, root)
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as error:
            log.warning("retention: cannot delete %s (%s); kept", path, error)
            continue
        gone.append(row)
    if gone:
        session.execute(delete(ImageRow).where(ImageRow.id.in_([row.id for row in gone])))
    return len(gone), sum(row.bytes for row in gone)


def sweep_orphan_files(
    db: Database,
    instance: str,
    images_dir: Path,
    older_than_s: float = SWEEP_GRACE_S,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete the regular files under `images_dir` older than `older_than_s` that no image
    row of `instance` names (by its path relative to `images_dir`, or absolute). Symbolic
    links are neither followed nor deleted. Returns `{"deleted": files, "freed_bytes": bytes}`.
    """
    if older_than_s < 0:
        raise InputError(f"orphan sweep: older_than_s {older_than_s} is negative")
    root = images_dir.resolve()
    if not root.is_dir():
        return {"deleted": 0, "freed_bytes": 0}
    cutoff = (to_utc(now) if now is not None else utc_now()).timestamp() - older_than_s
    spellings = list(dict.fromkeys([root, images_dir.absolute()]))
    deleted = freed = 0
    for folder, old_files, folder_fd in _old_files(root, cutoff):
        relative = Path(folder).relative_to(root)
        for start in range(0, len(old_files), BATCH):
            batch = old_files[start : start + BATCH]
            named = _named(db, instance, spellings, relative, [name for name, _ in batch])
            for name, size in batch:
                if name in named:
                    continue
                try:
                    os.unlink(name, dir_fd=folder_fd)
                except FileNotFoundError:
                    continue
                except OSError as error:
                    log.warning("orphan sweep: cannot delete %s (%s); kept", relative / name, error)
                    continue
                deleted, freed = deleted + 1, freed + size
    if deleted:
        log.info(
            "orphan sweep: deleted %d files no result names, freed %d bytes",
            deleted,
            freed,
            extra={"instance": instance},
        )
    return {"deleted": deleted, "freed_bytes": freed}


def _old_files(root: Path, cutoff: float) -> Iterator[tuple[str, list[tuple[str, int]], int]]:
    """Each folder under `root` (symbolic links to folders are not entered), its regular
    files last modified before `cutoff` (name, size), and an open descriptor of the folder,
    so a folder swapped for a link meanwhile cannot send a deletion elsewhere."""
    for folder, _folders, names, folder_fd in os.fwalk(root, follow_symlinks=False):
        old = []
        for name in names:
            try:
                info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
                old.append((name, info.st_size))
        if old:
            yield folder, old, folder_fd


def _named(
    db: Database, instance: str, roots: list[Path], relative: Path, names: list[str]
) -> set[str]:
    """Those of `names` (files in the folder `relative` under the image folder) that a stored
    result still needs: named by an image row of `instance` (relative, or by an absolute
    path under one of `roots`), or named after a stored result's id (`<id>.png`,
    `<id>_heatmap.png`), whichever instance stored it. The second keeps the images of a
    result stored under another instance id (one renamed, or a shared folder by mistake):
    only a file whose result was never stored is an orphan."""
    spelled: dict[str, str] = {}
    by_result: dict[str, list[str]] = {}
    for name in names:
        path = relative / name
        spelled[path.as_posix()] = name
        for root in roots:
            spelled[str(root / path)] = name
        result_id = name.split(".", 1)[0].split("_", 1)[0]
        if result_id and not name.startswith("."):
            by_result.setdefault(result_id, []).append(name)
    with db.read() as session:
        found = {
            spelled[path]
            for path in session.scalars(
                select(ImageRow.path).where(
                    ImageRow.instance == instance, ImageRow.path.in_(list(spelled))
                )
            )
        }
        stored = session.scalars(
            select(ResultRow.result_id).where(ResultRow.result_id.in_(list(by_result)))
        )
        for result_id in stored:
            found.update(by_result[result_id])
        return found
