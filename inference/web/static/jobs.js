// Training jobs, live: the list and the chosen job's log are fetched again every 2 s.
import { api, esc, has, notice, t } from "./app.js";

const form = document.getElementById("start-job");
const body = document.querySelector("#jobs tbody");
let chosen = null;

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const request = { recipe: data.get("recipe"), data: data.get("data") };
  if (data.get("station")) request.station = data.get("station");
  try {
    const job = await api("POST", "/v1/jobs", request);
    chosen = job.id;
    notice(t("jobs.started", { id: job.id }));
    await refresh();
  } catch (error) {
    notice(error.message, true);
  }
});

function progress(job) {
  if (job.status === "queued") return esc(t("jobs.status.queued"));
  const percent = job.percent ?? (job.status === "succeeded" ? 100 : 0);
  const epoch = job.epoch != null ? ` · ${esc(t("jobs.epoch"))} ${job.epoch}` : "";
  const stage = job.stage && has(`jobs.stage.${job.stage}`) ? t(`jobs.stage.${job.stage}`) : job.stage || "";
  return `<progress max="100" value="${percent}"></progress> ${Math.round(percent)}% ${esc(stage)}${epoch}`;
}

function metrics(job) {
  const shown = Object.entries(job.metrics || {}).filter(([, v]) => typeof v === "number").slice(0, 6);
  return shown.map(([k, v]) => `<div class="small">${esc(k)}: ${v.toFixed(4)}</div>`).join("")
    + (job.model_version_id ? `<div class="small">${esc(t("jobs.produced", { id: job.model_version_id }))}</div>` : "");
}

function row(job) {
  const status = `<b class="job-status" data-status="${esc(job.status)}">${esc(t(`jobs.status.${job.status}`))}</b>`
    + (job.error ? `<div class="error small">${esc(job.error)}</div>` : "");
  const cancel = ["queued", "running"].includes(job.status)
    ? `<button type="button" class="danger" data-cancel="${job.id}">${esc(t("jobs.cancel"))}</button>` : "";
  return `<tr data-job="${job.id}"><td><a href="#" data-log="${job.id}">${job.id}</a></td><td>${status}</td><td>${progress(job)}</td>`
    + `<td>${esc(job.recipe_source)}<div class="small">${esc(job.data)}</div></td><td>${metrics(job)}</td><td>${cancel}</td></tr>`;
}

async function refresh() {
  const jobs = await api("GET", "/v1/jobs?limit=20");
  body.innerHTML = jobs.map(row).join("") || `<tr><td colspan="6" class="small">${esc(t("jobs.none"))}</td></tr>`;
  if (chosen === null && jobs.length) chosen = jobs[0].id;
  if (chosen !== null) {
    const log = await api("GET", `/v1/jobs/${chosen}/log?lines=200`);
    document.getElementById("log-of").textContent = `#${chosen}`;
    document.getElementById("log").textContent = log.lines.join("\n") || t("jobs.no_log");
  }
}

body.addEventListener("click", async (event) => {
  const log = event.target.closest("[data-log]");
  const cancel = event.target.closest("[data-cancel]");
  event.preventDefault();
  try {
    if (log) { chosen = Number(log.dataset.log); await refresh(); }
    if (cancel) { await api("POST", `/v1/jobs/${cancel.dataset.cancel}/cancel`); await refresh(); }
  } catch (error) {
    notice(error.message, true);
  }
});

async function loop() {
  try { await refresh(); } catch (error) { notice(error.message, true); }
  setTimeout(loop, 2000);
}
loop();
