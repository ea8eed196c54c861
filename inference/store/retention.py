"""Image retention: delete retained images by age and by disk budget, never a labeled one.

Each batch is one transaction that locks its rows, deletes the files, then the rows; a crash
between the two leaves rows whose files are gone, which the next run clears (a missing file is
fine). A file outside the image folder is never touched.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select
from sqlalchemy.orm import Session

from defectlens.errors import InputError
from defectlens.inference.store.database import Database
from defectlens.inference.store.tables import ImageRow, LabelRow, to_utc, utc_now

log = logging.getLogger(__name__)

BATCH = 500


class RetentionStore:
    """Deleting retained images by age and disk budget."""

    db: Database

    def apply_retention(
        self,
        images_dir: str | Path,
        max_age_days: float | None,
        max_bytes: int | None,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Delete retained images older than `max_age_days`, then the oldest ones until all
        images fit `max_bytes`; never an image whose result is labeled. Returns
        `{"deleted": files, "freed_bytes": bytes}`."""
        return apply_retention(self.db, Path(images_dir), max_age_days, max_bytes, now)


def apply_retention(
    db: Database,
    images_dir: Path,
    max_age_days: float | None,
    max_bytes: int | None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete unlabeled images older than `max_age_days`, then the oldest unlabeled ones until
    the retained images total at most `max_bytes` (None: no limit). Labeled images count
    towards the budget but are kept. Returns `{"deleted": files, "freed_bytes": bytes}`."""
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
                rows = list(session.scalars(_candidates(after, cutoff)))
                if not rows:
                    break
                after = (rows[-1].created_at, rows[-1].id)
                count, size = _delete(session, root, rows)
            deleted, freed = deleted + count, freed + size

    if max_bytes is not None:
        with db.read() as session:
            total = int(session.scalar(select(func.coalesce(func.sum(ImageRow.bytes), 0))) or 0)
        excess = total - max_bytes
        after = None
        while excess > 0:
            with db.write() as session:
                rows = list(session.scalars(_candidates(after, None)))
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
        log.info("retention: deleted %d images, freed %d bytes", deleted, freed)
    return {"deleted": deleted, "freed_bytes": freed}


def _candidates(after: tuple[datetime, int] | None, older_than: datetime | None) -> Select[Any]:
    """Unlabeled images, oldest first, locked for this transaction (PostgreSQL)."""
    labeled = or_(
        ImageRow.labeled.is_(True),
        exists().where(LabelRow.result_id == ImageRow.result_id),
    )
    query = select(ImageRow).where(~labeled)
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
