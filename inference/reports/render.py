"""A `Report` as a self-contained HTML page (charts as inline SVG), CSV files (one a table)
or a PDF (matplotlib's PdfPages), in English or Simplified Chinese.

Charts carry numbers and period names only; their titles are HTML headings, so a Chinese
report needs no CJK font in matplotlib. `Figure` objects, not pyplot: the service renders
pages from worker threads.
"""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from defectlens.inference.reports.calendar import GRAINS
from defectlens.inference.reports.figures import Counts, ParetoRow, PChart, Trend
from defectlens.inference.reports.report import Report, ReportRequest

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")

TEXT: dict[str, dict[Lang, str]] = {
    "title": {"en": "Defect-rate report", "zh": "缺陷率报告"},
    "period": {"en": "Period", "zh": "期间"},
    "baseline": {"en": "Baseline", "zh": "基准期"},
    "zone": {"en": "time zone", "zh": "时区"},
    "parts": {"en": "Parts", "zh": "零件数"},
    "ng": {"en": "NG", "zh": "不合格"},
    "ng_rate": {"en": "NG rate", "zh": "不合格率"},
    "fpy": {"en": "First-pass yield", "zh": "一次合格率"},
    "trend": {"en": "Against the baseline", "zh": "与基准期比较"},
    "by_period": {"en": "NG rate by period", "zh": "各期间不合格率"},
    "by_line": {"en": "By line", "zh": "按产线"},
    "by_station": {"en": "By station", "zh": "按工位"},
    "by_product": {"en": "By product", "zh": "按产品"},
    "by_shift": {"en": "By shift", "zh": "按班次"},
    "pareto_model": {"en": "Defect classes found by the model", "zh": "模型检出的缺陷类别"},
    "pareto_qa": {"en": "Defect classes labelled by QA", "zh": "质检标注的缺陷类别"},
    "p_chart": {"en": "p-chart", "zh": "p控制图"},
    "class": {"en": "Defect class", "zh": "缺陷类别"},
    "count": {"en": "Parts", "zh": "零件数"},
    "share": {"en": "Share", "zh": "占比"},
    "cumulative": {"en": "Cumulative", "zh": "累计"},
    "station": {"en": "Station", "zh": "工位"},
    "change": {"en": "Change", "zh": "变化"},
    "ci": {"en": "95% interval", "zh": "95%置信区间"},
    "verdict": {"en": "Verdict", "zh": "结论"},
    "real": {"en": "a real change", "zh": "显著变化"},
    "chance": {"en": "could be chance", "zh": "可能是偶然"},
    "out": {"en": "out of control", "zh": "失控点"},
    "none": {"en": "No parts in this period.", "zh": "此期间没有零件。"},
    "filters": {"en": "Show", "zh": "显示"},
    "from": {"en": "From", "zh": "从"},
    "to": {"en": "To", "zh": "到"},
    "line": {"en": "Line", "zh": "产线"},
    "grain": {"en": "Periods", "zh": "周期"},
    "all": {"en": "all", "zh": "全部"},
    "trend_none": {
        "en": "no parts in the period or the baseline: no comparison",
        "zh": "期间或基准期没有零件：无法比较",
    },
    "trend_rates": {
        "en": "NG rate {rate} vs {baseline} in the baseline",
        "zh": "不合格率 {rate}，基准期 {baseline}",
    },
    "trend_no_change": {
        "en": " (no NG in the baseline: no relative change)",
        "zh": "（基准期没有不合格：无相对变化）",
    },
    "trend_down": {"en": ", down {change}", "zh": "，下降 {change}"},
    "trend_up": {"en": ", up {change}", "zh": "，上升 {change}"},
    "trend_ci": {
        "en": " (95% CI {low} to {high}; target -{target})",
        "zh": "（95%置信区间 {low} 至 {high}；目标 -{target}）",
    },
    "trend_target": {"en": " (target -{target})", "zh": "（目标 -{target}）"},
    "share_hint": {
        "en": "This page's address, with the filters above, is a link to share. It opens only "
        "with a reports key in the X-API-Key header: in a browser, through the plant's "
        "reverse proxy that adds it (the key never goes in the address).",
        "zh": "本页地址（含上方筛选条件）即可分享的链接。打开它需要在 X-API-Key 请求头中"
        "提供报告密钥：浏览器请经由工厂添加该请求头的反向代理访问（密钥不放在地址中）。",
    },
}


def t(key: str, lang: Lang) -> str:
    return TEXT[key][lang]


def trend_sentence(trend: Trend, lang: Lang = "en") -> str:
    """The trend in words: `NG rate 3.1% vs 4.2% in the baseline, down 26% (95% CI -53% to
    +16%; target -20%)`, or in Chinese `不合格率 3.1%，基准期 4.2%，下降 26%（...）`."""
    if trend.rate is None or trend.baseline_rate is None:
        return t("trend_none", lang)
    text = t("trend_rates", lang).format(
        rate=f"{trend.rate:.1%}", baseline=f"{trend.baseline_rate:.1%}"
    )
    if trend.change is None:
        return text + t("trend_no_change", lang)
    direction = "trend_down" if trend.change < 0 else "trend_up"
    text += t(direction, lang).format(change=f"{abs(trend.change):.0%}")
    target = f"{trend.target:.0%}"
    if trend.low is not None and trend.high is not None:
        return text + t("trend_ci", lang).format(
            low=_signed(trend.low), high=_signed(trend.high), target=target
        )
    return text + t("trend_target", lang).format(target=target)


def _signed(value: float) -> str:
    return f"{value:+.0%}".replace("+0%", "0%").replace("-0%", "0%")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    # The document's own header and its RDF metadata (creator, date) are not needed inline.
    return re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.S)


def rate_chart(rows: Sequence[Counts]) -> Figure:
    figure = Figure(figsize=(9, 3))
    axes = figure.subplots()
    labels = [c.key for c in rows]
    axes.bar(range(len(rows)), [100 * (c.ng_rate or 0.0) for c in rows], color="#c0392b")
    axes.set_ylabel("NG %")
    _ticks(axes, labels)
    return figure


def pareto_chart(rows: Sequence[ParetoRow]) -> Figure:
    figure = Figure(figsize=(9, 3))
    axes = figure.subplots()
    axes.bar(range(len(rows)), [r.count for r in rows], color="#2c7fb8")
    axes.set_ylabel("parts")
    twin = axes.twinx()
    twin.plot(range(len(rows)), [100 * r.cumulative for r in rows], "o-", color="#e67e22")
    twin.set_ylim(0, 105)
    twin.set_ylabel("cumulative %")
    _ticks(axes, [r.defect_class for r in rows])
    return figure


def p_chart_figure(chart: PChart) -> Figure:
    figure = Figure(figsize=(9, 3))
    axes = figure.subplots()
    xs = range(len(chart.points))
    ys = [100 * p.p if p.p is not None else float("nan") for p in chart.points]
    ucl = [100 * p.ucl if p.ucl is not None else float("nan") for p in chart.points]
    lcl = [100 * p.lcl if p.lcl is not None else float("nan") for p in chart.points]
    axes.step(xs, ucl, where="mid", color="#7f8c8d", linestyle="--", label="UCL / LCL")
    axes.step(xs, lcl, where="mid", color="#7f8c8d", linestyle="--")
    if chart.centre is not None:
        axes.axhline(100 * chart.centre, color="#27ae60", label="p̄")
    axes.plot(xs, ys, "o-", color="#2c3e50", label="NG %")
    out = [
        (i, y) for i, (y, p) in enumerate(zip(ys, chart.points, strict=True)) if p.out_of_control
    ]
    if out:
        axes.plot([i for i, _ in out], [y for _, y in out], "o", color="#e74c3c", markersize=9)
    axes.set_ylabel("NG %")
    axes.legend(loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 1.0))
    _ticks(axes, [p.label for p in chart.points])
    return figure


def _ticks(axes: object, labels: list[str]) -> None:
    # Every label while they fit, else every n-th, so long reports stay readable.
    step = max(1, len(labels) // 24)
    shown = list(range(0, len(labels), step))
    axes.set_xticks(shown, [labels[i] for i in shown], rotation=60, ha="right", fontsize=8)  # type: ignore[attr-defined]


def _counts_table(rows: Sequence[Counts], key_name: str, lang: Lang) -> str:
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in (key_name, t("parts", lang), t("ng", lang), t("ng_rate", lang), t("fpy", lang))
    )
    body = "".join(
        f"<tr><td>{html.escape(c.key)}</td><td>{c.parts}</td><td>{c.ng}</td>"
        f"<td>{_pct(c.ng_rate)}</td><td>{_pct(c.first_pass_yield)}</td></tr>"
        for c in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pareto_section(rows: list[ParetoRow], title: str, lang: Lang) -> str:
    if not rows:
        return f"<h2>{title}</h2><p class=muted>–</p>"
    head = "".join(f"<th>{t(k, lang)}</th>" for k in ("class", "count", "share", "cumulative"))
    body = "".join(
        f"<tr><td>{html.escape(r.defect_class)}</td><td>{r.count}</td>"
        f"<td>{_pct(r.share)}</td><td>{_pct(r.cumulative)}</td></tr>"
        for r in rows
    )
    return (
        f"<h2>{title}</h2><div class=chart>{_svg(pareto_chart(rows))}</div>"
        f"<table><tr>{head}</tr>{body}</table>"
    )


def _trend_table(trends: list[Trend], lang: Lang) -> str:
    head = "".join(
        f"<th>{t(k, lang)}</th>"
        for k in ("station", "ng_rate", "baseline", "change", "ci", "verdict")
    )
    body = ""
    for item in trends:
        ci = (
            f"{item.low:+.0%} … {item.high:+.0%}"
            if item.low is not None and item.high is not None
            else "–"
        )
        change = "–" if item.change is None else f"{item.change:+.0%}"
        verdict = t("real", lang) if item.significant else t("chance", lang)
        body += (
            f"<tr><td>{html.escape(item.key)}</td><td>{_pct(item.rate)}</td>"
            f"<td>{_pct(item.baseline_rate)}</td><td>{change}</td><td>{ci}</td>"
            f"<td>{verdict if item.change is not None else '–'}</td></tr>"
        )
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = """
body{font-family:system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;
color:#222;max-width:1100px}
h1{margin-bottom:4px}h2{margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#777}.cards{display:flex;gap:16px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:10px 16px;min-width:140px}
.card b{display:block;font-size:26px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 10px;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
.chart svg{width:100%;height:auto}.good{color:#1e8449}.bad{color:#c0392b}
form{background:#f7f7f7;padding:8px 12px;border-radius:6px}form label{margin-right:10px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:0 32px}
"""


def html_report(report: Report, lang: Lang = "en", form: str = "") -> str:
    """The whole report as one HTML document with no external assets; `form`, if given, is
    the reports page's filter form, put under the title."""
    request = report.request
    where = " · ".join(
        part
        for part in (
            f"{t('line', lang)} {request.line}" if request.line else "",
            f"{t('station', lang)} {request.station}" if request.station else "",
        )
        if part
    )
    trend = report.trend
    trend_class = "good" if trend.target_met else "bad"
    cards = "".join(
        f"<div class=card>{label}<b>{value}</b></div>"
        for label, value in (
            (t("parts", lang), f"{report.total.parts:,}"),
            (t("ng", lang), f"{report.total.ng:,}"),
            (t("ng_rate", lang), _pct(report.total.ng_rate)),
            (t("fpy", lang), _pct(report.total.first_pass_yield)),
        )
    )
    sections = [
        f"<h1>{t('title', lang)}</h1>",
        f"<p class=muted>{t('period', lang)} {request.first} – {request.last} · "
        f"{t('baseline', lang)} {report.baseline[0]} – {report.baseline[1]} · "
        f"{t('zone', lang)} {html.escape(report.timezone)} {html.escape(where)}</p>",
        form,
        f"<div class=cards>{cards}</div>",
        f"<h2>{t('trend', lang)}</h2><p class={trend_class}>"
        f"{html.escape(trend_sentence(trend, lang))}</p>",
        _trend_table([trend, *report.station_trends], lang),
    ]
    if report.total.parts == 0:
        sections.append(f"<p>{t('none', lang)}</p>")
    sections += [
        f"<h2>{t('by_period', lang)}</h2><div class=chart>{_svg(rate_chart(report.by_period))}"
        f"</div>",
        "<div class=grid><div>",
        f"<h2>{t('by_line', lang)}</h2>",
        _counts_table(report.by_line, t("line", lang), lang),
        f"<h2>{t('by_shift', lang)}</h2>",
        _counts_table(report.by_shift, t("by_shift", lang), lang),
        "</div><div>",
        f"<h2>{t('by_station', lang)}</h2>",
        _counts_table(report.by_station, t("station", lang), lang),
        f"<h2>{t('by_product', lang)}</h2>",
        _counts_table(report.by_product, t("by_product", lang), lang),
        "</div></div>",
        _pareto_section(report.pareto_model, t("pareto_model", lang), lang),
        _pareto_section(report.pareto_qa, t("pareto_qa", lang), lang),
    ]
    for station, chart in report.p_charts.items():
        out = sum(p.out_of_control for p in chart.points)
        sections.append(
            f"<h2>{t('p_chart', lang)} · {html.escape(station)}</h2>"
            f"<p class=muted>p̄ {_pct(chart.centre)} · {t('out', lang)}: {out}</p>"
            f"<div class=chart>{_svg(p_chart_figure(chart))}</div>"
        )
    body = "\n".join(sections)
    return (
        f'<!doctype html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
        f'<meta charset="utf-8"><title>{t("title", lang)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def write_csv(report: Report, folder: Path) -> list[Path]:
    """One CSV a table (`summary.csv`, `by_station.csv`, ...) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in report.tables().items():
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            if rows:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        written.append(path)
    return written


def write_pdf(report: Report, path: Path) -> None:
    """The summary, the trend and each chart, a page each, with matplotlib's PdfPages."""
    with PdfPages(path) as pdf:
        summary = Figure(figsize=(8.27, 11.69))
        request = report.request
        lines = [
            "Defect-rate report",
            f"{request.first} to {request.last} (baseline {report.baseline[0]} to "
            f"{report.baseline[1]}, {report.timezone})",
            "",
            f"Parts {report.total.parts:,}   NG {report.total.ng:,}   "
            f"NG rate {_pct(report.total.ng_rate)}   "
            f"first-pass yield {_pct(report.total.first_pass_yield)}",
            "",
            trend_sentence(report.trend),  # English: the PDF's font has no CJK glyphs
            "",
            "By station:",
            *(
                f"  {c.key:<16} parts {c.parts:>8,}  NG rate {_pct(c.ng_rate):>6}  "
                f"FPY {_pct(c.first_pass_yield):>6}"
                for c in report.by_station
            ),
            "",
            "By shift:",
            *(
                f"  {c.key:<16} parts {c.parts:>8,}  NG rate {_pct(c.ng_rate):>6}"
                for c in report.by_shift
            ),
        ]
        summary.text(0.06, 0.95, "\n".join(lines), va="top", family="monospace", fontsize=9)
        pdf.savefig(summary)
        pages = [("NG rate by period", rate_chart(report.by_period))]
        if report.pareto_model:
            pages.append(("Defect classes (model)", pareto_chart(report.pareto_model)))
        if report.pareto_qa:
            pages.append(("Defect classes (QA labels)", pareto_chart(report.pareto_qa)))
        pages += [(f"p-chart {s}", p_chart_figure(c)) for s, c in report.p_charts.items()]
        for title, figure in pages:
            figure.suptitle(title)
            pdf.savefig(figure, bbox_inches="tight")


def filter_form(request: ReportRequest, lang: Lang, action: str = "/reports") -> str:
    """The reports page's filters: a plain GET form, so a filtered page is a link to share,
    and a hint that the link needs the key (a browser sends it through a reverse proxy)."""

    def field(name: str, label: str, value: object, kind: str = "text") -> str:
        shown = "" if value is None else html.escape(str(value))
        return f'<label>{label} <input type="{kind}" name="{name}" value="{shown}"></label>'

    grains = "".join(
        f'<option value="{g}"{" selected" if g == request.grain else ""}>{g}</option>'
        for g in GRAINS
    )
    langs = "".join(
        f'<option value="{code}"{" selected" if code == lang else ""}>{name}</option>'
        for code, name in (("en", "English"), ("zh", "简体中文"))
    )
    return (
        f'<form method="get" action="{action}">'
        + field("from", t("from", lang), request.first, "date")
        + field("to", t("to", lang), request.last, "date")
        + field("line", t("line", lang), request.line)
        + field("station", t("station", lang), request.station)
        + f'<label>{t("grain", lang)} <select name="grain">{grains}</select></label>'
        + f'<label><select name="lang">{langs}</select></label>'
        + f'<button type="submit">{t("filters", lang)}</button></form>'
        + f"<p class=muted>{t('share_hint', lang)}</p>"
    )
