"""The store's SQL tables as SQLAlchemy 2 typed ORM classes (one class a table, `...Row`).

The schema itself is created and changed only by the Alembic migrations in `migrations/`;
these classes must match them (a test compares the two). Every timestamp is stored and
returned as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLES = ("line", "qa", "manager", "admin")
"""API key roles: `line` inspects, `qa` labels, trains and promotes, `manager` reads reports,
`admin` manages keys and settings."""

IMAGE_KINDS = ("image", "heatmap")
DEFAULT_INSTANCE = "default"
"""The service instance a store is unless told otherwise (and that of rows from before)."""
VERDICTS = ("OK", "NG")

BigId = BigInteger().with_variant(Integer, "sqlite")
"""Ids of the tables that grow with every part; SQLite only autoincrements `INTEGER`."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in as UTC and comes out timezone-aware, on SQLite too.

    SQLite keeps no zone, so values are normalised to UTC before they are written. A naive
    datetime is taken to be UTC already (the service stamps times with `datetime.now(UTC)`).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return to_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return to_utc(value)


def to_utc(value: datetime) -> datetime:
    """`value` as aware UTC; a naive value is taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    # Named constraints, so migrations can alter them by name on every database.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class StationRow(Base):
    """An inspection station (a camera position on a line); the unit models are deployed to."""

    __tablename__ = "stations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    line: Mapped[str | None] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ModelVersionRow(Base):
    """A registered model version folder (immutable once written by training)."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(128))
    family: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class DeploymentRow(Base):
    """One promotion of a model version to a station. Rows are never deleted: they are the
    history. At most one row per station is active; a rollback marks the row it leaves."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_station_id_id", "station_id", "id"),
        # One active deployment per station, enforced by the database itself.
        Index(
            "uq_deployments_active_station",
            "station_id",
            unique=True,
            sqlite_where=text("active"),
            postgresql_where=text("active"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    promoted_at: Mapped[datetime] = mapped_column(default=utc_now)
    promoted_by: Mapped[str] = mapped_column(String(128))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    rolled_back_at: Mapped[datetime | None] = mapped_column()

    model_version: Mapped[ModelVersionRow] = relationship(lazy="joined")


class ResultRow(Base):
    """One inspected part: the `InspectionResult` contract flattened into columns."""

    __tablename__ = "results"
    __table_args__ = (
        CheckConstraint("verdict IN ('OK', 'NG')", name="verdict"),
        Index("ix_results_station_received_at", "station", "received_at"),
        Index("ix_results_serial", "serial"),
        Index("ix_results_station_serial_result_id", "station", "serial", "result_id"),
        Index("ix_results_verdict", "verdict"),
        Index("ix_results_received_at", "received_at"),
        Index("uq_results_station_idempotency_key", "station", "idempotency_key", unique=True),
    )

    result_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(2))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    station: Mapped[str] = mapped_column(String(64))
    line: Mapped[str | None] = mapped_column(String(64))
    product: Mapped[str | None] = mapped_column(String(128))
    serial: Mapped[str | None] = mapped_column(String(128))
    camera: Mapped[str | None] = mapped_column(String(64))
    captured_at: Mapped[datetime | None] = mapped_column()
    received_at: Mapped[datetime] = mapped_column()
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(128))
    timings_ms: Mapped[dict[str, Any]] = mapped_column()
    image_url: Mapped[str | None] = mapped_column(Text)
    heatmap_url: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    """The client's key for this part, if it sent one: a retry with the same key at the same
    station gets this result back instead of storing a second one."""

    defects: Mapped[list[ResultDefectRow]] = relationship(
        order_by="ResultDefectRow.id", cascade="all, delete-orphan", lazy="selectin"
    )


class ResultDefectRow(Base):
    """One defect found on a part (class, score, box in original image pixels)."""

    __tablename__ = "result_defects"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    result_id: Mapped[str] = mapped_column(
        ForeignKey("results.result_id", ondelete="CASCADE"), index=True
    )
    class_: Mapped[str] = mapped_column("class", String(64))
    score: Mapped[float] = mapped_column(Float)
    x0: Mapped[int] = mapped_column(Integer)
    y0: Mapped[int] = mapped_column(Integer)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    area_px: Mapped[int] = mapped_column(Integer)


class ImageRow(Base):
    """A retained image or heat map file under the workspace's image folder."""

    __tablename__ = "images"
    __table_args__ = (
        CheckConstraint("kind IN ('image', 'heatmap')", name="kind"),
        Index("ix_images_instance_created_at", "instance", "created_at"),
        Index("ix_images_instance_path", "instance", "path"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    result_id: Mapped[str] = mapped_column(
        ForeignKey("results.result_id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    """Relative to the image folder (preferred, so the workspace can move) or absolute."""
    bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    labeled: Mapped[bool] = mapped_column(Boolean, default=False)
    """Set when a QA engineer labels the result; retention never deletes such an image."""
    instance: Mapped[str] = mapped_column(String(64), server_default=DEFAULT_INSTANCE)
    """The service instance that stored it, in its own image folder: services sharing one
    database each apply retention to their own images only."""


class LabelClassRow(Base):
    """A defect class the label store knows (name, optional code the PLC receives)."""

    __tablename__ = "label_classes"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    plc_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class SampleRow(Base):
    """One image known to the label store: a production result's retained image
    (`result_id`) or an imported file kept content-addressed under `<home>/labels/`."""

    __tablename__ = "samples"
    __table_args__ = (
        CheckConstraint("split IN ('train', 'val', 'test')", name="split"),
        Index("uq_samples_result_id", "result_id", unique=True),
        # An imported file is one sample however often it is imported.
        Index(
            "uq_samples_sha256_imported",
            "sha256",
            unique=True,
            sqlite_where=text("result_id IS NULL"),
            postgresql_where=text("result_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    """Of the image's bytes; None for a result's image not yet read."""
    path: Mapped[str | None] = mapped_column(Text)
    """An imported image: relative to `<home>/labels/`; a result's image: None (its image row
    says where it is)."""
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    result_id: Mapped[str | None] = mapped_column(ForeignKey("results.result_id"))
    reference_sha256: Mapped[str | None] = mapped_column(String(64))
    reference_path: Mapped[str | None] = mapped_column(Text)
    """The golden template to compare against (aligned inspection), relative to
    `<home>/labels/`."""
    split: Mapped[str | None] = mapped_column(String(8))
    """A split the sample must go to when a dataset is frozen; None: chosen then."""
    source: Mapped[str | None] = mapped_column(String(128))
    """Where it came from: the import's name, or the result's station."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class LabelRow(Base):
    """A QA engineer's label (annotation) on a sample: the verdict, a main defect class and
    its regions. A correction is a new row pointing at the old one; the history is kept."""

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_overrides_label_id", "overrides_label_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[str | None] = mapped_column(ForeignKey("results.result_id"), index=True)
    """The labelled sample's result, if it is a production image (reports read these)."""
    label: Mapped[str] = mapped_column(String(16))
    defect_class: Mapped[str | None] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    overrides_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    sample_id: Mapped[int | None] = mapped_column(ForeignKey("samples.id"), index=True)
    overrides_model: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    """The label disagrees with the model's verdict or defect classes on the result."""

    regions: Mapped[list[LabelRegionRow]] = relationship(
        order_by="LabelRegionRow.id", cascade="all, delete-orphan", lazy="selectin"
    )


class LabelRegionRow(Base):
    """One labelled defect region: class, box in image pixels, optional polygon or mask."""

    __tablename__ = "label_regions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id", ondelete="CASCADE"), index=True)
    class_: Mapped[str] = mapped_column("class", String(64))
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    polygon: Mapped[list[list[float]] | None] = mapped_column(JSON(none_as_null=True))
    """Points [[x, y], ...] in image pixels."""
    mask_sha256: Mapped[str | None] = mapped_column(String(64))
    """A PNG mask (nonzero: the region) under `<home>/labels/masks/<sha256>.png`."""


class DatasetVersionRow(Base):
    """A frozen dataset version under the workspace (id: its content hash)."""

    __tablename__ = "dataset_versions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    path: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    created_by: Mapped[str | None] = mapped_column(String(128))


JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


class TrainingJobRow(Base):
    """A training run started from the service, run by a worker through the job queue
    (`service/job_queue.py`); its full log lives under `<home>/jobs/<id>/` of the worker's
    machine, its progress and the log's tail here."""

    __tablename__ = "training_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
        Index("ix_training_jobs_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    recipe: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The recipe as it was when the job started (a later edit of the file changes nothing)."""
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column()
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    """The version the job produced: imported and registered, never promoted by the job."""
    recipe_source: Mapped[str] = mapped_column(String(256), server_default="")
    """The shipped recipe's name or the recipe file the job was started from."""
    data: Mapped[str] = mapped_column(Text, server_default="")
    """The data as given: a dataset version id or a folder inside the workspace."""
    data_path: Mapped[str] = mapped_column(Text, server_default="")
    """The folder the worker trains on."""
    station: Mapped[str | None] = mapped_column(String(64))
    """The station the retrain is meant for (compare and shadow start from it), if named."""
    created_by: Mapped[str] = mapped_column(String(128), server_default="")
    started_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime | None] = mapped_column()
    """The worker's last progress report (a running job that stops reporting is lost)."""
    stage: Mapped[str | None] = mapped_column(String(32))
    percent: Mapped[float | None] = mapped_column(Float)
    epoch: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    error: Mapped[str | None] = mapped_column(Text)
    """Why a failed job failed, in the words of the step that failed."""
    log_tail: Mapped[str] = mapped_column(Text, server_default="")
    """The last lines of the job's log, for a page on any machine."""
    cancel_requested_at: Mapped[datetime | None] = mapped_column()
    worker: Mapped[str | None] = mapped_column(String(128))
    """`host:pid` of the worker running it."""


class ShadowRunRow(Base):
    """A candidate model run beside a station's production model on its live parts, off the
    request path, from `started_at` until `until` or a stop."""

    __tablename__ = "shadow_runs"
    __table_args__ = (Index("ix_shadow_runs_station_id_id", "station_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    sample_fraction: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    started_by: Mapped[str] = mapped_column(String(128))
    until: Mapped[datetime] = mapped_column()
    stopped_at: Mapped[datetime | None] = mapped_column()
    stopped_by: Mapped[str | None] = mapped_column(String(128))
    seen: Mapped[int] = mapped_column(Integer, default=0)
    """Parts of the station answered while the run was on (every service instance)."""
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    """Parts sampled but dropped because the shadow queue was full."""


class ShadowResultRow(Base):
    """The candidate's answer on one live part, beside the verdict the line got."""

    __tablename__ = "shadow_results"
    __table_args__ = (
        UniqueConstraint("run_id", "result_id"),
        CheckConstraint("verdict IN ('OK', 'NG')", name="verdict"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("shadow_runs.id"))
    result_id: Mapped[str] = mapped_column(
        ForeignKey("results.result_id", ondelete="CASCADE"), index=True
    )
    verdict: Mapped[str] = mapped_column(String(2))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    defects: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    production_verdict: Mapped[str] = mapped_column(String(2))
    production_score: Mapped[float] = mapped_column(Float)
    model_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


class ComparisonRow(Base):
    """A candidate against a station's production model on the same held-out parts: its
    progress while it runs, then the figures side by side."""

    __tablename__ = "comparisons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"))
    candidate_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    production_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    source: Mapped[str] = mapped_column(String(256))
    """`labels` (the station's labelled parts) or `dataset:<id or folder>`."""
    status: Mapped[str] = mapped_column(String(16))
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    figures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None] = mapped_column()


class ApiKeyRow(Base):
    """An API key: its public prefix and the sha256 of the whole key, never the key itself."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('line', 'qa', 'manager', 'admin')", name="role"),
        UniqueConstraint("prefix"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    revoked_at: Mapped[datetime | None] = mapped_column()
    stations: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    """The stations the key may act on; NULL: every station."""
    expires_at: Mapped[datetime | None] = mapped_column()
    """After this the key is refused; NULL: it does not expire."""
    last_used_at: Mapped[datetime | None] = mapped_column()
    """When it last let a caller in, to the minute (updated at most once a minute)."""


class AuditLogRow(Base):
    """Who changed what: promotions, rollbacks, key changes."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utc_now)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxRow(Base):
    """A result waiting to be delivered to one sink (MES webhook, MQTT, OPC UA).

    Written in the same transaction as the result, so a result is never stored without its
    deliveries nor delivered without being stored; (result_id, sink) is the idempotency key.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("result_id", "sink"),
        # The rows still to deliver, by sink and station in order (the delivery worker's
        # claim asks for a station's earlier rows).
        Index(
            "ix_outbox_queue",
            "sink",
            "station",
            "id",
            sqlite_where=text("delivered_at IS NULL AND dead_at IS NULL"),
            postgresql_where=text("delivered_at IS NULL AND dead_at IS NULL"),
        ),
        Index("ix_outbox_dead_at", "dead_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    result_id: Mapped[str] = mapped_column(ForeignKey("results.result_id", ondelete="CASCADE"))
    sink: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utc_now)
    delivered_at: Mapped[datetime | None] = mapped_column()
    station: Mapped[str] = mapped_column(String(64), server_default="")
    """The result's station: a station's rows go to a sink in order."""
    last_error: Mapped[str | None] = mapped_column(Text)
    """Why the last try failed (None once delivered or never tried)."""
    dead_at: Mapped[datetime | None] = mapped_column()
    """When the row became a dead letter (too many failures); a retry clears it."""


class ReportCountRow(Base):
    """Report rollup: the parts of one 15-minute UTC bucket, station, line, product and model
    version. Kept by database triggers (migration 0006) as results and labels are stored;
    `line` and `product` are '' for results without."""

    __tablename__ = "report_counts"
    __table_args__ = ({"sqlite_with_rowid": False},)

    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    station: Mapped[str] = mapped_column(String(64), primary_key=True)
    line: Mapped[str] = mapped_column(String(64), primary_key=True)
    product: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    parts: Mapped[int] = mapped_column(Integer)
    ng: Mapped[int] = mapped_column(Integer)
    first: Mapped[int] = mapped_column(Integer)
    """First inspections of a serial at the station (a result without serial is one)."""
    first_ok: Mapped[int] = mapped_column(Integer)
    near_threshold: Mapped[int] = mapped_column(Integer)
    labelled: Mapped[int] = mapped_column(Integer)
    """Standing QA labels (none corrects them) on these parts."""
    overridden: Mapped[int] = mapped_column(Integer)
    """Standing QA labels that disagree with the verdict."""


class ReportDefectCountRow(Base):
    """Report rollup: parts per defect class found by the model (`source` 'model') or given
    by a standing QA label (`qa`), per bucket, station, line and product."""

    __tablename__ = "report_defect_counts"
    __table_args__ = ({"sqlite_with_rowid": False},)

    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    station: Mapped[str] = mapped_column(String(64), primary_key=True)
    line: Mapped[str] = mapped_column(String(64), primary_key=True)
    product: Mapped[str] = mapped_column(String(128), primary_key=True)
    source: Mapped[str] = mapped_column(String(8), primary_key=True)
    defect_class: Mapped[str] = mapped_column(String(64), primary_key=True)
    parts: Mapped[int] = mapped_column(Integer)


class ReportScoreCountRow(Base):
    """Report rollup: parts per score bin (`bin` * 0.05 up to the next; the last bin open
    from 0.95) per bucket, station and model version."""

    __tablename__ = "report_score_counts"
    __table_args__ = ({"sqlite_with_rowid": False},)

    bucket: Mapped[datetime] = mapped_column(primary_key=True)
    station: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(128), primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True)
    parts: Mapped[int] = mapped_column(Integer)
