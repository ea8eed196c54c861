"""The training report of a model version: `report/metrics.json` and a self-contained
`report/index.html` (templates/report.html, inline CSS, plots beside it as PNG) a QA
engineer opens in a browser. Every missing figure says why, every red one what to do."""

from __future__ import annotations

import html
import json
import math
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

import numpy as np

from defectlens.errors import InputError
from defectlens.modelcard import Calibration
from defectlens.train.plots import FALSELY_REJECTED, MISSED
from defectlens.train.thresholds import good_images_needed

# Keys of `metrics` the page puts up front; any other scalar goes to the "All figures" table.
#   image_auroc, image_auroc_ci ([lo, hi]), pixel_auroc, aupro, f1, escape_rate,
#   false_reject_rate, threshold, policy, target, level (of the CI, default 0.95),
#   counts ({good, defective}), tp, fp, tn, fn, per_type: {type: {count, auroc, ...}}
_HEADLINE = (
    ("image_auroc", "Image AUROC"),
    ("pixel_auroc", "Pixel AUROC"),
    ("aupro", "AUPRO"),
    ("f1", "F1"),
    ("escape_rate", "Escape rate"),
    ("false_reject_rate", "False-reject rate"),
    ("threshold", "Threshold"),
)
# A detector's headline (train.detector_evaluate, metrics["family"] == "detection").
_HEADLINE_DETECTION = (
    ("map50", "mAP@0.5"),
    ("map50_95", "mAP@[.5:.95]"),
    ("f1", "F-score (DeepPCB, IoU > 0.33)"),
    ("escape_rate", "Escape rate"),
    ("false_reject_rate", "False-reject rate"),
)
_DETECTOR_ESCAPES = (
    "{missed} of {defective} defective parts had no defect found at the class thresholds. "
    "Next step: label more examples of the classes with low recall (By defect type), or "
    "lower those classes' thresholds in model.json (more false rejects)."
)
# The pooled pixel AUROC taken apart (train.evaluate): key, caption, how to read it.
_PIXELS_APART = (
    (
        "pixel_auroc_vs_good_images",
        "Defect pixels against good images",
        "against the pixels of good images only: how well the map finds the defects",
    ),
    (
        "pixel_auroc_vs_normal_areas",
        "Defect pixels against the normal areas of defective images",
        "against the unmarked pixels of defective images only",
    ),
    (
        "normal_area_vs_good_images_auroc",
        "Normal areas of defective images against good images",
        "0.5: alike; above it, the normal areas of defective images score higher (a halo "
        "around each defect, or the whole image unusual), which pulls the pooled pixel "
        "AUROC down",
    ),
)
# How close the evaluation images are to the training images (train.evaluate._nearness).
_NEARNESS_TITLE = "Evaluation images against the training images"
_NEAR_COPIES = "training_nearest_similarity"
_RESHOTS = "defective_farther_from_training_auroc"
_NEARNESS_CAPTIONS = {
    _NEAR_COPIES: "Training images, to their nearest other training image",
    _RESHOTS: "Defective against good, by distance from the training images alone",
}
NEAR_COPY_SIMILARITY = 0.95
"""A median nearest-neighbour similarity of the training images at or above this: most of
them are near-copies of another (the same part shot again)."""
RESHOT_AUROC = 0.75
"""Distance from the training images alone telling defective from good at least this well:
the good evaluation images look like re-shots of training parts."""
PLANT_FRR_LIMIT = 0.05
"""The false-reject rate shown red when no target was asked for (5%: what most lines take)."""

_SHOWN_ELSEWHERE = (
    {key for key, _ in _HEADLINE}
    | {key for key, _ in _HEADLINE_DETECTION}
    | {"family", "confusion"}
    | {key for key, _, _ in _PIXELS_APART}
    | set(_NEARNESS_CAPTIONS)
    | {"image_auroc_ci", "policy", "target", "level", "per_type", "warnings"}
)
# Figures that need defective (or good, or masked) evaluation images to mean anything.
_PIXEL_FIGURES = {"pixel_auroc", "aupro"} | {key for key, _, _ in _PIXELS_APART}
_NEEDS_DEFECTIVE = {
    "image_auroc",
    "image_auroc_ci",
    "f1",
    "escape_rate",
    "recall",
    "precision",
    _RESHOTS,
} | _PIXEL_FIGURES
_NEEDS_GOOD = {"image_auroc", "image_auroc_ci", "false_reject_rate", _RESHOTS} | _PIXEL_FIGURES
_NO_MASKS = (
    "no defect masks in this data set (ground_truth/<defect type>/<image name>_mask.png); "
    "pixel figures need them"
)
# Per-type columns that mean something only for good parts, or only for defect types.
_GOOD_ONLY = {"false_reject_rate"}
_DEFECT_ONLY = {"auroc", "escape_rate", "pixel_auroc", "defect_pixel_share"}
_PER_TYPE_MISSING = {
    "auroc": "no good images to compare with",
    "pixel_auroc": "no masks for this type",
    "defect_pixel_share": "no masks for this type",
    "nearest_training_similarity": "training images not compared",
}
# What the figures of the "All figures" table are, in the plant's words; any other key is
# shown as it is named in metrics.json.
_OTHER_CAPTIONS = {
    "counts": "Evaluation images",
    "tp": "Defective parts rejected (tp)",
    "fn": "Defective parts passed (fn)",
    "fp": "Good parts rejected (fp)",
    "tn": "Good parts passed (tn)",
    "precision": "Precision: rejected parts that were defective",
    "recall": "Recall: defective parts rejected",
    "accuracy": "Accuracy: parts given the right verdict",
}
_ACRONYMS = {
    "roc": "ROC",
    "auroc": "AUROC",
    "aupro": "AUPRO",
    "pro": "PRO",
    "f1": "F1",
    "ap50": "AP@0.5",
}
_DASH = "—"


def write_report(
    report_dir: Path,
    metrics: Mapping[str, Any],
    plots: Mapping[str, Path],
    card_summary: Mapping[str, Any],
    calibration: Calibration | None = None,
) -> Path:
    """Write `metrics.json` and `index.html` into `report_dir`; return the page's path.

    `plots` maps a name (shown as the caption, e.g. "roc") to a PNG; one outside
    `report_dir` is copied in, so the folder stands alone. The plots named
    `plots.MISSED` and `plots.FALSELY_REJECTED` go in their own panels. `card_summary`
    holds the model's `name` and `version` and any other facts to list (family, data...).
    `calibration` (the model card's) gives the policy, target and warnings of the threshold.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    clean = _jsonable(dict(metrics))
    (report_dir / "metrics.json").write_text(
        json.dumps(clean, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    figures = {name: _place_plot(report_dir, name, Path(path)) for name, path in plots.items()}
    page = report_dir / "index.html"
    page.write_text(
        _page(clean, figures, _jsonable(dict(card_summary)), calibration), encoding="utf-8"
    )
    return page


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays unpacked, NaN and infinity as null."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _place_plot(report_dir: Path, name: str, path: Path) -> str:
    """The plot's path relative to the report, copying it in when it lives elsewhere."""
    if not path.is_file():
        raise InputError(f"plot {name!r}: {path} does not exist; draw it before the report")
    root = report_dir.resolve()
    source = path.resolve()
    if not source.is_relative_to(root):
        target = root / source.name
        if target.exists() and not target.samefile(source):
            target = root / f"{name}-{source.name}"
        shutil.copyfile(source, target)
        source = target
    return source.relative_to(root).as_posix()


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _caption(name: str) -> str:
    if name == "false_reject_rate":
        return "False-reject rate"  # as the plant writes it
    words = [_ACRONYMS.get(word.lower(), word) for word in name.replace("_", " ").split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _number(key: str, value: Any) -> str:
    """A figure as the plant reads it: rates and shares in percent, scores to three decimals."""
    if value is None:
        return _DASH
    if isinstance(value, dict):
        # e.g. counts {"good": 8, "defective": 15}: "good 8, defective 15"
        return ", ".join(
            f"{str(name).replace('_', ' ')} {_number(str(name), item)}"
            for name, item in value.items()
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value) if not isinstance(value, list) else json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if key.endswith(("rate", "share")) or key == "target":
        return f"{value:.2%}" if 0 < abs(value) < 0.01 else f"{value:.1%}"
    if key == "threshold":
        return f"{value:.4g}"
    return f"{value:.3f}"


# --- what the evaluation images allow ---------------------------------------------------


def _counts(metrics: dict[str, Any]) -> tuple[int, int] | None:
    """(good, defective) evaluation images; None when nothing was evaluated."""
    counts = metrics.get("counts")
    if not isinstance(counts, dict):
        return None
    return int(counts.get("good") or 0), int(counts.get("defective") or 0)


def _value(key: str, metrics: dict[str, Any]) -> Any:
    """The figure to show: None where the images cannot give it, whatever `metrics`
    holds (one written by an older version has F1 0 without defective images)."""
    counts = _counts(metrics)
    if counts is not None and (
        (key in _NEEDS_DEFECTIVE and not counts[1]) or (key in _NEEDS_GOOD and not counts[0])
    ):
        return None
    return metrics.get(key)


def _why_missing(key: str, metrics: dict[str, Any]) -> str:
    """Why a figure of the page is not there, in words."""
    counts = _counts(metrics)
    if counts is None:
        return str(metrics.get("note") or "no evaluation images")
    good, defective = counts
    if key in _NEEDS_DEFECTIVE and not defective:
        return "no defective images in the evaluation set"
    if key in _NEEDS_GOOD and not good:
        return "no good images in the evaluation set"
    if key in _PIXEL_FIGURES:
        return _NO_MASKS
    if key == "precision":
        return "no part was rejected"
    if key == _NEAR_COPIES:
        return "the training images were not at hand to compare with"
    return "not measured on these images"


def _figure(key: str, metrics: dict[str, Any]) -> str:
    """A table cell's content: the number, or a dash with its reason."""
    value = _value(key, metrics)
    if value is None:
        return f'{_DASH} <span class="missing">{_e(_why_missing(key, metrics))}</span>'
    return _e(_number(key, value))


def _target(metrics: dict[str, Any], calibration: Calibration | None) -> float | None:
    """The false-reject rate the threshold aimed at, if it aimed at one."""
    if calibration is not None:
        return calibration.target if calibration.policy == "target_frr" else None
    target = metrics.get("target")
    return float(target) if isinstance(target, int | float) else None


def _policy(metrics: dict[str, Any], calibration: Calibration | None) -> str | None:
    if calibration is not None:
        return calibration.policy
    policy = metrics.get("policy")
    return str(policy) if policy else None


# --- next steps for red figures ---------------------------------------------------------


def _escape_advice(metrics: dict[str, Any], policy: str | None) -> str | None:
    """What to do about defective parts that passed; None when none did."""
    rate = _value("escape_rate", metrics)
    counts = _counts(metrics)
    if not isinstance(rate, int | float) or rate <= 0 or counts is None:
        return None
    missed = _wrong_count(metrics, "fn", "escape_rate", counts[1])
    said = f"{missed} of {counts[1]} defective parts passed as OK"
    by_type = _escapes_by_type(metrics)
    if by_type:
        said += " (" + ", ".join(f"{name} {k} of {n}" for name, k, n in by_type) + ")"
    said += "."
    detector = "or, for known defect classes the anomaly score misses, train a detector for them"
    more = "collect more defective examples of the types that escape (test/<defect type>/)"
    if policy == "target_frr":
        said += (
            " The threshold was set from good parts alone; nothing pulled it down to catch them."
        )
        step = (
            f"{more} and use policy best_f1 (or zero_escape to catch every one), or raise "
            "threshold.target (a lower cut: fewer escapes, more good parts rejected); "
            f"{detector}."
        )
    elif policy == "zero_escape":
        said += " The cut caught every defective calibration image, but new ones still passed."
        step = f"{more}, so the calibration sees them; {detector}."
    else:
        step = (
            f"{more} and use policy zero_escape (a cut below every defective calibration "
            f"image, at the cost of more false rejects); {detector}."
        )
    return f"{said} Next step: {step}"


def _escapes_by_type(metrics: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(type, missed, count) of each defect type with a missed part, most missed first."""
    per_type = metrics.get("per_type")
    if not isinstance(per_type, dict):
        return []
    found = []
    for name, row in per_type.items():
        if not isinstance(row, dict):
            continue
        rate, count = row.get("escape_rate"), row.get("count")
        if isinstance(rate, int | float) and isinstance(count, int) and rate > 0:
            found.append((name, round(rate * count), count))
    return sorted(found, key=lambda item: (-item[1], item[0]))


def _false_reject_advice(metrics: dict[str, Any], calibration: Calibration | None) -> str | None:
    """What to do about good parts rejected beyond the target (5% when none was asked)."""
    rate = _value("false_reject_rate", metrics)
    counts = _counts(metrics)
    target = _target(metrics, calibration)
    limit = target if target is not None else PLANT_FRR_LIMIT
    if not isinstance(rate, int | float) or rate <= limit or counts is None:
        return None
    rejected = _wrong_count(metrics, "fp", "false_reject_rate", counts[0])
    aimed = (
        f"the {_number('target', target)} the threshold aimed at"
        if target is not None
        else f"{_number('target', PLANT_FRR_LIMIT)}"
    )
    said = f"{rejected} of {counts[0]} good parts were rejected, above {aimed}."
    accept = "raise threshold.target to the rate the line can accept"
    if target is None:
        said += (
            f" Policy {_policy(metrics, calibration) or 'best_f1'} rejects good parts to "
            "catch defects."
        )
        step = (
            "add good images of the kind that is rejected (see the falsely rejected parts "
            "below) and train again, or use policy target_frr with threshold.target at the "
            "rate the line can accept."
        )
        return f"{said} Next step: {step}"
    needed = good_images_needed(target)
    calibrated_on = calibration.validation.get("good") if calibration is not None else None
    if needed is not None and calibrated_on is not None and calibrated_on < needed:
        said += (
            f" The threshold was set on {calibrated_on} good images; a "
            f"{_number('target', target)} target needs at least {needed}."
        )
        step = (
            f"add at least {needed - calibrated_on} good images (or raise "
            f"threshold.good_holdout) and train again, or {accept}."
        )
    else:
        step = (
            "give the calibration more good images (the line's good parts vary more than "
            f"those it saw: see the falsely rejected parts below), or {accept}."
        )
    return f"{said} Next step: {step}"


# --- the page's sections ----------------------------------------------------------------


def _warnings(metrics: dict[str, Any], calibration: Calibration | None) -> str:
    items = list(calibration.warnings) if calibration is not None else []
    # the evaluation's own (e.g. images the model was fitted on, left out)
    evaluation_warnings = metrics.get("warnings")
    if isinstance(evaluation_warnings, list):
        items += [str(item) for item in evaluation_warnings]
    counts = _counts(metrics)
    if counts is None:
        items.append(
            f"{metrics.get('note') or 'No evaluation images'}: none of the figures below "
            "could be measured. Add test images (test/good/, test/<defect type>/)."
        )
    elif not counts[1]:
        items.append(
            "No defective images in the evaluation set: the escape rate, F1, AUROC and the "
            "pixel figures cannot be measured, only the false-reject rate. Add defective "
            "examples (test/<defect type>/) to see how many defects the model catches."
        )
    if not items:
        return ""
    listed = "".join(f"<li>{_e(item)}</li>" for item in items)
    return f'<section class="warnings"><h2>Read this first</h2><ul>{listed}</ul></section>'


def _headline(metrics: dict[str, Any], calibration: Calibration | None) -> str:
    policy = _policy(metrics, calibration)
    advice = {
        "escape_rate": _escape_advice(metrics, policy),
        "false_reject_rate": _false_reject_advice(metrics, calibration),
    }
    detector = metrics.get("family") == "detection"
    if detector:
        counts = _counts(metrics)
        rate = _value("escape_rate", metrics)
        advice = {"escape_rate": None, "false_reject_rate": None}
        if counts and isinstance(rate, int | float) and rate > 0:
            missed = round(rate * counts[1])
            advice["escape_rate"] = _DETECTOR_ESCAPES.format(missed=missed, defective=counts[1])
    cards = []
    for key, label in _HEADLINE_DETECTION if detector else _HEADLINE:
        value = _value(key, metrics)
        note = ""
        if value is None:
            note = _why_missing(key, metrics)
        elif key == "image_auroc" and isinstance(metrics.get("image_auroc_ci"), list):
            lo, hi = metrics["image_auroc_ci"][:2]
            level = metrics.get("level")
            level = level if isinstance(level, float) else 0.95
            note = f"{level:.0%} CI {_number(key, lo)} – {_number(key, hi)}"
        elif key == "false_reject_rate" and _target(metrics, calibration) is not None:
            note = f"target {_number('target', _target(metrics, calibration))}"
        elif key == "threshold":
            note = f"policy {policy}" if policy else ""
            if _target(metrics, calibration) is not None:
                note += f", target FRR {_number('target', _target(metrics, calibration))}"
        step = advice.get(key)
        next_step = ""
        if step is not None:
            said, _, todo = step.partition(" Next step: ")
            next_step = (
                f'<div class="advice">{_e(said)} <b>Next step:</b> {_e(todo)}</div>'
                if todo
                else f'<div class="advice">{_e(step)}</div>'
            )
        cards.append(
            f'<div class="card{" alert" if step else ""}"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(_number(key, value))}</div>'
            f'<div class="note">{_e(note)}</div>{next_step}</div>'
        )
    return f'<section class="cards">{"".join(cards)}</section>'


def _per_type(metrics: dict[str, Any]) -> str:
    per_type = metrics.get("per_type")
    if not isinstance(per_type, dict) or not per_type:
        return ""
    present: list[str] = []
    for row in per_type.values():
        if isinstance(row, dict):
            present += [key for key in row if key not in present]
    first = ["count", "auroc", "escape_rate", "false_reject_rate"]
    columns = [key for key in first if key in present]
    columns += [key for key in present if key not in first]
    head = "".join(f"<th>{_e(_caption(column))}</th>" for column in columns)
    body = []
    for name in sorted(per_type, key=lambda name: (name != "good", name)):
        row = per_type[name] if isinstance(per_type[name], dict) else {}
        cells = "".join(f"<td>{_type_cell(name, column, row)}</td>" for column in columns)
        body.append(f"<tr><th>{_e(name)}</th>{cells}</tr>")
    caption = (
        "A blank cell does not apply to the row: good parts cannot escape, defective ones "
        "cannot be falsely rejected."
    )
    if "auroc" in columns:
        caption += " AUROC: each type against the good images."
    return (
        "<section><h2>By defect type</h2><table><thead><tr><th>Type</th>"
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f'<p class="caption">{caption}</p></section>'
    )


def _type_cell(name: str, column: str, row: dict[str, Any]) -> str:
    if column in (_DEFECT_ONLY if name == "good" else _GOOD_ONLY):
        return ""
    value = row.get(column)
    if value is None:
        why = _PER_TYPE_MISSING.get(column, "not measured")
        return f'{_DASH} <span class="missing">{_e(why)}</span>'
    return _e(_number(column, value))


def _wrong_verdicts(metrics: dict[str, Any], figures: dict[str, str]) -> str:
    """The parts the model got wrong, or in words that there are none."""
    counts = _counts(metrics)
    if counts is None:
        return ""
    good, defective = counts
    missed = _wrong_count(metrics, "fn", "escape_rate", defective)
    rejected = _wrong_count(metrics, "fp", "false_reject_rate", good)
    panels = []
    if not defective:
        text = (
            "No defective images in the evaluation set, so no miss can be shown. Add "
            "defective examples (test/<defect type>/) to see which ones the model passes."
        )
    elif missed == 0:
        text = f"None: all {defective} defective parts were rejected (NG)."
    else:
        text = (
            f"{missed} of {defective} defective parts passed as OK (score below the "
            "threshold), lowest scores first: the model was surest of these. The cyan "
            "outline is the marked defect, the heat map what the model found unusual."
        )
    panels.append(_panel(MISSED, text, figures.get(MISSED) if missed else None, bool(missed)))
    if not good:
        text = "No good images in the evaluation set, so no false reject can be shown."
    elif rejected == 0:
        text = f"None: all {good} good parts passed (OK)."
    else:
        text = (
            f"{rejected} of {good} good parts were rejected (NG), highest scores first. The "
            "heat map shows what looked unusual: a kind of good part to add to the training "
            "images, or a real defect mislabeled as good."
        )
    shown = figures.get(FALSELY_REJECTED) if rejected else None
    panels.append(_panel(FALSELY_REJECTED, text, shown, bool(rejected)))
    return (
        f'<section><h2>Wrong verdicts</h2><div class="verdicts">{"".join(panels)}</div></section>'
    )


def _wrong_count(metrics: dict[str, Any], key: str, rate_key: str, total: int) -> int:
    """Missed (fn) or falsely rejected (fp) parts, from the count or else from the rate."""
    count = metrics.get(key)
    if isinstance(count, int):
        return count
    rate = metrics.get(rate_key)
    return round(rate * total) if isinstance(rate, int | float) else 0


def _panel(title: str, text: str, src: str | None, some: bool) -> str:
    if src is not None:
        picture = f'<a href="{_e(quote(src))}"><img src="{_e(quote(src))}" alt="{_e(title)}"></a>'
    elif some:
        picture = '<p class="missing">(no picture of them was drawn)</p>'
    else:
        picture = ""
    kind = "none" if text.startswith("None:") else "text"
    return f'<div class="panel"><h3>{_e(title)}</h3><p class="{kind}">{_e(text)}</p>{picture}</div>'


def _explained(
    metrics: dict[str, Any],
    title: str,
    head: tuple[str, str],
    explained: tuple[tuple[str, str, str], ...],
) -> str:
    """A section with one row per figure of `explained` (key, caption, reading) present."""
    rows = [
        f"<tr><th>{_e(caption)}</th><td>{_figure(key, metrics)}</td><td>{_e(reading)}</td></tr>"
        for key, caption, reading in explained
        if key in metrics
    ]
    if not rows:
        return ""
    return (
        f"<section><h2>{_e(title)}</h2><table><thead><tr><th>{_e(head[0])}</th>"
        f"<th>{_e(head[1])}</th><th>Reading</th></tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table></section>"
    )


def similarity_reading(key: str, value: float) -> tuple[str, str, bool]:
    """(what the figure means, what to do or why all is well, whether it is red)."""
    if key == _NEAR_COPIES:
        meaning = (
            "How alike the training images are: the median similarity of each to its "
            "nearest other training image (1: the same picture; the part's design, which "
            "all of them share, is left out first)."
        )
        if value >= NEAR_COPY_SIMILARITY:
            return (
                meaning,
                "Most training images are near-copies of another one (the same part shot "
                "again): the model has seen fewer different parts than images. Next step: "
                "add images of more, different good parts.",
                True,
            )
        return meaning, "Fine: the training images are not near-copies of each other.", False
    meaning = (
        "How well being far from every training image, and nothing else, tells the "
        "defective evaluation images from the good ones (0.5: not at all; 1: perfectly)."
    )
    if value >= RESHOT_AUROC:
        return (
            meaning,
            "Here it does: the good evaluation images are much closer to the training "
            "images than the defective ones, as if the same parts were photographed again. "
            "Such good parts score lower than new good parts will on the line, so the "
            "false-reject rate above is likely too low and the AUROC too high. Next step: "
            "evaluate on good parts photographed apart from the training images (another "
            "batch or day; keep all shots of one part on the same side), e.g. `defectlens "
            "evaluate <version> --data NEW-BATCH`. Where the defects change the whole "
            "image (a missing part, another colour), a high figure is expected and the "
            "figures above stand.",
            True,
        )
    return (
        meaning,
        "Fine: the good evaluation images are about as new to the model as the defective "
        "ones, so the figures above should hold on new parts.",
        False,
    )


def _similarity(metrics: dict[str, Any]) -> str:
    rows = []
    for key, caption in _NEARNESS_CAPTIONS.items():
        if key not in metrics:
            continue
        value = _value(key, metrics)
        if not isinstance(value, int | float):
            rows.append(
                f"<tr><th>{_e(caption)}</th><td class='figure'>{_figure(key, metrics)}</td>"
                "<td class='reading'></td></tr>"
            )
            continue
        meaning, verdict, red = similarity_reading(key, float(value))
        verdict_html = (
            _e(verdict).replace("Next step:", "<b>Next step:</b>", 1)
            if red
            else f'<span class="fine">{_e(verdict)}</span>'
        )
        rows.append(
            f'<tr class="{"alert" if red else "fine-row"}"><th>{_e(caption)}</th>'
            f'<td class="figure">{_e(_number(key, value))}</td>'
            f'<td class="reading">{_e(meaning)}<div class="advice">{verdict_html}</div></td></tr>'
        )
    if not rows:
        return ""
    return (
        f"<section><h2>{_e(_NEARNESS_TITLE)}</h2><table><thead><tr><th>Images</th>"
        f"<th>Figure</th><th>What it means, what to do</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _calibration(calibration: Calibration | None) -> str:
    if calibration is None:
        return ""
    rows: list[tuple[str, str]] = [("Policy", calibration.policy)]
    if calibration.target is not None:
        rows.append(("Target false-reject rate", _number("target", calibration.target)))
    if calibration.validation:
        good = calibration.validation.get("good", 0)
        defective = calibration.validation.get("defective", 0)
        rows.append(("Chosen on", f"{good} good and {defective} defective images"))
    rows.append(("Raw threshold", f"{calibration.raw_threshold:.4g}"))
    if calibration.warnings:
        rows.append(("Warnings", f"{len(calibration.warnings)}: see the top of this page"))
    body = "".join(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>" for key, value in rows)
    return f"<section><h2>How the threshold was set</h2><table>{body}</table></section>"


def _other_figures(metrics: dict[str, Any]) -> str:
    rows = [
        f"<tr><th>{_e(_OTHER_CAPTIONS.get(key, key))}</th><td>{_figure(key, metrics)}</td></tr>"
        for key in metrics
        if key not in _SHOWN_ELSEWHERE
    ]
    if not rows:
        return ""
    return f"<section><h2>All figures</h2><table>{''.join(rows)}</table></section>"


def _model_facts(card: dict[str, Any]) -> str:
    rows = [
        f"<tr><th>{_e(key)}</th><td>"
        + (
            _e(_number(key, value))
            if value is not None
            else f'{_DASH} <span class="missing">not recorded</span>'
        )
        + "</td></tr>"
        for key, value in card.items()
        if key not in ("name", "version")
    ]
    if not rows:
        return ""
    return f"<section><h2>Model</h2><table>{''.join(rows)}</table></section>"


def _plots(figures: dict[str, str]) -> str:
    items = "".join(
        f'<figure><a href="{_e(quote(src))}"><img src="{_e(quote(src))}" '
        f'alt="{_e(_caption(name))}"></a><figcaption>{_e(_caption(name))}</figcaption></figure>'
        for name, src in figures.items()
        if name not in (MISSED, FALSELY_REJECTED)
    )
    if not items:
        return ""
    return f'<section><h2>Plots</h2><div class="plots">{items}</div></section>'


def _page(
    metrics: dict[str, Any],
    figures: dict[str, str],
    card: dict[str, Any],
    calibration: Calibration | None,
) -> str:
    template = Template(
        resources.files("defectlens.train")
        .joinpath("templates", "report.html")
        .read_text(encoding="utf-8")
    )
    return template.substitute(
        name=_e(card.get("name", "model")),
        version=_e(card.get("version") or "not given"),
        written=_e(datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        warnings=_warnings(metrics, calibration),
        headline=_headline(metrics, calibration),
        per_type=_per_type(metrics),
        wrong_verdicts=""
        if metrics.get("family") == "detection"
        else _wrong_verdicts(metrics, figures),
        plots=_plots(figures),
        similarity=_similarity(metrics),
        pixels_apart=_explained(
            metrics, "Pixel AUROC taken apart", ("Pixels", "AUROC"), _PIXELS_APART
        ),
        calibration=_calibration(calibration),
        other_figures=_other_figures(metrics),
        model=_model_facts(card),
    )
