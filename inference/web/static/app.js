// Shared by every page: the page's words, API calls with the session's CSRF token, notices.
const catalogue = JSON.parse(document.getElementById("messages").textContent);
const csrf = document.querySelector('meta[name="csrf-token"]').content;

/** The message `key` in the page's language, with {name} fields filled. */
export function t(key, values = {}) {
  const text = catalogue[key];
  if (text === undefined) throw new Error(`message ${key} missing from the catalogue`);
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

/** Whether the catalogue has `key` (for words the service sends, e.g. a job's stage). */
export function has(key) {
  return Object.hasOwn(catalogue, key);
}

/** Call an API route as the signed-in browser; resolves to the JSON answer, rejects with
 * the service's own `detail` sentence. */
export async function api(method, url, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const answer = await fetch(url, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!answer.ok) {
    if (answer.status === 401) location.href = `/signin?next=${encodeURIComponent(location.pathname + location.search)}`;
    throw new Error((data && data.detail) || `${answer.status}`);
  }
  return data;
}

/** Show a sentence at the top of the page (an error in red). */
export function notice(text, isError = false) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.classList.toggle("error", isError);
  box.hidden = false;
}

/** Run `work` for a button: disabled while it runs, an error shown as a notice. */
export function onClick(element, work) {
  element.addEventListener("click", async (event) => {
    event.preventDefault();
    element.disabled = true;
    try { await work(); } catch (error) { notice(error.message, true); } finally { element.disabled = false; }
  });
}

/** Escape text for HTML built in a script. */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// The filter form sends only the fields given, so an empty box is "any", not an error.
const filters = document.getElementById("filters");
if (filters) {
  filters.addEventListener("submit", () => {
    for (const field of filters.elements) if (field.name && !field.value) field.disabled = true;
  });
}
