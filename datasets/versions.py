"""Dataset versions: labelled images frozen into an immutable folder whose name is the
short hash of its manifest, with their splits decided once.

    <datasets>/<name>/<version>/
      manifest.json      format, name, seed, fractions, classes, counts, and each sample:
                         sha256, image, width, height, reference, split, verdict,
                         defect_class, regions (class, box, polygon, mask), source
      coco.json          the same labels as COCO (+ `reference` and `split` per image): what
                         the detector's trainer reads
      images/ references/ masks/   the files, named by sha256 (hard links where possible)
      good/              the OK images: `defectlens train anomaly --data <version>/good`

The version is the first 12 hex digits of the sha256 of the canonical manifest (sorted keys,
no spaces, before `version` and `created` are added): freezing the same labels with the same
seed gives the same version, and a folder that exists already is not written again.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from defectlens.datasets.labels.coco import coco_json
from defectlens.datasets.labels.export import ExportSample, MaskReader, export_classes, place
from defectlens.datasets.labels.model import SPLITS, Split
from defectlens.errors import InputError

FORMAT = "defectlens.dataset/1"
DEFAULT_FRACTIONS: dict[Split, float] = {"train": 0.7, "val": 0.15, "test": 0.15}
VERSION_DIGITS = 12


@dataclass(frozen=True)
class FrozenVersion:
    id: str
    path: Path
    counts: dict[str, Any]
    created: bool
    """False: the same version existed already and was left as it was."""


def check_fractions(fractions: dict[Split, float]) -> dict[Split, float]:
    if set(fractions) != set(SPLITS) or not all(
        math.isfinite(v) and v >= 0 for v in fractions.values()
    ):
        raise InputError(f"split fractions: give train, val and test, none below 0: {fractions}")
    total = sum(fractions.values())
    if abs(total - 1) > 1e-6:
        raise InputError(f"split fractions add up to {total:g}, not 1: {fractions}")
    return {split: fractions[split] for split in SPLITS}


def assign_splits(
    samples: Sequence[ExportSample],
    keys: Sequence[str],
    seed: int = 0,
    fractions: dict[Split, float] | None = None,
) -> list[Split]:
    """The split of each sample: its own hint if it has one; otherwise, within its stratum
    (its main defect class, or OK), samples ordered by the sha256 of seed and `keys` (their
    content hashes) go to train, val and test in the fractions' proportions (a largest-
    remainder rounding, so a stratum of one goes to train). The same input, the same splits."""
    shares = check_fractions(fractions or DEFAULT_FRACTIONS)
    strata: dict[str, list[int]] = {}
    for index, sample in enumerate(samples):
        if sample.split is None:
            strata.setdefault(sample.annotation.main_class or "OK", []).append(index)
    result: list[Split | None] = [sample.split for sample in samples]
    for members in strata.values():
        members.sort(key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).hexdigest())
        for split, index in zip(_split_sizes(len(members), shares), members, strict=True):
            result[index] = split
    return [split or "train" for split in result]


def _split_sizes(count: int, shares: dict[Split, float]) -> list[Split]:
    exact = {split: count * share for split, share in shares.items()}
    sizes = {split: int(value) for split, value in exact.items()}
    by_remainder = sorted(SPLITS, key=lambda s: (-(exact[s] - sizes[s]), SPLITS.index(s)))
    for split in by_remainder[: count - sum(sizes.values())]:
        sizes[split] += 1
    return [split for split in SPLITS for _ in range(sizes[split])]


def build_manifest(
    name: str,
    samples: Sequence[ExportSample],
    keys: Sequence[str],
    classes: Sequence[str],
    seed: int = 0,
    fractions: dict[Split, float] | None = None,
) -> dict[str, Any]:
    """The canonical manifest (what the version hashes); `keys` are the images' sha256."""
    shares = check_fractions(fractions or DEFAULT_FRACTIONS)
    splits = assign_splits(samples, keys, seed, shares)
    entries = []
    for sample, key, split in sorted(zip(samples, keys, splits, strict=True), key=lambda t: t[1]):
        regions = [
            {
                "class": r.defect_class,
                "box": list(r.box),
                "polygon": None if r.polygon is None else [list(p) for p in r.polygon],
                "mask": None if r.mask_sha256 is None else f"masks/{r.mask_sha256}.png",
            }
            for r in sample.annotation.regions
        ]
        entries.append(
            {
                "sha256": key,
                "image": f"images/{sample.name}",
                "width": sample.width,
                "height": sample.height,
                "reference": None if sample.reference is None else f"references/{sample.name}",
                "split": split,
                "verdict": sample.annotation.verdict,
                "defect_class": sample.annotation.main_class,
                "regions": regions,
                "source": sample.source,
            }
        )
    return {
        "format": FORMAT,
        "name": name,
        "seed": seed,
        "fractions": shares,
        "classes": export_classes(samples, classes),
        "counts": _counts(entries),
        "samples": entries,
    }


def version_of(manifest: dict[str, Any]) -> str:
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:VERSION_DIGITS]


def write_version(
    folder: Path,
    name: str,
    samples: Sequence[ExportSample],
    keys: Sequence[str],
    classes: Sequence[str],
    read_mask: MaskReader,
    seed: int = 0,
    fractions: dict[Split, float] | None = None,
    created_by: str | None = None,
) -> FrozenVersion:
    """Freeze `samples` (labelled, `keys` their sha256) into `folder/<name>/<version>/` via a
    temporary folder renamed into place. `InputError` if there is nothing to freeze."""
    if not samples:
        raise InputError(f"dataset {name!r}: no labelled samples match; nothing to freeze")
    manifest = build_manifest(name, samples, keys, classes, seed, fractions)
    version = version_of(manifest)
    target = folder / name / version
    if (target / "manifest.json").is_file():
        return FrozenVersion(version, target, manifest["counts"], created=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=target.parent))
    try:
        by_key = dict(zip(keys, samples, strict=True))
        splits = {entry["sha256"]: entry["split"] for entry in manifest["samples"]}
        ordered = [by_key[entry["sha256"]] for entry in manifest["samples"]]
        for sample in ordered:
            place(sample.image, temporary / "images" / sample.name)
            if sample.reference is not None:
                place(sample.reference, temporary / "references" / sample.name)
            if sample.annotation.verdict == "OK":
                place(sample.image, temporary / "good" / sample.name)
            for region in sample.annotation.regions:
                if region.mask_sha256 is not None:
                    mask = temporary / "masks" / f"{region.mask_sha256}.png"
                    mask.parent.mkdir(parents=True, exist_ok=True)
                    mask.write_bytes(read_mask(region.mask_sha256))
        with_splits = [
            ExportSample(
                s.image, s.name, s.width, s.height, s.annotation, s.reference, splits[k], s.source
            )
            for s, k in ((by_key[e["sha256"]], e["sha256"]) for e in manifest["samples"])
        ]
        coco = coco_json(with_splits, manifest["classes"])
        _write_json(temporary / "coco.json", coco)
        stamped = {
            "version": version,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "created_by": created_by,
            **manifest,
        }
        _write_json(temporary / "manifest.json", stamped)
        temporary.rename(target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return FrozenVersion(version, target, manifest["counts"], created=True)


def read_manifest(version_dir: Path) -> dict[str, Any]:
    """A version's manifest; `InputError` if the folder holds none."""
    path = version_dir / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a dataset version's manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a {FORMAT} manifest")
    return data


def _counts(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Images per split and verdict or main class, regions per split and class."""
    images: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    regions: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for entry in entries:
        images[entry["split"]][entry["defect_class"] or entry["verdict"]] += 1
        regions[entry["split"]].update(r["class"] for r in entry["regions"])
    return {
        "images": len(entries),
        "by_split": {s: dict(sorted(images[s].items())) for s in SPLITS},
        "regions_by_split": {s: dict(sorted(regions[s].items())) for s in SPLITS},
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
