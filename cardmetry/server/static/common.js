// Shared by every page: JSON requests that turn an error answer into a readable message, uploads with progress,
// and the message box at the top of the page.
"use strict";

const cardmetry = {
  // Fetch JSON; a non-2xx answer throws an Error whose message is the server's own words (FastAPI's "detail",
  // which may be a list of {field, problem}).
  async api(path, options = {}) {
    const init = { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } };
    if (options.json !== undefined) {
      init.body = JSON.stringify(options.json);
      init.headers["Content-Type"] = "application/json";
      init.method = init.method || "POST";
    }
    const response = await fetch(path, init);
    const text = await response.text();
    const body = text ? JSON.parse(text) : null;
    if (!response.ok) throw new Error(cardmetry.describe(body, response));
    return body;
  },

  describe(body, response) {
    const detail = body && body.detail !== undefined ? body.detail : `${response.status} ${response.statusText}`;
    if (Array.isArray(detail)) {
      return detail.map((d) => (d.field ? `${d.field}: ${d.problem}` : d.msg || JSON.stringify(d))).join("\n");
    }
    return typeof detail === "string" ? detail : JSON.stringify(detail);
  },

  // POST a FormData with upload progress (fetch cannot report it): onProgress(sentBytes, totalBytes).
  upload(path, form, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", path);
      request.setRequestHeader("Accept", "application/json");
      request.upload.onprogress = (e) => onProgress && e.lengthComputable && onProgress(e.loaded, e.total);
      request.onload = () => {
        let body = null;
        try { body = request.responseText ? JSON.parse(request.responseText) : null; } catch (_) { body = null; }
        if (request.status >= 200 && request.status < 300) resolve(body);
        else reject(new Error(cardmetry.describe(body, { status: request.status, statusText: request.statusText })));
      };
      request.onerror = () => reject(new Error("the upload did not reach the server (connection lost)"));
      request.send(form);
    });
  },

  // A moment as every page writes it, whatever the browser's locale: "2026-11-29 11:25 UTC". Takes seconds since
  // 1970 (what the API sends as a number) or an ISO 8601 string; anything unreadable becomes "—".
  when(moment) {
    const date = typeof moment === "number" ? new Date(moment * 1000) : new Date(String(moment));
    if (moment === null || moment === undefined || Number.isNaN(date.getTime())) return "—";
    return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  },

  // An element with `text` as its text (never parsed as HTML) and `attributes` set.
  element(tag, text, attributes = {}) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  },

  // A number to `digits` places, or "–" for a figure that is not there (not measured, not yet known).
  number(value, digits = 3) {
    return typeof value === "number" ? value.toFixed(digits) : "–";
  },

  show(text, ok = false) {
    const box = document.getElementById("message");
    box.textContent = text;
    box.classList.toggle("ok", ok);
    box.hidden = !text;
  },
};
