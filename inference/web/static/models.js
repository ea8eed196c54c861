// Models: promote a version on a station, or roll back (role qa; every change is audited).
import { api, notice, onClick, t } from "./app.js";

for (const section of document.querySelectorAll("[data-station]")) {
  const station = section.dataset.station;
  onClick(section.querySelector(".promote"), async () => {
    const id = Number(section.querySelector(".promote-version").value);
    const deployment = await api("POST", `/v1/stations/${encodeURIComponent(station)}/promote`, { model_version_id: id });
    notice(t("models.promoted", { station, version: deployment.model.version }));
    setTimeout(() => location.reload(), 600);
  });
  onClick(section.querySelector(".rollback"), async () => {
    const deployment = await api("POST", `/v1/stations/${encodeURIComponent(station)}/rollback`);
    notice(t("models.rolled_back", { station, version: deployment.model.version }));
    setTimeout(() => location.reload(), 600);
  });
}
