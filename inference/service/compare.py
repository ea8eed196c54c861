"""Compare a candidate model with a station's production model on the same held-out parts:
the station's labelled production parts (the label store's standing OK/NG per result) or a
dataset version's test split. Both models run here with ONNX Runtime; the figures side by
side are AUROC, escape and false-reject rates and F1 at each model's own threshold, the ROC
curves, and every part whose verdict changed.

`start_comparison` stores a running comparison and computes it on a thread of its own (one
at a time, low priority, one ONNX thread per model), storing its progress as it goes;
`compare_now` is the same on the caller's thread (the CLI).
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from matplotlib.figure import Figure

from defectlens.datasets.images import read_image
from defectlens.datasets.layout import open_dataset
from defectlens.datasets.versions import read_manifest
from defectlens.errors import Conflict, DefectLensError, InputError, NotFound
from defectlens.inference.engine import Engine
from defectlens.inference.service.deployments import require_station
from defectlens.inference.service.images import find_image
from defectlens.inference.service.jobs import resolve_data
from defectlens.inference.store import ModelVersion, Store
from defectlens.inference.store.comparisons import Comparison
from defectlens.settings import Settings
from defectlens.verdict_metrics import auroc, confusion_at, roc_curve

if TYPE_CHECKING:
    from defectlens.inference.service.core import InspectionService

log = logging.getLogger(__name__)

MAX_PARTS = 5000
"""The most held-out parts one comparison runs on (the newest labelled parts first)."""
STALE_AFTER = timedelta(hours=2)
"""A comparison still running this long after its start was left by a stopped service (the
most parts, both models at 0.5 s a part, take under an hour and a half)."""
MAX_CHANGED_LISTED = 1000
ROC_POINTS = 200
PROGRESS_EVERY_S = 0.5
_one_at_a_time = threading.Lock()


@dataclass(frozen=True)
class HeldOutPart:
    """A part both models run on: where its image is, and what it truly is."""

    name: str
    """Its result id, or its image path within the dataset."""
    path: Path
    defective: bool


# -- the figures: pure -------------------------------------------------------------------


def model_figures(
    labels: Sequence[bool], scores: Sequence[float], threshold: float
) -> dict[str, Any]:
    """One model's figures on the parts: the confusion table and plant rates at its own
    threshold, and AUROC with the ROC curve when both good and defective parts are there."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    figures: dict[str, Any] = {"threshold": threshold, **confusion_at(y, s, threshold)}
    if y.any() and not y.all():
        fpr, tpr, _ = roc_curve(y, s)
        keep = np.unique(np.linspace(0, fpr.size - 1, min(fpr.size, ROC_POINTS)).astype(int))
        figures["auroc"] = auroc(y, s)
        figures["roc"] = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}
    else:
        figures["auroc"] = None
        figures["roc"] = None
    return figures


def comparison_figures(
    parts: Sequence[HeldOutPart],
    production: tuple[Sequence[float], float],
    candidate: tuple[Sequence[float], float],
) -> dict[str, Any]:
    """Both models' figures on the same parts, and the parts whose verdict changed (a score
    at or above a model's threshold is NG)."""
    labels = [part.defective for part in parts]
    (p_scores, p_threshold), (c_scores, c_threshold) = production, candidate
    changed = []
    for part, p_score, c_score in zip(parts, p_scores, c_scores, strict=True):
        p_verdict = "NG" if p_score >= p_threshold else "OK"
        c_verdict = "NG" if c_score >= c_threshold else "OK"
        if p_verdict != c_verdict:
            changed.append(
                {
                    "part": part.name,
                    "label": "NG" if part.defective else "OK",
                    "production": {"verdict": p_verdict, "score": p_score},
                    "candidate": {"verdict": c_verdict, "score": c_score},
                    "candidate_right": c_verdict == ("NG" if part.defective else "OK"),
                }
            )
    return {
        "parts": len(parts),
        "defective": sum(labels),
        "good": len(labels) - sum(labels),
        "production": model_figures(labels, p_scores, p_threshold),
        "candidate": model_figures(labels, c_scores, c_threshold),
        "changed_count": len(changed),
        "changed": changed[:MAX_CHANGED_LISTED],
    }


def roc_svg(figures: dict[str, Any], names: tuple[str, str] = ("production", "candidate")) -> str:
    """Both ROC curves in one inline SVG (matplotlib `Figure`, no pyplot state), each with a
    dot where its own threshold operates."""
    figure = Figure(figsize=(4.6, 4.2))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=0.8, linestyle="--")
    for key, name, color in (
        ("production", names[0], "#5d6d7e"),
        ("candidate", names[1], "#c0392b"),
    ):
        model = figures.get(key, {})
        roc = model.get("roc")
        if roc:
            auc = model.get("auroc")
            axes.plot(roc["fpr"], roc["tpr"], color=color, label=f"{name} (AUROC {auc:.3f})")
            # where its own threshold puts it: false-reject rate, share of defects caught
            if model.get("false_reject_rate") is not None and model.get("recall") is not None:
                axes.plot(
                    [model["false_reject_rate"]], [model["recall"]], "o", color=color, markersize=5
                )
    axes.set_xlabel("false-positive rate (good parts rejected)")
    axes.set_ylabel("true-positive rate (defective parts caught)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.legend(loc="lower right", fontsize=8)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.S)


# -- the parts -----------------------------------------------------------------------------


def labelled_parts(store: Store, settings: Settings, station: str) -> list[HeldOutPart]:
    """The station's production parts with a standing QA label and a retained image."""
    parts = []
    for result_id, received_at, label in store.labelled_results(station, MAX_PARTS):
        path = find_image(settings.images_dir, result_id, received_at)
        if path is not None:
            parts.append(HeldOutPart(result_id, path, label == "NG"))
    return parts


def dataset_parts(store: Store, settings: Settings, data: str) -> list[HeldOutPart]:
    """A dataset version's test split (its manifest's verdicts), or the test images of a
    dataset folder in any layout."""
    folder = resolve_data(store, settings, data)
    if (folder / "manifest.json").is_file():
        manifest = read_manifest(folder)
        return [
            HeldOutPart(entry["image"], folder / entry["image"], entry["verdict"] == "NG")
            for entry in manifest["samples"]
            if entry.get("split") == "test"
        ][:MAX_PARTS]
    dataset = open_dataset(folder)
    return [
        HeldOutPart(sample.path.relative_to(folder).as_posix(), sample.path, sample.is_defective)
        for sample in dataset.test
    ][:MAX_PARTS]


# -- running it ----------------------------------------------------------------------------

Source = Literal["labels", "dataset"]


def start_comparison(
    service: InspectionService,
    station: str,
    candidate_version_id: int,
    source: Source,
    data: str | None,
    actor: str,
) -> Comparison:
    """Store a running comparison and compute it on a background thread; its progress and
    figures are read with `store.get_comparison`."""
    store, settings = service.store, service.settings
    candidate, production = _versions(store, station, candidate_version_id)
    parts = _parts(store, settings, station, source, data)
    label = "labels" if source == "labels" else f"dataset:{data}"
    comparison = store.create_comparison(station, candidate.id, production.id, label, actor)
    thread = threading.Thread(
        target=_run_logged,
        args=(store, comparison.id, parts, production, candidate),
        name=f"compare-{comparison.id}",
        daemon=True,
    )
    thread.start()
    return comparison


def compare_now(
    store: Store,
    settings: Settings,
    station: str,
    candidate_version_id: int,
    source: Source,
    data: str | None,
    actor: str,
    say: Callable[[str], None] = log.info,
) -> Comparison:
    """`start_comparison` on the caller's thread (the CLI): the finished comparison."""
    candidate, production = _versions(store, station, candidate_version_id)
    parts = _parts(store, settings, station, source, data)
    label = "labels" if source == "labels" else f"dataset:{data}"
    comparison = store.create_comparison(station, candidate.id, production.id, label, actor)
    say(f"comparing on {len(parts)} held-out parts")
    _run(store, comparison.id, parts, production, candidate)
    return store.get_comparison(comparison.id)


def changed_part_image(store: Store, settings: Settings, comparison: Comparison, part: str) -> Path:
    """The image file of a part a comparison lists as changed: a result's retained image, or
    a file of the compared dataset. `NotFound` for any other name."""
    listed = {change["part"] for change in comparison.figures.get("changed", [])}
    if part not in listed:
        raise NotFound(f"comparison {comparison.id} lists no changed part {part!r}")
    if comparison.source == "labels":
        result = store.get_result(part)
        path = None if result is None else find_image(settings.images_dir, part, result.received_at)
    else:
        folder = resolve_data(store, settings, comparison.source.removeprefix("dataset:"))
        path = (folder / part).resolve()
        path = path if path.is_relative_to(folder.resolve()) and path.is_file() else None
    if path is None:
        raise NotFound(f"comparison {comparison.id}: the image of {part} is no longer there")
    return path


def fail_stale_comparisons(store: Store) -> int:
    """Fail the comparisons a stopped service left running (`STALE_AFTER`)."""
    return store.fail_stale_comparisons(datetime.now(UTC) - STALE_AFTER)


def _versions(
    store: Store, station: str, candidate_version_id: int
) -> tuple[ModelVersion, ModelVersion]:
    require_station(store, station)
    deployment = store.active_deployment(station)
    if deployment is None:
        raise Conflict(f"station {station} has no production model to compare with")
    candidate = store.get_model_version(candidate_version_id)
    if candidate is None:
        raise NotFound(
            f"model version {candidate_version_id} is not registered; GET /v1/models lists them"
        )
    return candidate, deployment.model_version


def _parts(
    store: Store, settings: Settings, station: str, source: Source, data: str | None
) -> list[HeldOutPart]:
    if source == "labels":
        parts = labelled_parts(store, settings, station)
        where = f"station {station}'s labelled parts with a retained image"
    else:
        if not data:
            raise InputError("source dataset: give `data`, a dataset version id or folder")
        parts = dataset_parts(store, settings, data)
        where = f"the test split of {data}"
    if not parts:
        raise InputError(f"nothing to compare on: {where} is empty; label parts first")
    return parts


def _run_logged(
    store: Store,
    comparison_id: int,
    parts: list[HeldOutPart],
    production: ModelVersion,
    candidate: ModelVersion,
) -> None:
    try:
        _run(store, comparison_id, parts, production, candidate)
    except Exception:  # the comparison row already says why
        log.exception("comparison %d failed", comparison_id)


def _run(
    store: Store,
    comparison_id: int,
    parts: list[HeldOutPart],
    production: ModelVersion,
    candidate: ModelVersion,
) -> None:
    """Run both models on every part, storing progress, then the figures (or why not)."""
    with _one_at_a_time:
        try:
            engines = (
                Engine(Path(production.path), threads=1, spin=False, warmup=False),
                Engine(Path(candidate.path), threads=1, spin=False, warmup=False),
            )
            scores: tuple[list[float], list[float]] = ([], [])
            last_report = time.monotonic()
            for done, part in enumerate(parts, start=1):
                image = read_image(part.path)
                for engine, collected in zip(engines, scores, strict=True):
                    prediction = engine.predict(image, source=part.name, with_map=False)
                    collected.append(prediction.score)
                if time.monotonic() - last_report >= PROGRESS_EVERY_S:
                    store.comparison_progress(comparison_id, done, len(parts))
                    last_report = time.monotonic()
            store.comparison_progress(comparison_id, len(parts), len(parts))
            figures = comparison_figures(
                parts,
                (scores[0], engines[0].card.threshold),
                (scores[1], engines[1].card.threshold),
            )
            figures["models"] = {
                "production": {
                    "id": production.id,
                    "name": production.name,
                    "version": production.version,
                },
                "candidate": {
                    "id": candidate.id,
                    "name": candidate.name,
                    "version": candidate.version,
                },
            }
            store.finish_comparison(comparison_id, figures, None)
        except DefectLensError as error:
            store.finish_comparison(comparison_id, None, str(error))
        except Exception as error:
            store.finish_comparison(comparison_id, None, f"{type(error).__name__}: {error}")
            raise
