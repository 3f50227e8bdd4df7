// The train page: the start form (one run, or an outer and a graphic run at once), the table of runs, and a live
// panel (run.js) for every run that is queued or running, so two runs are watched side by side. A panel whose run
// has ended stops watching it (no socket, no timer) a few seconds after its worker is gone and keeps showing how
// it ended, with the Resume button where the API accepts it, until the user dismisses it or leaves the page.
"use strict";

(() => {
  const ACTIVE = new Set(["queued", "starting", "running"]);
  const TABLE_REFRESH_MS = 5000;
  const PANEL_CLOSE_MS = 5000; // how long an ended run's panel still listens (late log lines, the worker's exit)
  const form = document.getElementById("start-form");
  const backends = JSON.parse(document.getElementById("backends-data").textContent);
  const panels = new Map(); // run id -> {panel, handle}: its panel and the panel's watch handle

  // --- the form -----------------------------------------------------------------------------------------------
  function showVariants() {
    const backend = backends.find((b) => b.name === document.getElementById("backend").value);
    const select = document.getElementById("variant");
    select.replaceChildren();
    if (!backend) return;
    for (const [name, about] of Object.entries(backend.variants)) {
      const option = document.createElement("option");
      option.value = name;
      option.title = about;
      option.textContent = name === backend.default_variant ? `${name} (default)` : name;
      option.selected = name === backend.default_variant;
      select.append(option);
    }
    document.getElementById("backend-about").textContent = backend.available
      ? backend.description : `${backend.description} — unavailable: ${backend.unavailable}`;
  }

  // The settings as TrainConfig's fields: numbers as numbers, an empty optional field left out (its default).
  function settings() {
    const out = {};
    for (const input of form.querySelectorAll("[data-config]")) {
      const kind = input.dataset.kind;
      let value;
      if (kind === "bool") value = input.checked;
      else if (input.value === "") {
        if (input.dataset.optional) continue;
        value = kind === "choice" ? "" : null; // refused by the server, naming the field
      } else if (kind === "int" || kind === "float") value = Number(input.value);
      else value = input.value;
      const path = input.dataset.config.split(".");
      let target = out;
      for (const key of path.slice(0, -1)) target = target[key] = target[key] || {};
      target[path[path.length - 1]] = value;
    }
    return out;
  }

  function clearErrors() {
    for (const note of form.querySelectorAll(".field-error")) {
      note.hidden = true;
      note.textContent = "";
    }
    for (const input of form.querySelectorAll(".invalid")) input.classList.remove("invalid");
    const list = document.getElementById("form-errors");
    list.replaceChildren();
    list.hidden = true;
  }

  // A 422's {field, problem} list: each beside its field, and all of them in the list under the form.
  function showErrors(problems) {
    const list = document.getElementById("form-errors");
    for (const { field, problem } of problems) {
      const id = String(field).replace(/\./g, "-");
      const note = document.getElementById(`error-${id}`);
      const input = form.querySelector(`[data-config="${CSS.escape(String(field))}"]`);
      if (note) {
        note.textContent = problem;
        note.hidden = false;
      }
      if (input) input.classList.add("invalid");
      const item = document.createElement("li");
      item.textContent = `${field}: ${problem}`;
      list.append(item);
    }
    list.hidden = problems.length === 0;
  }

  async function post(body) {
    const response = await fetch("/api/runs", {
      method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    const answer = text ? JSON.parse(text) : null;
    if (response.ok) return { id: answer.id };
    if (response.status === 422 && answer && Array.isArray(answer.detail)) {
      return { problems: answer.detail.map((d) => ({ field: d.field ?? (d.loc || []).join("."), problem: d.problem ?? d.msg })) };
    }
    throw new Error(cardmetry.describe(answer, response));
  }

  async function start(roles) {
    clearErrors();
    cardmetry.show("");
    const buttons = [document.getElementById("start"), document.getElementById("start-pair")];
    buttons.forEach((b) => { b.disabled = true; });
    const started = [];
    try {
      for (const role of roles) {
        const body = settings();
        if (role) body.role = role;
        const answer = await post(body);
        if (answer.problems) {
          showErrors(answer.problems);
          cardmetry.show(`${role ? `the ${role} run was not started: ` : ""}the settings need fixing (see the form)`);
          break;
        }
        started.push(answer.id);
        addPanel(answer.id);
      }
      if (started.length) cardmetry.show(`started ${started.join(" and ")}`, true);
    } catch (error) {
      cardmetry.show(error.message);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      refreshTable();
    }
  }

  // --- live panels --------------------------------------------------------------------------------------------
  // A panel for the run, unless one watches it already; a closed one (its run had ended, and now runs again after
  // a resume) is replaced by a new one.
  function addPanel(runId) {
    const existing = panels.get(runId);
    if (existing && !existing.handle.closed) return;
    const panel = document.getElementById("run-panel").content.firstElementChild.cloneNode(true);
    panel.dataset.runId = runId;
    panel.dataset.watching = "true";
    const link = panel.querySelector('[data-field="link"]');
    link.href = `/runs/${encodeURIComponent(runId)}`;
    link.textContent = runId;
    panel.querySelector("[data-dismiss]").addEventListener("click", () => removePanel(runId));
    if (existing) existing.panel.replaceWith(panel);
    else document.getElementById("live-runs").prepend(panel);
    document.getElementById("no-live").hidden = true;
    const handle = cardmetry.runs.watch(runId, panel, {
      onChange: () => refreshTable(),
      afterAction: () => refreshTable(),
      closeWhenEnded: PANEL_CLOSE_MS,
      onClosed: () => {
        panel.dataset.watching = "false";
        panel.classList.add("closed");
        panel.querySelector("[data-dismiss]").hidden = false;
      },
    });
    panels.set(runId, { panel, handle });
  }

  function removePanel(runId) {
    const entry = panels.get(runId);
    if (!entry) return;
    entry.handle.close();
    entry.panel.remove();
    panels.delete(runId);
    document.getElementById("no-live").hidden = panels.size > 0;
  }

  // --- the runs table -----------------------------------------------------------------------------------------
  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function row(run) {
    const tr = document.createElement("tr");
    tr.dataset.runRow = run.id;
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = `/runs/${encodeURIComponent(run.id)}`;
    link.textContent = run.id;
    name.append(link);
    tr.append(
      name, cell(run.status, `state ${run.status}`), cell(run.role),
      cell(run.variant ? `${run.backend} / ${run.variant}` : run.backend), cell(String(run.epoch), "num"),
      cell(run.best_metric == null ? "" : run.best_metric.toFixed(4), "num"),
      cell(run.border_error_mm == null ? "" : run.border_error_mm.toFixed(3), "num"),
    );
    return tr;
  }

  let refreshing = null;
  let again = false;
  async function refreshTable() {
    if (refreshing) { again = true; return; } // one request at a time; a change meanwhile asks once more
    refreshing = (async () => {
      try {
        const runs = await cardmetry.api("/api/runs");
        const body = document.getElementById("runs-body");
        body.replaceChildren(...runs.map(row));
        if (!runs.length) {
          const empty = document.createElement("tr");
          empty.className = "empty";
          empty.append(cell("No runs yet.", "hint"));
          empty.firstChild.colSpan = 7;
          body.append(empty);
        }
        for (const run of runs) if (ACTIVE.has(run.status)) addPanel(run.id);
      } catch (error) {
        cardmetry.show(`the list of runs could not be read: ${error.message}`);
      }
    })();
    await refreshing;
    refreshing = null;
    if (again) { again = false; refreshTable(); }
  }

  showVariants(); // a reloaded page may come back with another backend selected than the one rendered
  document.getElementById("backend").addEventListener("change", showVariants);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start([null]);
  });
  document.getElementById("start-pair").addEventListener("click", () => start(["outer", "graphic"]));
  for (const runId of document.getElementById("live-runs").dataset.active.split(" ").filter(Boolean)) addPanel(runId);
  setInterval(refreshTable, TABLE_REFRESH_MS);
})();
