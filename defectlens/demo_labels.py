"""The demo's labelling step: a QA engineer labels stored NG parts (agreeing with the model on
most, overriding it on one), and freezes the labels into a dataset version."""

from __future__ import annotations

from pathlib import Path

LABELLED = 6


def run_labels_demo(home: Path, station: str) -> None:
    """Label the newest stored NG parts of `station` and freeze them; print what a QA
    engineer would see. Nothing to label (no NG part kept): says so and returns."""
    from defectlens.datasets.labels.model import Annotation, Region
    from defectlens.inference.service import ServiceSettings
    from defectlens.inference.service.dataset_versions import freeze_dataset
    from defectlens.inference.store import Store, open_database

    settings = ServiceSettings(home=home)
    store = Store(open_database(settings.resolved_database_url))
    try:
        parts, _ = store.list_results(station=station, verdict="NG", limit=LABELLED)
        if not parts:
            print("    labels: no NG part was kept to label")
            return
        overridden = 0
        for number, part in enumerate(parts):
            sample = store.sample_for_result(part.result_id)
            if number == len(parts) - 1:  # the QA engineer finds this one good after all
                label = store.label_sample(sample, Annotation("OK"), "demo:qa")
            else:
                regions = tuple(
                    Region(defect.class_, (float(x0), float(y0), float(x1), float(y1)))
                    for defect in part.defects
                    for x0, y0, x1, y1 in [defect.box]
                )
                label = store.label_sample(sample, Annotation("NG", regions), "demo:qa")
            overridden += label.overrides_model
        frozen = freeze_dataset(store, settings, "demo-parts", "demo:qa")
    finally:
        store.db.close()
    version = frozen.version
    print(
        f"    labels: {len(parts)} NG parts labelled ({overridden} overriding the model); "
        f"dataset version {version.name} {version.id}: {version.counts['images']} images"
    )
    print(f"    dataset: {version.path}  (coco.json for the detector, good/ for anomaly)")
