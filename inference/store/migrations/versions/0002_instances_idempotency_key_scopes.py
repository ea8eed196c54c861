"""Service instances, idempotent retries and scoped keys: images record the service instance
that stored them (retention per instance on a shared database); results take an optional
idempotency key, unique per station; API keys take stations, an expiry and a last-used time.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when tables.py does later.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("images") as images:
        # Rows from before instances belong to the instance every service starts as.
        images.add_column(
            sa.Column("instance", sa.String(64), nullable=False, server_default="default")
        )
        images.drop_index("ix_images_created_at")
        images.create_index("ix_images_instance_created_at", ["instance", "created_at"])
        # The orphan sweep asks which of a folder's files an instance's rows name.
        images.create_index("ix_images_instance_path", ["instance", "path"])
    with op.batch_alter_table("results") as results:
        results.add_column(sa.Column("idempotency_key", sa.String(128), nullable=True))
        # NULL keys (parts sent without one) never collide, on SQLite and PostgreSQL alike.
        results.create_index(
            "uq_results_station_idempotency_key", ["station", "idempotency_key"], unique=True
        )
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.add_column(sa.Column("stations", sa.JSON(none_as_null=True), nullable=True))
        api_keys.add_column(sa.Column("expires_at", TIMESTAMP, nullable=True))
        api_keys.add_column(sa.Column("last_used_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.drop_column("last_used_at")
        api_keys.drop_column("expires_at")
        api_keys.drop_column("stations")
    with op.batch_alter_table("results") as results:
        results.drop_index("uq_results_station_idempotency_key")
        results.drop_column("idempotency_key")
    with op.batch_alter_table("images") as images:
        images.drop_index("ix_images_instance_path")
        images.drop_index("ix_images_instance_created_at")
        images.create_index("ix_images_created_at", ["created_at"])
        images.drop_column("instance")
