"""Dataset versions from the label store: freeze the labelled samples into an immutable
folder (`defectlens.datasets.versions`), record it, and export a version in a label format.

    frozen = freeze_dataset(store, settings, "pcb", author="qa:alice")
    export_version(store, settings, frozen.id, "yolo", Path("out/"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from defectlens.datasets.labels.export import ExportSample, new_folder
from defectlens.datasets.labels.formats import write_labels
from defectlens.datasets.labels.model import Annotation, Region, Split
from defectlens.datasets.versions import read_manifest, write_version
from defectlens.errors import InputError
from defectlens.inference.service.labelling import label_files, sample_files
from defectlens.inference.store import Store
from defectlens.inference.store.labels import DatasetVersion, SampleFilter
from defectlens.settings import Settings

MAX_NAME = 64


@dataclass(frozen=True)
class Frozen:
    version: DatasetVersion
    created: bool
    """False: the same labels were frozen before; that version is returned."""
    left_out: list[str]


def check_dataset_name(name: str) -> str:
    """A dataset name usable as a folder name: letters, digits, `-`, `_`, `.`."""
    allowed = name and len(name) <= MAX_NAME and not name.startswith(".")
    if not allowed or not all(c.isalnum() or c in "-_." for c in name):
        raise InputError(
            f"dataset name {name!r}: use 1 to {MAX_NAME} letters, digits, '-', '_' or '.', "
            "not starting with '.'"
        )
    return name


def freeze_dataset(
    store: Store,
    settings: Settings,
    name: str,
    author: str,
    where: SampleFilter | None = None,
    classes: set[str] | None = None,
    seed: int = 0,
    fractions: dict[Split, float] | None = None,
) -> Frozen:
    """Freeze the labelled samples `where` selects (and, with `classes`, only those whose
    classes are all in it; OK samples always) into `<home>/datasets/<name>/<version>/` and
    record the version. Freezing the same labels again gives the same version."""
    check_dataset_name(name)
    chosen = store.list_samples(where or SampleFilter(labelled=True))
    if classes is not None:
        chosen = [
            s for s in chosen if s.label is not None and set(s.label.annotation.classes) <= classes
        ]
    found, left_out = sample_files(store, settings, chosen)
    frozen = write_version(
        settings.datasets_dir.resolve(),  # stored absolute: rows outlive the working folder
        name,
        [f.export for f in found],
        [f.sha256 for f in found],
        [c.name for c in store.classes()],
        label_files(settings).mask,
        seed=seed,
        fractions=fractions,
        created_by=author,
    )
    version = store.add_dataset_version(
        frozen.id, name, str(frozen.path), frozen.counts, created_by=author
    )
    return Frozen(version, frozen.created, left_out)


def version_samples(version_dir: Path) -> tuple[list[ExportSample], list[str]]:
    """A frozen version's samples as an export sees them, and its classes."""
    manifest = read_manifest(version_dir)
    samples = []
    for entry in manifest["samples"]:
        regions = tuple(
            Region(
                r["class"],
                tuple(r["box"]),
                None if r["polygon"] is None else tuple(tuple(p) for p in r["polygon"]),
                None if r["mask"] is None else Path(r["mask"]).stem,
            )
            for r in entry["regions"]
        )
        samples.append(
            ExportSample(
                image=version_dir / entry["image"],
                name=Path(entry["image"]).name,
                width=entry["width"],
                height=entry["height"],
                annotation=Annotation(entry["verdict"], regions, entry["defect_class"]),
                reference=None if entry["reference"] is None else version_dir / entry["reference"],
                split=entry["split"],
                source=entry["source"],
            )
        )
    return samples, list(manifest["classes"])


def export_version(
    store: Store, settings: Settings, version_id: str, format: str, out: Path
) -> int:
    """Write a frozen version's samples in `format` to the new folder `out`; how many."""
    version = store.dataset_version(version_id)
    folder = Path(version.path)
    samples, classes = version_samples(folder)

    def mask(digest: str) -> bytes:
        return (folder / "masks" / f"{digest}.png").read_bytes()

    with new_folder(out) as target:
        write_labels(format, samples, target, classes, mask)
    return len(samples)
