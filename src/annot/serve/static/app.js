// annot's web page: search, a gallery, drop a photo to tag it, confirm or reject tags, a run's per-word chart.
// Plain JavaScript over the /v1 API; nothing is fetched from anywhere else. The page's state (the search and the
// photo shown) lives in the address's #fragment, so a reload shows the same thing.
"use strict";

const $ = (id) => document.getElementById(id);
const state = new URLSearchParams(location.hash.slice(1));

function setStatus(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.className = error ? "error" : "";
}

function saveState() {
  history.replaceState(null, "", "#" + state.toString());
}

async function api(path, options = {}, retry = true) {
  const headers = Object.assign({}, options.headers || {});
  const token = localStorage.getItem("annot-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && retry) {
    const given = prompt("This server takes changes with its token only. Token:");
    if (given) {
      localStorage.setItem("annot-token", given.trim());
      return api(path, options, false);
    }
  }
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((body && body.error) || response.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const percent = (p) => (p === null || p === undefined ? "" : Math.round(100 * p) + "%");
const fileName = (path) => path.split(/[\\/]/).pop();

// -- search and the gallery ---------------------------------------------------------------------------------------
async function search(words, mode, scope = "all") {
  state.set("q", words);
  state.set("mode", mode);
  state.set("scope", scope);
  saveState();
  setStatus("searching…");
  try {
    const params = new URLSearchParams({ q: words, mode, scope, n: "60" });
    const { results, read_as: readAs, unknown } = await api("/v1/search?" + params);
    const read = Object.entries(readAs).map(([word, means]) => `${word}: ${means.join(", ")}`);
    const notes = [...(read.length ? [`read as ${read.join("; ")}`] : []),
                   ...(unknown.length ? [`no tag means ${unknown.join(", ")}`] : [])];
    renderGallery(results, `${results.length} photos for “${words}”` + (notes.length ? ` (${notes.join("; ")})` : ""));
    setStatus("");
  } catch (error) {
    setStatus(error.message, true);
  }
}

function renderGallery(results, title) {
  $("results-title").hidden = false;
  $("results-title").textContent = title;
  const gallery = $("gallery");
  gallery.replaceChildren();
  for (const hit of results) {
    const chips = hit.tags.slice(0, 6).map((t) =>
      el("span", { class: "tag " + t.source }, t.tag + (t.source === "predicted" ? " " + percent(t.confidence) : "")));
    const card = el("div", { class: "card", "data-id": hit.id, onclick: () => showPhoto(hit.id) },
      el("img", { src: hit.thumbnail, alt: fileName(hit.path), loading: "lazy" }),
      el("div", { class: "where" }, fileName(hit.path) + (hit.kind === "training" ? " · training" : "")),
      el("div", { class: "tags" }, ...chips));
    gallery.append(card);
  }
}

// -- one photo: its tags, corrections, the training photos that voted --------------------------------------------
async function showPhoto(id, voters = null) {
  let photo;
  try {
    photo = await api("/v1/images/" + id);
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  state.set("photo", String(id));
  saveState();
  $("photo").hidden = false;
  $("photo").dataset.id = String(id);
  $("photo-image").src = photo.thumbnail + "?size=512";
  $("photo-image").alt = fileName(photo.path);
  $("photo-title").textContent = fileName(photo.path) + (photo.kind === "training" ? " (training image)" : "");
  renderTags(id, photo.tags);
  const box = $("voters");
  box.replaceChildren();
  if (voters && voters.length) {
    box.append(el("p", { class: "hint" }, "Training photos that voted for its tags:"));
    for (const v of voters.slice(0, 12)) {
      box.append(el("figure", {}, el("img", { src: v.thumbnail + "?size=128", alt: "training photo " + v.id }),
        el("figcaption", {}, v.tags.join(", "))));
    }
  }
  $("photo").scrollIntoView({ block: "nearest" });
}

function renderTags(id, tags) {
  const list = $("photo-tags");
  list.replaceChildren();
  for (const t of tags) {
    const width = Math.round(80 * (t.confidence ?? 0));
    list.append(el("li", { class: t.source, "data-tag": t.tag, "data-source": t.source },
      el("span", { class: "name" }, t.tag),
      el("span", { class: "bar", style: `width:${width}px` }),
      el("span", { class: "confidence" }, t.source === "predicted" ? percent(t.confidence) : t.source),
      el("button", { class: "confirm", title: "confirm " + t.tag, onclick: () => correct(id, t.tag, "confirm") }, "✓"),
      el("button", { class: "reject", title: "reject " + t.tag, onclick: () => correct(id, t.tag, "reject") }, "✗")));
  }
}

async function correct(id, tag, action) {
  setStatus("saving…");
  try {
    const answer = await api("/v1/corrections", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id, tag, action }),
    });
    renderTags(id, answer.photos[0].tags);
    setStatus(`${action === "reject" ? "rejected" : action === "add" ? "added" : "confirmed"} “${tag}”`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

// -- dropping a photo -----------------------------------------------------------------------------------------------
async function tagFile(file) {
  setStatus(`tagging ${file.name}…`);
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const answer = await api("/v1/annotate?explain=true&keep=true", { method: "POST", body: form });
    const voters = votersOf(answer.tags);
    if (answer.id !== undefined) {
      await showPhoto(answer.id, voters);
    } else {
      $("photo").hidden = false;
      $("photo-title").textContent = file.name + " (not kept)";
      $("photo-image").src = URL.createObjectURL(file);
      renderTags(null, answer.tags.map((t) => ({ tag: t.tag, confidence: t.confidence, source: "predicted" })));
    }
    setStatus(`${file.name}: ${answer.tags.map((t) => t.tag).join(", ")}`);
  } catch (error) {  // not kept, and why: the page never quietly falls back to something else
    setStatus(`${file.name} was not kept: ${error.message}`, true);
  }
}

function votersOf(tags) {
  const byId = new Map();
  for (const t of tags) {
    for (const v of t.voters || []) {
      const seen = byId.get(v.id) || { id: v.id, thumbnail: v.thumbnail, weight: 0, tags: [] };
      seen.weight += v.weight;
      seen.tags.push(t.tag);
      byId.set(v.id, seen);
    }
  }
  return [...byId.values()].sort((a, b) => b.weight - a.weight);
}

// -- runs -----------------------------------------------------------------------------------------------------------
async function loadRuns() {
  const { runs } = await api("/v1/runs");
  if (!runs.length) return;
  $("runs-section").hidden = false;
  const select = $("runs");
  select.replaceChildren(...runs.map((r) => el("option", { value: r.id },
    `run ${r.id}: ${r.method} on ${r.dataset}, F1 ${(100 * r.f1).toFixed(1)}`)));
  select.value = String(runs[runs.length - 1].id);
  select.onchange = () => drawRun(select.value, runs.find((r) => String(r.id) === select.value));
  drawRun(select.value, runs[runs.length - 1]);
}

async function drawRun(id, run) {
  const { words } = await api(`/v1/runs/${id}/words`);
  $("run-summary").textContent = `P ${(100 * run.precision).toFixed(1)} · R ${(100 * run.recall).toFixed(1)} · ` +
    `F1 ${(100 * run.f1).toFixed(1)} · N+ ${run.n_plus} · ${run.n_images} images; F1 per word, most frequent first`;
  const width = Math.max(400, Math.min(1300, words.length * 5)), height = 160, step = width / words.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "F1 per word");
  words.forEach((w, i) => {
    const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const h = Math.max(1, w.f1 * (height - 10));
    bar.setAttribute("x", (i * step).toFixed(1));
    bar.setAttribute("y", (height - h).toFixed(1));
    bar.setAttribute("width", Math.max(1, step - 1).toFixed(1));
    bar.setAttribute("height", h.toFixed(1));
    bar.setAttribute("class", "word");
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${w.word}: F1 ${(100 * w.f1).toFixed(0)} (P ${(100 * w.precision).toFixed(0)}, ` +
      `R ${w.recall === null ? "–" : (100 * w.recall).toFixed(0)}; ${w.train_frequency} training images)`;
    bar.append(title);
    svg.append(bar);
  });
  $("run-chart").replaceChildren(svg);
}

// -- wiring ---------------------------------------------------------------------------------------------------------
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const words = $("q").value.trim();
  if (words) search(words, $("mode").value, $("scope").value);
});
$("add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = Number($("photo").dataset.id), tag = $("add-tag").value.trim();
  if (tag && id) correct(id, tag, "add").then(() => { $("add-tag").value = ""; });
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = event.dataTransfer.files[0];
  if (file) tagFile(file);
});
$("file").addEventListener("change", () => { if ($("file").files[0]) tagFile($("file").files[0]); });

if (state.get("q")) {
  $("q").value = state.get("q");
  $("mode").value = state.get("mode") || "combined";
  $("scope").value = state.get("scope") || "all";
  search(state.get("q"), $("mode").value, $("scope").value);
}
if (state.get("photo")) showPhoto(Number(state.get("photo")));
loadRuns().catch((error) => setStatus(error.message, true));
