// Datasets: freeze the label store into an immutable dataset version.
import { api, notice, t } from "./app.js";

const form = document.getElementById("freeze");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("freeze-submit");
  button.disabled = true;
  try {
    const data = new FormData(form);
    const body = { name: data.get("name") };
    if (data.get("source")) body.source = data.get("source");
    const version = await api("POST", "/v1/datasets", body);
    notice(t("datasets.frozen", { id: version.id }));
    setTimeout(() => location.reload(), 600);
  } catch (error) {
    notice(error.message, true);
  } finally {
    button.disabled = false;
  }
});
