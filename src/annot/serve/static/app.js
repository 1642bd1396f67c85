// annot's web page: browse the library (by folder, month, tag, not reviewed), search, a photo viewer, review with
// the keyboard, try a photo without keeping it, and the evaluation runs. Plain JavaScript over the /v1 API; nothing
// is fetched from anywhere else. Text from data (paths, tags, messages) is always set as text, never as markup.
// The view and its filters live in the address's #fragment, so a reload or a shared link shows the same thing.
"use strict";

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat();
const PAGE = 60;

// -- plumbing -------------------------------------------------------------------------------------------------------
function setStatus(text, error = false) {
  const status = $("status");
  status.textContent = text;
  status.className = error ? "error" : "";
}

async function api(path, options = {}, retry = true) {
  const headers = Object.assign({}, options.headers || {});
  const token = localStorage.getItem("annot-token");
  if (token) headers["Authorization"] = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (error) {
    throw new Error("the annot server does not answer (is annot serve still running?)");
  }
  if (response.status === 401 && retry) {
    const given = prompt("This server takes changes with its token only. Token:");
    if (given) {
      localStorage.setItem("annot-token", given.trim());
      return api(path, options, false);
    }
  }
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  if (!response.ok) throw new Error((body && body.error) || `the server answered ${response.status}`);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const percent = (p) => (p === null || p === undefined ? "" : Math.round(100 * p) + "%");
const fileName = (path) => path.split(/[\\/]/).pop();
const typing = (event) => ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName);
const bytes = (n) => (n === null || n === undefined ? "" : n < 1 << 20 ? `${Math.round(n / 1024)} KB`
  : `${(n / (1 << 20)).toFixed(1)} MB`);

function chips(tags, n = 6) {
  return tags.slice(0, n).map((t) => el("span", { class: "tag " + t.source },
    t.tag + (t.source === "predicted" ? " " + percent(t.confidence) : "")));
}

// -- views and the address -------------------------------------------------------------------------------------------
function where() {
  const [path, query] = location.hash.slice(1).split("?");
  return { view: (path || "/photos").replace(/^\//, ""), params: new URLSearchParams(query || "") };
}

function go(view, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const hash = "#/" + view + (query.toString() ? "?" + query : "");
  if (location.hash === hash) route(); else location.hash = hash;
}

function route() {
  const { view, params } = where();
  const shown = view === "search" ? "photos" : ["photos", "review", "runs"].includes(view) ? view : "photos";
  for (const name of ["photos", "review", "runs"]) {
    $("view-" + name).hidden = name !== shown;
    const link = $("nav-" + name);
    if (name === shown) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  if (view !== "search") $("q").value = "";
  if (view === "search") showSearch(params);
  else if (shown === "photos") showPhotos(params);
  else if (shown === "review") showReview();
  else showRuns(params);
  const photo = Number(params.get("photo"));
  if (photo && !$("viewer").open) openViewer([photo], 0);
}

// -- the library: browse and search ---------------------------------------------------------------------------------
const listing = { items: [], total: 0, next: null, loading: false };

async function showPhotos(params) {
  $("q").value = "";
  $("order").value = params.get("order") || "newest";
  const filters = {};
  for (const key of ["folder", "date", "tag", "unreviewed", "order"]) if (params.get(key)) filters[key] = params.get(key);
  const named = [filters.tag && `tagged “${filters.tag}”`, filters.folder && `in ${filters.folder}`,
    filters.date && `from ${filters.date}`, filters.unreviewed && "not reviewed"].filter(Boolean);
  $("photos-title").textContent = named.length ? "Photos " + named.join(", ") : "All photos";
  $("filters").hidden = false;
  $("order").parentElement.hidden = false;
  loadFacets(filters);
  startListing(async (offset) => {
    const page = await api("/v1/photos?" + new URLSearchParams({ ...filters, offset, limit: PAGE }));
    return { items: page.photos, total: page.total, next: offset + page.photos.length < page.total ? offset + PAGE : null };
  }, (total) => `${number.format(total)} photo${total === 1 ? "" : "s"}`,
  "No photos here yet. Annotate a folder of photos into the library, or try one with “Try a photo…”.");
}

async function showSearch(params) {
  const q = params.get("q") || "", like = params.get("like"), mode = params.get("mode") || "combined";
  const all = params.get("all") === "1";
  $("q").value = q;
  $("mode").value = mode;
  $("filters").hidden = true;
  $("order").parentElement.hidden = true;
  $("photos-title").textContent = like ? "Photos like this one" : `Search: ${q}`;
  startListing(async (offset) => {
    const n = Math.min(500, offset + PAGE);
    const query = { mode, n };
    if (q) query.q = q;
    if (like) query.like = like;
    if (all) query.all = "true";
    const found = await api("/v1/search?" + new URLSearchParams(query));
    const notes = Object.entries(found.read_as || {}).map(([w, means]) => `read “${w}” as ${means.join(", ")}`);
    if ((found.unknown || []).length) notes.push(`no tag means ${found.unknown.map((w) => `“${w}”`).join(", ")}`);
    if (found.partial) notes.push("no photo has all the words: the photos with some of them");
    if (found.left_out && !all) notes.push(`${number.format(found.left_out)} weaker matches left out`);
    setNote(notes, found.left_out && !all ? () => go("search", { q, mode, like, all: "1" }) : null);
    const more = found.results.length === n && n < 500;
    return { items: found.results.slice(offset), total: null, next: more ? n : null };
  }, (shown) => `${number.format(shown)} photo${shown === 1 ? "" : "s"}`, "No photos found.");
}

function setNote(notes, showAll) {
  const note = $("photos-note");
  note.replaceChildren(notes.join(" · "));
  if (showAll) note.append(" ", el("button", { type: "button", onclick: showAll }, "Show them"));
}

let fetchPage = null, describe = null, emptyText = "";

function startListing(fetcher, describer, empty) {
  fetchPage = fetcher;
  describe = describer;
  emptyText = empty;
  listing.items = [];
  listing.total = 0;
  listing.next = 0;
  $("gallery").replaceChildren();
  $("photos-note").replaceChildren();
  loadMore();
}

async function loadMore() {
  if (listing.loading || listing.next === null || !fetchPage) return;
  listing.loading = true;
  const fetcher = fetchPage;
  setStatus("loading…");
  try {
    const page = await fetcher(listing.next);
    if (fetcher !== fetchPage) return;  // the view changed meanwhile
    const first = listing.items.length;
    listing.items.push(...page.items);
    listing.total = page.total === null ? listing.items.length : page.total;
    listing.next = page.next;
    renderCards(first);
    setStatus(describe(listing.total) + (listing.next !== null ? " (scroll for more)" : ""));
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    listing.loading = false;
    $("more").hidden = listing.next === null;
  }
}

function renderCards(first) {
  const gallery = $("gallery");
  if (!listing.items.length) {
    gallery.replaceChildren(el("p", { class: "empty" }, emptyText));
    return;
  }
  listing.items.slice(first).forEach((photo, i) => {
    const index = first + i;
    const name = fileName(photo.path);
    gallery.append(el("button", { type: "button", class: "card", "data-id": photo.id, "aria-label": "open " + name,
      onclick: () => openViewer(listing.items.map((p) => p.id), index) },
    el("img", { src: photo.thumbnail, alt: "", loading: "lazy", width: 170, height: 170 }),
    el("div", { class: "where" }, name + (photo.kind === "training" ? " · training" : "")),
    el("div", { class: "tags" }, ...chips(photo.tags))));
  });
}

async function loadFacets(active) {
  let facets;
  try {
    facets = await api("/v1/facets");
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  const box = $("facets");
  const folders = facets.folders.map((f) => f.folder);
  const common = folders.length > 1 ? commonFolder(folders) : "";
  const option = (label, count, params, pressed, title) => el("li", {}, el("button", {
    type: "button", "aria-pressed": pressed ? "true" : "false", title: title || label,
    onclick: () => go("photos", pressed ? { order: active.order } : { ...params, order: active.order }),
  }, el("span", {}, label), el("span", { class: "count" }, number.format(count))));
  const section = (title, items) => items.length ? el("div", { class: "facet" }, el("h3", {}, title),
    el("ul", {}, ...items)) : null;
  box.replaceChildren(
    section("Library", [
      option("All photos", facets.photos, {}, !active.folder && !active.date && !active.tag && !active.unreviewed),
      option("Not reviewed", facets.not_reviewed, { unreviewed: "1" }, !!active.unreviewed)]),
    section("Folders", [...facets.folders.map((f) => option(f.folder.slice(common.length).replace(/^\//, "") ||
      f.folder, f.count, { folder: f.folder }, active.folder === f.folder, f.folder)),
    ...(facets.folders_total > facets.folders.length ? [el("li", { class: "hint" },
      `and ${number.format(facets.folders_total - facets.folders.length)} smaller folders`)] : [])]),
    section("Months", facets.months.slice().reverse().map((m) => option(m.month, m.count, { date: m.month },
      active.date === m.month))),
    section("Tags", facets.tags.map((t) => option(t.tag, t.count, { tag: t.tag }, active.tag === t.tag))));
}

function commonFolder(folders) {
  let prefix = folders[0];
  for (const f of folders) while (prefix && !(f === prefix || f.startsWith(prefix + "/"))) {
    prefix = prefix.slice(0, Math.max(0, prefix.lastIndexOf("/")));
  }
  return prefix;
}

// -- the viewer -----------------------------------------------------------------------------------------------------
const viewer = { ids: [], index: 0, photo: null, trying: null };
const undo = [];  // {id, tag, action}: what brings a tag back, newest last

function openViewer(ids, index) {
  viewer.ids = ids;
  viewer.index = index;
  if (!$("viewer").open) $("viewer").showModal();
  showInViewer(ids[index]);
}

function remember(id) {  // the photo shown, in the address (a reload opens it again), without a new history entry
  const { view, params } = where();
  if (id === null) params.delete("photo"); else params.set("photo", id);
  history.replaceState(null, "", "#/" + view + (params.toString() ? "?" + params : ""));
}

async function showInViewer(id) {
  viewer.trying = null;
  $("keep").hidden = true;
  $("viewer-note").replaceChildren();
  $("voters").replaceChildren();
  let photo;
  try {
    photo = await api("/v1/images/" + id);
  } catch (error) {
    $("viewer-note").textContent = error.message;
    return;
  }
  viewer.photo = photo;
  remember(photo.id);
  $("viewer-title").textContent = photo.name + (photo.kind === "training" ? " (training photo)" : "");
  const image = $("viewer-image");
  image.removeAttribute("src");
  image.width = photo.width;
  image.height = photo.height;
  image.alt = photo.name;
  image.src = photo.rendition + "?size=1600";
  const facts = [["Folder", photo.folder], ["Date", photo.taken ? photo.taken.replace("T", " ") + " (taken)"
    : photo.modified ? photo.modified.slice(0, 16).replace("T", " ") + " (file)" : ""],
  ["Size", `${photo.width} × ${photo.height}` + (photo.bytes ? ", " + bytes(photo.bytes) : "")],
  ["Camera", photo.camera || ""]];
  $("viewer-facts").replaceChildren(...facts.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("original").href = photo.original;
  $("original").hidden = false;
  for (const id of ["why", "similar", "add-form"]) $(id).hidden = false;
  $("prev").disabled = viewer.index <= 0;
  $("next").disabled = viewer.index >= viewer.ids.length - 1;
  renderTags($("viewer-tags"), photo.id, photo.kind, photo.tags);
  $("undo").disabled = !undo.length;
}

function renderTags(list, id, kind, tags, selected = -1) {
  list.replaceChildren(...tags.map((t, i) => el("li", { class: t.source + (i === selected ? " selected" : ""),
    "data-tag": t.tag, "data-source": t.source },
  el("span", { class: "name" }, t.tag),
  el("span", { class: "meter" }, el("span", { class: "bar", style: `width:${Math.round(70 * (t.confidence ?? 0))}px` }),
    el("span", { class: "confidence" }, t.source === "predicted" ? percent(t.confidence) : t.source)),
  id === null ? null : el("button", { type: "button", class: "confirm", title: "accept " + t.tag,
    "aria-label": "accept " + t.tag, onclick: () => correct(id, kind, t.tag, "confirm") }, "✓"),
  id === null ? null : el("button", { type: "button", class: "reject", title: "reject " + t.tag,
    "aria-label": "reject " + t.tag, onclick: () => correct(id, kind, t.tag, "reject") }, "✗"))));
}

function inverse(kind, tags, tag, action) {
  const before = tags.find((t) => t.tag === tag);
  if (!before) return kind === "training" ? "reject" : "clear";
  if (before.source === "confirmed") return "confirm";
  if (before.source === "added") return "add";
  if (before.source === "training") return action === "reject" ? "confirm" : null;
  return "clear";
}

async function correct(id, kind, tag, action, undoing = false) {
  const current = viewer.photo && viewer.photo.id === id ? viewer.photo.tags
    : review.item && review.item.id === id ? review.item.tags : [];
  const back = undoing ? null : inverse(kind, current, tag, action);
  setStatus("saving…");
  try {
    const answer = await api("/v1/corrections", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id, tag, action }),
    });
    const tags = answer.photos[0].tags;
    if (back && answer.recorded) undo.push({ id, kind, tag, action: back });
    if (viewer.photo && viewer.photo.id === id) {
      viewer.photo.tags = tags;
      if ($("viewer").open) renderTags($("viewer-tags"), id, kind, tags);
    }
    if (review.item && review.item.id === id) {
      review.item.tags = tags;
      renderReviewTags();
    }
    const card = document.querySelector(`.card[data-id="${id}"] .tags`);
    if (card) card.replaceChildren(...chips(tags));
    $("undo").disabled = !undo.length;
    const done = undoing ? "undone" : { reject: "rejected", add: "added", confirm: "accepted", clear: "cleared" }[action];
    const vouched = tags.some((t) => t.source === "confirmed" || t.source === "added");
    const teach = kind === "library" && vouched ? " — this photo now teaches its look-alikes (re-score the library " +
      "to see them change)" : "";
    setStatus(`${done} “${tag}”${teach}` + (undoing || !back ? "" : " · undo with u"));
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function undoLast() {
  const last = undo.pop();
  $("undo").disabled = !undo.length;
  if (last) await correct(last.id, last.kind, last.tag, last.action, true);
}

async function why() {
  const photo = viewer.photo;
  if (!photo) return;
  $("viewer-note").textContent = "finding the training photos that voted…";
  try {
    const answer = await api(`/v1/images/${photo.id}/explain`);
    showVoters(answer.tags);
    $("viewer-note").textContent = "The training photos nearest this one in the shared space voted for its tags:";
  } catch (error) {
    $("viewer-note").textContent = error.message;
  }
}

function showVoters(tags) {
  const byId = new Map();
  for (const t of tags) {
    for (const v of t.voters || []) {
      const seen = byId.get(v.id) || { id: v.id, thumbnail: v.thumbnail, weight: 0, tags: [] };
      seen.weight += v.weight;
      seen.tags.push(t.tag);
      byId.set(v.id, seen);
    }
  }
  const voters = [...byId.values()].sort((a, b) => b.weight - a.weight).slice(0, 12);
  $("voters").replaceChildren(...voters.map((v, i) => el("button", { type: "button", class: "voter",
    "aria-label": "open training photo voting for " + v.tags.join(", "),
    onclick: () => openViewer(voters.map((w) => w.id), i) },
  el("img", { src: v.thumbnail + "?size=160", alt: "" }), v.tags.join(", "))));
}

function step(delta) {
  const index = viewer.index + delta;
  if (viewer.trying || index < 0 || index >= viewer.ids.length) return;
  viewer.index = index;
  showInViewer(viewer.ids[index]);
}

// -- trying a photo without keeping it ------------------------------------------------------------------------------
async function tryFile(file) {
  setStatus(`tagging ${file.name}…`);
  const form = new FormData();
  form.append("image", file, file.name);
  try {
    const answer = await api("/v1/annotate?explain=true", { method: "POST", body: form });
    if (!$("viewer").open) $("viewer").showModal();
    viewer.trying = file;
    viewer.photo = null;
    viewer.ids = [];
    $("viewer-title").textContent = file.name + " (not kept)";
    const image = $("viewer-image");
    image.removeAttribute("width");
    image.removeAttribute("height");
    image.alt = file.name;
    image.src = URL.createObjectURL(file);
    $("viewer-facts").replaceChildren(el("dt", {}, "Size"), el("dd", {}, bytes(file.size)));
    renderTags($("viewer-tags"), null, "try", answer.tags.map((t) => ({ ...t, source: "predicted" })));
    for (const id of ["why", "similar", "add-form", "original"]) $(id).hidden = true;
    $("prev").disabled = $("next").disabled = true;
    $("keep").hidden = false;
    $("viewer-note").textContent = "Not kept: nothing was written. Keep it to add it to your library.";
    showVoters(answer.tags);
    setStatus(`${file.name}: ${answer.tags.map((t) => t.tag).join(", ")}`);
  } catch (error) {  // the server's message names the file already
    setStatus(error.message.startsWith(file.name) ? error.message : `${file.name}: ${error.message}`, true);
  }
}

async function keepTried() {
  const file = viewer.trying;
  if (!file) return;
  const form = new FormData();
  form.append("image", file, file.name);
  setStatus(`keeping ${file.name}…`);
  try {
    const answer = await api("/v1/annotate?keep=true", { method: "POST", body: form });
    viewer.ids = [answer.id];
    viewer.index = 0;
    await showInViewer(answer.id);
    $("viewer-note").textContent = `Kept in your library as ${answer.path}`;
    setStatus(`kept ${file.name} as ${answer.path}`);
  } catch (error) {
    setStatus(`${file.name} was not kept: ${error.message}`, true);
  }
}

// -- review with the keyboard ---------------------------------------------------------------------------------------
const review = { queue: [], index: 0, item: null, selected: 0 };

async function showReview() {
  setStatus("finding the photos to review…");
  try {
    review.queue = (await api("/v1/review?n=50")).photos;
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  review.index = 0;
  setStatus("");
  showReviewItem();
}

function showReviewItem() {
  const card = $("review-card");
  const left = review.queue.length - review.index;
  $("review-left").textContent = left > 0 ? `${number.format(left)} of ${number.format(review.queue.length)} left` : "";
  if (left <= 0) {
    review.item = null;
    card.replaceChildren();
    $("taught").textContent = review.queue.length ? "All reviewed. Re-score the library to see what your " +
      "corrections taught." : "Nothing to review: every photo's tags are sure, or the library is empty.";
    return;
  }
  const item = review.item = review.queue[review.index];
  review.selected = 0;
  card.replaceChildren(
    el("figure", { class: "viewer-image" }, el("img", { src: `/v1/images/${item.id}/rendition?size=1200`,
      alt: fileName(item.path) })),
    el("div", {},
      el("h3", {}, fileName(item.path)),
      el("p", { class: "hint" }, item.ask.length ? "Least sure: " + item.ask.join(", ") : ""),
      el("ul", { id: "review-tags", class: "tag-list" }),
      el("form", { class: "add-form", id: "review-add", onsubmit: (event) => {
        event.preventDefault();
        const input = $("review-tag"), tag = input.value.trim();
        if (tag) correct(item.id, "library", tag, "add").then(() => { input.value = ""; input.blur(); });
      } }, el("input", { id: "review-tag", list: "vocabulary", placeholder: "add a tag (t)", "aria-label": "tag to add",
        maxlength: 100 }), el("button", { type: "submit" }, "Add")),
      el("button", { type: "button", onclick: () => openViewer([item.id], 0) }, "Open in the viewer")));
  renderReviewTags();
}

function renderReviewTags() {
  const item = review.item;
  if (!item) return;
  review.selected = Math.max(0, Math.min(review.selected, item.tags.length - 1));
  renderTags($("review-tags"), item.id, "library", item.tags, review.selected);
}

function reviewKey(event) {
  const item = review.item;
  const key = event.key;
  if (key === "u") return undoLast();
  if (key === "ArrowRight" || key === "n") { review.index = Math.min(review.index + 1, review.queue.length); return showReviewItem(); }
  if (key === "ArrowLeft" || key === "p") { review.index = Math.max(0, review.index - 1); return showReviewItem(); }
  if (!item) return;
  const tag = item.tags[review.selected];
  if (key === "ArrowDown" || key === "j") { review.selected += 1; renderReviewTags(); }
  else if (key === "ArrowUp" || key === "k") { review.selected -= 1; renderReviewTags(); }
  else if ((key === "a" || key === "Enter") && tag) correct(item.id, "library", tag.tag, "confirm");
  else if ((key === "r" || key === "x") && tag) correct(item.id, "library", tag.tag, "reject");
  else if (key === "t") { $("review-tag").focus(); }
  else return;
  event.preventDefault();
}

async function rescore() {
  $("rescore").disabled = true;
  $("taught").textContent = "re-scoring the library…";
  try {
    let rescored = 0, changed = 0, answer;
    do {  // each request scores a bounded share; ask again until none is left
      answer = await api("/v1/rescore", { method: "POST" });
      rescored += answer.rescored;
      changed += answer.tags_changed;
      if (answer.left) $("taught").textContent = `re-scoring the library… ${number.format(answer.left)} photos to go`;
    } while (answer.left && answer.rescored);
    $("taught").textContent = `Re-scored ${number.format(rescored)} photos with what you taught: ` +
      `${number.format(changed)} of them changed tags.`;
  } catch (error) {
    $("taught").textContent = error.message;
  } finally {
    $("rescore").disabled = false;
  }
}

// -- runs -----------------------------------------------------------------------------------------------------------
const runs = { list: [], words: [], sort: "train_frequency", down: true };

async function showRuns(params) {
  try {
    runs.list = (await api("/v1/runs")).runs;
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  const select = $("runs");
  select.hidden = !runs.list.length;
  if (!runs.list.length) {
    select.replaceChildren();
    $("run-summary").textContent = "No evaluation runs yet: evaluate the store on a labelled test set to see one.";
    $("run-words").replaceChildren();
    return;
  }
  select.replaceChildren(...runs.list.map((r) => el("option", { value: r.id },
    `run ${r.id}: ${r.method} on ${r.dataset}, F1 ${(100 * r.f1).toFixed(1)}`)));
  const wanted = params.get("run") || String(runs.list[runs.list.length - 1].id);
  select.value = wanted;
  const run = runs.list.find((r) => String(r.id) === select.value) || runs.list[runs.list.length - 1];
  $("run-summary").textContent = `P ${(100 * run.precision).toFixed(1)} · R ${(100 * run.recall).toFixed(1)} · ` +
    `F1 ${(100 * run.f1).toFixed(1)} · N+ ${run.n_plus} · ${number.format(run.n_images)} images`;
  runs.words = (await api(`/v1/runs/${run.id}/words`)).words;
  drawWords();
}

function drawWords() {
  const columns = [["word", "word"], ["train_frequency", "training images"], ["precision", "P"], ["recall", "R"],
    ["f1", "F1"]];
  const sorted = runs.words.slice().sort((a, b) => {
    const x = a[runs.sort] ?? -1, y = b[runs.sort] ?? -1;
    return (x < y ? -1 : x > y ? 1 : 0) * (runs.down ? -1 : 1);
  });
  const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(0));
  $("run-words").replaceChildren(
    el("thead", {}, el("tr", {}, ...columns.map(([key, label]) => el("th", {
      "aria-sort": runs.sort === key ? (runs.down ? "descending" : "ascending") : "none" },
    el("button", { type: "button", onclick: () => {
      runs.down = runs.sort === key ? !runs.down : key !== "word";
      runs.sort = key;
      drawWords();
    } }, label + (runs.sort === key ? (runs.down ? " ↓" : " ↑") : "")))))),
    el("tbody", {}, ...sorted.map((w) => el("tr", {}, el("td", {}, w.word), el("td", {}, number.format(w.train_frequency)),
      el("td", {}, pct(w.precision)), el("td", {}, pct(w.recall)),
      el("td", {}, pct(w.f1), el("span", { class: "f1", style: `width:${Math.round(60 * (w.f1 || 0))}px` }))))));
}

// -- wiring ---------------------------------------------------------------------------------------------------------
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = $("q").value.trim();
  if (q) go("search", { q, mode: $("mode").value });
});
$("order").addEventListener("change", () => {
  const { params } = where();
  params.set("order", $("order").value);
  go("photos", Object.fromEntries(params));
});
$("more").addEventListener("click", loadMore);
new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) loadMore(); })
  .observe($("sentinel"));
$("close").addEventListener("click", () => $("viewer").close());
$("viewer").addEventListener("close", () => remember(null));
$("prev").addEventListener("click", () => step(-1));
$("next").addEventListener("click", () => step(1));
$("undo").addEventListener("click", undoLast);
$("why").addEventListener("click", why);
$("similar").addEventListener("click", () => {
  const id = viewer.photo && viewer.photo.id;
  $("viewer").close();
  if (id) go("search", { like: id });
});
$("keep").addEventListener("click", keepTried);
$("add-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const tag = $("add-tag").value.trim(), photo = viewer.photo;
  if (tag && photo) correct(photo.id, photo.kind, tag, "add").then(() => { $("add-tag").value = ""; });
});
$("viewer").addEventListener("keydown", (event) => {
  if (typing(event)) return;
  if (event.key === "ArrowLeft") step(-1);
  else if (event.key === "ArrowRight") step(1);
  else if (event.key === "u") undoLast();
  else return;
  event.preventDefault();
});
document.addEventListener("keydown", (event) => {
  if ($("viewer").open || typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!$("view-review").hidden) reviewKey(event);
});
$("rescore").addEventListener("click", rescore);
$("runs").addEventListener("change", () => go("runs", { run: $("runs").value }));
$("try").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => { if ($("file").files[0]) tryFile($("file").files[0]); $("file").value = ""; });
let dragging = 0;
document.addEventListener("dragenter", (event) => { event.preventDefault(); dragging += 1; $("drop-hint").hidden = false; });
document.addEventListener("dragleave", () => { dragging = Math.max(0, dragging - 1); if (!dragging) $("drop-hint").hidden = true; });
document.addEventListener("dragover", (event) => event.preventDefault());
document.addEventListener("drop", (event) => {
  event.preventDefault();
  dragging = 0;
  $("drop-hint").hidden = true;
  const file = event.dataTransfer.files[0];
  if (file) tryFile(file);
});

api("/v1/tags").then(({ tags }) => {
  $("vocabulary").replaceChildren(...tags.map((t) => el("option", { value: t.tag })));
}).catch(() => {});
if (matchMedia("(max-width: 760px)").matches) $("filters").open = false;  // a phone: the photos first
window.addEventListener("hashchange", route);
route();
