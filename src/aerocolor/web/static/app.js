// The aerocolor page: upload, follow the job's progress, compare gray and colour, download.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 400;
const state = { file: null, models: [], job: null, view: { s: 1, x: 0, y: 0 }, fitScale: 1 };

function setStatus(name) { document.body.dataset.state = name; }

function showMessage(text) { $("message").textContent = text || ""; }

function errorText(response, body) {
  if (response.status === 503) {
    const wait = response.headers.get("Retry-After") || "a few";
    return `The server is busy; try again in ${wait} s.`;
  }
  const detail = body && body.detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg).join("; ");
  return detail || `The server answered ${response.status}.`;
}

// ---- models -------------------------------------------------------------------------------

async function loadModels() {
  const response = await fetch("/api/models");
  state.models = await response.json();
  const select = $("model");
  select.innerHTML = "";
  for (const m of state.models) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = `${m.id} (${m.method}${m.multimodal ? ", several samples" : ""})`;
    option.selected = m.default;
    select.append(option);
  }
  modelChanged();
}

function currentModel() { return state.models.find((m) => m.id === $("model").value); }

function modelChanged() {
  const m = currentModel();
  $("samples-field").hidden = !(m && m.multimodal);
  $("reference-field").hidden = !(m && m.reference);
  $("strength-field").hidden = !(m && m.reference);
}

// ---- choosing a file ------------------------------------------------------------------------

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  const size = file.size < 1e6 ? `${Math.ceil(file.size / 1e3)} kB` : `${(file.size / 1e6).toFixed(1)} MB`;
  $("file-name").textContent = `${file.name} (${size})`;
  $("colorize").disabled = false;
  showMessage("");
}

function setUpDrop() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (e) => chooseFile(e.dataTransfer.files[0]));
  $("saturation").addEventListener("input", (e) => {
    $("saturation-value").textContent = Number(e.target.value).toFixed(2);
  });
}

// ---- the job ------------------------------------------------------------------------------

function showProgress(job) {
  $("progress").hidden = false;
  const pct = Math.round(100 * (job ? job.progress : 0));
  $("progress-bar").style.width = `${pct}%`;
  $("progress-text").textContent = !job ? "Uploading…"
    : job.state === "queued" ? "Waiting in the queue…" : `Colorizing ${pct}%`;
}

async function colorize() {
  const form = new FormData();
  form.append("image", state.file);
  form.append("model", $("model").value);
  if (currentModel().multimodal) form.append("samples", $("samples").value);
  if ($("restore").checked) form.append("restore", "true");
  form.append("saturation", $("saturation").value);
  const reference = $("reference").files[0];
  if (currentModel().reference && reference) {
    form.append("reference", reference);
    form.append("reference_strength", $("reference-strength").value);
  }
  $("colorize").disabled = true;
  showMessage("");
  setStatus("working");
  showProgress(null);
  try {
    const response = await fetch("/api/jobs", { method: "POST", body: form });
    const body = await response.json().catch(() => null);
    if (!response.ok) return fail(errorText(response, body));
    follow(body.id);
  } catch (err) {
    fail(`Upload failed: ${err.message}`);
  }
}

function fail(text) {
  setStatus("error");
  $("progress").hidden = true;
  $("colorize").disabled = !state.file;
  showMessage(text);
}

async function follow(id) {
  const response = await fetch(`/api/jobs/${id}`);
  const job = await response.json().catch(() => null);
  if (!response.ok) return fail(errorText(response, job));
  showProgress(job);
  if (job.state === "failed") return fail(job.error);
  if (job.state !== "done") return setTimeout(() => follow(id), POLL_MS);
  $("progress").hidden = true;
  $("colorize").disabled = false;
  showResult(job);
}

// ---- the result ---------------------------------------------------------------------------

function showResult(job) {
  state.job = job;
  $("result").hidden = false;
  $("result").dataset.ready = "";
  $("notes").textContent = job.notes.join(" ");
  $("before").onload = fit;
  $("before").src = job.gray;
  const strip = $("samples-strip");
  strip.innerHTML = "";
  strip.hidden = job.results.length < 2;
  job.results.forEach((links, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.title = `Sample ${i + 1}`;
    button.innerHTML = `<img alt="sample ${i + 1}" src="${links.png}">`;
    button.addEventListener("click", () => selectSample(i));
    strip.append(button);
  });
  selectSample(0);
  setSplit(50);
}

function selectSample(index) {
  const links = state.job.results[index];
  const after = $("after");
  after.onload = () => { $("result").dataset.ready = "1"; setStatus("done"); };
  after.src = links.png;
  $("download-png").href = links.png;
  $("download-tif").hidden = !links.geotiff;
  if (links.geotiff) $("download-tif").href = links.geotiff;
  [...$("samples-strip").children].forEach((b, i) => b.setAttribute("aria-pressed", i === index));
  $("result").dataset.sample = String(index);
}

// ---- swipe, zoom and pan --------------------------------------------------------------------

function setSplit(percent) {
  const p = Math.min(100, Math.max(0, percent));
  $("after-layer").style.clipPath = `inset(0 0 0 ${p}%)`;
  $("divider").style.left = `${p}%`;
  $("slider").value = String(p);
  $("viewer").dataset.split = p.toFixed(1);
}

function applyView() {
  const { s, x, y } = state.view;
  for (const img of [$("before"), $("after")]) {
    img.style.transform = `translate(${x}px, ${y}px) scale(${s})`;
    img.style.imageRendering = s > 2 ? "pixelated" : "auto";
  }
  $("zoom-level").textContent = `${Math.round(s * 100)}%`;
}

function fit() {
  const viewer = $("viewer");
  const img = $("before");
  const s = Math.min(viewer.clientWidth / img.naturalWidth, viewer.clientHeight / img.naturalHeight);
  state.fitScale = s;
  state.view = { s, x: (viewer.clientWidth - img.naturalWidth * s) / 2,
                 y: (viewer.clientHeight - img.naturalHeight * s) / 2 };
  applyView();
}

function zoomAt(factor, cx, cy) {
  const v = state.view;
  const s = Math.min(64, Math.max(state.fitScale / 4, v.s * factor));
  state.view = { s, x: cx - ((cx - v.x) * s) / v.s, y: cy - ((cy - v.y) * s) / v.s };
  applyView();
}

function zoomCentre(factor) {
  const viewer = $("viewer");
  zoomAt(factor, viewer.clientWidth / 2, viewer.clientHeight / 2);
}

function setUpViewer() {
  const viewer = $("viewer");
  let drag = null;
  viewer.addEventListener("pointerdown", (e) => {
    const rect = viewer.rect = viewer.getBoundingClientRect();
    const splitX = rect.left + (rect.width * Number($("slider").value)) / 100;
    drag = { mode: Math.abs(e.clientX - splitX) < 14 ? "split" : "pan", x: e.clientX, y: e.clientY };
    viewer.setPointerCapture(e.pointerId);
    viewer.classList.toggle("panning", drag.mode === "pan");
  });
  viewer.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (drag.mode === "split") {
      setSplit((100 * (e.clientX - viewer.rect.left)) / viewer.rect.width);
    } else {
      state.view.x += e.clientX - drag.x;
      state.view.y += e.clientY - drag.y;
      applyView();
    }
    drag.x = e.clientX;
    drag.y = e.clientY;
  });
  const end = () => { drag = null; viewer.classList.remove("panning"); };
  viewer.addEventListener("pointerup", end);
  viewer.addEventListener("pointercancel", end);
  viewer.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = viewer.getBoundingClientRect();
    zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });
  viewer.addEventListener("dblclick", fit);
  $("slider").addEventListener("input", (e) => setSplit(Number(e.target.value)));
  $("zoom-in").addEventListener("click", () => zoomCentre(1.5));
  $("zoom-out").addEventListener("click", () => zoomCentre(1 / 1.5));
  $("zoom-fit").addEventListener("click", fit);
  window.addEventListener("resize", () => { if (state.job) fit(); });
}

// ---- start --------------------------------------------------------------------------------

setUpDrop();
setUpViewer();
$("model").addEventListener("change", modelChanged);
$("colorize").addEventListener("click", colorize);
setStatus("idle");
loadModels().catch((err) => showMessage(`Could not list the models: ${err.message}`));
