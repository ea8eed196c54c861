"""The label store: samples (a result's image or an imported file, with an optional golden
template), defect classes, and labels with regions (box, polygon or mask) on samples; a
label records whether it overrides the model. Labels from before become labels on a sample
of their result.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when tables.py does later.
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "label_classes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("plc_code", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_label_classes"),
        sa.UniqueConstraint("name", name="uq_label_classes_name"),
    )
    op.create_table(
        "samples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("result_id", sa.String(32), nullable=True),
        sa.Column("reference_sha256", sa.String(64), nullable=True),
        sa.Column("reference_path", sa.Text(), nullable=True),
        sa.Column("split", sa.String(8), nullable=True),
        sa.Column("source", sa.String(128), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("split IN ('train', 'val', 'test')", name="split"),
        sa.ForeignKeyConstraint(
            ["result_id"], ["results.result_id"], name="fk_samples_result_id_results"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_samples"),
    )
    op.create_index("uq_samples_result_id", "samples", ["result_id"], unique=True)
    op.create_index(
        "uq_samples_sha256_imported",
        "samples",
        ["sha256"],
        unique=True,
        sqlite_where=sa.text("result_id IS NULL"),
        postgresql_where=sa.text("result_id IS NULL"),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        # SQLite alters `labels` by copying it to a new table and dropping the old one, and
        # the copy's corrections would point at the dropped table: set them aside meanwhile.
        _set_corrections_aside()
    with op.batch_alter_table("labels") as labels:
        labels.alter_column("result_id", existing_type=sa.String(32), nullable=True)
        labels.add_column(sa.Column("sample_id", sa.Integer(), nullable=True))
        labels.add_column(
            sa.Column(
                "overrides_model", sa.Boolean(), nullable=False, server_default=sa.text("false")
            )
        )
        labels.create_foreign_key("fk_labels_sample_id_samples", "samples", ["sample_id"], ["id"])
        labels.create_index("ix_labels_sample_id", ["sample_id"])
    if sqlite:
        _restore_corrections()
    op.create_table(
        "label_regions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label_id", sa.Integer(), nullable=False),
        sa.Column("class", sa.String(64), nullable=False),
        sa.Column("x0", sa.Float(), nullable=False),
        sa.Column("y0", sa.Float(), nullable=False),
        sa.Column("x1", sa.Float(), nullable=False),
        sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("polygon", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("mask_sha256", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["label_id"],
            ["labels.id"],
            name="fk_label_regions_label_id_labels",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_label_regions"),
    )
    op.create_index("ix_label_regions_label_id", "label_regions", ["label_id"])
    # Every labelled result becomes a sample, and its labels labels of that sample.
    op.execute(
        "INSERT INTO samples (result_id, source, created_at) "
        "SELECT labels.result_id, MIN(results.station), MIN(labels.created_at) "
        "FROM labels JOIN results ON results.result_id = labels.result_id "
        "GROUP BY labels.result_id"
    )
    op.execute(
        "UPDATE labels SET sample_id = "
        "(SELECT samples.id FROM samples WHERE samples.result_id = labels.result_id)"
    )


def downgrade() -> None:
    op.drop_index("ix_label_regions_label_id", table_name="label_regions")
    op.drop_table("label_regions")
    op.execute("DELETE FROM labels WHERE result_id IS NULL")
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _set_corrections_aside()
    with op.batch_alter_table("labels") as labels:
        labels.drop_index("ix_labels_sample_id")
        labels.drop_constraint("fk_labels_sample_id_samples", type_="foreignkey")
        labels.drop_column("overrides_model")
        labels.drop_column("sample_id")
        labels.alter_column("result_id", existing_type=sa.String(32), nullable=False)
    if sqlite:
        _restore_corrections()
    op.drop_index("uq_samples_sha256_imported", table_name="samples")
    op.drop_index("uq_samples_result_id", table_name="samples")
    op.drop_table("samples")
    op.drop_table("label_classes")


def _set_corrections_aside() -> None:
    op.execute(
        "CREATE TABLE _labels_corrections AS SELECT id, overrides_label_id FROM labels "
        "WHERE overrides_label_id IS NOT NULL"
    )
    op.execute("UPDATE labels SET overrides_label_id = NULL")


def _restore_corrections() -> None:
    op.execute(
        "UPDATE labels SET overrides_label_id = (SELECT c.overrides_label_id FROM "
        "_labels_corrections c WHERE c.id = labels.id) "
        "WHERE id IN (SELECT id FROM _labels_corrections)"
    )
    op.execute("DROP TABLE _labels_corrections")
