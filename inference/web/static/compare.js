// Compare a candidate with a station's production model on held-out parts; run it in shadow
// on live parts; then promote it or drop it.
import { api, esc, notice, onClick, t } from "./app.js";

const FIGURES = ["auroc", "f1", "escape_rate", "false_reject_rate", "threshold"];

function number(value) { return typeof value === "number" ? value.toFixed(4) : "—"; }

/** Both ROC curves as an inline SVG (no library). */
function rocSvg(figures) {
  const size = 260, pad = 34;
  const line = (roc, color) => roc && roc.fpr ? `<polyline fill="none" stroke="${color}" stroke-width="2" points="${roc.fpr.map((f, i) => `${pad + f * size},${pad + size - roc.tpr[i] * size}`).join(" ")}"/>` : "";
  return `<svg class="roc" width="${size + 2 * pad}" height="${size + 2 * pad}" role="img" aria-label="ROC">
    <rect x="${pad}" y="${pad}" width="${size}" height="${size}" fill="#fff" stroke="#999"/>
    <line x1="${pad}" y1="${pad + size}" x2="${pad + size}" y2="${pad}" stroke="#ccc" stroke-dasharray="4 3"/>
    ${line(figures.production.roc, "#5d6d7e")}${line(figures.candidate.roc, "#c0392b")}
    <text x="${pad}" y="${pad + size + 20}" font-size="11">${esc(t("compare.fpr"))}</text>
    <text x="4" y="${pad - 8}" font-size="11">${esc(t("compare.tpr"))}</text>
    <line x1="${pad + size - 130}" y1="${pad + size - 28}" x2="${pad + size - 114}" y2="${pad + size - 28}" stroke="#5d6d7e" stroke-width="2"/>
    <text x="${pad + size - 110}" y="${pad + size - 24}" font-size="11" fill="#5d6d7e">${esc(t("compare.production"))} ${number(figures.production.auroc)}</text>
    <line x1="${pad + size - 130}" y1="${pad + size - 14}" x2="${pad + size - 114}" y2="${pad + size - 14}" stroke="#c0392b" stroke-width="2"/>
    <text x="${pad + size - 110}" y="${pad + size - 10}" font-size="11" fill="#c0392b">${esc(t("compare.candidate"))} ${number(figures.candidate.auroc)}</text></svg>`;
}

function showComparison(comparison) {
  const box = document.getElementById("comparison");
  if (comparison.status === "running") {
    box.innerHTML = `<p>${esc(t("compare.running", { done: comparison.done, total: comparison.total }))}</p>`;
    return false;
  }
  if (comparison.status === "failed") {
    box.innerHTML = `<p class="error">${esc(comparison.error || t("compare.failed"))}</p>`;
    return true;
  }
  const f = comparison.figures;
  const rows = FIGURES.map((k) => `<tr><th>${esc(t(`compare.figure.${k}`))}</th><td>${number(f.production[k])}</td><td>${number(f.candidate[k])}</td></tr>`).join("");
  const image = (c) => `<img class="thumb" loading="lazy" alt="" src="/v1/compare/${comparison.id}/image?part=${encodeURIComponent(c.part)}">`;
  const partCell = (c) => comparison.source === "labels"  // a production part: label it again
    ? `<a href="/review/${encodeURIComponent(c.part)}">${image(c)} ${esc(c.part)}</a>` : `${image(c)} ${esc(c.part)}`;
  const changed = (f.changed || []).map((c) => `<tr><td>${partCell(c)}</td>`
    + `<td>${esc(c.label)}</td><td>${esc(c.production.verdict)} ${number(c.production.score)}</td><td>${esc(c.candidate.verdict)} ${number(c.candidate.score)}</td></tr>`).join("");
  box.innerHTML = `<p>${esc(t("compare.parts", { parts: f.parts, defective: f.defective, good: f.good }))}</p>
    <div class="row"><table class="grid" id="compare-figures" style="width:auto"><thead><tr><th></th><th>${esc(t("compare.production"))}</th><th>${esc(t("compare.candidate"))}</th></tr></thead><tbody>${rows}</tbody></table>
    <div class="svgchart">${rocSvg(f)}</div></div>
    <h2>${esc(t("compare.changed", { count: f.changed_count }))}</h2>
    <table class="grid" id="compare-changed"><thead><tr><th>${esc(t("compare.part"))}</th><th>${esc(t("compare.label"))}</th><th>${esc(t("compare.production"))}</th><th>${esc(t("compare.candidate"))}</th></tr></thead><tbody>${changed || `<tr><td colspan="4" class="small">${esc(t("compare.none_changed"))}</td></tr>`}</tbody></table>`;
  return true;
}

const compare = document.getElementById("compare");
compare.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(compare);
  const body = { station: data.get("station"), candidate_version_id: Number(data.get("candidate_version_id")), source: data.get("source") };
  if (data.get("data")) body.data = data.get("data");
  try {
    let comparison = await api("POST", "/v1/compare", body);
    while (!showComparison(comparison)) {
      await new Promise((done) => setTimeout(done, 1000));
      comparison = await api("GET", `/v1/compare/${comparison.id}`);
    }
  } catch (error) {
    notice(error.message, true);
  }
});

// --- shadow mode ---------------------------------------------------------------------------
const shadow = document.getElementById("shadow");
const runs = document.querySelector("#shadow-runs tbody");
const versionNames = Object.fromEntries([...shadow.querySelectorAll("select[name=model_version_id] option")].map((o) => [o.value, o.textContent]));

shadow.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(shadow);
  try {
    const run = await api("POST", "/v1/shadow", {
      station: data.get("station"), model_version_id: Number(data.get("model_version_id")),
      sample_fraction: Number(data.get("sample_fraction")), duration_h: Number(data.get("duration_h")),
    });
    notice(t("shadow.started", { id: run.id, station: run.station }));
    await refreshRuns(run.id);
  } catch (error) {
    notice(error.message, true);
  }
});

let shown = null;

async function showRun(id) {
  const f = await api("GET", `/v1/shadow/${id}`);
  shown = id;
  const rate = f.agreement_rate == null ? "—" : `${(f.agreement_rate * 100).toFixed(1)}%`;
  const rows = f.disagreements.map((d) => `<tr><td><a href="/review/${encodeURIComponent(d.result_id)}">${esc(d.serial || d.result_id)}</a></td>`
    + `<td>${esc(d.production_verdict)} ${number(d.production_score)}</td><td>${esc(d.candidate_verdict)} ${number(d.candidate_score)}</td></tr>`).join("");
  const actions = `<button type="button" id="shadow-promote" data-station="${esc(f.run.station)}" data-version="${f.run.model_version_id}">${esc(t("shadow.promote"))}</button> `
    + (f.run.active ? `<button type="button" class="secondary" id="shadow-drop" data-run="${f.run.id}">${esc(t("shadow.drop"))}</button>` : "");
  document.getElementById("shadow-figures").innerHTML = `<h2>${esc(t("shadow.run", { id: f.run.id }))}</h2>
    <p id="shadow-agreement">${esc(t("shadow.figures", { shadowed: f.shadowed, agreed: f.agreed, rate, ngok: f.candidate_ng_production_ok, okng: f.candidate_ok_production_ng, skipped: f.run.skipped }))}</p>
    <p>${actions}</p>
    <table class="grid"><thead><tr><th>${esc(t("compare.part"))}</th><th>${esc(t("compare.production"))}</th><th>${esc(t("compare.candidate"))}</th></tr></thead><tbody>${rows || `<tr><td colspan="3" class="small">${esc(t("shadow.no_disagreement"))}</td></tr>`}</tbody></table>`;
  const promote = document.getElementById("shadow-promote");
  onClick(promote, async () => {
    const deployment = await api("POST", `/v1/stations/${encodeURIComponent(promote.dataset.station)}/promote`, { model_version_id: Number(promote.dataset.version) });
    if (f.run.active) await api("POST", `/v1/shadow/${f.run.id}/stop`);
    notice(t("models.promoted", { station: promote.dataset.station, version: deployment.model.version }));
    await refreshRuns(id);
  });
  const drop = document.getElementById("shadow-drop");
  if (drop) onClick(drop, async () => { await api("POST", `/v1/shadow/${drop.dataset.run}/stop`); notice(t("shadow.dropped")); await refreshRuns(id); });
}

async function refreshRuns(show) {
  const list = await api("GET", "/v1/shadow");
  runs.innerHTML = list.map((r) => `<tr><td><a href="#" data-run="${r.id}">${r.id}</a></td><td>${esc(r.station)}</td><td>${esc(versionNames[r.model_version_id] || r.model_version_id)}</td>`
    + `<td>${r.seen}</td><td>${r.active ? esc(t("shadow.active")) : esc(t("shadow.stopped"))}</td></tr>`).join("")
    || `<tr><td colspan="5" class="small">${esc(t("shadow.none"))}</td></tr>`;
  const id = show ?? shown ?? (list[0] && list[0].id);
  if (id != null) await showRun(id);
}

runs.addEventListener("click", (event) => {
  const link = event.target.closest("[data-run]");
  if (link) { event.preventDefault(); showRun(Number(link.dataset.run)).catch((e) => notice(e.message, true)); }
});
refreshRuns().catch((error) => notice(error.message, true));
