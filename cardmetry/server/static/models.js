// The Models page: each role's model versions, the one measuring uses, and a side-by-side comparison of two.
// Every value from the server reaches the page through textContent, never as HTML.
"use strict";

const ROLES = ["outer", "graphic"];
const picked = [];  // run ids ticked for comparison, oldest tick first (at most two)

function modelRow(model, role, active) {
  const inUse = active[role] === model.run_id;
  const row = cardmetry.element("tr", null, { "data-testid": "model-row", "data-run-id": model.run_id, "data-role": role });
  if (inUse) row.classList.add("in-use");

  const pick = cardmetry.element("input", null, { type: "checkbox", "data-testid": "compare-pick", "data-run-id": model.run_id,
    "aria-label": `compare ${model.run_id}` });
  pick.checked = picked.includes(model.run_id);
  pick.addEventListener("change", () => togglePick(model.run_id, pick.checked));
  row.appendChild(cardmetry.element("td")).append(pick);

  const link = cardmetry.element("a", model.run_id, { href: `/runs/${encodeURIComponent(model.run_id)}` });
  const version = row.appendChild(cardmetry.element("td"));
  version.append(link);
  if (model.role === "both") version.append(cardmetry.element("span", " (both roles)", { class: "hint" }));
  row.append(cardmetry.element("td", model.variant ? `${model.backend} / ${model.variant}` : model.backend));
  row.append(cardmetry.element("td", model.dataset));
  row.append(cardmetry.element("td", model.epochs_finished, { class: "num" }));
  for (const key of ["map50", "precision", "recall"]) {
    row.append(cardmetry.element("td", cardmetry.number(model[key]), { class: "num", "data-field": key }));
  }
  row.append(cardmetry.element("td", cardmetry.number(model.border_error_mm, 4), { class: "num", "data-field": "border_error_mm" }));
  row.append(cardmetry.element("td", cardmetry.when(model.created)));

  const cell = row.appendChild(cardmetry.element("td"));
  if (inUse) {
    cell.append(cardmetry.element("b", "in use", { "data-testid": "in-use" }));
  } else {
    const use = cardmetry.element("button", "Use for measuring", { type: "button", class: "secondary", "data-testid": "use-model",
      "data-run-id": model.run_id, "data-role": role });
    use.addEventListener("click", () => choose(role, model.run_id));
    cell.append(use);
  }
  return row;
}

async function load() {
  try {
    const [models, active] = await Promise.all([cardmetry.api("/api/models"), cardmetry.api("/api/models/active")]);
    for (const role of ROLES) {
      const mine = models.filter((m) => m.role === role || m.role === "both");
      document.getElementById(`models-${role}-rows`).replaceChildren(...mine.map((m) => modelRow(m, role, active)));
      document.getElementById(`models-${role}-empty`).hidden = mine.length > 0;
      document.getElementById(`active-${role}`).textContent = active[role] || "classical only";
      document.getElementById(`classical-${role}`).disabled = !active[role];
    }
    const known = new Set(models.map((m) => m.run_id));
    for (let i = picked.length - 1; i >= 0; i -= 1) if (!known.has(picked[i])) picked.splice(i, 1);
    showPicked();
  } catch (error) {
    cardmetry.show(`Could not load the models: ${error.message}`);
  }
}

async function choose(role, runId) {
  try {
    await cardmetry.api("/api/models/active", { method: "PUT", json: { role, run_id: runId } });
    cardmetry.show(runId ? `Measuring now uses ${runId} for the ${role} border.`
      : `Measuring now finds the ${role} border with the classical detector alone.`, true);
  } catch (error) {
    cardmetry.show(error.message);
  }
  await load();
}

function togglePick(runId, on) {
  const at = picked.indexOf(runId);
  if (on && at < 0) {
    picked.push(runId);
    if (picked.length > 2) picked.shift();  // a third tick replaces the oldest
  } else if (!on && at >= 0) {
    picked.splice(at, 1);
  }
  for (const box of document.querySelectorAll("[data-testid=compare-pick]")) {
    box.checked = picked.includes(box.dataset.runId);  // a model of both roles has a box in each table
  }
  showPicked();
}

function showPicked() {
  const text = picked.length === 2 ? `${picked[0]} against ${picked[1]}`
    : picked.length === 1 ? `${picked[0]} against… (tick one more)` : "Tick two models to compare.";
  document.getElementById("compare-picked").textContent = text;
  document.getElementById("compare").disabled = picked.length !== 2;
}

async function compare() {
  const [a, b] = picked;
  try {
    const result = await cardmetry.api(`/api/models/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    document.getElementById("comparison-a").textContent = a;
    document.getElementById("comparison-b").textContent = b;
    const rows = result.metrics.map((m) => {
      const row = cardmetry.element("tr", null, { "data-testid": "comparison-row", "data-metric": m.metric });
      row.append(cardmetry.element("td", m.metric));
      row.append(cardmetry.element("td", cardmetry.number(m.a, 4), { class: "num" }));
      row.append(cardmetry.element("td", cardmetry.number(m.b, 4), { class: "num" }));
      const judged = m.higher_is_better !== null && typeof m.a === "number" && typeof m.b === "number";
      const better = m.better === "a" ? a : m.better === "b" ? b : judged ? "equal" : "–";
      row.append(cardmetry.element("td", better, { "data-field": "better" }));
      return row;
    });
    document.getElementById("comparison-rows").replaceChildren(...rows);
    document.getElementById("comparison").hidden = false;
  } catch (error) {
    cardmetry.show(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const role of ROLES) {
    document.getElementById(`classical-${role}`).addEventListener("click", () => choose(role, null));
  }
  document.getElementById("compare").addEventListener("click", compare);
  load();
});
