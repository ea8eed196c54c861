"""A `Report` as a self-contained HTML page (charts as inline SVG), CSV files (one a table)
or a PDF (matplotlib's PdfPages), in English or Simplified Chinese.

Charts carry numbers and period names only; their titles are HTML headings, so a Chinese
report needs no CJK font in matplotlib. `Figure` objects, not pyplot: the service renders
pages from worker threads.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from defectlens.inference.reports import svg
from defectlens.inference.reports.calendar import GRAINS, plant_zone
from defectlens.inference.reports.figures import Counts, ParetoRow, PChart, Trend
from defectlens.inference.reports.report import Report, ReportRequest
from defectlens.inference.reports.traceability import TracedPart

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
    "model_health": {"en": "Model health", "zh": "模型健康状况"},
    "model": {"en": "Model version", "zh": "模型版本"},
    "drift": {"en": "Score drift (PSI)", "zh": "分数漂移（PSI）"},
    "near": {"en": "Near the threshold", "zh": "接近阈值"},
    "override": {"en": "QA overrides", "zh": "质检推翻率"},
    "drift_ok": {"en": "ok", "zh": "正常"},
    "drift_alert": {"en": "ALERT", "zh": "警报"},
    "drift_unknown": {
        "en": "no validation scores in its model card",
        "zh": "模型卡中没有验证分数",
    },
    "health_note": {
        "en": "Score drift compares the production scores with the scores of the good "
        "validation images (population stability index; alert above {level}). Near the "
        "threshold: within 0.05 of it. QA overrides: standing QA labels that disagree with "
        "the verdict, of all labelled parts.",
        "zh": "分数漂移：生产分数与验证集良品分数的比较（群体稳定性指数，超过 {level} 报警）。"
        "接近阈值：与阈值相差 0.05 以内。"
        "质检推翻率：与判定结果不一致的有效质检标注占已标注零件的比例。",
    },
    "rules": {"en": "Run rules", "zh": "判异准则"},
    "rules_note": {
        "en": "Western Electric rules: 1 one point beyond 3σ; 2 two of three beyond 2σ on "
        "one side; 3 four of five beyond 1σ on one side; 4 eight in a row on one side.",
        "zh": "西电判异准则：1 一点超出 3σ；2 连续三点中两点在同侧超出 2σ；"
        "3 连续五点中四点在同侧超出 1σ；4 连续八点在中心线同侧。",
    },
    "rule_points": {"en": "points breaking a run rule", "zh": "违反判异准则的点"},
    "serial": {"en": "Serial", "zh": "序列号"},
    "product": {"en": "Product", "zh": "产品"},
    "trace": {"en": "Part", "zh": "零件"},
    "trace_none": {
        "en": "No inspection of this serial (in the stations this key may read).",
        "zh": "没有该序列号的检测记录（在此密钥可读的工位中）。",
    },
    "received": {"en": "Received", "zh": "接收时间"},
    "score": {"en": "Score", "zh": "分数"},
    "label": {"en": "QA label", "zh": "质检标注"},
    "image": {"en": "Image", "zh": "图像"},
    "heatmap": {"en": "Heat map", "zh": "热力图"},
    "share_hint": {
        "en": "This page's address, with the filters above, is a link to share: it opens "
        "for whoever signs in with a key that may read reports (the key never goes in the "
        "address).",
        "zh": "本页地址（含上方筛选条件）即可分享的链接：使用有报告读取权限的密钥登录后即可打开"
        "（密钥不放在地址中）。",
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
    ruled = [
        (i, y)
        for i, (y, p) in enumerate(zip(ys, chart.points, strict=True))
        if p.rules and not p.out_of_control
    ]
    if ruled:  # a Western Electric rule broken (the report asked for them)
        axes.plot([i for i, _ in ruled], [y for _, y in ruled], "o", color="#e67e22", markersize=8)
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
        f"<h2>{title}</h2><div class=chart>{_pareto_svg(rows, lang)}</div>"
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


def _rate_svg(rows: Sequence[Counts], lang: Lang) -> str:
    return svg.bar_chart(
        [c.key for c in rows],
        [
            svg.Point(
                None if c.ng_rate is None else 100 * c.ng_rate,
                f"{c.key}: {t('ng_rate', lang)} {_pct(c.ng_rate)} ({c.ng:,} / {c.parts:,})",
            )
            for c in rows
        ],
        t("ng_rate", lang),
    )


def _pareto_svg(rows: Sequence[ParetoRow], lang: Lang) -> str:
    return svg.pareto_chart(
        [r.defect_class for r in rows],
        [
            svg.Point(float(r.count), f"{r.defect_class}: {r.count:,} ({_pct(r.share)})")
            for r in rows
        ],
        [r.cumulative for r in rows],
        t("count", lang),
        t("cumulative", lang),
    )


def _p_chart_svg(chart: PChart, lang: Lang) -> str:
    def percent(value: float | None) -> float | None:
        return None if value is None else 100 * value

    points = []
    for p in chart.points:
        tip = f"{p.label}: {_pct(p.p)} ({p.ng:,} / {p.n:,}); {_pct(p.lcl)} – {_pct(p.ucl)}"
        if p.out_of_control:
            tip += f"; {t('out', lang)}"
        if p.rules:
            tip += f"; {t('rules', lang)} {', '.join(str(r) for r in p.rules)}"
        marked = "out" if p.out_of_control else "rule" if p.rules else ""
        points.append(svg.ControlPoint(percent(p.p), percent(p.lcl), percent(p.ucl), tip, marked))
    return svg.control_chart(
        [p.label for p in chart.points], points, percent(chart.centre), t("ng_rate", lang)
    )


def _health_section(report: Report, lang: Lang) -> str:
    head = "".join(
        f"<th>{t(k, lang)}</th>" for k in ("model", "parts", "ng_rate", "near", "override", "drift")
    )
    body = ""
    for m in report.model_health:
        if m.drift is None:
            drift = f"<span class=muted>{t('drift_unknown', lang)}</span>"
        else:
            word = t("drift_alert", lang) if m.alert else t("drift_ok", lang)
            drift = f"<span class={'bad' if m.alert else 'good'}>{m.drift:.3f} {word}</span>"
        body += (
            f"<tr><td>{html.escape(m.model_name)} {html.escape(m.model_version)}</td>"
            f"<td>{m.parts:,}</td><td>{_pct(m.ng_rate)}</td>"
            f"<td>{_pct(m.near_threshold_share)}</td><td>{_pct(m.override_rate)}</td>"
            f"<td>{drift}</td></tr>"
        )
    note = t("health_note", lang).format(level=f"{report.drift_alert:g}")
    return (
        f"<h2>{t('model_health', lang)}</h2><table><tr>{head}</tr>{body}</table>"
        f"<p class=muted>{html.escape(note)}</p>"
    )


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
.trace img{display:block;max-height:90px;width:auto}.trace td,.trace th{text-align:left}
"""


def traced_section(serial: str, parts: Sequence[TracedPart], zone: str, lang: Lang) -> str:
    """Every inspection of one serial: time (plant zone), station, line, product, verdict,
    score, model version, standing QA label, and the image and heat map if kept."""
    title = f"<h2>{t('trace', lang)} {html.escape(serial)}</h2>"
    if not parts:
        return f"{title}<p class=muted>{t('trace_none', lang)}</p>"
    head = "".join(
        f"<th>{t(k, lang)}</th>"
        for k in (
            "received", "station", "line", "product", "verdict", "score", "model", "label",
            "image", "heatmap",
        )
    )  # fmt: skip
    local = plant_zone(zone)
    rows = ""
    for part in parts:
        r = part.result
        label = "–" if part.label is None else " ".join(x for x in part.label if x)
        images = "".join(
            f'<td><a href="{html.escape(url)}"><img src="{html.escape(url)}" alt="{alt}" '
            f'loading="lazy" width="120"></a></td>'
            if url
            else "<td>–</td>"
            for url, alt in ((r.image_url, t("image", lang)), (r.heatmap_url, t("heatmap", lang)))
        )
        cells = (
            r.received_at.astimezone(local).strftime("%Y-%m-%d %H:%M:%S"),
            r.station,
            r.line or "–",
            r.product or "–",
            r.verdict,
            f"{r.score:.3f}",
            f"{r.model.name} {r.model.version}",
            label,
        )
        verdict_class = "bad" if r.verdict == "NG" else "good"
        rows += (
            "<tr>"
            + "".join(
                f"<td class={verdict_class}>{html.escape(c)}</td>"
                if i == 4
                else f"<td>{html.escape(c)}</td>"
                for i, c in enumerate(cells)
            )
            + images
            + "</tr>"
        )
    return f"{title}<table class=trace><tr>{head}</tr>{rows}</table>"


def html_report(report: Report, lang: Lang = "en", form: str = "", trace: str = "") -> str:
    """The whole report as one HTML document with no external assets; `form`, if given, is
    the reports page's filter form, put under the title, and `trace` a part's inspections
    (`traced_section`) under it."""
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
        trace,
        f"<div class=cards>{cards}</div>",
        f"<h2>{t('trend', lang)}</h2><p class={trend_class}>"
        f"{html.escape(trend_sentence(trend, lang))}</p>",
        _trend_table([trend, *report.station_trends], lang),
    ]
    if report.total.parts == 0:
        sections.append(f"<p>{t('none', lang)}</p>")
    sections += [
        f"<h2>{t('by_period', lang)}</h2><div class=chart>{_rate_svg(report.by_period, lang)}"
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
    sections.append(_health_section(report, lang))
    if request.run_rules:
        sections.append(f"<p class=muted>{t('rules_note', lang)}</p>")
    for station, chart in report.p_charts.items():
        out = sum(p.out_of_control for p in chart.points)
        broken = sum(bool(p.rules) for p in chart.points)
        rules = f" · {t('rule_points', lang)}: {broken}" if request.run_rules else ""
        sections.append(
            f"<h2>{t('p_chart', lang)} · {html.escape(station)}</h2>"
            f"<p class=muted>p̄ {_pct(chart.centre)} · {t('out', lang)}: {out}{rules}</p>"
            f"<div class=chart>{_p_chart_svg(chart, lang)}</div>"
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
            "",
            f"Model health (score drift alert above {report.drift_alert:g}):",
            *(
                f"  {m.model_version:<24} parts {m.parts:>8,}  near threshold "
                f"{_pct(m.near_threshold_share):>6}  QA overrides {_pct(m.override_rate):>6}  "
                + ("drift unknown" if m.drift is None else f"drift {m.drift:.3f}")
                + ("  ALERT" if m.alert else "")
                for m in report.model_health
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


def filter_form(
    request: ReportRequest, lang: Lang, action: str = "/reports", serial: str | None = None
) -> str:
    """The reports page's filters: a plain GET form, so a filtered page is a link to share,
    and a hint that the link opens after signing in with a key that may read reports."""

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
        + f'<label>{t("rules", lang)} <input type="checkbox" name="rules" value="true"'
        + (" checked" if request.run_rules else "")
        + "></label>"
        + f'<label><select name="lang">{langs}</select></label>'
        + field("serial", t("serial", lang), serial, "search")
        + f'<button type="submit">{t("filters", lang)}</button></form>'
        + f"<p class=muted>{t('share_hint', lang)}</p>"
    )
