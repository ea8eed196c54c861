"""Labels: a QA engineer's verdict on a stored result; a correction is a new label."""

from __future__ import annotations

from sqlalchemy import select

from defectlens.errors import InputError
from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.tables import VERDICTS, ImageRow, LabelRow, ResultRow


class LabelStore:
    """Labels on results."""

    db: Database

    def add_label(
        self,
        result_id: str,
        label: str,
        author: str,
        defect_class: str | None = None,
        overrides_label_id: int | None = None,
    ) -> int:
        """Record a QA engineer's label on a result; its images become exempt from retention."""
        if label not in VERDICTS:
            raise InputError(f"label {label!r}: expected one of {', '.join(VERDICTS)}")
        with self.db.write() as session:
            if session.get(ResultRow, result_id) is None:
                raise InputError(f"result {result_id!r} not found; nothing to label")
            if overrides_label_id is not None:
                previous = session.get(LabelRow, overrides_label_id)
                if previous is None or previous.result_id != result_id:
                    raise InputError(
                        f"label {overrides_label_id} is not a label of result {result_id}"
                    )
            row = LabelRow(
                result_id=result_id,
                label=label,
                defect_class=defect_class,
                author=author,
                overrides_label_id=overrides_label_id,
            )
            check_row(row)
            session.add(row)
            # Mark the images too, so retention's guard holds even while this commits.
            for image in session.scalars(
                select(ImageRow).where(ImageRow.result_id == result_id).with_for_update()
            ):
                image.labeled = True
            session.flush()
            return row.id
