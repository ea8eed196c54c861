"""Report rollups: counts per 15-minute bucket (UTC) kept up to date by database triggers in
the transaction that stores a result, its defects or a QA label, so a report reads a few
thousand rollup rows instead of millions of results (`reports/queries.py`, docs/reports.md).

- `report_counts`: per bucket, station, line, product and model version: parts, NG, first
  inspections of a serial at the station and first-pass OKs, parts near the threshold,
  standing QA labels and those that disagree with the verdict.
- `report_defect_counts`: parts per defect class, from the model (`model`) and from the
  standing QA labels (`qa`).
- `report_score_counts`: parts per score bin (0.05 wide, the last open from 0.95) per model
  version: the production score distribution model health compares with validation.

On SQLite they are WITHOUT ROWID tables: a report reads a range of the primary key, and the
rows lie in it, not behind it (at 10 million results the score bins took 7.6 s, one rowid
lookup a row).

The existing results are counted into them here. A later migration that recreates
`results`, `result_defects` or `labels` on SQLite (batch mode copies the table) drops their
triggers and must create them again; `test_report_rollups.py` checks they are there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Self-contained on purpose: a migration must not change when the code does later.
TIMESTAMP = sa.DateTime(timezone=True)
BUCKET_S = 900
NEAR = 0.05
"""A part is near the threshold when its score is within this of it (normalised units)."""
BINS = 20
BINS_PER_UNIT = 20
"""Score bins are 1/20 = 0.05 wide (scores times 20: exact for the bin edges, unlike / 0.05)."""
UNSPECIFIED = "(unspecified)"
COUNT_KEYS = "bucket, station, line, product, model_name, model_version"
DEFECT_KEYS = "bucket, station, line, product, source, defect_class"
SCORE_KEYS = "bucket, station, model_name, model_version, bin"
TRIGGERS = {
    "results": "report_count_result",
    "result_defects": "report_count_defect",
    "labels": "report_count_label",
}


def _run(sql: str) -> None:
    # On the driver: the SQL has colons (times) and no parameters.
    op.get_bind().exec_driver_sql(sql)


def _bucket(dialect: str, at: str) -> str:
    """The start of the UTC 15-minute bucket of timestamp `at`, as stored."""
    if dialect == "sqlite":
        # Timestamps are text, 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's format).
        return (
            f"substr({at}, 1, 14) || printf('%02d', (CAST(substr({at}, 15, 2) AS INTEGER) "
            f"/ 15) * 15) || ':00.000000'"
        )
    return f"to_timestamp(floor(extract(epoch FROM {at}) / {BUCKET_S}) * {BUCKET_S})"


def _bin(dialect: str, score: str) -> str:
    # CAST truncates towards zero: the same as floor for the bins kept, 0 for any below.
    if dialect == "sqlite":
        return f"min(max(CAST({score} * {BINS_PER_UNIT} AS INTEGER), 0), {BINS - 1})"
    return f"LEAST(GREATEST(CAST(trunc({score} * {BINS_PER_UNIT}) AS INTEGER), 0), {BINS - 1})"


def _first(r: str) -> str:
    """1 for a part's first inspection at its station: no result with a smaller id (ids are
    time-ordered) of the same serial there; a result without serial is its own part."""
    return (
        f"CASE WHEN {r}.serial IS NULL THEN 1 WHEN EXISTS (SELECT 1 FROM results e "
        f"WHERE e.station = {r}.station AND e.serial = {r}.serial "
        f"AND e.result_id < {r}.result_id) THEN 0 ELSE 1 END"
    )


def _result_keys(dialect: str, r: str) -> str:
    return (
        f"{_bucket(dialect, f'{r}.received_at')} AS bucket, {r}.station AS station, "
        f"COALESCE({r}.line, '') AS line, COALESCE({r}.product, '') AS product"
    )


def _upsert(table: str, keys: str, *counts: str) -> str:
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counts)
    return f"ON CONFLICT ({keys}) DO UPDATE SET {updates}"


def _counts_of_result(dialect: str) -> str:
    """Count the new result NEW into report_counts."""
    return (
        f"INSERT INTO report_counts ({COUNT_KEYS}, parts, ng, first, first_ok, near_threshold, "
        "labelled, overridden) "
        "SELECT bucket, station, line, product, model_name, model_version, 1, ng, f, "
        "f * (1 - ng), near, 0, 0 FROM ("
        f"SELECT {_result_keys(dialect, 'NEW')}, NEW.model_name AS model_name, "
        "NEW.model_version AS model_version, "
        "CASE WHEN NEW.verdict = 'NG' THEN 1 ELSE 0 END AS ng, "
        f"{_first('NEW')} AS f, "
        f"CASE WHEN abs(NEW.score - NEW.threshold) < {NEAR} THEN 1 ELSE 0 END AS near"
        ") AS x WHERE true "
        + _upsert("report_counts", COUNT_KEYS, "parts", "ng", "first", "first_ok", "near_threshold")
    )


def _score_of_result(dialect: str) -> str:
    return (
        f"INSERT INTO report_score_counts ({SCORE_KEYS}, parts) "
        f"SELECT {_bucket(dialect, 'NEW.received_at')}, NEW.station, NEW.model_name, "
        f"NEW.model_version, {_bin(dialect, 'NEW.score')}, 1 WHERE true "
        + _upsert("report_score_counts", SCORE_KEYS, "parts")
    )


def _class_of_defect(dialect: str) -> str:
    """A part counts once per class the model found on it: at its first defect of the class."""
    return (
        f"INSERT INTO report_defect_counts ({DEFECT_KEYS}, parts) "
        f"SELECT {_result_keys(dialect, 'r')}, 'model', NEW.\"class\", 1 "
        "FROM results r WHERE r.result_id = NEW.result_id AND NOT EXISTS ("
        "SELECT 1 FROM result_defects d WHERE d.result_id = NEW.result_id "
        'AND d."class" = NEW."class" AND d.id < NEW.id) '
        + _upsert("report_defect_counts", DEFECT_KEYS, "parts")
    )


# The label NEW corrects, if that label was standing until NEW (no earlier correction of it).
_PRIOR = (
    "p.id = NEW.overrides_label_id AND NOT EXISTS (SELECT 1 FROM labels o "
    "WHERE o.overrides_label_id = p.id AND o.id < NEW.id)"
)


def _label_counts(dialect: str) -> list[str]:
    """A QA label NEW on a result: one more standing label unless it replaces one, the
    disagreement with the verdict, its class (NG) in the QA Pareto, its predecessor's out."""
    result_keys = _result_keys(dialect, "r")
    return [
        "UPDATE report_counts SET "
        "labelled = report_counts.labelled + 1 - x.prior, "
        "overridden = report_counts.overridden + x.disagrees - x.prior_disagreed "
        f"FROM (SELECT {result_keys}, r.model_name AS model_name, "
        "r.model_version AS model_version, "
        f"(SELECT COUNT(*) FROM labels p WHERE {_PRIOR}) AS prior, "
        "CASE WHEN NEW.label <> r.verdict THEN 1 ELSE 0 END AS disagrees, "
        f"(SELECT COUNT(*) FROM labels p WHERE {_PRIOR} AND p.label <> r.verdict) "
        "AS prior_disagreed FROM results r WHERE r.result_id = NEW.result_id) AS x "
        "WHERE report_counts.bucket = x.bucket AND report_counts.station = x.station "
        "AND report_counts.line = x.line AND report_counts.product = x.product "
        "AND report_counts.model_name = x.model_name "
        "AND report_counts.model_version = x.model_version",
        f"INSERT INTO report_defect_counts ({DEFECT_KEYS}, parts) "
        f"SELECT {result_keys}, 'qa', COALESCE(NEW.defect_class, '{UNSPECIFIED}'), 1 "
        "FROM results r WHERE r.result_id = NEW.result_id AND NEW.label = 'NG' "
        + _upsert("report_defect_counts", DEFECT_KEYS, "parts"),
        "UPDATE report_defect_counts SET parts = report_defect_counts.parts - 1 "
        f"FROM (SELECT {result_keys}, COALESCE(p.defect_class, '{UNSPECIFIED}') AS cls "
        f"FROM results r JOIN labels p ON {_PRIOR} "
        "WHERE r.result_id = NEW.result_id AND p.label = 'NG') AS x "
        "WHERE report_defect_counts.bucket = x.bucket "
        "AND report_defect_counts.station = x.station AND report_defect_counts.line = x.line "
        "AND report_defect_counts.product = x.product "
        "AND report_defect_counts.source = 'qa' AND report_defect_counts.defect_class = x.cls",
    ]


def _trigger_statements(dialect: str) -> dict[str, list[str]]:
    return {
        "results": [_counts_of_result(dialect), _score_of_result(dialect)],
        "result_defects": [_class_of_defect(dialect)],
        "labels": _label_counts(dialect),
    }


def _create_triggers(dialect: str) -> None:
    for table, statements in _trigger_statements(dialect).items():
        name = TRIGGERS[table]
        when = "NEW.result_id IS NOT NULL" if table == "labels" else "true"
        body = ";\n".join(statements) + ";"
        if dialect == "sqlite":
            _run(
                f"CREATE TRIGGER {name} AFTER INSERT ON {table} FOR EACH ROW WHEN {when} "
                f"BEGIN\n{body}\nEND"
            )
        else:
            _run(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n{body}\nRETURN NULL;\nEND\n$$"
            )
            _run(
                f"CREATE TRIGGER {name} AFTER INSERT ON {table} FOR EACH ROW WHEN ({when}) "
                f"EXECUTE FUNCTION {name}()"
            )


def _standing(label: str) -> str:
    return f"NOT EXISTS (SELECT 1 FROM labels o WHERE o.overrides_label_id = {label}.id)"


def _backfill(dialect: str) -> None:
    """Count the results stored before this revision, as the triggers would have."""
    _run(
        f"INSERT INTO report_counts ({COUNT_KEYS}, parts, ng, first, first_ok, near_threshold, "
        "labelled, overridden) "
        f"SELECT {COUNT_KEYS}, COUNT(*), SUM(ng), SUM(f), SUM(f * (1 - ng)), SUM(near), "
        "SUM(labelled), SUM(overridden) FROM ("
        f"SELECT {_result_keys(dialect, 'r')}, r.model_name AS model_name, "
        "r.model_version AS model_version, "
        "CASE WHEN r.verdict = 'NG' THEN 1 ELSE 0 END AS ng, "
        f"{_first('r')} AS f, "
        f"CASE WHEN abs(r.score - r.threshold) < {NEAR} THEN 1 ELSE 0 END AS near, "
        f"(SELECT COUNT(*) FROM labels l WHERE l.result_id = r.result_id AND {_standing('l')}) "
        "AS labelled, "
        "(SELECT COUNT(*) FROM labels l WHERE l.result_id = r.result_id AND l.label <> r.verdict "
        f"AND {_standing('l')}) AS overridden "
        f"FROM results r) AS x GROUP BY {COUNT_KEYS}"
    )
    _run(
        f"INSERT INTO report_score_counts ({SCORE_KEYS}, parts) "
        f"SELECT bucket, station, model_name, model_version, bin, COUNT(*) FROM ("
        f"SELECT {_bucket(dialect, 'received_at')} AS bucket, station, model_name, "
        f"model_version, {_bin(dialect, 'score')} AS bin FROM results) AS x "
        f"GROUP BY {SCORE_KEYS}"
    )
    _run(
        f"INSERT INTO report_defect_counts ({DEFECT_KEYS}, parts) "
        f"SELECT {DEFECT_KEYS}, COUNT(*) FROM ("
        f"SELECT DISTINCT {_result_keys(dialect, 'r')}, 'model' AS source, "
        'd."class" AS defect_class, r.result_id '
        "FROM result_defects d JOIN results r ON r.result_id = d.result_id "
        "UNION ALL "
        f"SELECT {_result_keys(dialect, 'r')}, 'qa' AS source, "
        f"COALESCE(l.defect_class, '{UNSPECIFIED}') AS defect_class, r.result_id "
        "FROM labels l JOIN results r ON r.result_id = l.result_id "
        f"WHERE l.label = 'NG' AND {_standing('l')}"
        f") AS x GROUP BY {DEFECT_KEYS}"
    )


def _key_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("bucket", TIMESTAMP, primary_key=True),
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("line", sa.String(64), primary_key=True),
        sa.Column("product", sa.String(128), primary_key=True),
    ]


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "report_counts",
        *_key_columns(),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("model_version", sa.String(128), primary_key=True),
        *(
            _count(name)
            for name in (
                "parts",
                "ng",
                "first",
                "first_ok",
                "near_threshold",
                "labelled",
                "overridden",
            )
        ),
        sa.PrimaryKeyConstraint(*COUNT_KEYS.split(", "), name="pk_report_counts"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "report_defect_counts",
        *_key_columns(),
        sa.Column("source", sa.String(8), primary_key=True),
        sa.Column("defect_class", sa.String(64), primary_key=True),
        _count("parts"),
        sa.PrimaryKeyConstraint(*DEFECT_KEYS.split(", "), name="pk_report_defect_counts"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "report_score_counts",
        sa.Column("bucket", TIMESTAMP, primary_key=True),
        sa.Column("station", sa.String(64), primary_key=True),
        sa.Column("model_name", sa.String(128), primary_key=True),
        sa.Column("model_version", sa.String(128), primary_key=True),
        sa.Column("bin", sa.Integer(), primary_key=True),
        _count("parts"),
        sa.PrimaryKeyConstraint(*SCORE_KEYS.split(", "), name="pk_report_score_counts"),
        sqlite_with_rowid=False,
    )
    _backfill(dialect)
    _create_triggers(dialect)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table, name in TRIGGERS.items():
        _run(f"DROP TRIGGER IF EXISTS {name}" + ("" if dialect == "sqlite" else f" ON {table}"))
        if dialect != "sqlite":
            _run(f"DROP FUNCTION IF EXISTS {name}()")
    for table in ("report_score_counts", "report_defect_counts", "report_counts"):
        op.drop_table(table)
