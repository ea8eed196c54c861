"""Training jobs run by a worker through the job queue (progress, log tail, error, cancel),
shadow runs of a candidate model beside a station's production model and their answers,
and comparisons of a candidate against production on held-out parts.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when tables.py does later.
TIMESTAMP = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JOB_STATUS = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as jobs:
        jobs.add_column(
            sa.Column("recipe_source", sa.String(256), nullable=False, server_default="")
        )
        jobs.add_column(sa.Column("data", sa.Text(), nullable=False, server_default=""))
        jobs.add_column(sa.Column("data_path", sa.Text(), nullable=False, server_default=""))
        jobs.add_column(sa.Column("station", sa.String(64), nullable=True))
        jobs.add_column(sa.Column("created_by", sa.String(128), nullable=False, server_default=""))
        jobs.add_column(sa.Column("started_at", TIMESTAMP, nullable=True))
        jobs.add_column(sa.Column("updated_at", TIMESTAMP, nullable=True))
        jobs.add_column(sa.Column("stage", sa.String(32), nullable=True))
        jobs.add_column(sa.Column("percent", sa.Float(), nullable=True))
        jobs.add_column(sa.Column("epoch", sa.Integer(), nullable=True))
        jobs.add_column(sa.Column("metrics", sa.JSON(), nullable=False, server_default="{}"))
        jobs.add_column(sa.Column("error", sa.Text(), nullable=True))
        jobs.add_column(sa.Column("log_tail", sa.Text(), nullable=False, server_default=""))
        jobs.add_column(sa.Column("cancel_requested_at", TIMESTAMP, nullable=True))
        jobs.add_column(sa.Column("worker", sa.String(128), nullable=True))
        jobs.create_check_constraint("status", JOB_STATUS)
        jobs.create_index("ix_training_jobs_created_at", ["created_at"])

    op.create_table(
        "shadow_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("sample_fraction", sa.Float(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("until", TIMESTAMP, nullable=False),
        sa.Column("stopped_at", TIMESTAMP, nullable=True),
        sa.Column("stopped_by", sa.String(128), nullable=True),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.id"], name="fk_shadow_runs_station_id_stations"
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name="fk_shadow_runs_model_version_id_model_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_runs"),
    )
    op.create_index("ix_shadow_runs_station_id_id", "shadow_runs", ["station_id", "id"])

    op.create_table(
        "shadow_results",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(2), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("defects", sa.JSON(), nullable=False),
        sa.Column("production_verdict", sa.String(2), nullable=False),
        sa.Column("production_score", sa.Float(), nullable=False),
        sa.Column("model_ms", sa.Float(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("verdict IN ('OK', 'NG')", name="ck_shadow_results_verdict"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["shadow_runs.id"], name="fk_shadow_results_run_id_shadow_runs"
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["results.result_id"],
            name="fk_shadow_results_result_id_results",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_results"),
        sa.UniqueConstraint("run_id", "result_id", name="uq_shadow_results_run_id_result_id"),
    )
    op.create_index("ix_shadow_results_result_id", "shadow_results", ["result_id"])

    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("candidate_version_id", sa.Integer(), nullable=False),
        sa.Column("production_version_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(256), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.id"], name="fk_comparisons_station_id_stations"
        ),
        sa.ForeignKeyConstraint(
            ["candidate_version_id"],
            ["model_versions.id"],
            name="fk_comparisons_candidate_version_id_model_versions",
        ),
        sa.ForeignKeyConstraint(
            ["production_version_id"],
            ["model_versions.id"],
            name="fk_comparisons_production_version_id_model_versions",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_comparisons"),
    )


def downgrade() -> None:
    op.drop_table("comparisons")
    op.drop_index("ix_shadow_results_result_id", table_name="shadow_results")
    op.drop_table("shadow_results")
    op.drop_index("ix_shadow_runs_station_id_id", table_name="shadow_runs")
    op.drop_table("shadow_runs")
    with op.batch_alter_table("training_jobs") as jobs:
        jobs.drop_index("ix_training_jobs_created_at")
        jobs.drop_constraint("status", type_="check")
        for column in (
            "worker", "cancel_requested_at", "log_tail", "error", "metrics", "epoch",
            "percent", "stage", "updated_at", "started_at", "created_by", "station",
            "data_path", "data", "recipe_source",
        ):  # fmt: skip
            jobs.drop_column(column)
