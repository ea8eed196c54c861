"""The label store: samples of results and imported files, labels with regions, corrections
as new rows, whether a label overrides the model, imports all or nothing, dataset versions;
on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from store_factories import DEFECTS, make_result

from defectlens.datasets.labels.model import Annotation, Region
from defectlens.errors import Conflict, InputError, NotFound
from defectlens.inference.store import Database, Store
from defectlens.inference.store.labels import NewSample, SampleFilter
from defectlens.inference.store.tables import ImageRow, LabelRow, SampleRow

SCRATCH = Region("scratch", (10.0, 20.0, 60.0, 45.0))


def new_sample(n: int, annotation: Annotation, **fields: object) -> NewSample:
    values: dict[str, object] = {
        "sha256": f"{n:064x}",
        "path": f"images/{n:064x}.png",
        "width": 100,
        "height": 80,
        "annotation": annotation,
        "source": "batch1",
    }
    values.update(fields)
    return NewSample(**values)  # type: ignore[arg-type]


def test_a_label_on_a_result_names_it_keeps_its_images_and_says_if_it_overrides(
    store: Store, db: Database
) -> None:
    ng = make_result(0, verdict="NG", defects=DEFECTS)  # the model found scratch and dent
    store.save_result(ng, images=[("image", "a.png", 10)])
    sample_id = store.sample_for_result(ng.result_id)
    assert store.sample_for_result(ng.result_id) == sample_id  # one sample per result

    agrees = store.label_sample(
        sample_id,
        Annotation("NG", (SCRATCH, Region("dent", (100, 4, 120, 30)))),
        author="alice",
    )
    assert not agrees.overrides_model and agrees.result_id == ng.result_id
    only_scratch = store.label_sample(sample_id, Annotation("NG", (SCRATCH,)), "bob")
    assert only_scratch.overrides_model  # the model's dent is not there
    assert only_scratch.overrides_label_id == agrees.id
    ok = store.label_sample(sample_id, Annotation("OK"), "carol", replaces=only_scratch.id)
    assert ok.overrides_model

    sample = store.sample(sample_id)
    assert sample.label is not None and sample.label.id == ok.id
    assert [label.author for label in store.label_history(sample_id)] == ["alice", "bob", "carol"]
    with db.read() as session:
        assert session.scalars(select(ImageRow.labeled)).all() == [True]


def test_add_label_by_result_is_a_label_on_its_sample(store: Store) -> None:
    result = make_result(0, verdict="OK")
    store.save_result(result, images=[])
    first = store.add_label(result.result_id, "OK", author="alice")
    second = store.add_label(result.result_id, "NG", "bob", "scratch", overrides_label_id=first)
    history = store.label_history(store.sample_for_result(result.result_id))
    assert [label.id for label in history] == [first, second]
    assert history[1].overrides_model and history[1].annotation.main_class == "scratch"
    with pytest.raises(InputError, match="not a label of result"):
        store.add_label(result.result_id, "OK", "carol", overrides_label_id=10_000)
    with pytest.raises(NotFound, match="not found"):
        store.add_label("nope", "OK", "carol")


def test_a_stale_replacement_is_refused(store: Store) -> None:
    result = make_result(0)
    store.save_result(result, images=[])
    sample_id = store.sample_for_result(result.result_id)
    first = store.label_sample(sample_id, Annotation("OK"), "alice")
    store.label_sample(sample_id, Annotation("NG"), "bob", replaces=first.id)
    with pytest.raises(Conflict, match="not its standing label"):
        store.label_sample(sample_id, Annotation("OK"), "carol", replaces=first.id)


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (Annotation("NG", (Region("scratch", (10, 10, 101, 20)),)), "outside the image"),
        (Annotation("NG", (Region("scratch", (10, 10, 5, 20)),)), "is empty"),
        (Annotation("OK", (SCRATCH,)), "OK label has no defect"),
        (Annotation("NG", (Region(" ", (1, 1, 2, 2)),)), "class name"),
        (
            Annotation("NG", (Region("scratch", (1, 1, 9, 9), polygon=((1, 1), (9, 9))),)),
            "at least 3 points",
        ),
    ],
)
def test_bad_regions_are_refused_and_nothing_is_stored(
    store: Store, db: Database, annotation: Annotation, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        store.import_samples([new_sample(1, Annotation("OK")), new_sample(2, annotation)], "qa")
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(SampleRow)) == 0
        assert session.scalar(select(func.count()).select_from(LabelRow)) == 0


def test_import_dedupes_files_and_labels_and_creates_classes(store: Store) -> None:
    polygon = Region("scratch", (10, 20, 60, 45), polygon=((10, 20), (60, 20), (35, 45)))
    batch = [
        new_sample(1, Annotation("OK"), split="train"),
        new_sample(2, Annotation("NG", (polygon,))),
    ]
    counts = store.import_samples(batch, "qa", new_classes=["scratch"])
    assert (counts.samples_added, counts.samples_known, counts.labels_added) == (2, 0, 2)
    assert counts.classes_added == ("scratch",)

    again = store.import_samples(batch, "qa", new_classes=["scratch"])  # nothing new
    assert (again.samples_added, again.samples_known, again.labels_added) == (0, 2, 0)
    assert again.classes_added == ()
    changed = store.import_samples([new_sample(1, Annotation("NG", (SCRATCH,)))], "qa")
    assert changed.labels_added == 1

    samples = store.list_samples()
    assert [s.label.annotation.verdict for s in samples if s.label] == ["NG", "NG"]
    assert samples[1].label is not None
    assert samples[1].label.annotation.regions == (polygon,)
    assert samples[0].split == "train"
    assert [s.id for s in store.list_samples(SampleFilter(defect_class="scratch"))] == [
        samples[0].id,
        samples[1].id,
    ]
    assert store.list_samples(SampleFilter(verdict="OK")) == []
    assert store.list_samples(SampleFilter(imported=False)) == []
    assert [c.name for c in store.classes()] == ["scratch"]
    with pytest.raises(Conflict):
        store.add_class("scratch")
    store.add_class("dent", plc_code=7)
    assert [(c.name, c.plc_code) for c in store.classes()] == [("dent", 7), ("scratch", None)]


def test_dataset_versions_are_recorded_once(store: Store) -> None:
    first = store.add_dataset_version("abc123def456", "pcb", "/x", {"train": {"OK": 3}}, "alice")
    again = store.add_dataset_version("abc123def456", "pcb", "/x", {}, "bob")
    assert again == first
    assert store.dataset_version("abc123") == first  # a unique prefix will do
    assert [v.id for v in store.dataset_versions("pcb")] == ["abc123def456"]
    with pytest.raises(NotFound, match="datasets list"):
        store.dataset_version("zzz")


def test_imports_and_freezes_are_in_the_audit_log(store: Store) -> None:
    store.import_samples([new_sample(1, Annotation("OK"))], "qa:alice")
    store.add_dataset_version("abc123def456", "pcb", "/x", {}, "qa:bob")
    entries = store.audit_entries()
    assert {(e.actor, e.action, e.target) for e in entries} == {
        ("qa:alice", "import labels", "batch1"),
        ("qa:bob", "freeze dataset", "pcb/abc123def456"),
    }
