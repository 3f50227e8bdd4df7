// Watching a training run live, for the run page and for each panel of the train page.
//
// A RunWatcher holds one WebSocket on /ws/runs/{id}?after=<last seq seen>. The server replays what the page has
// not seen, then streams new events, with a ping when quiet. When the socket closes, or nothing (not even a ping)
// arrived for 40 s, the watcher reconnects after 0.5 s, doubling to 5 s: it first fetches /api/runs/{id} (the
// run's state as the server sees it now), then opens a socket that continues after the last seq, and drops any
// event it has already seen. Once the run has ended (a terminal event, and nothing after it for a moment) the
// socket is closed and the badge says "ended"; a summary that shows the run going again (a resume) opens it again.
// A RunModel folds the summary and the events into what is shown; a RunView draws it. Nothing is guessed: the state
// comes from the events and the summary, and progress moves only with batch and epoch events.
//
// The run page also shows the tail of the run's log.txt (GET /api/runs/{id}/log), asked for every few seconds
// while the run is active and once after it ended. Every `log` event is a line of that file too (the worker writes
// the line, then the event), so the file is what is shown, and a log event is added below it only while the file
// read has not caught up with it.
"use strict";

(() => {
  const settings = {
    firstRetryMs: 500, maxRetryMs: 5000, silenceMs: 40000, watchdogMs: 2000,
    endQuietMs: 300, // a terminal event with nothing after it for this long ends the watching (a replay may go on)
    logPollMs: 3000, // how often the run page asks for the log file's tail while the run is active
    renderDelayMs: 60,
  };
  const TERMINAL = new Set(["succeeded", "failed", "stopped", "cancelled"]);
  const ACTIVE = new Set(["queued", "starting", "running"]);
  const FATAL_CLOSE_CODES = new Set([4401, 4403, 4404]); // no token, another origin, no such run: retrying won't help
  const LOG_LINES = 300;
  const BATCH_POINTS = 3000; // per-batch loss points kept for the chart
  const COLOURS = ["#1f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4"];

  class RunWatcher {
    // handlers: summary(detail), event(event), connection(status, reason).
    constructor(runId, handlers) {
      this.runId = runId;
      this.handlers = handlers;
      this.after = 0; // the last seq handed on
      this.socket = null;
      this.generation = 0; // a socket's handlers act only while it is the current one
      this.attempt = 0; // likewise for a reconnect waiting on its summary
      this.retryMs = settings.firstRetryMs;
      this.retryTimer = null;
      this.watchdog = null;
      this.lastHeard = Date.now();
      this.ended = false; // the run ended: no socket until a summary shows it going again
      this.closed = false; // for good: nothing more is asked or handed on
    }

    get stopped() {
      return this.ended || this.closed;
    }

    start() {
      if (this.closed) return;
      this.ended = false;
      if (this.watchdog === null) this.watchdog = setInterval(() => this.checkSilence(), settings.watchdogMs);
      this.handlers.connection("connecting");
      this.reconnect();
    }

    async reconnect() {
      if (this.stopped) return;
      const attempt = ++this.attempt;
      try {
        await this.refresh();
      } catch (error) {
        if (attempt !== this.attempt || this.stopped) return;
        this.handlers.connection("reconnecting", error.message);
        this.scheduleRetry();
        return;
      }
      if (attempt === this.attempt) this.connect(); // else a newer reconnect (after an end and a resume) goes on
    }

    // The summary is still wanted after the run ended (the buttons follow the worker's exit), not once closed.
    async refresh() {
      const detail = await cardmetry.api(`/api/runs/${encodeURIComponent(this.runId)}`);
      if (!this.closed) this.handlers.summary(detail);
      return detail;
    }

    connect() {
      if (this.stopped) return;
      const generation = ++this.generation;
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      const address = `${scheme}://${location.host}/ws/runs/${encodeURIComponent(this.runId)}?after=${this.after}`;
      const socket = new WebSocket(address);
      this.socket = socket;
      this.lastHeard = Date.now();
      const current = () => generation === this.generation;
      socket.onopen = () => {
        if (!current()) return;
        this.retryMs = settings.firstRetryMs;
        this.handlers.connection("live");
      };
      socket.onmessage = (message) => {
        if (!current()) return;
        this.lastHeard = Date.now();
        this.receive(JSON.parse(message.data));
      };
      socket.onclose = (closing) => {
        if (!current()) return;
        this.socket = null;
        if (FATAL_CLOSE_CODES.has(closing.code)) {
          this.handlers.connection("closed", closing.reason || `closed (${closing.code})`);
          return;
        }
        this.scheduleRetry();
      };
    }

    receive(event) {
      if (event.type === "ping" || typeof event.seq !== "number") return;
      if (event.seq <= this.after) return; // already seen (a replay that overlaps what arrived before)
      this.after = event.seq;
      this.handlers.event(event);
    }

    scheduleRetry() {
      if (this.stopped || this.retryTimer !== null) return;
      this.handlers.connection("reconnecting");
      const delay = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, settings.maxRetryMs);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.reconnect();
      }, delay);
    }

    // A socket that has heard nothing for this long is dead even if the browser has not noticed (a proxy or a
    // sleeping laptop can leave it half open): give it up and reconnect.
    checkSilence() {
      if (this.socket !== null && Date.now() - this.lastHeard > settings.silenceMs) this.drop();
    }

    // Forget the current socket (its late events are ignored) and reconnect.
    drop() {
      this.detach();
      this.scheduleRetry();
    }

    detach() {
      const socket = this.socket;
      this.socket = null;
      this.generation += 1;
      if (socket !== null) {
        try { socket.close(); } catch (_) { /* closing a socket that never opened */ }
      }
    }

    stopTimers() {
      clearInterval(this.watchdog);
      this.watchdog = null;
      if (this.retryTimer !== null) clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.attempt += 1; // a reconnect waiting on its summary opens no socket
    }

    // The run has ended: nothing more will come, so hold no socket and no timer. start() watches it again.
    finish() {
      if (this.stopped) return;
      this.ended = true;
      this.stopTimers();
      this.detach();
      this.handlers.connection("ended");
    }

    close() {
      this.closed = true;
      this.stopTimers();
      this.detach();
    }
  }

  // What the page knows about a run: the latest summary, and everything the events said since.
  class RunModel {
    constructor(runId) {
      this.runId = runId;
      this.status = "created";
      this.actions = { stop: false, cancel: false, resume: false };
      this.lastSeq = 0;
      this.epochs = null; this.batches = null; this.epoch = null; this.batch = null;
      this.step = null; this.totalSteps = null;
      this.etaS = null; this.etaAt = null; // seconds left, as of etaAt (ms)
      this.phase = "";
      this.lastEventAt = null;
      this.epochEnds = new Map(); // epoch -> its epoch_end event (a repeated epoch replaces the earlier one)
      this.batchLosses = []; // {x: fractional epoch, y: total loss}
      this.logEvents = []; // {seq, time, level, message, end}: the log events and the terminal events
      this.fileLines = null; // the log file's tail, as last read (null: not read yet)
      this.fileSeq = 0; // the last seq this page had applied when that read was asked for
      this.borderEvalImages = null; // from the config: 0 means the border error is never measured
      this.failure = null; // {error, lines}
      this.failedSeq = null;
    }

    // The server's view of the run. Taken only when it has seen every event this page has: a summary computed
    // before the last event arrived here would turn the state back.
    applySummary(detail) {
      if (detail.config && this.epochs === null) this.epochs = detail.config.epochs;
      if (detail.config && typeof detail.config.border_eval_images === "number") {
        this.borderEvalImages = detail.config.border_eval_images;
      }
      if (typeof detail.last_seq === "number" && detail.last_seq < this.lastSeq) return false;
      this.status = detail.status;
      this.actions = { ...detail.actions };
      return true;
    }

    apply(event) {
      this.lastSeq = event.seq;
      this.lastEventAt = event.time * 1000;
      const handler = this[`on_${event.type}`];
      if (handler) handler.call(this, event);
      else if (TERMINAL.has(event.type)) this.onTerminal(event);
    }

    on_run_started(e) {
      this.status = "running";
      this.actions = { stop: true, cancel: true, resume: false };
      this.failure = null;
      if (e.epochs) this.epochs = e.epochs;
      if (e.batches_per_epoch) this.batches = e.batches_per_epoch;
      this.totalSteps = e.total_steps || null;
      this.phase = e.resumed ? "resumed: loading the checkpoint" : "started: building the model";
    }

    on_epoch_started(e) {
      this.epoch = e.epoch;
      if (e.epochs) this.epochs = e.epochs;
      if (e.batches) this.batches = e.batches;
      this.batch = (e.first_batch || 1) - 1;
      if (typeof e.step === "number") this.step = e.step;
      this.phase = `epoch ${e.epoch} started`;
    }

    on_batch(e) {
      this.epoch = e.epoch;
      this.batch = e.batch;
      if (e.batches) this.batches = e.batches;
      if (typeof e.step === "number") this.step = e.step;
      if (typeof e.eta_s === "number") { this.etaS = e.eta_s; this.etaAt = e.time * 1000; }
      const values = Object.values(e.losses || {}).filter((v) => typeof v === "number");
      if (values.length) {
        const x = e.epoch - 1 + (this.batches ? e.batch / this.batches : 0);
        this.batchLosses.push({ x, y: values.reduce((a, b) => a + b, 0) });
        if (this.batchLosses.length > BATCH_POINTS) this.batchLosses.splice(0, this.batchLosses.length - BATCH_POINTS);
      }
      this.phase = "";
    }

    on_epoch_end(e) {
      this.epochEnds.set(e.epoch, e);
      this.epoch = e.epoch;
      if (e.epochs) this.epochs = e.epochs;
      this.batch = this.batches;
      if (typeof e.step === "number") this.step = e.step;
      if (typeof e.eta_s === "number") { this.etaS = e.eta_s; this.etaAt = e.time * 1000; }
      this.phase = "";
    }

    on_log(e) {
      this.addLog(e, (e.level || "info").toUpperCase(), String(e.message), false);
    }

    onTerminal(e) {
      this.status = e.type;
      // Resume waits for the server's word: until the worker has exited, the API refuses it.
      this.actions = { stop: false, cancel: false, resume: false };
      this.etaS = null;
      this.phase = "";
      if (e.type === "failed") {
        this.failure = { error: e.error || "failed", lines: e.log_tail || [] };
        this.failedSeq = e.seq;
      }
      this.addLog(e, "END", e.type === "failed" ? `failed: ${e.error}` : e.type, true);
    }

    addLog(event, level, message, end) {
      this.logEvents.push({ seq: event.seq, time: event.time, level, message, end });
      if (this.logEvents.length > LOG_LINES) this.logEvents.splice(0, this.logEvents.length - LOG_LINES);
    }

    // The log file's tail, read by a request asked for when this page had applied every event up to `seqAsked`.
    setFileLines(lines, seqAsked) {
      this.fileLines = lines;
      this.fileSeq = seqAsked;
    }

    // What the log panel shows: the file's tail, then the log events the file did not hold yet when read, then how
    // the run ended (the END line is the page's own, not a line of the file). Before the first read: the events.
    logLines() {
      if (this.fileLines === null) return this.logEvents.map(logLine);
      const lines = this.logEvents.filter((e) => !e.end);
      const pending = lines.filter((e) => e.seq > this.fileSeq);
      const known = lines.filter((e) => e.seq <= this.fileSeq);
      const held = heldInFile(this.fileLines, known.length ? known[known.length - 1] : null, pending);
      const ends = this.logEvents.filter((e) => e.end);
      const ending = TERMINAL.has(this.status) && ends.length ? [ends[ends.length - 1]] : [];
      return [...this.fileLines, ...pending.slice(held).map(logLine), ...ending.map(logLine)];
    }

    // 0..1, from the events only: steps when the run said how many there are, else epochs and batches.
    fraction() {
      if (this.status === "succeeded") return 1;
      if (this.totalSteps && typeof this.step === "number") return Math.min(1, this.step / this.totalSteps);
      if (this.epochs && this.epoch) {
        const within = this.batches && this.batch ? this.batch / this.batches : 0;
        return Math.min(1, (this.epoch - 1 + within) / this.epochs);
      }
      return 0;
    }

    progressText() {
      switch (this.status) {
        case "queued": return "queued: waiting for a free worker";
        case "starting": return "starting: the worker is reading the data";
        case "created": return "created: not queued (resume starts it)";
        case "running":
          return this.phase ? `running: ${this.phase}` : `running: ${(this.fraction() * 100).toFixed(1)} %`;
        case "failed": return `failed: ${this.failure ? this.failure.error : "see the log"}`;
        case "stopped": return `stopped at epoch ${this.epoch || 0}; resume goes on from the last checkpoint`;
        default: return this.status;
      }
    }

    etaLeft(now) {
      if (this.status === "succeeded") return 0;
      if (this.status !== "running" || this.etaS === null) return null;
      return Math.max(0, this.etaS - (now - this.etaAt) / 1000);
    }
  }

  const FILE_LINE_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d /; // how the worker's logger starts each line

  // A log event as the worker's logger writes it into log.txt (in this browser's time zone).
  function logLine(entry) {
    const at = new Date(entry.time * 1000);
    const two = (n) => String(n).padStart(2, "0");
    const clock = `${at.getFullYear()}-${two(at.getMonth() + 1)}-${two(at.getDate())} `
      + `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
    return `${clock} ${entry.level} ${entry.message}`;
  }

  // How many of `pending` (log events after the ones the file was read for) the file already ends with. The worker
  // writes a line before its event, so a read asked for after event N holds the lines of the log events up to N
  // (the last of them `lastKnown`) and may hold the first few pending ones after it, in order: the largest such
  // count whose lines close the file, just after `lastKnown`'s own line. Lines compare by level and message.
  function heldInFile(fileLines, lastKnown, pending) {
    const key = (e) => `${e.level} ${e.message}`;
    const fileKey = (line) => line.replace(FILE_LINE_TIME, "");
    for (let count = Math.min(pending.length, fileLines.length); count > 0; count -= 1) {
      const tail = fileLines.slice(fileLines.length - count);
      if (!tail.every((line, i) => fileKey(line) === key(pending[i]))) continue;
      const before = fileLines.length - count - 1;
      if (lastKnown === null || (before >= 0 && fileKey(fileLines[before]) === key(lastKnown))) return count;
    }
    return 0;
  }

  function formatSeconds(seconds) {
    if (seconds === null) return "–";
    const s = Math.round(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  }

  // A metric of the instance masks where the run reports them, of the boxes otherwise.
  function metric(metrics, name) {
    for (const key of [`${name}_mask`, `${name}_box`, name]) {
      if (typeof metrics[key] === "number") return metrics[key];
    }
    return null;
  }

  // Draws a RunModel into the elements under `root` marked data-field / data-action / data-chart.
  class RunView {
    constructor(root, runId, { onAction } = {}) {
      this.root = root;
      this.runId = runId;
      this.field = (name) => root.querySelector(`[data-field="${name}"]`);
      this.charts = this.makeCharts();
      this.renderTimer = null;
      this.model = null;
      for (const button of root.querySelectorAll("[data-action]")) {
        button.addEventListener("click", () => onAction && onAction(button.dataset.action, button));
      }
    }

    makeCharts() {
      if (typeof Chart === "undefined") return {};
      const charts = {};
      for (const canvas of this.root.querySelectorAll("canvas[data-chart]")) {
        const kind = canvas.dataset.chart;
        charts[kind] = new Chart(canvas, {
          type: "line",
          data: { datasets: [] },
          options: {
            animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
            interaction: { mode: "nearest", intersect: false },
            scales: {
              x: { type: "linear", title: { display: true, text: "epoch" }, ticks: { precision: 0 } },
              y: kind === "quality" ? { min: 0, max: 1 } : { beginAtZero: kind === "border" },
            },
            plugins: { legend: { position: "bottom" } },
          },
        });
      }
      return charts;
    }

    // Drawing waits a moment so a replay of thousands of events is drawn once, not once per event.
    schedule(model) {
      this.model = model;
      if (this.renderTimer !== null) return;
      this.renderTimer = setTimeout(() => {
        this.renderTimer = null;
        this.render(this.model);
      }, settings.renderDelayMs);
    }

    render(model) {
      this.model = model;
      const state = this.field("state");
      if (state) {
        state.textContent = model.status;
        state.className = `state ${model.status}`;
        state.dataset.state = model.status;
      }
      const progress = this.field("progress");
      if (progress) {
        progress.max = 100;
        progress.value = Math.round(model.fraction() * 1000) / 10;
      }
      this.text("progress-text", model.progressText());
      this.text("epoch", model.epoch && model.epochs ? `${model.epoch}/${model.epochs}` : "–");
      const batches = model.batches ? `/${model.batches}` : "";
      this.text("batch", typeof model.batch === "number" && model.epoch ? `${model.batch}${batches}` : "–");
      this.renderClock();
      this.renderLatest(model);
      this.renderFailure(model);
      this.renderLog(model);
      for (const button of this.root.querySelectorAll("[data-action]")) {
        button.disabled = !model.actions[button.dataset.action];
      }
      this.renderCharts(model);
    }

    // What changes with the clock alone: the ETA counting down, and how long ago the worker was last heard.
    renderClock() {
      const model = this.model;
      if (!model) return;
      this.text("eta", model.status === "succeeded" ? "done" : formatSeconds(model.etaLeft(Date.now())));
      const heard = this.field("heard");
      if (heard) {
        const running = model.status === "running" && model.lastEventAt;
        heard.textContent = running ? `last event ${formatSeconds((Date.now() - model.lastEventAt) / 1000)} ago` : "";
      }
    }

    // The log, kept scrolled to its end unless the reader scrolled up; a muted note instead of an empty box.
    renderLog(model) {
      const log = this.field("log");
      if (!log) return;
      const lines = model.logLines();
      const empty = this.field("log-empty");
      if (empty) {
        empty.hidden = lines.length > 0;
        log.hidden = lines.length === 0;
      }
      const text = lines.join("\n");
      if (log.textContent === text) return;
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = text;
      if (atEnd) log.scrollTop = log.scrollHeight;
    }

    renderLatest(model) {
      const latest = this.field("latest");
      if (!latest) return;
      const last = [...model.epochEnds.values()].pop();
      if (!last) {
        latest.textContent = "";
        return;
      }
      const metrics = last.metrics || {};
      const loss = Object.values(last.losses || {}).reduce((a, b) => a + (typeof b === "number" ? b : 0), 0);
      latest.textContent = `epoch ${last.epoch}: loss ${cardmetry.number(loss, 4)} · precision ${cardmetry.number(metric(metrics, "precision"), 3)}`
        + ` · recall ${cardmetry.number(metric(metrics, "recall"), 3)} · mAP50 ${cardmetry.number(metric(metrics, "map50"), 3)}`
        + ` · border error ${typeof metrics.border_error_mm === "number"
          ? `${metrics.border_error_mm.toFixed(3)} mm` : "not measured"}`
        + (last.best_epoch ? ` · best epoch ${last.best_epoch}` : "");
    }

    renderFailure(model) {
      const box = this.field("failure");
      if (!box) return;
      box.hidden = !(model.status === "failed" && model.failure);
      if (box.hidden) return;
      const reason = document.createElement("p");
      reason.className = "reason";
      reason.dataset.testid = "failure-reason";
      reason.textContent = model.failure.error;
      const lines = document.createElement("pre");
      lines.className = "log";
      lines.dataset.testid = "failure-log";
      lines.textContent = model.failure.lines.join("\n");
      box.replaceChildren(reason, ...(model.failure.lines.length ? [lines] : []));
    }

    renderCharts(model) {
      const ends = [...model.epochEnds.values()].sort((a, b) => a.epoch - b.epoch);
      if (this.charts.loss) {
        const names = [...new Set(ends.flatMap((e) => Object.keys(e.losses || {})))];
        const series = names.map((name) => ({
          label: `${name} (epoch mean)`, data: ends.map((e) => ({ x: e.epoch, y: e.losses[name] ?? null })),
        }));
        if (model.batchLosses.length) {
          series.push({ label: "batch loss (total)", data: model.batchLosses, borderWidth: 1, pointRadius: 0 });
        }
        this.setSeries(this.charts.loss, series);
      }
      if (this.charts.quality) {
        this.setSeries(this.charts.quality, ["precision", "recall", "map50"].map((name) => ({
          label: name === "map50" ? "mAP50" : name,
          data: ends.map((e) => ({ x: e.epoch, y: metric(e.metrics || {}, name) })),
        })));
      }
      if (this.charts.border) {
        this.setSeries(this.charts.border, [{
          label: "border error (mm, median)",
          data: ends.map((e) => ({ x: e.epoch, y: (e.metrics || {}).border_error_mm ?? null })),
        }]);
      }
      this.renderBorderNote(model, ends);
    }

    // Say why the border chart is empty rather than show bare axes; a chart with points keeps a note on the
    // latest epoch when that one was not measured.
    renderBorderNote(model, ends) {
      const note = this.field("border-note");
      if (!note) return;
      const measured = (e) => typeof (e.metrics || {}).border_error_mm === "number";
      const last = ends[ends.length - 1];
      let text = "";
      if (model.borderEvalImages === 0) text = "border error not measured: border_eval_images is 0";
      else if (!ends.some(measured)) text = "border error not measured yet";
      else if (!measured(last)) text = `border error not measured at epoch ${last.epoch}`;
      note.textContent = text;
      note.hidden = !text;
      const box = this.charts.border && this.charts.border.canvas.parentElement;
      if (box) box.hidden = !ends.some(measured);
    }

    setSeries(chart, series) {
      chart.data.datasets = series.map((s, i) => ({
        borderColor: COLOURS[i % COLOURS.length], backgroundColor: COLOURS[i % COLOURS.length], pointRadius: 3,
        spanGaps: true, ...s,
      }));
      chart.update("none");
    }

    connection(status, reason) {
      const badge = this.field("connection");
      if (!badge) return;
      badge.dataset.status = status;
      badge.className = `connection ${status}`;
      badge.textContent = reason && status !== "live" ? `${status}: ${reason}` : status;
      badge.title = status === "ended" ? "the run has ended: the page no longer listens for its events" : "";
    }

    text(name, value) {
      const element = this.field(name);
      if (element) element.textContent = value;
    }
  }

  // Watch run `runId` and draw it under `root`; returns its handle {watcher, model, view, close, closed,
  // snapshot}. Options: `onChange(model)` hears every change of state (the train page refreshes its table then);
  // `onFailed(model)`; `closeWhenEnded` (ms): once the run has ended and its worker is gone, close the handle after
  // that long, leaving the last state drawn; `onClosed(handle)`; `afterAction(action)` after stop, cancel or resume
  // was asked for. Where `root` holds a log (the run page) the log file's tail is read too.
  function watch(runId, root, { onChange, onFailed, closeWhenEnded = null, onClosed, afterAction } = {}) {
    const model = new RunModel(runId);
    const seen = { first: null, last: null, count: 0, breaks: [] }; // the seqs handed to the model, in order
    const connections = []; // the badge's statuses in order
    const timers = { settle: null, end: null, close: null }; // one-shot
    const intervals = { clock: null, log: null };
    let lastStatus = null;
    let settled = false; // the last summary agreed with the events that the run ended, and its worker is gone
    let closed = false;
    const changed = () => {
      view.schedule(model);
      if (model.status !== lastStatus) {
        lastStatus = model.status;
        if (onChange) onChange(model);
      }
    };
    const record = (seq) => {
      if (seen.last !== null && seq !== seen.last + 1) seen.breaks.push([seen.last, seq]);
      if (seen.first === null) seen.first = seq;
      seen.last = seq;
      seen.count += 1;
    };
    // After a terminal event the worker is reaped within a second: ask the server then, so the buttons show
    // what the API accepts, not what the page assumed.
    const settle = (delay) => {
      if (closed) return;
      clearTimeout(timers.settle);
      timers.settle = setTimeout(() => {
        timers.settle = null;
        watcher.refresh().catch(() => (watcher.ended ? settle(settings.maxRetryMs) : watcher.drop()));
      }, delay);
    };
    const closeSoon = () => {
      if (closeWhenEnded === null || timers.close !== null || !(settled && watcher.ended)) return;
      timers.close = setTimeout(close, closeWhenEnded);
    };

    // --- the log file (the run page only) ---
    let logReading = false;
    let logAgain = false;
    let endRead = false; // the log has been read once since the run ended
    const readLog = async () => {
      if (closed) return;
      if (logReading) { logAgain = true; return; } // the last lines must not be missed: read again after
      logReading = true;
      const asked = model.lastSeq;
      try {
        const answer = await cardmetry.api(`/api/runs/${encodeURIComponent(runId)}/log?lines=${LOG_LINES}`);
        if (!closed) {
          model.setFileLines(Array.isArray(answer.lines) ? answer.lines : [], asked);
          view.schedule(model);
        }
      } catch (_) {
        // Left to the next read: meanwhile the log events still show, and the run's state is not at stake.
      } finally {
        logReading = false;
      }
      if (logAgain) {
        logAgain = false;
        readLog();
      }
    };
    const readsLog = Boolean(root.querySelector('[data-field="log"]'));

    const act = async (action, button) => {
      if (action === "cancel" && !window.confirm(`Cancel run ${runId}? It ends now and its checkpoints are deleted.`)) {
        return;
      }
      button.disabled = true;
      try {
        await cardmetry.api(`/api/runs/${encodeURIComponent(runId)}/${action}`, { method: "POST" });
        cardmetry.show(`${action} asked for run ${runId}`, true);
      } catch (error) {
        cardmetry.show(`${action} of run ${runId}: ${error.message}`);
      }
      settle(0);
      if (afterAction) afterAction(action);
    };
    const view = new RunView(root, runId, { onAction: act });
    const watcher = new RunWatcher(runId, {
      summary(detail) {
        // Older than what the events said, or a worker that has written its end and is still exiting (resume
        // is refused until it is gone): ask again soon.
        const accepted = model.applySummary(detail);
        const exiting = Boolean(detail.worker_pid) && TERMINAL.has(detail.status);
        if (!accepted || exiting) settle(1000);
        settled = accepted && !exiting && TERMINAL.has(model.status);
        if (accepted && ACTIVE.has(detail.status)) endRead = false;
        if (accepted && watcher.ended && (ACTIVE.has(detail.status) || detail.last_seq > model.lastSeq)) {
          // Going again (resumed), or with events this page has not had: watch it again.
          clearTimeout(timers.close);
          timers.close = null;
          watcher.start();
        }
        if (settled && readsLog && !endRead) {
          endRead = true;
          readLog();
        }
        closeSoon();
        changed();
      },
      event(event) {
        record(event.seq);
        model.apply(event);
        // A terminal event ends the watching once nothing follows it for a moment: a replay of a run that was
        // resumed goes on past its earlier end.
        clearTimeout(timers.end);
        timers.end = null;
        if (TERMINAL.has(model.status)) {
          timers.end = setTimeout(() => {
            timers.end = null;
            watcher.finish();
            closeSoon();
          }, settings.endQuietMs);
        }
        if (TERMINAL.has(event.type)) {
          settle(1500);
          if (event.type === "failed" && onFailed) onFailed(model);
        }
        changed();
      },
      connection(status, reason) {
        connections.push(status);
        if (connections.length > 100) connections.shift();
        view.connection(status, reason);
      },
    });

    // Closed for good: no socket, no timer; the last state stays drawn.
    function close() {
      if (closed) return;
      closed = true;
      watcher.close();
      for (const name of Object.keys(timers)) {
        clearTimeout(timers[name]);
        timers[name] = null;
      }
      for (const name of Object.keys(intervals)) {
        clearInterval(intervals[name]);
        intervals[name] = null;
      }
      clearTimeout(view.renderTimer);
      view.renderTimer = null;
      view.render(model);
      if (watchers.get(runId) === handle) watchers.delete(runId);
      if (onClosed) onClosed(handle);
    }

    intervals.clock = setInterval(() => view.renderClock(), 1000);
    if (readsLog) {
      intervals.log = setInterval(() => { if (ACTIVE.has(model.status)) readLog(); }, settings.logPollMs);
      readLog();
    }
    watcher.start();
    const handle = {
      watcher, model, view, close,
      get closed() { return closed; },
      // For the browser tests: copies, so a test reads the page's record without being able to change it.
      snapshot: () => ({ seen: { ...seen, breaks: seen.breaks.map((b) => [...b]) }, connections: [...connections] }),
    };
    watchers.set(runId, handle);
    return handle;
  }

  const watchers = new Map(); // run id -> its watch handle, while open: for the browser tests

  // The run page's worker output: what the process printed, when the run failed (a crash before the run's own
  // log began shows only there).
  async function showWorkerOutput(runId) {
    const box = document.getElementById("worker-output-box");
    if (!box) return;
    try {
      const log = await cardmetry.api(`/api/runs/${encodeURIComponent(runId)}/log?lines=200`);
      if (log.worker_output && log.worker_output.length) {
        document.getElementById("worker-output").textContent = log.worker_output.join("\n");
        box.hidden = false;
        box.open = true;
      }
    } catch (error) {
      cardmetry.show(`the worker's output could not be read: ${error.message}`);
    }
  }

  cardmetry.runs = { settings, watch, watchers, RunWatcher, RunModel, RunView, formatSeconds };

  const page = typeof document === "undefined" ? null : document.getElementById("run"); // none under node's tests
  if (page && page.dataset.runId) {
    watch(page.dataset.runId, document, { onFailed: (model) => showWorkerOutput(model.runId) });
  }
})();
