"""Outbox delivery: each row names its station (per-station order), keeps the last error of a
failed try and the time it became a dead letter; the queue index covers the rows still to
deliver, by sink and station in order.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when tables.py does later.
TIMESTAMP = sa.DateTime(timezone=True)
PENDING = "delivered_at IS NULL AND dead_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("outbox") as outbox:
        outbox.add_column(sa.Column("station", sa.String(64), nullable=False, server_default=""))
        outbox.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        outbox.add_column(sa.Column("dead_at", TIMESTAMP, nullable=True))
    # Rows from before name their result's station.
    op.execute(
        "UPDATE outbox SET station = (SELECT results.station FROM results "
        "WHERE results.result_id = outbox.result_id)"
    )
    with op.batch_alter_table("outbox") as outbox:
        outbox.drop_index("ix_outbox_pending")
        outbox.create_index(
            "ix_outbox_queue",
            ["sink", "station", "id"],
            sqlite_where=sa.text(PENDING),
            postgresql_where=sa.text(PENDING),
        )
        outbox.create_index("ix_outbox_dead_at", ["dead_at"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as outbox:
        outbox.drop_index("ix_outbox_dead_at")
        outbox.drop_index("ix_outbox_queue")
        outbox.create_index("ix_outbox_pending", ["delivered_at", "next_attempt_at"])
        outbox.drop_column("dead_at")
        outbox.drop_column("last_error")
        outbox.drop_column("station")
