// The labelling canvas: the part's image with zoom (wheel) and pan (drag), boxes, a brush
// for masks, the model's heat map or boxes as an overlay, and keyboard shortcuts.
// Fast on 5-megapixel images: each frame draws only the visible part of the image (one
// drawImage of the source rectangle in view), the mask lives in an offscreen canvas at image
// resolution and is painted with canvas strokes; no script loop touches pixels.
import { api, esc, notice, onClick, t } from "./app.js";

const root = document.getElementById("labeller");
const part = JSON.parse(document.getElementById("part").textContent);
const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const state = {
  verdict: part.label ? part.label.verdict : null,
  defectClass: part.label ? part.label.defect_class : null,
  tool: "pan",
  regions: part.label ? part.label.regions.filter((r) => !r.mask).map((r) => ({ ...r })) : [],
  strokes: [],          // brush and eraser strokes, in image pixels, replayed on undo
  history: [],          // what undo takes back: "region" or "stroke"
  overlay: false,
  view: { scale: 1, x: 0, y: 0 },  // image pixel (u, v) is at canvas (x + u*scale, y + v*scale)
  drag: null,
  dirty: true,
};
const image = new Image();
const heatmap = new Image();
let mask = null;       // offscreen canvas, image resolution
let maskCtx = null;

function brushSize() { return Number(document.getElementById("brush-size").value); }

function resize() {
  const box = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(box.width * devicePixelRatio));
  canvas.height = Math.max(1, Math.round(box.height * devicePixelRatio));
  state.dirty = true;
}

function fit() {
  if (!image.naturalWidth) return;
  const scale = Math.min(canvas.width / image.naturalWidth, canvas.height / image.naturalHeight);
  state.view = {
    scale,
    x: (canvas.width - image.naturalWidth * scale) / 2,
    y: (canvas.height - image.naturalHeight * scale) / 2,
  };
  state.dirty = true;
}

function toImage(event) {
  const box = canvas.getBoundingClientRect();
  const cx = (event.clientX - box.left) * devicePixelRatio;
  const cy = (event.clientY - box.top) * devicePixelRatio;
  return [(cx - state.view.x) / state.view.scale, (cy - state.view.y) / state.view.scale, cx, cy];
}

/** The source rectangle of `source` in view, and where it goes on the canvas. */
function drawVisible(source) {
  const { scale, x, y } = state.view;
  const w = image.naturalWidth, h = image.naturalHeight;
  const u0 = Math.max(0, -x / scale), v0 = Math.max(0, -y / scale);
  const u1 = Math.min(w, (canvas.width - x) / scale), v1 = Math.min(h, (canvas.height - y) / scale);
  if (u1 <= u0 || v1 <= v0) return;
  ctx.drawImage(source, u0, v0, u1 - u0, v1 - v0, x + u0 * scale, y + v0 * scale, (u1 - u0) * scale, (v1 - v0) * scale);
}

function drawBox(box, color, dashed, label) {
  const { scale, x, y } = state.view;
  ctx.save();
  ctx.strokeStyle = color;
  ctx.lineWidth = 2 * devicePixelRatio;
  if (dashed) ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
  const [x0, y0, x1, y1] = box;
  ctx.strokeRect(x + x0 * scale, y + y0 * scale, (x1 - x0) * scale, (y1 - y0) * scale);
  if (label) {
    ctx.fillStyle = color;
    ctx.font = `${12 * devicePixelRatio}px sans-serif`;
    ctx.fillText(label, x + x0 * scale + 3, y + y0 * scale - 4);
  }
  ctx.restore();
}

function frame() {
  if (state.dirty && image.naturalWidth) {
    const started = performance.now();
    state.dirty = false;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#1b232b";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = state.view.scale < 2;
    drawVisible(image);
    if (state.overlay && heatmap.naturalWidth) {
      ctx.globalAlpha = 0.55;
      drawVisible(heatmap);
      ctx.globalAlpha = 1;
    }
    if (mask) { ctx.globalAlpha = 0.5; drawVisible(mask); ctx.globalAlpha = 1; }
    if (state.overlay) for (const d of part.model_defects) drawBox(d.box, "#f0b429", true, `${d.class} ${d.score.toFixed(2)}`);
    for (const r of state.regions) drawBox(r.box, "#ff4d4f", false, r.class);
    if (state.drag && state.drag.kind === "box") drawBox(state.drag.box, "#6fb1f5", false, "");
    // What a frame costs, for scripts/label_canvas_speed.py (User Timing; the browser keeps
    // the entries, the page never reads them).
    performance.measure("label-frame", { start: started });
  }
  requestAnimationFrame(frame);
}

function ensureMask() {
  if (mask) return;
  mask = document.createElement("canvas");
  mask.width = image.naturalWidth;
  mask.height = image.naturalHeight;
  maskCtx = mask.getContext("2d");
}

function paint(stroke, from, to) {
  maskCtx.save();
  maskCtx.globalCompositeOperation = stroke.erase ? "destination-out" : "source-over";
  maskCtx.strokeStyle = "rgba(255, 40, 40, 1)";
  maskCtx.lineCap = "round";
  maskCtx.lineJoin = "round";
  maskCtx.lineWidth = stroke.size;
  maskCtx.beginPath();
  maskCtx.moveTo(from[0], from[1]);
  maskCtx.lineTo(to[0], to[1]);
  maskCtx.stroke();
  maskCtx.restore();
}

function replayStrokes() {
  if (!mask) return;
  maskCtx.clearRect(0, 0, mask.width, mask.height);
  for (const stroke of state.strokes) {
    for (let i = 0; i < stroke.points.length; i++) paint(stroke, stroke.points[Math.max(0, i - 1)], stroke.points[i]);
  }
  state.dirty = true;
}

function maskBounds() {
  const painted = state.strokes.filter((s) => !s.erase);
  if (!painted.length) return null;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const s of painted) for (const [u, v] of s.points) {
    x0 = Math.min(x0, u - s.size / 2); y0 = Math.min(y0, v - s.size / 2);
    x1 = Math.max(x1, u + s.size / 2); y1 = Math.max(y1, v + s.size / 2);
  }
  const w = image.naturalWidth, h = image.naturalHeight;
  return [Math.max(0, x0), Math.max(0, y0), Math.min(w, x1), Math.min(h, y1)].map(Math.round);
}

function setTool(tool) {
  state.tool = tool;
  for (const b of document.querySelectorAll("[data-tool]")) b.classList.toggle("on", b.dataset.tool === tool);
  canvas.style.cursor = tool === "pan" ? "grab" : "crosshair";
}

function setVerdict(verdict) {
  state.verdict = verdict;
  for (const b of document.querySelectorAll("[data-verdict]")) b.classList.toggle("on", b.dataset.verdict === verdict);
}

function setClass(name) {
  state.defectClass = name;
  for (const b of document.querySelectorAll("[data-class]")) b.classList.toggle("on", b.dataset.class === name);
  if (name && state.verdict !== "NG") setVerdict("NG");
}

function showRegions() {
  const list = document.getElementById("regions");
  const rows = state.regions.map((r, i) => `<li>${esc(r.class)} [${r.box.map(Math.round).join(", ")}] <button type="button" class="secondary" data-remove="${i}">×</button></li>`);
  const bounds = maskBounds();
  if (bounds) rows.push(`<li>${esc(t("label.mask"))} (${esc(state.defectClass || "?")}) [${bounds.join(", ")}]</li>`);
  list.innerHTML = rows.join("") || `<li class="small">${esc(t("label.no_regions"))}</li>`;
}

function undo() {
  const last = state.history.pop();
  if (last === "region") state.regions.pop();
  if (last === "stroke") { state.strokes.pop(); replayStrokes(); }
  state.dirty = true;
  showRegions();
}

function acceptModel() {
  for (const d of part.model_defects) {
    state.regions.push({ class: d.class, box: d.box.slice() });
    state.history.push("region");
  }
  if (part.model_defects.length) { setVerdict("NG"); if (!state.defectClass) setClass(part.model_defects[0].class); }
  state.dirty = true;
  showRegions();
}

async function maskPng() {
  const blob = await new Promise((done) => mask.toBlob(done, "image/png"));
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

async function save() {
  if (!state.verdict) throw new Error(t("label.need_verdict"));
  const regions = state.regions.map((r) => ({ class: r.class, box: r.box.map((v) => Math.round(v * 10) / 10) }));
  const bounds = maskBounds();
  if (bounds) {
    if (!state.defectClass) throw new Error(t("label.need_class"));
    regions.push({ class: state.defectClass, box: bounds, mask_png: await maskPng() });
  }
  if (state.verdict === "OK" && regions.length) throw new Error(t("label.ok_with_regions"));
  await api("POST", `/v1/labels/results/${encodeURIComponent(part.result_id)}`, {
    verdict: state.verdict,
    defect_class: state.verdict === "NG" ? state.defectClass : null,
    regions,
  });
  notice(t("label.saved"));
  location.href = root.dataset.next;
}

// --- pointer: pan, boxes, brush ------------------------------------------------------------
canvas.addEventListener("pointerdown", (event) => {
  canvas.setPointerCapture(event.pointerId);
  const [u, v, cx, cy] = toImage(event);
  const panning = state.tool === "pan" || event.button === 1 || event.button === 2 || event.shiftKey;
  if (panning) state.drag = { kind: "pan", cx, cy, x: state.view.x, y: state.view.y };
  else if (state.tool === "box") state.drag = { kind: "box", u, v, box: [u, v, u, v] };
  else {
    ensureMask();
    const stroke = { erase: state.tool === "erase", size: brushSize() / state.view.scale * devicePixelRatio, points: [[u, v]] };
    state.strokes.push(stroke);
    state.history.push("stroke");
    paint(stroke, [u, v], [u, v]);
    state.drag = { kind: "stroke", stroke };
  }
  state.dirty = true;
});
canvas.addEventListener("pointermove", (event) => {
  const drag = state.drag;
  if (!drag) return;
  const started = performance.now();
  const [u, v, cx, cy] = toImage(event);
  if (drag.kind === "pan") { state.view.x = drag.x + cx - drag.cx; state.view.y = drag.y + cy - drag.cy; }
  if (drag.kind === "box") drag.box = [Math.min(drag.u, u), Math.min(drag.v, v), Math.max(drag.u, u), Math.max(drag.v, v)];
  if (drag.kind === "stroke") {
    const points = drag.stroke.points;
    paint(drag.stroke, points[points.length - 1], [u, v]);
    points.push([u, v]);
  }
  state.dirty = true;
  performance.measure(`label-${drag.kind}`, { start: started });
});
canvas.addEventListener("pointerup", () => {
  const drag = state.drag;
  state.drag = null;
  if (drag && drag.kind === "box") {
    const w = image.naturalWidth, h = image.naturalHeight;
    const box = [Math.max(0, drag.box[0]), Math.max(0, drag.box[1]), Math.min(w, drag.box[2]), Math.min(h, drag.box[3])];
    if (box[2] - box[0] >= 2 && box[3] - box[1] >= 2) {
      if (!state.defectClass) setClass(document.querySelector("[data-class]")?.dataset.class || "defect");
      state.regions.push({ class: state.defectClass, box });
      state.history.push("region");
      setVerdict("NG");
    }
  }
  showRegions();
  state.dirty = true;
});
canvas.addEventListener("contextmenu", (event) => event.preventDefault());
canvas.addEventListener("wheel", (event) => {
  event.preventDefault();
  const [u, v, cx, cy] = toImage(event);
  const scale = Math.min(40, Math.max(0.02, state.view.scale * Math.exp(-event.deltaY * 0.0015)));
  state.view = { scale, x: cx - u * scale, y: cy - v * scale };
  state.dirty = true;
}, { passive: false });

// --- buttons and keys ----------------------------------------------------------------------
for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
for (const b of document.querySelectorAll("[data-verdict]")) b.addEventListener("click", () => setVerdict(b.dataset.verdict));
document.getElementById("classes").addEventListener("click", (event) => {
  const b = event.target.closest("[data-class]");
  if (b) setClass(b.dataset.class);
});
document.getElementById("regions").addEventListener("click", (event) => {
  const b = event.target.closest("[data-remove]");
  if (b) { state.regions.splice(Number(b.dataset.remove), 1); state.dirty = true; showRegions(); }
});
onClick(document.getElementById("add-class"), async () => {
  const field = document.getElementById("new-class");
  const name = field.value.trim();
  if (!name || !field.checkValidity()) throw new Error(t("label.bad_class"));
  if (!document.querySelector(`[data-class="${CSS.escape(name)}"]`)) {
    const b = document.createElement("button");
    b.type = "button"; b.dataset.class = name; b.textContent = name;
    document.getElementById("classes").append(b);
  }
  setClass(name);
  field.value = "";
});
document.getElementById("undo").addEventListener("click", undo);
document.getElementById("toggle-overlay").addEventListener("click", () => { state.overlay = !state.overlay; state.dirty = true; });
document.getElementById("accept-model").addEventListener("click", acceptModel);
document.getElementById("fit").addEventListener("click", fit);
onClick(document.getElementById("save"), save);

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  const classes = [...document.querySelectorAll("[data-class]")];
  const actions = {
    o: () => { setVerdict("OK"); setClass(null); }, n: () => setVerdict("NG"),
    b: () => setTool("box"), m: () => setTool("brush"), e: () => setTool("erase"), p: () => setTool("pan"),
    z: undo, h: () => { state.overlay = !state.overlay; state.dirty = true; }, a: acceptModel, f: fit,
    enter: () => document.getElementById("save").click(),
  };
  if (/^[1-9]$/.test(key) && classes[Number(key) - 1]) { setClass(classes[Number(key) - 1].dataset.class); event.preventDefault(); return; }
  if (actions[key]) { actions[key](); event.preventDefault(); }
});

// --- start -----------------------------------------------------------------------------------
new ResizeObserver(() => { resize(); fit(); }).observe(canvas);
image.addEventListener("load", () => { resize(); fit(); root.dataset.ready = "true"; });
image.src = root.dataset.image;
heatmap.addEventListener("error", () => { document.getElementById("toggle-overlay").disabled = true; });
heatmap.src = root.dataset.heatmap;
if (state.verdict) setVerdict(state.verdict);
if (state.defectClass) setClass(state.defectClass);
showRegions();
requestAnimationFrame(frame);
