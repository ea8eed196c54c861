"""The HTML report's charts as plain SVG: every bar and point carries a `<title>`, so a
browser shows its figures on hover; no script, no library, nothing fetched, and a page of a
dozen charts is drawn in milliseconds. The PDF draws its charts with matplotlib
(`render.write_pdf`), where hovering means nothing.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 900
HEIGHT = 270
LEFT, RIGHT, TOP, BOTTOM = 58, 58, 12, 96
"""Margins: the y axes' labels left (and right for a second axis), rotated period names
below."""
MAX_LABELS = 24
"""Period names shown under the axis at most (every n-th beyond)."""
INK, GRID, MUTED = "#333", "#e3e3e3", "#7f8c8d"


@dataclass(frozen=True)
class Point:
    value: float | None
    """None: no point (a period without parts)."""
    tip: str
    """What hovering shows."""


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least `top`: steps of 1, 2 or 5 times a power of ten."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [0.0]
    while ticks[-1] < top - 1e-12:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


class _Plot:
    """One chart's coordinates: n slots along x, values 0..ticks[-1] along y."""

    def __init__(self, n: int, ticks: list[float]) -> None:
        self.n = max(n, 1)
        self.ticks = ticks
        self.inner_w = WIDTH - LEFT - RIGHT
        self.inner_h = HEIGHT - TOP - BOTTOM

    def x(self, i: float) -> float:
        return LEFT + (i + 0.5) * self.inner_w / self.n

    def y(self, value: float, ticks: list[float] | None = None) -> float:
        top = (ticks or self.ticks)[-1] or 1.0
        return TOP + self.inner_h * (1 - min(max(value, 0.0), top) / top)

    @property
    def slot(self) -> float:
        return self.inner_w / self.n


def _fmt(value: float, percent: bool) -> str:
    return f"{value:g}%" if percent else f"{value:g}"


def _frame(plot: _Plot, labels: Sequence[str], y_title: str, percent: bool) -> list[str]:
    parts = []
    for tick in plot.ticks:
        y = plot.y(tick)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(tick, percent)}</text>'
        )
    parts.append(
        f'<text transform="translate(14 {TOP + plot.inner_h / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{html.escape(y_title)}</text>'
    )
    step = max(1, math.ceil(len(labels) / MAX_LABELS))
    base = TOP + plot.inner_h
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="{INK}"/>')
    for i in range(0, len(labels), step):
        x = plot.x(i)
        parts.append(
            f'<text transform="translate({x:.1f} {base + 12}) rotate(-60)" '
            f'text-anchor="end">{html.escape(labels[i])}</text>'
        )
    return parts


def _svg(parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'font-family="system-ui,sans-serif" font-size="11" fill="{INK}">'
        + "".join(parts)
        + "</svg>"
    )


def bar_chart(
    labels: Sequence[str],
    points: Sequence[Point],
    y_title: str,
    color: str = "#c0392b",
    percent: bool = True,
) -> str:
    """Bars, one a label; a None value leaves its slot empty."""
    values = [p.value for p in points if p.value is not None]
    plot = _Plot(len(points), nice_ticks(max(values, default=0.0)))
    parts = _frame(plot, labels, y_title, percent)
    width = plot.slot * 0.7
    for i, point in enumerate(points):
        if point.value is None:
            continue
        top = plot.y(point.value)
        parts.append(
            f'<rect x="{plot.x(i) - width / 2:.1f}" y="{top:.1f}" width="{width:.1f}" '
            f'height="{TOP + plot.inner_h - top:.1f}" fill="{color}">'
            f"<title>{html.escape(point.tip)}</title></rect>"
        )
    return _svg(parts)


def pareto_chart(
    labels: Sequence[str],
    counts: Sequence[Point],
    cumulative: Sequence[float],
    y_title: str,
    cumulative_title: str,
) -> str:
    """Bars of counts and the cumulative share (0-100%, right axis) as a line."""
    values = [p.value for p in counts if p.value is not None]
    plot = _Plot(len(counts), nice_ticks(max(values, default=0.0)))
    parts = _frame(plot, labels, y_title, percent=False)
    width = plot.slot * 0.6
    for i, point in enumerate(counts):
        if point.value is None:
            continue
        top = plot.y(point.value)
        parts.append(
            f'<rect x="{plot.x(i) - width / 2:.1f}" y="{top:.1f}" width="{width:.1f}" '
            f'height="{TOP + plot.inner_h - top:.1f}" fill="#2c7fb8">'
            f"<title>{html.escape(point.tip)}</title></rect>"
        )
    share_ticks = [0.0, 25.0, 50.0, 75.0, 100.0]
    for tick in share_ticks:
        y = plot.y(tick, share_ticks) + 4
        parts.append(f'<text x="{WIDTH - RIGHT + 6}" y="{y:.1f}">{tick:g}%</text>')
    parts.append(
        f'<text transform="translate({WIDTH - 10} {TOP + plot.inner_h / 2:.0f}) rotate(90)" '
        f'text-anchor="middle">{html.escape(cumulative_title)}</text>'
    )
    line = " ".join(
        f"{plot.x(i):.1f},{plot.y(100 * share, share_ticks):.1f}"
        for i, share in enumerate(cumulative)
    )
    parts.append(f'<polyline points="{line}" fill="none" stroke="#e67e22" stroke-width="2"/>')
    for i, share in enumerate(cumulative):
        parts.append(
            f'<circle cx="{plot.x(i):.1f}" cy="{plot.y(100 * share, share_ticks):.1f}" r="4" '
            f'fill="#e67e22"><title>{html.escape(labels[i])}: {100 * share:.1f}%</title></circle>'
        )
    return _svg(parts)


@dataclass(frozen=True)
class ControlPoint:
    """One subgroup of a control chart, in percent."""

    value: float | None
    lcl: float | None
    ucl: float | None
    tip: str
    marked: str
    """'' for an ordinary point, 'out' beyond the limits, 'rule' breaking a run rule."""


_MARK_COLOR = {"": "#2c3e50", "out": "#e74c3c", "rule": "#e67e22"}


def control_chart(
    labels: Sequence[str], points: Sequence[ControlPoint], centre: float | None, y_title: str
) -> str:
    """A control chart: the limits as steps (they vary with the subgroup size), the centre
    line, the points joined, the marked ones bigger and coloured."""
    tops = [v for p in points for v in (p.value, p.ucl) if v is not None]
    plot = _Plot(len(points), nice_ticks(max([*tops, centre or 0.0], default=0.0)))
    parts = _frame(plot, labels, y_title, percent=True)
    half = plot.slot / 2
    for limit in ("ucl", "lcl"):
        for i, point in enumerate(points):
            value = getattr(point, limit)
            if value is None:
                continue
            y = plot.y(value)
            parts.append(
                f'<line x1="{plot.x(i) - half:.1f}" y1="{y:.1f}" x2="{plot.x(i) + half:.1f}" '
                f'y2="{y:.1f}" stroke="{MUTED}" stroke-dasharray="4 3"/>'
            )
    if centre is not None:
        y = plot.y(centre)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#27ae60" '
            f'stroke-width="1.5"><title>p̄ {centre:.2f}%</title></line>'
        )
    run: list[str] = []
    for i, point in enumerate(points):
        if point.value is None:
            if len(run) > 1:
                parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="#2c3e50"/>')
            run = []
            continue
        run.append(f"{plot.x(i):.1f},{plot.y(point.value):.1f}")
    if len(run) > 1:
        parts.append(f'<polyline points="{" ".join(run)}" fill="none" stroke="#2c3e50"/>')
    for i, point in enumerate(points):
        if point.value is None:
            continue
        radius = 5 if point.marked else 3
        parts.append(
            f'<circle cx="{plot.x(i):.1f}" cy="{plot.y(point.value):.1f}" r="{radius}" '
            f'fill="{_MARK_COLOR[point.marked]}"><title>{html.escape(point.tip)}</title></circle>'
        )
    return _svg(parts)
