// The Grade page: upload a card (front, and back if there is one), then show what the measurement says: the
// overlay, the 24 stations in opposing pairs with the worst pair highlighted, skew, grade ceilings, quality flags,
// which models measured it, and the JSON and customer report to download. A refusal shows its reason instead.
// Every piece of data goes into the page through textContent: nothing from the server is parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { answer: null, side: "front" };
  const PAIRS = {
    left_right: { first: "L", second: "R", count: 7, title: "Left / right" },
    top_bottom: { first: "T", second: "B", count: 5, title: "Top / bottom" },
  };


  const pair = (ratio) => `${ratio[0].toFixed(1)}/${ratio[1].toFixed(1)}`;
  const mm = (value) => value.toFixed(3);

  function setBusy(busy) {
    const button = $("measure");
    button.disabled = busy;
    button.textContent = busy ? "Measuring…" : "Measure";
    button.setAttribute("aria-busy", String(busy));
    $("grade-form").classList.toggle("busy", busy);
    if (!busy) $("grade-progress").hidden = true;
  }

  async function submit(event) {
    event.preventDefault();
    if (!$("front").files.length) {
      cardmetry.show("Choose an image of the card's front first.");
      return;
    }
    cardmetry.show("");
    setBusy(true);
    const progress = $("grade-progress");
    progress.hidden = false;
    progress.removeAttribute("value"); // indeterminate until the first progress event
    try {
      const answer = await cardmetry.upload("/api/grade", new FormData($("grade-form")), (sent, total) => {
        progress.value = sent / total;
        if (sent >= total) progress.removeAttribute("value"); // uploaded; now it is being measured
      });
      history.replaceState(null, "", `?id=${encodeURIComponent(answer.id)}`);
      show(answer, "front");
      loadRecent();
    } catch (error) {
      cardmetry.show(error.message);
    } finally {
      setBusy(false);
    }
  }

  function show(answer, side) {
    state.answer = answer;
    state.side = answer.sides[side] ? side : "front";
    const entry = answer.sides[state.side];
    const doc = entry.document;
    const result = $("result");
    result.hidden = false;
    result.dataset.side = state.side;
    result.dataset.status = doc.status;
    result.dataset.id = answer.id;
    for (const button of result.querySelectorAll(".side-tabs button")) {
      button.hidden = !answer.sides[button.dataset.side];
      button.setAttribute("aria-selected", String(button.dataset.side === state.side));
      button.classList.toggle("current", button.dataset.side === state.side);
    }
    $("models-used").textContent = describeModels(answer.models);
    $("overlay").src = entry.overlay;
    $("image-name").textContent = `${doc.side}: ${doc.image}`;
    const refused = doc.status !== "ok";
    $("refusal").hidden = !refused;
    $("refusal").textContent = refused ? `Not measured: ${doc.reason}` : "";
    $("measured").hidden = refused;
    if (!refused) {
      showCentering(doc);
      showSkew(doc.skew_deg);
      showGrades(doc.grades || {});
    }
    showFlags((doc.quality && doc.quality.flags) || []);
    $("download-json").href = `${entry.json}?download=1`;
    $("download-report").href = `${entry.report}?download=1`;
    $("open-report").href = entry.report;
  }

  function describeModels(models) {
    if (!models.outer && !models.graphic) return "Measured with the classical detector (no model chosen on the Models page).";
    const role = (run) => (run ? `model of run ${run}` : "classical detector");
    return `Measured with: card edge, ${role(models.outer)}; printed frame, ${role(models.graphic)}.`;
  }

  function showCentering(doc) {
    const centering = doc.centering;
    $("centering-summary").textContent =
      `Left/right ${pair(centering.left_right)} · top/bottom ${pair(centering.top_bottom)} (side means)`;
    const worstLR = centering.worst_left_right;
    const worstTB = centering.worst_top_bottom;
    $("worst-station").textContent =
      `Worst station: left/right ${pair(worstLR.ratio)} at L${worstLR.station}/R${worstLR.station}; ` +
      `top/bottom ${pair(worstTB.ratio)} at T${worstTB.station}/B${worstTB.station}.`;
    const points = Object.fromEntries(doc.points.map((p) => [p.id, p]));
    const body = $("centering").tBodies[0];
    body.replaceChildren();
    for (const [axis, layout] of Object.entries(PAIRS)) {
      const heading = cardmetry.element("tr", null, { class: "axis" });
      heading.append(cardmetry.element("th", `${layout.title}: ${pair(centering[axis])}`, { colspan: "7" }));
      body.append(heading);
      const worst = centering[`worst_${axis}`].station;
      for (let k = 1; k <= layout.count; k += 1) {
        const a = points[`${layout.first}${k}`];
        const b = points[`${layout.second}${k}`];
        const row = cardmetry.element("tr", null, { "data-station": `${a.id}-${b.id}`, "data-axis": axis });
        if (k === worst) {
          row.classList.add("worst");
          row.dataset.worst = "true";
          row.title = "the worst station on this axis: graders judge this pair";
        }
        const share = (100 * a.border_mm) / (a.border_mm + b.border_mm);
        row.append(
          cardmetry.element("td", a.id), cardmetry.element("td", mm(a.border_mm), { class: "num" }),
          cardmetry.element("td", mm(a.uncertainty_mm), { class: "num" }),
          cardmetry.element("td", b.id), cardmetry.element("td", mm(b.border_mm), { class: "num" }),
          cardmetry.element("td", mm(b.uncertainty_mm), { class: "num" }),
          cardmetry.element("td", `${share.toFixed(1)}/${(100 - share).toFixed(1)}`, { class: "num" }),
        );
        body.append(row);
      }
    }
  }

  function showSkew(skew) {
    const parts = ["frame", "left", "right", "top", "bottom"]
      .filter((edge) => skew[edge] !== undefined)
      .map((edge) => `${edge} ${skew[edge].toFixed(2)}°`);
    $("skew").textContent = `${parts.join(" · ")} (the printed frame against the card's edge; positive is clockwise)`;
  }

  function showGrades(grades) {
    const body = $("grades").tBodies[0];
    body.replaceChildren();
    for (const [grader, entry] of Object.entries(grades)) {
      const row = cardmetry.element("tr", null, { "data-grader": grader });
      let ceiling;
      if (entry.ceiling === null || entry.ceiling === undefined) {
        ceiling = "not graded"; // why (no primary source, no limits for this side) is in the note
      } else {
        ceiling = entry.label ? `${entry.ceiling} (${entry.label})` : String(entry.ceiling);
        if (entry.with_leeway && entry.with_leeway.ceiling !== entry.ceiling) {
          ceiling += `; ${entry.with_leeway.ceiling} with the grader's leeway`;
        }
      }
      const notes = [entry.note, entry.below_table ? "worse than every limit the table lists" : null].filter(Boolean);
      row.append(cardmetry.element("td", grader.toUpperCase()), cardmetry.element("td", ceiling, { class: "ceiling" }),
        cardmetry.element("td", entry.table), cardmetry.element("td", notes.join("; ")));
      body.append(row);
    }
  }

  function showFlags(flags) {
    const list = $("flags");
    list.replaceChildren();
    if (!flags.length) list.append(cardmetry.element("li", "none", { class: "hint" }));
    for (const flag of flags) list.append(cardmetry.element("li", flag, { class: "flag" }));
  }

  async function loadRecent() {
    const body = $("recent").tBodies[0];
    let listed;
    try {
      listed = await cardmetry.api("/api/measurements?limit=20");
    } catch (error) {
      cardmetry.show(`Recent gradings: ${error.message}`);
      return;
    }
    body.replaceChildren();
    $("no-recent").hidden = listed.length > 0;
    for (const meta of listed) {
      const row = cardmetry.element("tr", null, { "data-id": meta.id });
      const link = cardmetry.element("a", meta.name, { href: `?id=${encodeURIComponent(meta.id)}` });
      const name = cardmetry.element("td");
      name.append(link);
      const sides = meta.sides.map((side) => `${side} ${meta.status[side]}`).join(", ");
      const models = [meta.outer_model, meta.graphic_model].filter(Boolean).join(", ") || "classical";
      row.append(cardmetry.element("td", cardmetry.when(meta.created)), name, cardmetry.element("td", sides),
        cardmetry.element("td", models));
      body.append(row);
    }
  }

  async function openFromAddress() {
    const id = new URLSearchParams(location.search).get("id");
    if (!id) return;
    try {
      show(await cardmetry.api(`/api/measurements/${encodeURIComponent(id)}`), "front");
    } catch (error) {
      cardmetry.show(error.message);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("grade-form").addEventListener("submit", submit);
    for (const button of document.querySelectorAll("#result .side-tabs button")) {
      button.addEventListener("click", () => state.answer && show(state.answer, button.dataset.side));
    }
    openFromAddress();
    loadRecent();
  });
})();
