"""The label store: samples (a production result's image or an imported file), defect
classes, and labels on samples; a correction is a new label pointing at the one it replaces.

The stable API the pages, routes, CLI and imports call (each call one transaction):

    sample_id = store.sample_for_result(result_id)          # a result's image as a sample
    label = store.label_sample(sample_id, Annotation("NG", (Region("scratch", box),)),
                               author="qa:alice")          # replaces the standing label
    store.add_label(result_id, "NG", author, defect_class)  # the same, by result
    store.list_samples(SampleFilter(labelled=False))        # with each one's standing label
    store.sample(sample_id); store.label_history(sample_id)
    store.add_class("scratch", plc_code=3); store.classes()
    store.import_samples([NewSample(...)], author, new_classes)   # all or nothing
    store.add_dataset_version(...); store.dataset_versions(); store.dataset_version(id)

A label on a result's sample also names the result (reports read it), marks the result's
images `labeled` (retention never deletes them) and records whether it overrides the model
(its verdict or defect classes differ from the result's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, exists, select
from sqlalchemy.orm import Session, aliased

from defectlens.datasets.labels.model import (
    Annotation,
    Region,
    Split,
    Verdict,
    check_annotation,
)
from defectlens.errors import Conflict, InputError, NotFound
from defectlens.inference.store.audit import record_audit
from defectlens.inference.store.checks import check_row
from defectlens.inference.store.database import Database
from defectlens.inference.store.tables import (
    VERDICTS,
    DatasetVersionRow,
    ImageRow,
    LabelClassRow,
    LabelRegionRow,
    LabelRow,
    ResultRow,
    SampleRow,
)

MAX_SAMPLE_PAGE = 1000


@dataclass(frozen=True)
class LabelClass:
    name: str
    plc_code: int | None


@dataclass(frozen=True)
class Label:
    """A label as stored: its annotation, who made it and what it replaced."""

    id: int
    sample_id: int | None
    result_id: str | None
    annotation: Annotation
    author: str
    created_at: datetime
    overrides_label_id: int | None
    overrides_model: bool

    @classmethod
    def of(cls, row: LabelRow) -> Label:
        regions = tuple(
            Region(
                defect_class=r.class_,
                box=(r.x0, r.y0, r.x1, r.y1),
                polygon=None if r.polygon is None else tuple((p[0], p[1]) for p in r.polygon),
                mask_sha256=r.mask_sha256,
            )
            for r in row.regions
        )
        annotation = Annotation(cast(Verdict, row.label), regions, row.defect_class)
        return cls(
            id=row.id,
            sample_id=row.sample_id,
            result_id=row.result_id,
            annotation=annotation,
            author=row.author,
            created_at=row.created_at,
            overrides_label_id=row.overrides_label_id,
            overrides_model=row.overrides_model,
        )


@dataclass(frozen=True)
class Sample:
    """A sample and its standing label (None: not labelled yet)."""

    id: int
    sha256: str | None
    path: str | None
    """An imported image, relative to `<home>/labels/`; None for a result's image."""
    width: int | None
    height: int | None
    result_id: str | None
    reference_sha256: str | None
    reference_path: str | None
    split: Split | None
    source: str | None
    created_at: datetime
    label: Label | None

    @classmethod
    def of(cls, row: SampleRow, label: LabelRow | None) -> Sample:
        return cls(
            id=row.id,
            sha256=row.sha256,
            path=row.path,
            width=row.width,
            height=row.height,
            result_id=row.result_id,
            reference_sha256=row.reference_sha256,
            reference_path=row.reference_path,
            split=cast(Split | None, row.split),
            source=row.source,
            created_at=row.created_at,
            label=None if label is None else Label.of(label),
        )


@dataclass(frozen=True)
class SampleFilter:
    """Which samples a listing, an export or a freeze takes (every field optional)."""

    source: str | None = None
    """The import's name or the result's station."""
    labelled: bool | None = None
    verdict: Verdict | None = None
    defect_class: str | None = None
    """Samples whose standing label has this class."""
    labelled_since: datetime | None = None
    labelled_until: datetime | None = None
    split: Split | None = None
    imported: bool | None = None
    """True: imported files only; False: production results only."""


@dataclass(frozen=True)
class NewSample:
    """An imported image, its file already in the label store's folder, and its label."""

    sha256: str
    path: str
    width: int
    height: int
    annotation: Annotation
    reference_sha256: str | None = None
    reference_path: str | None = None
    split: Split | None = None
    source: str | None = None


@dataclass(frozen=True)
class ImportCounts:
    samples_added: int
    samples_known: int
    """Files the store had already (same sha256); their label is replaced if it differs."""
    labels_added: int
    classes_added: tuple[str, ...]


@dataclass(frozen=True)
class DatasetVersion:
    id: str
    name: str
    path: str
    counts: dict[str, Any]
    created_at: datetime
    created_by: str | None

    @classmethod
    def of(cls, row: DatasetVersionRow) -> DatasetVersion:
        return cls(row.id, row.name, row.path, dict(row.counts), row.created_at, row.created_by)


_LATER = aliased(LabelRow)


def _standing() -> Any:
    """The condition that a label (`LabelRow`) is standing: no later label replaces it."""
    return ~exists().where(_LATER.overrides_label_id == LabelRow.id)


class LabelStore:
    """Samples, classes, labels and dataset versions."""

    db: Database

    # --- labels -------------------------------------------------------------------------

    def add_label(
        self,
        result_id: str,
        label: str,
        author: str,
        defect_class: str | None = None,
        overrides_label_id: int | None = None,
    ) -> int:
        """Record a QA engineer's verdict on a result (its sample is made if needed); its
        images become exempt from retention. The label replaces the result's standing one;
        `overrides_label_id`, if given, must be that one. Returns the label's id."""
        if label not in VERDICTS:
            raise InputError(f"label {label!r}: expected one of {', '.join(VERDICTS)}")
        annotation = Annotation(cast(Verdict, label), (), defect_class)
        with self.db.write() as session:
            sample = _sample_of_result(session, result_id)
            if overrides_label_id is not None:
                previous = session.get(LabelRow, overrides_label_id)
                if previous is None or previous.result_id != result_id:
                    raise InputError(
                        f"label {overrides_label_id} is not a label of result {result_id}"
                    )
            standing = _standing_label(session, sample.id)
            _check_replaces(sample, standing, overrides_label_id)
            return _add_label(session, sample, annotation, author, standing).id

    def sample_for_result(self, result_id: str) -> int:
        """The sample of a result's image, made on first use; `NotFound` if no such result."""
        with self.db.write() as session:
            return _sample_of_result(session, result_id).id

    def label_sample(
        self,
        sample_id: int,
        annotation: Annotation,
        author: str,
        replaces: int | None = None,
    ) -> Label:
        """Label a sample; the label replaces its standing one (history kept). `replaces`,
        if given, must be the standing label's id, else `Conflict` (someone labelled it in
        the meantime). Boxes and polygons are checked against the image size where known."""
        with self.db.write() as session:
            sample = session.scalars(
                select(SampleRow).where(SampleRow.id == sample_id).with_for_update()
            ).one_or_none()
            if sample is None:
                raise NotFound(f"sample {sample_id} not found")
            standing = _standing_label(session, sample.id)
            _check_replaces(sample, standing, replaces)
            return Label.of(_add_label(session, sample, annotation, author, standing))

    def label_history(self, sample_id: int) -> list[Label]:
        """Every label of a sample, oldest first."""
        with self.db.read() as session:
            if session.get(SampleRow, sample_id) is None:
                raise NotFound(f"sample {sample_id} not found")
            rows = session.scalars(
                select(LabelRow).where(LabelRow.sample_id == sample_id).order_by(LabelRow.id)
            )
            return [Label.of(row) for row in rows]

    # --- samples ------------------------------------------------------------------------

    def sample(self, sample_id: int) -> Sample:
        """One sample with its standing label; `NotFound` if there is none with that id."""
        with self.db.read() as session:
            row = session.get(SampleRow, sample_id)
            if row is None:
                raise NotFound(f"sample {sample_id} not found")
            return Sample.of(row, _standing_label(session, sample_id))

    def list_samples(
        self, where: SampleFilter | None = None, limit: int | None = None, after_id: int = 0
    ) -> list[Sample]:
        """Samples by id (from `after_id` on), with their standing labels; `limit` None: all."""
        where = where or SampleFilter()
        query = _sample_query(where).where(SampleRow.id > after_id).order_by(SampleRow.id)
        if limit is not None:
            query = query.limit(limit)
        with self.db.read() as session:
            return [Sample.of(sample, label) for sample, label in session.execute(query).all()]

    def record_sample_file(self, sample_id: int, sha256: str, width: int, height: int) -> None:
        """What a result's image turned out to be, once read (a freeze reads it)."""
        with self.db.write() as session:
            row = session.get(SampleRow, sample_id)
            if row is None:
                raise NotFound(f"sample {sample_id} not found")
            row.sha256, row.width, row.height = sha256, width, height

    def import_samples(
        self, samples: Sequence[NewSample], author: str, new_classes: Sequence[str] = ()
    ) -> ImportCounts:
        """Add imported samples and their labels, and `new_classes`, in ONE transaction: any
        error leaves the store as it was. A file the store has (same sha256) keeps its
        sample; it gets the new label only if that differs from its standing one."""
        added = known = labels = 0
        with self.db.write() as session:
            existing = set(session.scalars(select(LabelClassRow.name)))
            created = tuple(name for name in dict.fromkeys(new_classes) if name not in existing)
            for name in created:
                row = LabelClassRow(name=name)
                check_row(row)
                session.add(row)
            session.flush()
            for new in samples:
                sample = session.scalars(
                    select(SampleRow).where(
                        SampleRow.sha256 == new.sha256, SampleRow.result_id.is_(None)
                    )
                ).one_or_none()
                if sample is None:
                    sample = SampleRow(
                        sha256=new.sha256,
                        path=new.path,
                        width=new.width,
                        height=new.height,
                        reference_sha256=new.reference_sha256,
                        reference_path=new.reference_path,
                        split=new.split,
                        source=new.source,
                    )
                    check_row(sample)
                    session.add(sample)
                    session.flush()
                    added += 1
                    standing = None  # a new sample has no label yet
                else:
                    known += 1
                    if new.reference_sha256 is not None:
                        sample.reference_sha256 = new.reference_sha256
                        sample.reference_path = new.reference_path
                    if new.split is not None:
                        sample.split = new.split
                    standing = _standing_label(session, sample.id)
                    if standing is not None and _same(
                        Label.of(standing).annotation, new.annotation
                    ):
                        continue
                _add_label(session, sample, new.annotation, author, standing)
                labels += 1
            sources = sorted({new.source or "" for new in samples})
            detail = {"samples_added": added, "samples_known": known, "labels_added": labels}
            record_audit(session, author, "import labels", ", ".join(sources)[:256], detail)
        return ImportCounts(added, known, labels, created)

    # --- classes ------------------------------------------------------------------------

    def add_class(self, name: str, plc_code: int | None = None) -> LabelClass:
        """A new defect class; `Conflict` if the name is taken."""
        with self.db.write() as session:
            if session.scalars(select(LabelClassRow).where(LabelClassRow.name == name)).first():
                raise Conflict(f"class {name!r} exists already")
            row = LabelClassRow(name=name, plc_code=plc_code)
            check_row(row)
            session.add(row)
            return LabelClass(name, plc_code)

    def classes(self) -> list[LabelClass]:
        """The defect classes by name."""
        with self.db.read() as session:
            rows = session.scalars(select(LabelClassRow).order_by(LabelClassRow.name))
            return [LabelClass(row.name, row.plc_code) for row in rows]

    # --- dataset versions ---------------------------------------------------------------

    def add_dataset_version(
        self, version_id: str, name: str, path: str, counts: dict[str, Any], created_by: str
    ) -> DatasetVersion:
        """Record a frozen dataset version; a version with that id already recorded (the
        same content frozen again) is returned as it is."""
        with self.db.write() as session:
            row = session.get(DatasetVersionRow, version_id)
            if row is None:
                row = DatasetVersionRow(
                    id=version_id, name=name, path=path, counts=counts, created_by=created_by
                )
                check_row(row)
                session.add(row)
                session.flush()
                record_audit(session, created_by, "freeze dataset", f"{name}/{version_id}", {})
            return DatasetVersion.of(row)

    def dataset_versions(self, name: str | None = None) -> list[DatasetVersion]:
        """Dataset versions, newest first."""
        query = select(DatasetVersionRow).order_by(
            DatasetVersionRow.created_at.desc(), DatasetVersionRow.id
        )
        if name is not None:
            query = query.where(DatasetVersionRow.name == name)
        with self.db.read() as session:
            return [DatasetVersion.of(row) for row in session.scalars(query)]

    def dataset_version(self, version_id: str) -> DatasetVersion:
        """One dataset version by id, or by a unique prefix of it; `NotFound` otherwise."""
        with self.db.read() as session:
            row = session.get(DatasetVersionRow, version_id)
            if row is None and version_id:
                like = version_id.replace("\\", "").replace("%", "").replace("_", "\\_")
                found = list(
                    session.scalars(
                        select(DatasetVersionRow)
                        .where(DatasetVersionRow.id.like(f"{like}%", escape="\\"))
                        .limit(2)
                    )
                )
                row = found[0] if len(found) == 1 else None
            if row is None:
                raise NotFound(
                    f"dataset version {version_id!r} not found (`defectlens datasets list` "
                    "shows them)"
                )
            return DatasetVersion.of(row)


def _sample_of_result(session: Session, result_id: str) -> SampleRow:
    result = session.get(ResultRow, result_id)
    if result is None:
        raise NotFound(f"result {result_id!r} not found; nothing to label")
    sample = session.scalars(
        select(SampleRow).where(SampleRow.result_id == result_id).with_for_update()
    ).one_or_none()
    if sample is None:
        sample = SampleRow(result_id=result_id, source=result.station)
        session.add(sample)
        session.flush()
    return sample


def _standing_label(session: Session, sample_id: int) -> LabelRow | None:
    return session.scalars(
        select(LabelRow)
        .where(LabelRow.sample_id == sample_id, _standing())
        .order_by(LabelRow.id.desc())
        .limit(1)
    ).one_or_none()


def _check_replaces(sample: SampleRow, standing: LabelRow | None, replaces: int | None) -> None:
    """`Conflict` unless `replaces` (if given) is the sample's standing label."""
    if replaces is not None and (standing is None or standing.id != replaces):
        current = "none" if standing is None else str(standing.id)
        raise Conflict(
            f"sample {sample.id}: label {replaces} is not its standing label (that is "
            f"{current}); reload the sample and label it again"
        )


def _add_label(
    session: Session,
    sample: SampleRow,
    annotation: Annotation,
    author: str,
    standing: LabelRow | None,
) -> LabelRow:
    """A label row with its regions, replacing `standing` (the sample's standing label)."""
    annotation = check_annotation(annotation, sample.width, sample.height, f"sample {sample.id}")
    overrides_model = False
    if sample.result_id is not None:
        result = session.get(ResultRow, sample.result_id)
        if result is not None:
            overrides_model = _overrides(annotation, result)
    row = LabelRow(
        result_id=sample.result_id,
        sample_id=sample.id,
        label=annotation.verdict,
        defect_class=annotation.main_class,
        author=author,
        overrides_label_id=None if standing is None else standing.id,
        overrides_model=overrides_model,
    )
    check_row(row)
    for region in annotation.regions:
        region_row = LabelRegionRow(
            class_=region.defect_class,
            x0=region.box[0],
            y0=region.box[1],
            x1=region.box[2],
            y1=region.box[3],
            polygon=None if region.polygon is None else [list(p) for p in region.polygon],
            mask_sha256=region.mask_sha256,
        )
        check_row(region_row)
        row.regions.append(region_row)
    session.add(row)
    if sample.result_id is not None:
        # Mark the images too, so retention's guard holds even while this commits.
        for image in session.scalars(
            select(ImageRow).where(ImageRow.result_id == sample.result_id).with_for_update()
        ):
            image.labeled = True
    session.flush()
    return row


def _overrides(annotation: Annotation, result: ResultRow) -> bool:
    """Whether a label disagrees with the model on a result: another verdict, or (NG both)
    defect classes named that the model did not find or the other way round."""
    if annotation.verdict != result.verdict:
        return True
    if annotation.verdict == "OK" or not annotation.classes:
        return False
    return set(annotation.classes) != {defect.class_ for defect in result.defects}


def _same(stored: Annotation, new: Annotation) -> bool:
    """Whether two annotations say the same (a stored one names its main class)."""
    return (stored.verdict, stored.regions, stored.main_class) == (
        new.verdict,
        new.regions,
        new.main_class,
    )


def _sample_query(where: SampleFilter) -> Select[SampleRow, LabelRow]:
    label = aliased(LabelRow)
    later = aliased(LabelRow)
    standing = ~exists().where(later.overrides_label_id == label.id)
    query = select(SampleRow, label).outerjoin(label, (label.sample_id == SampleRow.id) & standing)
    if where.source is not None:
        query = query.where(SampleRow.source == where.source)
    if where.labelled is True:
        query = query.where(label.id.is_not(None))
    elif where.labelled is False:
        query = query.where(label.id.is_(None))
    if where.verdict is not None:
        query = query.where(label.label == where.verdict)
    if where.defect_class is not None:
        region = aliased(LabelRegionRow)
        query = query.where(
            (label.defect_class == where.defect_class)
            | exists().where(region.label_id == label.id, region.class_ == where.defect_class)
        )
    if where.labelled_since is not None:
        query = query.where(label.created_at >= where.labelled_since)
    if where.labelled_until is not None:
        query = query.where(label.created_at < where.labelled_until)
    if where.split is not None:
        query = query.where(SampleRow.split == where.split)
    if where.imported is True:
        query = query.where(SampleRow.result_id.is_(None))
    elif where.imported is False:
        query = query.where(SampleRow.result_id.is_not(None))
    return cast(Select[SampleRow, LabelRow], query)
