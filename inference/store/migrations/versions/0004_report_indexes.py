"""Report indexes: a part's earlier inspections at its station are found by one index seek
(first-pass yield, `reports/queries.py`), and a QA label's correction by its
`overrides_label_id` (the standing label) instead of an index SQLite builds per query.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_results_station_serial_result_id", "results", ["station", "serial", "result_id"]
    )
    op.create_index("ix_labels_overrides_label_id", "labels", ["overrides_label_id"])


def downgrade() -> None:
    op.drop_index("ix_labels_overrides_label_id", table_name="labels")
    op.drop_index("ix_results_station_serial_result_id", table_name="results")
