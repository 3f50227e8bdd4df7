// The datasets pages: the list of stored versions with the upload panel (/datasets), and one version's report,
// stats, gallery and refinement (/datasets/NAME/VERSION). The DOM is built with textContent only: file names and
// messages come from users' files.
"use strict";

// OS clutter a chosen folder may hold; it is no part of a dataset, so it is not sent at all. (A README.md or a
// data.yaml is sent: the server ignores what is neither an image nor a label, and a format's own files matter.)
const CLUTTER = /(^|\/)(\.[^/]*|__MACOSX|Thumbs\.db|desktop\.ini)(\/|$)/i;

// Every file chosen for one upload, however it was chosen (files, a folder, zips, dropped), in ONE map keyed by
// its relative path: choosing the same file again lists and sends it once, and another file at a path already
// listed replaces the earlier one (the server stores each path once). A file is the same file when its name,
// size and modification time agree: "choose files" gives only its name, "choose a folder" its path in the folder,
// so the same scan chosen both ways is listed once, at its place in the folder (where its label is found).
// Pure logic, tested under node.
class FileSelection {
  constructor() {
    this.entries = new Map(); // relative path -> File
  }

  // Add one file under its relative path; says what happened: "added", "same" (already listed), "replaced"
  // (another file at that path, now this one) or "skipped" (OS clutter).
  add(file, relativePath) {
    const path = String(relativePath || file.name).replace(/^\/+/, "");
    if (CLUTTER.test(path)) return "skipped";
    const same = (other) => other.size === file.size && other.lastModified === file.lastModified;
    const listed = this.entries.get(path);
    if (listed && same(listed)) return "same";
    const name = path.split("/").pop();
    if (path === name) { // a bare name: the same file may be listed already inside a chosen folder
      for (const [otherPath, other] of this.entries) {
        if (otherPath.endsWith(`/${name}`) && same(other)) return "same";
      }
    } else { // a path in a folder: the same file chosen before by its bare name moves here
      const bare = this.entries.get(name);
      if (bare && same(bare) && !listed) {
        this.entries.delete(name);
        this.entries.set(path, file);
        return "same";
      }
    }
    this.entries.set(path, file);
    return listed ? "replaced" : "added";
  }

  // Add many [file, relativePath] pairs; the count of each outcome.
  addAll(pairs) {
    const outcome = { added: 0, same: 0, replaced: 0, skipped: 0 };
    for (const [file, path] of pairs) outcome[this.add(file, path)] += 1;
    return outcome;
  }

  get count() {
    return this.entries.size;
  }

  get bytes() {
    let total = 0;
    for (const file of this.entries.values()) total += file.size;
    return total;
  }

  // [path, file] pairs, sorted by path: what the upload sends, once each.
  list() {
    return [...this.entries.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  }

  clear() {
    this.entries.clear();
  }
}

function formatBytes(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// ---- DOM helpers -------------------------------------------------------------------------------------------------

function row(cells, attributes = {}) {
  const tr = cardmetry.element("tr", null, attributes);
  for (const cell of cells) {
    if (cell instanceof Node) {
      const td = cardmetry.element("td");
      td.appendChild(cell);
      tr.appendChild(td);
    } else {
      tr.appendChild(cardmetry.element("td", cell === null || cell === undefined ? "" : cell));
    }
  }
  return tr;
}

function versionHref(name, version) {
  return `/datasets/${encodeURIComponent(name)}/${encodeURIComponent(version)}`;
}

function versionApi(name, version) {
  return `/api/datasets/${encodeURIComponent(name)}/${encodeURIComponent(version)}`;
}

function link(text, href, attributes = {}) {
  return cardmetry.element("a", text, { href, ...attributes });
}

// Fill a problems table body: file, line, severity, message; at most `limit` rows, then a line saying how many more.
function fillProblems(body, problems, limit = 500) {
  body.replaceChildren();
  for (const problem of problems.slice(0, limit)) {
    const tr = row([problem.file, problem.line, problem.severity, problem.message], { "data-testid": "problem" });
    tr.classList.add(problem.severity === "error" ? "error" : "warning");
    body.appendChild(tr);
  }
  if (problems.length > limit) {
    body.appendChild(row([`… and ${problems.length - limit} more`, "", "", ""]));
  }
}

// ---- /datasets: the versions and the upload panel --------------------------------------------------------------

const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

async function loadVersions() {
  const body = document.getElementById("versions-body");
  const empty = document.getElementById("versions-empty");
  let versions;
  try {
    versions = await cardmetry.api("/api/datasets");
  } catch (error) {
    cardmetry.show(`The datasets could not be listed: ${error.message}`);
    return;
  }
  body.replaceChildren();
  for (const v of versions) {
    const tr = row(
      [link(v.name, versionHref(v.name, v.version), { "data-testid": "version-link" }), v.version, v.images,
        v.trainable ? "yes" : "no", v.problems, v.format, cardmetry.when(v.created)],
      { "data-testid": "version-row", "data-name": v.name, "data-version": v.version },
    );
    tr.children[3].className = v.trainable ? "ok" : "bad";
    for (const index of [2, 4]) tr.children[index].className = "num";
    body.appendChild(tr);
  }
  empty.hidden = versions.length > 0;
}

function datasetsPage() {
  const selection = new FileSelection();
  const ids = (id) => document.getElementById(id);
  const nameInput = ids("dataset-name");
  const uploadButton = ids("upload-button");
  const clearButton = ids("upload-clear");
  const note = ids("upload-note");
  const progress = ids("upload-progress");
  const progressText = ids("upload-progress-text");
  let uploading = false;

  function refresh() {
    ids("upload-count").textContent = String(selection.count);
    ids("upload-size").textContent = formatBytes(selection.bytes);
    const list = ids("upload-list");
    list.replaceChildren();
    const shown = selection.list();
    for (const [path, file] of shown.slice(0, 200)) {
      list.appendChild(row([path, formatBytes(file.size)], { "data-testid": "chosen-file" }));
    }
    if (shown.length > 200) list.appendChild(row([`… and ${shown.length - 200} more`, ""]));
    ids("upload-chosen").hidden = shown.length === 0; // no header over an empty list
    const nameOk = NAME_PATTERN.test(nameInput.value);
    ids("dataset-name-hint").hidden = nameOk || nameInput.value === "";
    uploadButton.disabled = uploading || selection.count === 0 || !nameOk;
    clearButton.disabled = uploading || selection.count === 0;
  }

  function take(pairs) {
    const outcome = selection.addAll(pairs);
    const parts = [`${outcome.added} added`];
    if (outcome.same) parts.push(`${outcome.same} already listed (counted once)`);
    if (outcome.replaced) parts.push(`${outcome.replaced} replaced by the file chosen last at the same path`);
    if (outcome.skipped) parts.push(`${outcome.skipped} system files skipped (.DS_Store and the like)`);
    note.textContent = parts.join("; ");
    refresh();
  }

  // Each input's handler is bound once, here; the input is then emptied so choosing the same files again still
  // fires `change` (and the selection, not the input, decides what is listed).
  function bindInput(id, pathOf) {
    const input = ids(id);
    input.addEventListener("change", () => {
      take([...input.files].map((file) => [file, pathOf(file)]));
      input.value = "";
    });
  }
  bindInput("choose-files", (file) => file.name);
  bindInput("choose-folder", (file) => file.webkitRelativePath || file.name);
  bindInput("choose-zips", (file) => file.name);

  const dropZone = ids("drop-zone");
  dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropZone.classList.add("over");
  });
  dropZone.addEventListener("dragleave", () => dropZone.classList.remove("over"));
  dropZone.addEventListener("drop", async (event) => {
    event.preventDefault();
    dropZone.classList.remove("over");
    try {
      take(await droppedFiles(event.dataTransfer));
    } catch (error) {
      cardmetry.show(`The dropped files could not be read: ${error.message}`);
    }
  });
  nameInput.addEventListener("input", refresh);
  clearButton.addEventListener("click", () => {
    selection.clear();
    note.textContent = "";
    refresh();
  });

  uploadButton.addEventListener("click", async () => {
    const name = nameInput.value;
    const form = new FormData();
    for (const [path, file] of selection.list()) form.append("files", file, path);
    uploading = true;
    refresh();
    cardmetry.show("");
    ids("upload-result").hidden = true;
    progress.hidden = false;
    progress.value = 0;
    progressText.textContent = "sending…";
    try {
      const result = await cardmetry.upload(`/api/datasets/${encodeURIComponent(name)}/upload`, form, (sent, total) => {
        progress.max = total;
        progress.value = sent;
        progressText.textContent = sent < total ? `${formatBytes(sent)} of ${formatBytes(total)} sent`
          : "all sent; the server is checking and storing the files…";
      });
      progressText.textContent = "done";
      showUploadResult(result);
      selection.clear();
      note.textContent = "";
      cardmetry.show(`Stored ${result.name}/${result.version}.`, true);
      await loadVersions();
    } catch (error) {
      progressText.textContent = "failed";
      cardmetry.show(`The upload failed: ${error.message}`);
    } finally {
      uploading = false;
      refresh();
    }
  });

  refresh();
  loadVersions();
}

function showUploadResult(result) {
  const ids = (id) => document.getElementById(id);
  ids("result-files").textContent = String(result.files);
  ids("result-images").textContent = String(result.images);
  ids("result-new-images").textContent = String(result.new_images);
  ids("result-duplicates").textContent = String(result.duplicates.length);
  const trainable = ids("result-trainable");
  trainable.textContent = result.trainable ? "yes" : "no: fix the errors below first";
  trainable.className = result.trainable ? "ok" : "bad";
  const duplicates = ids("result-duplicates-list");
  duplicates.replaceChildren();
  for (const d of result.duplicates) {
    duplicates.appendChild(cardmetry.element("li", `${d.duplicate} has the same content as ${d.kept} (stored once)`));
  }
  fillProblems(ids("result-problems-body"), result.problems);
  ids("result-problems").hidden = result.problems.length === 0;
  const versionLink = ids("upload-version-link");
  versionLink.href = versionHref(result.name, result.version);
  versionLink.textContent = `${result.name}/${result.version}`;
  ids("upload-result").hidden = false;
}

// Files dropped on the zone, with their paths inside dropped folders. The entries must all be taken from the
// DataTransfer before the first await: it is emptied when the event handler yields.
async function droppedFiles(transfer) {
  const entries = [...(transfer.items || [])]
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter((entry) => entry);
  if (entries.length === 0) return [...transfer.files].map((file) => [file, file.name]);
  const pairs = [];
  for (const entry of entries) await walkEntry(entry, pairs);
  return pairs;
}

async function walkEntry(entry, pairs) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    pairs.push([file, entry.fullPath.replace(/^\/+/, "")]);
    return;
  }
  const reader = entry.createReader();
  for (;;) { // readEntries gives a folder's entries in batches until an empty one
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) await walkEntry(child, pairs);
  }
}

// ---- /datasets/NAME/VERSION: report, stats, gallery, refinement ------------------------------------------------

function datasetPage(view) {
  const { name, version } = view.dataset;
  const pageSize = Number(view.dataset.pageSize);
  const sizes = { thumbnail: Number(view.dataset.thumbnailSize), full: Number(view.dataset.fullSize) };
  let refinable = false; // known once the report says whether the version holds any box label
  let offset = 0;
  let total = 0;

  async function loadReport() {
    try {
      const report = await cardmetry.api(versionApi(name, version));
      showReport(report);
      refinable = showRefineOffer(report.stats);
    } catch (error) {
      cardmetry.show(`The report could not be loaded: ${error.message}`);
    }
  }

  async function loadGallery() {
    let page;
    try {
      page = await cardmetry.api(`${versionApi(name, version)}/images?offset=${offset}&limit=${pageSize}`);
    } catch (error) {
      cardmetry.show(`The gallery could not be loaded: ${error.message}`);
      return;
    }
    total = page.total;
    const gallery = document.getElementById("gallery");
    gallery.replaceChildren();
    for (const image of page.images) gallery.appendChild(galleryItem(name, version, image, sizes));
    const last = Math.min(offset + page.images.length, total);
    document.getElementById("gallery-range").textContent = total ? `${offset + 1}–${last} of ${total}` : "no images";
    document.getElementById("gallery-prev").disabled = offset === 0;
    document.getElementById("gallery-next").disabled = last >= total;
  }

  document.getElementById("gallery-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - pageSize);
    loadGallery();
  });
  document.getElementById("gallery-next").addEventListener("click", () => {
    if (offset + pageSize < total) offset += pageSize;
    loadGallery();
  });

  const refineButton = document.getElementById("refine-button");
  refineButton.addEventListener("click", async () => {
    refineButton.disabled = true;
    const status = document.getElementById("refine-status");
    status.textContent = "refining every box label… (this reads every image)";
    try {
      const result = await cardmetry.api(`${versionApi(name, version)}/refine`, { method: "POST" });
      status.textContent = "";
      showRefineResult(result);
    } catch (error) {
      status.textContent = "";
      cardmetry.show(`Refinement failed: ${error.message}`);
    } finally {
      refineButton.disabled = !refinable;
    }
  });

  loadReport();
  loadGallery();
}

// One picture of the gallery. `sizes` are the page's two thumbnail sizes (the server draws only a few): the
// picture shown, and the larger one opened by a click.
function galleryItem(name, version, image, sizes) {
  const source = `${versionApi(name, version)}/images/${image.sha256}.jpg`;
  const figure = cardmetry.element("figure", null, { "data-testid": "gallery-item", "data-sha256": image.sha256 });
  const full = link("", `${source}?size=${sizes.full}`, { target: "_blank", rel: "noopener" });
  const picture = { src: `${source}?size=${sizes.thumbnail}`, alt: image.name, loading: "lazy" };
  full.appendChild(cardmetry.element("img", null, picture));
  figure.appendChild(full);
  const caption = cardmetry.element("figcaption");
  caption.appendChild(cardmetry.element("span", image.name, { class: "name", title: image.name }));
  const labels = `${image.instances} label${image.instances === 1 ? "" : "s"}`;
  const boxes = image.boxes ? ` (${image.boxes} box${image.boxes === 1 ? "" : "es"})` : "";
  const bytes = image.bytes === null ? "" : ` · ${formatBytes(image.bytes)}`;
  const figures = `${image.width}×${image.height}${bytes} · ${labels}${boxes}`;
  caption.appendChild(cardmetry.element("span", figures, { class: "hint" }));
  figure.appendChild(caption);
  return figure;
}

function showReport(report) {
  const ids = (id) => document.getElementById(id);
  ids("report-format").textContent = report.format || "—";
  ids("report-images").textContent = String(report.images);
  ids("report-created").textContent = cardmetry.when(report.created);
  const trainable = ids("report-trainable");
  trainable.textContent = report.trainable ? "yes" : "no: it has errors (it can be inspected, not trained on)";
  trainable.className = report.trainable ? "ok" : "bad";
  ids("report-errors").textContent = String(report.errors);
  ids("report-warnings").textContent = String(report.warnings);
  ids("report-classes").textContent = report.classes.map((c, i) => `${i}: ${c}`).join(", ");
  const derived = ids("report-derived");
  derived.replaceChildren();
  if (report.derived_from) {
    derived.appendChild(document.createTextNode("refined from "));
    derived.appendChild(link(`${report.name}/${report.derived_from.version}`,
      versionHref(report.name, report.derived_from.version), { id: "report-derived-link" }));
  }
  ids("report-derived-row").hidden = !report.derived_from;
  fillProblems(ids("problems-body"), report.problems);
  ids("problems-table").hidden = report.problems.length === 0;
  ids("problems-empty").hidden = report.problems.length > 0;
  showStats(report.stats);
}

// Whether refinement is worth offering: only a version holding box labels has anything to refine (the server
// answers 409 otherwise). Pure logic, tested under node.
function refineOffer(stats) {
  const boxes = Number(stats && stats.box_labels) || 0;
  return { enabled: boxes > 0, boxes };
}

// Enable the refine button, or disable it with the reason shown; says whether it is enabled.
function showRefineOffer(stats) {
  const offer = refineOffer(stats);
  document.getElementById("refine-button").disabled = !offer.enabled;
  document.getElementById("refine-none").hidden = offer.enabled;
  return offer.enabled;
}

function showStats(stats) {
  const body = document.getElementById("stats-body");
  body.replaceChildren();
  const add = (label, value) => body.appendChild(row([label, value], { "data-testid": "stat" }));
  add("images", stats.images);
  add("labels", stats.instances);
  for (const [name, count] of Object.entries(stats.instances_per_class)) add(`labels of class ${name}`, count);
  add("box labels", stats.box_labels);
  add("polygon labels", stats.polygon_labels);
  const size = stats.image_size;
  add("image width (min / median / max)", `${size.width.min} / ${size.width.median} / ${size.width.max} px`);
  add("image height (min / median / max)", `${size.height.min} / ${size.height.median} / ${size.height.max} px`);
  const borders = stats.borders_mm;
  if (borders) {
    add("images with both borders as polygons", borders.images);
    for (const side of ["left", "right", "top", "bottom"]) {
      const b = borders[side];
      add(`${side} border (mean, min–max)`, `${b.mean.toFixed(2)} mm, ${b.min.toFixed(2)}–${b.max.toFixed(2)} mm`);
    }
    const lr = borders.left_share_pct;
    const tb = borders.top_share_pct;
    add("left share (min / median / max)", `${lr.min.toFixed(1)} / ${lr.median.toFixed(1)} / ${lr.max.toFixed(1)} %`);
    add("top share (min / median / max)", `${tb.min.toFixed(1)} / ${tb.median.toFixed(1)} / ${tb.max.toFixed(1)} %`);
  } else {
    add("border widths", "need outer and graphic polygons (refine the boxes first)");
  }
}

function showRefineResult(result) {
  const ids = (id) => document.getElementById(id);
  const summary = result.new
    ? `Refined ${result.refined} of ${result.boxes} box labels into polygons; stored as a new version:`
    : `Nothing changed (${result.refined} of ${result.boxes} box labels refined): the version is`;
  ids("refine-summary").textContent = summary;
  const versionLink = ids("refine-version-link");
  versionLink.href = versionHref(result.name, result.version);
  versionLink.textContent = `${result.name}/${result.version}`;
  const body = ids("refusals-body");
  body.replaceChildren();
  for (const refusal of result.refusals) {
    body.appendChild(row([refusal.image, refusal.class, refusal.reason], { "data-testid": "refusal" }));
  }
  for (const bad of result.unreadable) {
    body.appendChild(row([bad.image, "", `unreadable: ${bad.reason}`], { "data-testid": "refusal" }));
  }
  ids("refusals-table").hidden = result.refusals.length + result.unreadable.length === 0;
  ids("refine-result").hidden = false;
}

// ---- start: once per page load ---------------------------------------------------------------------------------

if (typeof document !== "undefined") {
  const start = () => {
    if (document.body.dataset.datasetsBound) return; // the script included twice still binds every handler once
    document.body.dataset.datasetsBound = "yes";
    const view = document.getElementById("dataset-view");
    if (document.getElementById("upload-panel")) datasetsPage();
    else if (view) datasetPage(view);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
}

if (typeof module !== "undefined") module.exports = { FileSelection, formatBytes, CLUTTER, refineOffer };
