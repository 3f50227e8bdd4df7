"""run.js's live logic under node, with a fake WebSocket, a fake fetch and a fake clock: the watcher reconnects after
the last seq it handed on, applies a replayed event once, keeps a summary older than its events from turning the
state back, gives up a silent socket, backs off 0.5 s doubling to 5 s, closes its socket once the run has ended
(and a train-page panel altogether, leaving no timer), reads the log file while the run is active and merges it
with the log events without doubling a line, and says why the border chart is empty.

Each case runs one scenario of HARNESS (below) in a fresh node process, which prints what it saw as JSON; the
assertions are here. common.js and run.js are loaded as the browser loads them (scripts in one global scope).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from cardmetry.server.pages import STATIC

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")

HARNESS = r"""
const fs = require("fs");
const vm = require("vm");
const [staticDir, scenarioName, argument] = process.argv.slice(1);

// --- a clock that moves only when told: timers fire in order, with the promises they start settled between ---
const realImmediate = setImmediate;
const clock = { now: 1767225600000, timers: new Map(), next: 1 };
Date.now = () => clock.now;
globalThis.setTimeout = (fn, ms = 0) => {
  const id = clock.next++;
  clock.timers.set(id, { at: clock.now + Math.max(0, ms || 0), fn, every: null });
  return id;
};
globalThis.setInterval = (fn, ms) => {
  const id = clock.next++;
  clock.timers.set(id, { at: clock.now + ms, fn, every: ms });
  return id;
};
globalThis.clearTimeout = globalThis.clearInterval = (id) => { clock.timers.delete(id); };
const settle = async () => { for (let i = 0; i < 30; i += 1) await new Promise((resolve) => realImmediate(resolve)); };
async function advance(ms) {
  const end = clock.now + ms;
  await settle();
  for (;;) {
    let due = null;
    for (const [id, timer] of clock.timers) {
      if (timer.at <= end && (due === null || timer.at < due[1].at)) due = [id, timer];
    }
    if (due === null) break;
    const [id, timer] = due;
    clock.now = timer.at;
    if (timer.every) timer.at += timer.every; else clock.timers.delete(id);
    timer.fn();
    await settle();
  }
  clock.now = end;
  await settle();
}

// --- the server: a WebSocket the test drives, and fetch answering the run's summary and its log ---
const sockets = [];
class FakeSocket {
  constructor(url) { this.url = url; this.closed = false; this.closedByPage = false; sockets.push(this); }
  get after() { return Number(new URL(this.url).searchParams.get("after")); }
  open() { this.onopen({}); }
  deliver(...events) { for (const e of events) if (!this.closed) this.onmessage({ data: JSON.stringify(e) }); }
  drop(code = 1006) { this.closed = true; this.onclose({ code, reason: "" }); }
  close() {
    if (this.closed) return;
    this.closed = true;
    this.closedByPage = true;
    const onclose = this.onclose;
    queueMicrotask(() => onclose && onclose({ code: 1005, reason: "" }));
  }
}
const server = {
  summary: { id: "r1", status: "running", last_seq: 0, worker_pid: 42,
             actions: { stop: true, cancel: true, resume: false }, config: { epochs: 2, border_eval_images: 16 } },
  summaryFailures: 0, // how many of the next summary requests fail
  logLines: [],
  requests: [],
};
const answer = (status, body) => ({ ok: status < 400, status, statusText: "", text: async () => JSON.stringify(body) });
globalThis.fetch = async (path) => {
  server.requests.push({ path, at: clock.now });
  if (path === "/api/runs/r1") {
    if (server.summaryFailures > 0) {
      server.summaryFailures -= 1;
      return answer(503, { detail: "restarting" });
    }
    return answer(200, server.summary);
  }
  if (path.startsWith("/api/runs/r1/log?")) return answer(200, { lines: server.logLines, worker_output: null });
  return answer(404, { detail: `no route ${path}` });
};
globalThis.WebSocket = FakeSocket;
globalThis.location = { protocol: "http:", host: "cardmetry.test" };
globalThis.window = { confirm: () => true };
function fakeElement() {
  return { textContent: "", className: "", title: "", dataset: {}, hidden: false, disabled: false, scrollTop: 0,
           clientHeight: 100, scrollHeight: 100, value: 0, max: 0, replaceChildren() {}, append() {},
           addEventListener() {}, classList: { add() {}, remove() {}, toggle() {} } };
}
globalThis.document = { getElementById: () => null, createElement: fakeElement };
// A part of a page holding the fields a RunView draws into (data-field="name").
function fakeRoot(names) {
  const fields = Object.fromEntries(names.map((name) => [name, fakeElement()]));
  return {
    fields,
    querySelector(selector) {
      const match = /^\[data-field="([^"]+)"\]$/.exec(selector);
      return (match && fields[match[1]]) || null;
    },
    querySelectorAll: () => [],
  };
}
const PANEL_FIELDS = ["state", "connection", "progress", "progress-text", "epoch", "batch", "eta", "latest"];
const PAGE_FIELDS = [...PANEL_FIELDS, "log", "log-empty", "border-note"];

vm.runInThisContext(fs.readFileSync(`${staticDir}/common.js`, "utf8"), { filename: "common.js" });
vm.runInThisContext(fs.readFileSync(`${staticDir}/run.js`, "utf8"), { filename: "run.js" });
const { settings, RunWatcher, RunModel, watch } = vm.runInThisContext("cardmetry").runs;

const event = (seq, type, extra = {}) => ({ seq, time: clock.now / 1000, type, ...extra });
const firstEpoch = () => [
  event(1, "run_started", { epochs: 2, batches_per_epoch: 2 }), event(2, "epoch_started", { epoch: 1 }),
  event(3, "batch", { epoch: 1, batch: 1, losses: { bce: 0.9 } }),
  event(4, "batch", { epoch: 1, batch: 2, losses: { bce: 0.8 } }),
  event(5, "epoch_end", { epoch: 1, losses: { bce: 0.85 }, metrics: {} }),
];
// A watcher feeding a model, as watch() does, recording what it handed on.
function watcherWithModel() {
  const model = new RunModel("r1");
  const seen = { applied: [], connections: [], summaries: 0 };
  const watcher = new RunWatcher("r1", {
    summary(detail) { seen.summaries += 1; model.applySummary(detail); },
    event(e) { seen.applied.push(e.seq); model.apply(e); },
    connection(status) { seen.connections.push(status); },
  });
  return { model, watcher, seen };
}
const summaryRequests = () => server.requests.filter((r) => r.path === "/api/runs/r1");
const logRequests = () => server.requests.filter((r) => r.path.startsWith("/api/runs/r1/log"));

const scenarios = {
  async reconnect() {
    const { watcher, seen } = watcherWithModel();
    watcher.start();
    await advance(0);
    sockets[0].open();
    sockets[0].deliver(...firstEpoch().slice(0, 3));
    sockets[0].drop();
    await advance(settings.firstRetryMs);
    sockets[1].open();
    return { afters: sockets.map((s) => s.after), summaries: seen.summaries, connections: seen.connections };
  },

  async replay() {
    const { watcher, model, seen } = watcherWithModel();
    const events = firstEpoch();
    watcher.start();
    await advance(0);
    sockets[0].open();
    sockets[0].deliver(...events.slice(0, 4));
    sockets[0].drop();
    await advance(settings.firstRetryMs);
    sockets[1].open();
    sockets[1].deliver(...events.slice(2), events[4]); // the server replays from its own idea of "after"
    return { applied: seen.applied, batchPoints: model.batchLosses.length, epochsEnded: model.epochEnds.size };
  },

  async summary() {
    const { lastSeq, status } = JSON.parse(argument);
    const model = new RunModel("r1");
    for (const e of firstEpoch()) model.apply(e);
    model.apply(event(6, "succeeded"));
    const actions = { stop: false, cancel: false, resume: false };
    const accepted = model.applySummary({ status, last_seq: lastSeq, actions });
    return { accepted, status: model.status };
  },

  async silence() {
    const { pingEveryMs } = JSON.parse(argument);
    const { watcher, seen } = watcherWithModel();
    watcher.start();
    await advance(0);
    sockets[0].open();
    sockets[0].deliver(event(1, "run_started"));
    for (let waited = 0; waited < 2 * settings.silenceMs; waited += 1000) {
      await advance(1000);
      if (pingEveryMs && waited % pingEveryMs === 0) sockets[sockets.length - 1].deliver({ type: "ping" });
    }
    return { sockets: sockets.length, firstClosedByPage: sockets[0].closedByPage, afters: sockets.map((s) => s.after),
             connections: seen.connections };
  },

  async backoff() {
    const { watcher } = watcherWithModel();
    server.summaryFailures = 8;
    watcher.start();
    await advance(60000);
    const times = summaryRequests().map((r) => r.at);
    sockets[0].open(); // the ninth summary came back: a socket opened
    const droppedAt = clock.now;
    sockets[0].drop();
    await advance(settings.maxRetryMs);
    const retried = summaryRequests().map((r) => r.at).filter((at) => at > droppedAt);
    return { delays: times.slice(1, 9).map((t, i) => t - times[i]), afterOpen: retried[0] - droppedAt };
  },

  async ending() {
    const { burst } = JSON.parse(argument);
    const root = fakeRoot(PANEL_FIELDS);
    watch("r1", root);
    await advance(0);
    sockets[0].open();
    sockets[0].deliver(...firstEpoch(), ...burst.map(([seq, type]) => event(seq, type)));
    const [lastSeq, lastType] = burst[burst.length - 1];
    const ended = lastType !== "run_started";
    server.summary = { ...server.summary, status: ended ? lastType : "running", worker_pid: ended ? null : 42,
                       last_seq: lastSeq };
    await advance(10000);
    return { badge: root.fields.connection.dataset.status, state: root.fields.state.textContent,
             sockets: sockets.length, open: sockets.filter((s) => !s.closed).length };
  },

  async resumeAfterEnd() {
    const root = fakeRoot(PANEL_FIELDS);
    const handle = watch("r1", root);
    await advance(0);
    sockets[0].open();
    sockets[0].deliver(...firstEpoch(), event(6, "stopped"));
    server.summary = { ...server.summary, status: "stopped", worker_pid: null, last_seq: 6 };
    await advance(3000);
    const ended = root.fields.connection.dataset.status;
    server.summary = { ...server.summary, status: "queued", last_seq: 6 }; // resumed (by another page, say)
    await handle.watcher.refresh(); // as the resume button's request is followed by
    await advance(settings.firstRetryMs);
    sockets[sockets.length - 1].open();
    return { ended, badge: root.fields.connection.dataset.status, afters: sockets.map((s) => s.after) };
  },

  async panelCloses() {
    const { closeWhenEnded } = JSON.parse(argument);
    const root = fakeRoot(PANEL_FIELDS);
    let closedHandle = null;
    const handle = watch("r1", root, { closeWhenEnded, onClosed: (h) => { closedHandle = h; } });
    await advance(0);
    sockets[0].open();
    sockets[0].deliver(...firstEpoch(), event(6, "succeeded"));
    server.summary = { ...server.summary, status: "succeeded", worker_pid: null, last_seq: 6 };
    await advance(3000);
    const beforeClose = handle.closed;
    await advance(closeWhenEnded === null ? 60000 : closeWhenEnded);
    const seen = { beforeClose, closed: handle.closed, told: closedHandle === handle, timers: clock.timers.size,
                   open: sockets.filter((s) => !s.closed).length, state: root.fields.state.textContent };
    const since = clock.now;
    await advance(60000);
    return { ...seen, requestsLastMinute: server.requests.filter((r) => r.at > since).length };
  },

  async logMerge() {
    const { fileLines, fileSeq, events, status } = JSON.parse(argument);
    const model = new RunModel("r1");
    for (const [seq, type, message] of events) model.apply(event(seq, type, { level: "info", message }));
    if (status) model.status = status;
    if (fileLines !== null) model.setFileLines(fileLines, fileSeq);
    return { lines: model.logLines().map((line) => line.replace(/^\S+ \S+ /, "")) };
  },

  async logPolling() {
    const root = fakeRoot(PAGE_FIELDS);
    watch("r1", root);
    await advance(0);
    sockets[0].open();
    await advance(settings.renderDelayMs);
    const emptyAtFirst = { note: !root.fields["log-empty"].hidden, box: !root.fields.log.hidden };
    server.logLines = ["2026-01-01 00:00:00 INFO loading 6 images"];
    await advance(10 * settings.logPollMs);
    const whileRunning = logRequests().length;
    const text = root.fields.log.textContent;
    sockets[0].deliver(...firstEpoch(), event(6, "succeeded"));
    server.summary = { ...server.summary, status: "succeeded", worker_pid: null, last_seq: 6 };
    await advance(5000);
    const atEnd = logRequests().length;
    await advance(10 * settings.logPollMs);
    return { emptyAtFirst, whileRunning, atEnd, later: logRequests().length, text, endText: root.fields.log.textContent,
             shown: { note: !root.fields["log-empty"].hidden, box: !root.fields.log.hidden } };
  },

  async borderNote() {
    const { borderEvalImages, epochEnds } = JSON.parse(argument);
    server.summary = { ...server.summary, config: { epochs: 3, border_eval_images: borderEvalImages } };
    const root = fakeRoot(PAGE_FIELDS);
    watch("r1", root);
    await advance(0);
    sockets[0].open();
    const metrics = (border) => (border === null ? {} : { border_error_mm: border });
    sockets[0].deliver(event(1, "run_started", { epochs: 3 }), ...epochEnds.map((border, i) =>
      event(i + 2, "epoch_end", { epoch: i + 1, losses: {}, metrics: metrics(border) })));
    await advance(settings.renderDelayMs);
    const note = root.fields["border-note"];
    return { note: note.hidden ? null : note.textContent, latest: root.fields.latest.textContent };
  },
};

scenarios[scenarioName]().then((result) => console.log(JSON.stringify(result)));
"""


def scenario(name: str, **argument: Any) -> dict[str, Any]:
    """Run one scenario of HARNESS under node and return what it printed."""
    ran = subprocess.run(["node", "-e", HARNESS, str(STATIC), name, json.dumps(argument)], capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    return json.loads(ran.stdout)


def test_a_dropped_socket_reconnects_after_the_last_seq_it_handed_on() -> None:
    seen = scenario("reconnect")
    assert seen["afters"] == [0, 3]
    assert seen["summaries"] == 2  # the run's state is asked for again before the new socket
    assert seen["connections"] == ["connecting", "live", "reconnecting", "live"]


def test_an_event_replayed_after_a_reconnect_is_applied_once() -> None:
    seen = scenario("replay")
    assert seen["applied"] == [1, 2, 3, 4, 5]
    assert seen["batchPoints"] == 2 and seen["epochsEnded"] == 1


@pytest.mark.parametrize(
    ("last_seq", "status", "accepted", "shown"),
    [
        (5, "running", False, "succeeded"),  # computed before the terminal event arrived here: not applied
        (6, "succeeded", True, "succeeded"),  # has seen every event the page has: applied
        (6, "queued", True, "queued"),  # the run was resumed since: the server's word is newer
    ],
)
def test_a_summary_older_than_the_events_seen_is_not_applied(last_seq: int, status: str, accepted: bool,
                                                              shown: str) -> None:
    assert scenario("summary", lastSeq=last_seq, status=status) == {"accepted": accepted, "status": shown}


@pytest.mark.parametrize(
    ("ping_every_ms", "sockets"),
    [
        (None, 2),  # nothing heard for silenceMs: the socket is given up and a new one continues after seq 1
        (15_000, 1),  # the server's pings keep a quiet socket alive
    ],
)
def test_the_watchdog_reconnects_after_silence(ping_every_ms: int | None, sockets: int) -> None:
    seen = scenario("silence", pingEveryMs=ping_every_ms)
    assert seen["sockets"] == sockets
    assert seen["firstClosedByPage"] is (sockets > 1)
    assert seen["afters"] == [0, 1][:sockets]


def test_the_backoff_doubles_to_its_cap_and_restarts_after_a_connection() -> None:
    seen = scenario("backoff")
    assert seen["delays"] == [500, 1000, 2000, 4000, 5000, 5000, 5000, 5000]
    assert seen["afterOpen"] == 500


@pytest.mark.parametrize(
    ("burst", "badge", "state", "open_sockets"),
    [
        # a terminal event: the badge says so and the socket is closed, with no reconnect
        ([[6, "cancelled"]], "ended", "cancelled", 0),
        # a replay that goes on past an earlier end (the run was resumed): still watching
        ([[6, "stopped"], [7, "run_started"]], "live", "running", 1),
    ],
)
def test_the_socket_is_closed_once_the_run_has_ended(burst: list, badge: str, state: str, open_sockets: int) -> None:
    seen = scenario("ending", burst=burst)
    assert (seen["badge"], seen["state"], seen["open"], seen["sockets"]) == (badge, state, open_sockets, 1)


def test_an_ended_run_that_goes_again_is_watched_again_from_where_it_was() -> None:
    seen = scenario("resumeAfterEnd")
    assert seen["ended"] == "ended" and seen["badge"] == "live"
    assert seen["afters"] == [0, 6]


@pytest.mark.parametrize(
    ("close_when_ended", "closed", "timers_left"),
    [
        (5000, True, 0),  # a train-page panel: closed after its run ended, no socket and no timer left
        (None, False, 1),  # the run page: keeps its clock (the socket is closed all the same)
    ],
)
def test_a_panel_stops_watching_after_its_run_ended(close_when_ended: int | None, closed: bool,
                                                     timers_left: int) -> None:
    seen = scenario("panelCloses", closeWhenEnded=close_when_ended)
    assert seen["beforeClose"] is False and seen["closed"] is closed and seen["told"] is closed
    assert seen["timers"] == timers_left and seen["open"] == 0
    assert seen["state"] == "succeeded"  # the last state stays drawn
    assert seen["requestsLastMinute"] == 0


LINE = "2026-01-01 10:00:0{} INFO {}"


@pytest.mark.parametrize(
    ("file_lines", "file_seq", "events", "status", "shown"),
    [
        # before the file was read: the log events
        (None, 0, [[1, "log", "a"], [2, "log", "b"]], None, ["INFO a", "INFO b"]),
        # the file holds every event's line: each shown once
        ([LINE.format(1, "a"), LINE.format(2, "b")], 2, [[1, "log", "a"], [2, "log", "b"]], None,
         ["INFO a", "INFO b"]),
        # an event after the read, not in the file yet: added below it
        ([LINE.format(1, "a")], 1, [[1, "log", "a"], [2, "log", "b"]], None, ["INFO a", "INFO b"]),
        # an event after the read was asked for that the file already held: once
        ([LINE.format(1, "a"), LINE.format(2, "b")], 1, [[1, "log", "a"], [2, "log", "b"]], None,
         ["INFO a", "INFO b"]),
        # the same message again after the read is a new line, not a double
        ([LINE.format(1, "a")], 1, [[1, "log", "a"], [2, "log", "a"]], None, ["INFO a", "INFO a"]),
        # lines only the file has (written before the run's events began) are shown
        ([LINE.format(0, "loading"), LINE.format(1, "a")], 1, [[1, "log", "a"]], None, ["INFO loading", "INFO a"]),
        # the end, the page's own line, comes last
        ([LINE.format(1, "a")], 2, [[1, "log", "a"], [2, "succeeded", ""]], None, ["INFO a", "END succeeded"]),
    ],
)
def test_the_log_file_and_the_log_events_merge_without_doubles(file_lines: list[str] | None, file_seq: int,
                                                               events: list, status: str | None,
                                                               shown: list[str]) -> None:
    merged = scenario("logMerge", fileLines=file_lines, fileSeq=file_seq, events=events, status=status)
    assert merged["lines"] == shown


def test_the_log_file_is_read_while_the_run_is_active_and_once_at_its_end() -> None:
    seen = scenario("logPolling")
    assert seen["emptyAtFirst"] == {"note": True, "box": False}  # "no log lines yet", not an empty black bar
    assert seen["whileRunning"] >= 10  # at the start, then every logPollMs
    assert "INFO loading 6 images" in seen["text"]
    assert seen["atEnd"] == seen["whileRunning"] + 1 == seen["later"]  # once after the end, then never again
    assert seen["endText"].endswith("END succeeded") and seen["shown"] == {"note": False, "box": True}


@pytest.mark.parametrize(
    ("border_eval_images", "epoch_ends", "note", "latest"),
    [
        (0, [None], "border error not measured: border_eval_images is 0", "border error not measured"),
        (16, [], "border error not measured yet", ""),  # no epoch has ended
        (16, [None], "border error not measured yet", "border error not measured"),  # every card refused
        (16, [0.05, None], "border error not measured at epoch 2", "border error not measured"),
        (16, [0.05], None, "border error 0.050 mm"),  # measured: the chart shows it, no note
    ],
)
def test_the_border_chart_says_why_it_is_empty(border_eval_images: int, epoch_ends: list, note: str | None,
                                               latest: str) -> None:
    seen = scenario("borderNote", borderEvalImages=border_eval_images, epochEnds=epoch_ends)
    assert seen["note"] == note
    assert latest in seen["latest"]
