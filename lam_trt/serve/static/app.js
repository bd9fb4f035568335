// lam-trt serve: place the window on the image, run LAM on one or two models, show what comes back.
// Plain JavaScript, no build step and nothing fetched from elsewhere: the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const POLL_MS = 250;
const FINISHED = ["done", "error", "cancelled"];
const STATE_TEXT = {
  queued: "queued",
  preparing: "preparing (the first window on a new image size builds its attribution graph)",
  integrating: "integrating",
  rendering: "drawing the pictures",
  done: "done",
  error: "failed",
  cancelled: "cancelled",
};

const state = {
  models: {},      // name -> GET /api/models entry
  image: null,     // {blob, name, element}
  win: {x: 0, y: 0},
  generation: 0,   // bumped by every run, so answers to an older run are ignored
  jobs: [],        // ids of the current run's unfinished jobs
  dragging: false,
};

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function fillSelect(select, values, selected) {
  for (const value of values) select.add(new Option(value, value, false, value === selected));
}

async function init() {
  const [models, config] = await Promise.all([getJSON("api/models"), getJSON("api/config")]);
  for (const m of models) state.models[m.name] = m;
  const names = models.map((m) => m.name);
  fillSelect($("model-a"), names, names[0]);
  fillSelect($("model-b"), names, null);
  fillSelect($("method"), config.methods, config.defaults.method);
  fillSelect($("rule"), config.rules, config.defaults.rule);
  for (const key of ["size", "steps", "sigma"]) $(key).value = config.defaults[key];
  $("steps").max = config.limits.steps;
  if (config.images.length) {
    fillSelect($("pick"), config.images, null);
    $("pick-row").hidden = false;
  }
  describeModels();
}

function modelA() { return state.models[$("model-a").value]; }
function modelB() {
  const name = $("model-b").value;
  return name && name !== $("model-a").value ? state.models[name] : null;
}
function scaleOf(model) { return Number.isInteger(model && model.scale) ? model.scale : 1; }

function describeModels() {
  const lines = [modelA(), modelB()].filter(Boolean).map((m) => {
    const rf = typeof m.receptive_field === "number" ? `${m.receptive_field} LR px` : m.receptive_field;
    return `${m.name}: x${m.scale}, ${m.channels.input} channel(s), receptive field ${rf}`;
  });
  const a = modelA(), b = modelB();
  if (a && b && scaleOf(a) !== scaleOf(b)) lines.push("scales differ: the window is scaled for the second model");
  $("model-info").textContent = lines.join(" · ");
}

// ------------------------------------------------------------------------------------ the image

function srSize() {
  const img = state.image && state.image.element;
  if (!img) return {width: 0, height: 0};
  const s = scaleOf(modelA());
  if ($("hr").checked) {
    return {width: Math.floor(img.naturalWidth / s) * s, height: Math.floor(img.naturalHeight / s) * s};
  }
  return {width: img.naturalWidth * s, height: img.naturalHeight * s};
}

function loadImage(blob, name) {
  const element = new Image();
  element.onload = () => {
    state.image = {blob, name, element};
    $("stage-note").textContent = `${name}: ${element.naturalWidth}x${element.naturalHeight}`;
    const {width, height} = srSize();
    placeAt(width / 2, height / 2);
  };
  element.onerror = () => showMessage(`the browser cannot display ${name}; use PNG, JPEG, BMP, GIF or WebP`);
  element.src = URL.createObjectURL(blob);
}

function windowSize() { return Math.max(1, parseInt($("size").value, 10) || 1); }

function clampWindow(x, y) {
  const {width, height} = srSize();
  const size = windowSize();
  // The detector map is one pixel smaller than the output: x + size <= width - 1.
  const clamp = (v, hi) => Math.max(0, Math.min(Math.round(v), Math.max(0, hi)));
  return {x: clamp(x, width - 1 - size), y: clamp(y, height - 1 - size)};
}

function placeAt(px, py) {
  const size = windowSize();
  state.win = clampWindow(px - size / 2, py - size / 2);
  $("x").value = state.win.x;
  $("y").value = state.win.y;
  draw();
}

function windowFromInputs() {
  state.win = clampWindow(parseInt($("x").value, 10) || 0, parseInt($("y").value, 10) || 0);
  $("x").value = state.win.x;
  $("y").value = state.win.y;
  draw();
}

function draw() {
  const canvas = $("canvas");
  const img = state.image && state.image.element;
  if (!img) return;
  const {width, height} = srSize();
  canvas.width = width;
  canvas.height = height;
  // Shown as large as the stage allows (small images enlarged up to 3x), never distorted.
  const fit = Math.min(3, $("stage").clientWidth / width, (0.7 * window.innerHeight) / height);
  canvas.style.width = `${Math.floor(width * fit)}px`;
  canvas.style.height = `${Math.floor(height * fit)}px`;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  if ($("hr").checked) ctx.drawImage(img, 0, 0, width, height, 0, 0, width, height);
  else ctx.drawImage(img, 0, 0, width, height);
  const size = windowSize();
  const line = Math.max(1, Math.round(Math.min(width, height) / 200));
  ctx.strokeStyle = "#ff0000";
  ctx.lineWidth = line;
  ctx.strokeRect(state.win.x + line / 2, state.win.y + line / 2, size - line, size - line);
}

function pointerPosition(event, element, scale) {
  // Pixel under the pointer in the element's own pixels (inside its border), then in the first
  // model's SR pixels.
  const rect = element.getBoundingClientRect();
  const sx = (element.naturalWidth || element.width) / element.clientWidth;
  const sy = (element.naturalHeight || element.height) / element.clientHeight;
  const factor = scaleOf(modelA()) / scale;
  return {x: (event.clientX - rect.left - element.clientLeft) * sx * factor,
          y: (event.clientY - rect.top - element.clientTop) * sy * factor};
}

function attachPlacement(element, scaleFn) {
  element.addEventListener("pointerdown", (event) => {
    if (!state.image) return;
    state.dragging = true;
    element.setPointerCapture(event.pointerId);
    const p = pointerPosition(event, element, scaleFn());
    placeAt(p.x, p.y);
    event.preventDefault();
  });
  element.addEventListener("pointermove", (event) => {
    if (!state.dragging) return;
    const p = pointerPosition(event, element, scaleFn());
    placeAt(p.x, p.y);
  });
  element.addEventListener("pointercancel", () => { state.dragging = false; });
  element.addEventListener("pointerup", () => {
    if (!state.dragging) return;
    state.dragging = false;
    if ($("auto").checked) run();
  });
}

// ------------------------------------------------------------------------------------ running

function showMessage(text) { $("message").textContent = text || ""; }

async function run() {
  showMessage("");
  if (!state.image) { showMessage("upload an image or pick one first"); return; }
  windowFromInputs();
  const generation = ++state.generation;
  for (const id of state.jobs) fetch(`api/jobs/${id}`, {method: "DELETE"}).catch(() => {});
  state.jobs = [];
  const results = $("results");
  results.replaceChildren();
  const a = modelA();
  for (const model of [a, modelB()].filter(Boolean)) {
    const article = $("result-template").content.firstElementChild.cloneNode(true);
    article.dataset.model = model.name;
    article.querySelector(".title").textContent = `${model.name} (x${model.scale})`;
    results.append(article);
    submit(model, scaleOf(model) / scaleOf(a), article, generation);
  }
}

function formFor(model, factor) {
  const form = new FormData();
  form.append("image", state.image.blob, state.image.name);
  form.append("model", model.name);
  form.append("x", String(Math.round(state.win.x * factor)));
  form.append("y", String(Math.round(state.win.y * factor)));
  for (const key of ["size", "steps", "method", "rule", "sigma"]) form.append(key, $(key).value);
  form.append("hr", $("hr").checked ? "1" : "");
  return form;
}

async function submit(model, factor, article, generation) {
  let job;
  try {
    job = await getJSON("api/jobs", {method: "POST", body: formFor(model, factor)});
  } catch (error) {
    show(article, {state: "error", error: error.message, done: 0, total: 1});
    return;
  }
  if (generation !== state.generation) return;
  state.jobs.push(job.id);
  article.dataset.job = job.id;
  while (generation === state.generation) {
    show(article, job);
    if (FINISHED.includes(job.state)) break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      job = await getJSON(`api/jobs/${job.id}`);
    } catch (error) {
      job = {...job, state: "error", error: error.message};
    }
  }
}

const fmt = (v, digits) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(digits));

function setValue(article, cls, value, text) {
  const dd = article.querySelector(`.${cls}`);
  dd.textContent = text;
  dd.dataset.value = String(value);
}

function show(article, job) {
  article.dataset.state = job.state;
  const progress = article.querySelector("progress");
  if (job.state === "integrating" || FINISHED.includes(job.state)) progress.value = job.total ? job.done / job.total : 0;
  else progress.removeAttribute("value");  // indeterminate: waiting, building the graph, drawing
  let text = STATE_TEXT[job.state] || job.state;
  if (job.state === "queued" && job.ahead) text += ` (${job.ahead} ahead)`;
  if (job.state === "integrating") text += ` ${job.done}/${job.total} path images`;
  article.querySelector(".state").textContent = text;
  article.querySelector(".error").textContent = job.error || "";
  const m = job.metrics;
  if (m && !article.querySelector(".di").dataset.value) {
    setValue(article, "di", m.diffusion_index, fmt(m.diffusion_index, 3));
    setValue(article, "gini", m.gini, fmt(m.gini, 4));
    const rel = m.completeness_gap_relative;
    setValue(article, "gap", m.completeness_gap,
      `${Number(m.completeness_gap).toPrecision(4)}` + (rel === null ? "" : ` (${(100 * rel).toFixed(2)}%)`));
    setValue(article, "detector", m.detector_input, fmt(m.detector_input, 4));
    const t = m.timings_seconds || {};
    setValue(article, "time", t.integral, `${fmt(t.integral, 2)} s (total ${fmt(t.total, 2)} s)`);
  }
  if (job.panels && !article.querySelector(".panels").childElementCount) showPanels(article, job.panels);
  if (job.state === "done" && job.result && article.querySelector(".path-plot").hidden) showFiles(article, job.result);
}

function showPanels(article, list) {
  const model = state.models[article.dataset.model];
  const panels = article.querySelector(".panels");
  for (const panel of list) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = panel.url;
    img.alt = panel.title;
    img.dataset.panel = panel.name;
    img.draggable = false;  // else the browser's own image drag takes the pointer away
    const caption = document.createElement("figcaption");
    caption.textContent = panel.title;
    figure.append(img, caption);
    panels.append(figure);
    attachPlacement(img, () => scaleOf(model));
  }
}

function showFiles(article, result) {
  const plot = article.querySelector(".path-plot");
  plot.src = result.urls["path.png"];
  plot.hidden = false;
  const links = article.querySelector(".downloads");
  links.append("download: ");
  for (const [name, url] of Object.entries(result.urls)) {
    const a = document.createElement("a");
    a.href = url;
    a.textContent = name === "zip" ? "all (zip)" : name;
    a.download = name === "zip" ? "" : name;
    links.append(a, " ");
  }
}

// ------------------------------------------------------------------------------------ wiring

$("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) { $("pick").value = ""; loadImage(file, file.name); }
});
$("pick").addEventListener("change", async (event) => {
  const name = event.target.value;
  if (!name) return;
  try {
    const response = await fetch(`images/${encodeURIComponent(name)}`);
    if (!response.ok) throw new Error(`cannot load ${name}: HTTP ${response.status}`);
    loadImage(await response.blob(), name);
  } catch (error) { showMessage(error.message); }
});
for (const id of ["model-a", "model-b"]) {
  $(id).addEventListener("change", () => { describeModels(); placeAt(state.win.x + windowSize() / 2, state.win.y + windowSize() / 2); });
}
$("hr").addEventListener("change", () => placeAt(state.win.x + windowSize() / 2, state.win.y + windowSize() / 2));
for (const id of ["x", "y", "size"]) $(id).addEventListener("change", windowFromInputs);
$("controls").addEventListener("keydown", (event) => { if (event.key === "Enter") run(); });
$("run").addEventListener("click", run);
attachPlacement($("canvas"), () => scaleOf(modelA()));
init().catch((error) => showMessage(`cannot reach the server: ${error.message}`));
window.addEventListener("resize", draw);
