"""The training report of a model version: `report/metrics.json` and a self-contained
`report/index.html` (inline CSS, plots beside it as PNG) a QA engineer opens in a browser."""

from __future__ import annotations

import html
import json
import math
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from defectlens.errors import InputError

# Keys of `metrics` the page puts up front; any other scalar goes to the "All figures" table.
#   image_auroc, image_auroc_ci ([lo, hi]), pixel_auroc, aupro, f1, escape_rate,
#   false_reject_rate, threshold (raw), policy, target, level (of the CI, default 0.95),
#   per_type: {type: {count, auroc, escape_rate, ...}}
_HEADLINE = (
    ("image_auroc", "Image AUROC"),
    ("pixel_auroc", "Pixel AUROC"),
    ("aupro", "AUPRO"),
    ("f1", "F1"),
    ("escape_rate", "Escape rate"),
    ("false_reject_rate", "False-reject rate"),
    ("threshold", "Threshold"),
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
_NEARNESS = (
    (
        "training_nearest_similarity",
        "Training images, to their nearest other training image",
        "median similarity (1: the same picture; what all training images share is left "
        "out first); the per-type table gives the evaluation images', to their nearest "
        "training image",
    ),
    (
        "defective_farther_from_training_auroc",
        "Defective against good, by distance from the training images alone",
        "near 0.5: the good evaluation images are new parts, as the defective ones are; "
        "near 1: they are much closer to training images (the same parts shot again, or "
        "defects that change whole images), so good parts score lower here than new ones "
        "will on the line",
    ),
)
_SHOWN_ELSEWHERE = (
    {key for key, _ in _HEADLINE}
    | {key for key, _, _ in _PIXELS_APART}
    | {key for key, _, _ in _NEARNESS}
    | {
        "image_auroc_ci",
        "policy",
        "target",
        "level",
        "per_type",
    }
)
_ACRONYMS = {"roc": "ROC", "auroc": "AUROC", "aupro": "AUPRO", "pro": "PRO", "f1": "F1"}
_DASH = "—"


def write_report(
    report_dir: Path,
    metrics: Mapping[str, Any],
    plots: Mapping[str, Path],
    card_summary: Mapping[str, Any],
) -> Path:
    """Write `metrics.json` and `index.html` into `report_dir`; return the page's path.

    `plots` maps a name (shown as the caption, e.g. "roc", "worst_misses") to a PNG; one
    outside `report_dir` is copied in, so the folder stands alone. `card_summary` holds the
    model's `name` and `version` and any other facts to list (family, created, data...).
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    clean = _jsonable(dict(metrics))
    (report_dir / "metrics.json").write_text(
        json.dumps(clean, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    figures = [(name, _place_plot(report_dir, name, Path(path))) for name, path in plots.items()]
    page = report_dir / "index.html"
    page.write_text(_page(clean, figures, _jsonable(dict(card_summary))), encoding="utf-8")
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
    words = [_ACRONYMS.get(word.lower(), word) for word in name.replace("_", " ").split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _number(key: str, value: Any) -> str:
    """A figure as the plant reads it: rates and shares in percent, scores to three decimals."""
    if value is None:
        return _DASH
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value) if not isinstance(value, dict | list) else json.dumps(value)
    if isinstance(value, int):
        return f"{value:,}"
    if key.endswith(("rate", "share")) or key == "target":
        return f"{value:.2%}" if 0 < abs(value) < 0.01 else f"{value:.1%}"
    if key == "threshold":
        return f"{value:.4g}"
    return f"{value:.3f}"


def _headline(metrics: dict[str, Any]) -> str:
    cards = []
    for key, label in _HEADLINE:
        value = metrics.get(key)
        note = ""
        if key == "image_auroc" and isinstance(metrics.get("image_auroc_ci"), list):
            lo, hi = metrics["image_auroc_ci"][:2]
            level = metrics.get("level")
            level = level if isinstance(level, float) else 0.95
            note = f"{level:.0%} CI {_number(key, lo)} – {_number(key, hi)}"
        if key == "threshold":
            policy = metrics.get("policy")
            note = f"policy {policy}" if policy else ""
            if metrics.get("target") is not None:
                note += f", target FRR {_number('target', metrics['target'])}"
        alert = key == "escape_rate" and isinstance(value, int | float) and value > 0
        cards.append(
            f'<div class="card{" alert" if alert else ""}"><div class="label">{_e(label)}</div>'
            f'<div class="value">{_e(_number(key, value))}</div>'
            f'<div class="note">{_e(note)}</div></div>'
        )
    return f'<section class="cards">{"".join(cards)}</section>'


def _per_type(metrics: dict[str, Any]) -> str:
    per_type = metrics.get("per_type")
    if not isinstance(per_type, dict) or not per_type:
        return ""
    columns = ["count", "auroc", "escape_rate"]
    for row in per_type.values():
        if isinstance(row, dict):
            columns += [key for key in row if key not in columns]
    head = "".join(f"<th>{_e(_caption(column))}</th>" for column in columns)
    body = []
    for name in sorted(per_type, key=lambda name: (name != "good", name)):
        row = per_type[name] if isinstance(per_type[name], dict) else {}
        cells = "".join(f"<td>{_e(_number(column, row.get(column)))}</td>" for column in columns)
        body.append(f"<tr><th>{_e(name)}</th>{cells}</tr>")
    return (
        "<section><h2>By defect type</h2><table><thead><tr><th>Type</th>"
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></section>"
    )


def _explained(
    metrics: dict[str, Any],
    title: str,
    head: tuple[str, str],
    explained: tuple[tuple[str, str, str], ...],
) -> str:
    """A section with one row per figure of `explained` (key, caption, reading) present."""
    rows = [
        f"<tr><th>{_e(caption)}</th><td>{_e(_number(key, metrics[key]))}</td>"
        f"<td>{_e(reading)}</td></tr>"
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


def _other_figures(metrics: dict[str, Any]) -> str:
    rows = [
        f"<tr><th>{_e(key)}</th><td>{_e(_number(key, value))}</td></tr>"
        for key, value in metrics.items()
        if key not in _SHOWN_ELSEWHERE
    ]
    if not rows:
        return ""
    return f"<section><h2>All figures</h2><table>{''.join(rows)}</table></section>"


def _model_facts(card: dict[str, Any]) -> str:
    rows = [
        f"<tr><th>{_e(key)}</th><td>{_e(_number(key, value))}</td></tr>"
        for key, value in card.items()
        if key not in ("name", "version")
    ]
    if not rows:
        return ""
    return f"<section><h2>Model</h2><table>{''.join(rows)}</table></section>"


def _plots(figures: list[tuple[str, str]]) -> str:
    if not figures:
        return ""
    items = "".join(
        f'<figure><a href="{_e(quote(src))}"><img src="{_e(quote(src))}" '
        f'alt="{_e(_caption(name))}"></a><figcaption>{_e(_caption(name))}</figcaption></figure>'
        for name, src in figures
    )
    return f'<section><h2>Plots</h2><div class="plots">{items}</div></section>'


_CSS = """
:root { --ink: #1d2733; --muted: #5b6876; --line: #dfe4ea; --accent: #1f4e8c;
        --bad: #b42318; --bg: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: var(--accent); color: #fff; padding: 22px 32px; }
header h1 { margin: 0; font-size: 24px; font-weight: 600; }
header .sub { opacity: .85; font-size: 14px; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
h2 { font-size: 17px; margin: 32px 0 12px; color: var(--accent); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
               letter-spacing: .04em; }
.card .value { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12px; min-height: 18px; }
.card.alert { border-color: var(--bad); }
.card.alert .value { color: var(--bad); }
table { border-collapse: collapse; background: #fff; border: 1px solid var(--line);
        border-radius: 8px; overflow: hidden; min-width: 420px; }
th, td { padding: 7px 14px; border-bottom: 1px solid var(--line); text-align: left; }
td { font-variant-numeric: tabular-nums; }
thead th { background: #eef2f7; font-size: 13px; color: var(--muted); }
tbody th, table > tr > th { font-weight: 500; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px;
         padding: 12px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; }
"""


def _page(metrics: dict[str, Any], figures: list[tuple[str, str]], card: dict[str, Any]) -> str:
    name = str(card.get("name", "model"))
    version = str(card.get("version", ""))
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(name)} {_e(version)} · defectlens report</title>
<style>{_CSS}</style>
</head>
<body>
<header><h1>{_e(name)}</h1><div class="sub">version {_e(version or _DASH)}
 · validation report</div></header>
<main>
{_headline(metrics)}
{_per_type(metrics)}
{_explained(metrics, "Pixel AUROC taken apart", ("Pixels", "AUROC"), _PIXELS_APART)}
{_explained(metrics, _NEARNESS_TITLE, ("Images", "Figure"), _NEARNESS)}
{_plots(figures)}
{_other_figures(metrics)}
{_model_facts(card)}
<footer>Written by defectlens on {_e(written)}. The figures are also in metrics.json.</footer>
</main>
</body>
</html>
"""
