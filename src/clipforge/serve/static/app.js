"use strict";
// clipforge search page: text search, query by image, zero-shot classification.
// User data is only ever inserted with textContent (never innerHTML).
const $ = (id) => document.getElementById(id);
let imageFile = null;

function showError(message) {
  const el = $("error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function call(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    throw new Error((body && body.detail) ? body.detail : `request failed (${response.status})`);
  }
  return body;
}

function renderGrid(hits, scored) {
  const grid = $("results");
  grid.replaceChildren();
  for (const hit of hits) {
    const card = document.createElement("figure");
    card.className = "result";
    card.dataset.id = hit.id;
    const img = document.createElement("img");
    img.src = `${hit.image_url}?size=256`;
    img.alt = hit.caption || hit.name;
    img.loading = "lazy";
    const meta = document.createElement("figcaption");
    meta.className = "meta";
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = scored ? `${hit.score.toFixed(3)} · #${hit.id}` : `#${hit.id}`;
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = hit.caption || hit.name;
    meta.append(score, caption);
    card.append(img, meta);
    grid.append(card);
  }
}

function renderResults(data, label) {
  renderGrid(data.results, true);
  $("status").textContent = `${data.results.length} results for ${label} in ${data.took_ms} ms`;
  showError((data.warnings || []).join(" "));  // e.g. query words the model does not know
}

async function textSearch(event) {
  event.preventDefault();
  const text = $("query").value.trim();
  if (!text) { showError("Type a query first."); return; }
  showError("");
  try {
    const params = new URLSearchParams({ text, k: $("k").value });
    renderResults(await call(`/search?${params}`), `“${text}”`);
  } catch (err) { showError(err.message); }
}

async function imageSearch() {
  if (!imageFile) return;
  showError("");
  const form = new FormData();
  form.append("image", imageFile);
  form.append("k", $("k").value);
  try {
    renderResults(await call("/search", { method: "POST", body: form }), `image ${imageFile.name}`);
  } catch (err) { showError(err.message); }
}

async function classify() {
  if (!imageFile) return;
  showError("");
  const form = new FormData();
  form.append("image", imageFile);
  form.append("labels", $("labels").value);
  try {
    const data = await call("/classify", { method: "POST", body: form });
    const list = $("predictions");
    list.replaceChildren();
    for (const p of data.predictions) {
      const item = document.createElement("li");
      item.className = "prediction";
      item.textContent = `${p.label} — ${(100 * p.probability).toFixed(1)}%`;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(2, Math.round(200 * p.probability))}px`;
      item.append(bar);
      list.append(item);
    }
    $("predictions-panel").hidden = false;
    showError((data.warnings || []).join(" "));  // e.g. label words the model does not know
  } catch (err) { showError(err.message); }
}

function chooseFile() {
  imageFile = $("file").files[0] || null;
  const preview = $("preview");
  if (imageFile) {
    preview.src = URL.createObjectURL(imageFile);
    preview.hidden = false;
  } else {
    preview.hidden = true;
  }
  $("image-search-btn").disabled = !imageFile;
  $("classify-btn").disabled = !imageFile;
}

async function browse() {
  // Before any query the page shows the index's first items, so a visitor sees what is there.
  try {
    const data = await call("/items?limit=24");
    renderGrid(data.items, false);
    $("status").textContent = `browsing ${data.items.length} of ${data.total.toLocaleString()} items`;
  } catch (err) { showError(err.message); }
}

async function loadStats() {
  try {
    const h = await call("/health");
    $("stats").textContent = `${h.items.toLocaleString()} items · ${h.index.kind} index · ${h.dim}-d embeddings`;
  } catch (err) { $("stats").textContent = "index unavailable"; }
}

$("text-form").addEventListener("submit", textSearch);
$("file").addEventListener("change", chooseFile);
$("image-search-btn").addEventListener("click", imageSearch);
$("classify-btn").addEventListener("click", classify);
loadStats();
browse();
