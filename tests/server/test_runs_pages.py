"""The train and run pages and the API behind them: backends, log tails, run status and actions, the start form."""

from __future__ import annotations

import contextlib
import html
import os
import re
import signal
from dataclasses import asdict

import pytest
from fastapi.testclient import TestClient

from cardmetry.models.registry import list_backends
from cardmetry.orchestrator.local import OUTPUT_FILE, LocalExecutor
from cardmetry.server import runs as runs_module
from cardmetry.server.app import create_app
from cardmetry.server.metrics import ServerMetrics
from cardmetry.store.database import Catalog
from cardmetry.store.datasets import import_dataset, list_datasets
from cardmetry.store.home import Home
from cardmetry.training import runs as training_runs
from cardmetry.training.config import AugmentConfig, TrainConfig
from cardmetry.training.events import TERMINAL, EventLog, read_events
from cardmetry.training.runs import RunDir, summarise
from cardmetry.training.sources import DataSource
from tests.orchestrator.fakes import fake, new_run, wait_until
from tests.server.conftest import store_tiny
from tests.training.toy import tiny_config

# What the browser tests find the run page's parts by.
RUN_PAGE_IDS = ("progress", "progress-text", "epoch", "batch", "eta", "state", "connection", "chart-loss",
                "chart-quality", "chart-border", "log", "stop", "cancel", "resume")
TRAIN_PAGE_IDS = ("start-form", "dataset", "role", "backend", "variant", "epochs", "start", "start-pair", "runs-table")


@pytest.fixture
def home(home: Home, tiny_cards: DataSource) -> Home:
    store_tiny(home, tiny_cards)  # what the runs started here train on
    return home


def client_for(home: Home, command: object = None) -> TestClient:
    executor = LocalExecutor(home, slots=2, command=command or fake("succeed", "0.1"))  # type: ignore[arg-type]
    return TestClient(create_app(home, executor))


def ended_run(home: Home, run_id: str, terminal: str | None, **payload: object) -> RunDir:
    """A run whose worker has come and gone: started, and ended with `terminal` (None: still without one)."""
    run = new_run(home, run_id)
    log = EventLog(run.events)
    log.emit("run_started", run=run_id, epochs=2)
    if terminal:
        log.emit(terminal, **payload)
    return run


def element(page: str, element_id: str) -> str:
    """The opening tag of the element with `element_id` (fails the test when there is none)."""
    found = re.search(rf'<[a-z]+[^>]*\sid="{re.escape(element_id)}"[^>]*>', page)
    assert found, f"no element with id {element_id!r}"
    return found.group(0)


def test_backends_are_listed_with_their_variants(home: Home) -> None:
    listed = client_for(home).get("/api/backends").json()
    assert listed == [info.as_json() for info in list_backends()]
    unet = next(backend for backend in listed if backend["name"] == "unet")
    assert unet["default_variant"] in unet["variants"] and unet["trainable"]


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        (3, 3),  # a few
        (10_000, runs_module.MAX_LOG_LINES),  # capped, however many are asked for
    ],
)
def test_the_log_tail_is_the_last_lines_capped(home: Home, asked: int, expected: int) -> None:
    run = ended_run(home, "r1", "succeeded")
    run.log.write_text("".join(f"line {i}\n" for i in range(1200)), encoding="utf-8")
    answer = client_for(home).get(f"/api/runs/r1/log?lines={asked}").json()
    assert answer["lines"] == [f"line {i}" for i in range(1200 - expected, 1200)]
    assert answer["worker_output"] is None  # only a failed run's worker output is shown


def test_a_failed_run_s_log_also_has_its_worker_output(home: Home) -> None:
    run = ended_run(home, "r1", "failed", error="boom", log_tail=[])
    (run.path / OUTPUT_FILE).write_text("Traceback (most recent call last):\nImportError: no torch\n")
    answer = client_for(home).get("/api/runs/r1/log").json()
    assert answer["lines"] == [] and answer["worker_output"][-1] == "ImportError: no torch"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/runs/no-such-run/log", 404),  # unknown run
        ("/api/runs/..%2F..%2Fetc/log", 404),  # a path, not a run id
        ("/api/runs/r1/log?lines=0", 422),  # no lines is not a tail
        ("/runs/no-such-run", 404),  # the page of an unknown run
    ],
)
def test_bad_log_and_page_requests_are_refused(home: Home, path: str, status: int) -> None:
    ended_run(home, "r1", "succeeded")
    assert client_for(home).get(path).status_code == status


def test_a_long_log_is_read_from_its_end(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    # A window that cuts a line in two: the cut line is left out rather than shown half.
    run = ended_run(home, "r1", "succeeded")
    run.log.write_text("".join(f"line {i:04d}\n" for i in range(100)), encoding="utf-8")
    monkeypatch.setattr(training_runs, "LOG_TAIL_BYTES", 25)
    assert client_for(home).get("/api/runs/r1/log?lines=50").json()["lines"] == ["line 0098", "line 0099"]


@pytest.mark.parametrize(
    ("terminal", "actions"),
    [
        ("stopped", {"stop": False, "cancel": False, "resume": True}),  # resume goes on from the checkpoint
        ("failed", {"stop": False, "cancel": False, "resume": True}),
        ("succeeded", {"stop": False, "cancel": False, "resume": False}),  # nothing to resume
        ("cancelled", {"stop": False, "cancel": False, "resume": False}),  # its checkpoints are gone
    ],
)
def test_an_ended_run_offers_the_actions_the_api_accepts(home: Home, terminal: str, actions: dict) -> None:
    ended_run(home, "r1", terminal)
    client = client_for(home, command=fake("succeed", "0.1"))
    detail = client.get("/api/runs/r1").json()
    assert detail["status"] == terminal and detail["actions"] == actions
    assert detail["last_seq"] == read_events(RunDir.in_runs(home.runs, "r1").events)[-1]["seq"]
    # Each action the summary offers is accepted, each it withholds refused; tried last, resume starts a worker.
    for action in ("stop", "cancel", "resume"):
        accepted = client.post(f"/api/runs/r1/{action}").status_code == 200
        assert accepted == actions[action], action


ACTIVE = {"stop": True, "cancel": True, "resume": False}
NOTHING = {"stop": False, "cancel": False, "resume": False}


@pytest.mark.parametrize(
    ("before", "worker", "status", "actions"),
    [
        (None, ("prepare",), "starting", ACTIVE),  # a worker still reading the data: not a bare "created"
        ("stopped", ("prepare",), "starting", ACTIVE),  # resumed, before its run_started: not the last stretch's end
        (None, ("sleep",), "running", ACTIVE),  # its run_started is written
        (None, ("succeed", "0.1"), "succeeded", NOTHING),  # ended; its worker, not yet reaped, takes no requests
    ],
)
def test_a_run_with_a_worker_says_what_it_is_doing(
    home: Home, before: str | None, worker: tuple[str, ...], status: str, actions: dict
) -> None:
    if before:
        ended_run(home, "r1", before)
    else:
        new_run(home, "r1")
    client = client_for(home, command=fake(*worker))
    assert client.post("/api/runs/r1/resume").status_code == 200
    try:
        wait_until(lambda: client.get("/api/runs/r1").json()["status"] == status, timeout=30)
        detail = client.get("/api/runs/r1").json()
        assert detail["worker_pid"] and detail["actions"] == actions
    finally:
        _kill(client, "r1")


def test_a_queued_run_says_so(home: Home) -> None:
    for run_id in ("r1", "r2"):
        new_run(home, run_id)
    executor = LocalExecutor(home, slots=1, command=fake("prepare"))
    client = TestClient(create_app(home, executor))
    client.post("/api/runs/r1/resume")
    client.post("/api/runs/r2/resume")  # the one slot is taken
    try:
        listed = {run["id"]: run for run in client.get("/api/runs").json()}
        assert listed["r2"]["status"] == "queued" and listed["r2"]["queued"] and listed["r1"]["status"] == "starting"
    finally:
        _kill(client, "r1")


def _kill(client: TestClient, run_id: str) -> None:
    """End the stand-in worker a test left running (the test client starts no supervisor to reap it)."""
    pid = client.get(f"/api/runs/{run_id}").json()["worker_pid"]
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def stored(home: Home, tiny_cards: DataSource) -> str:
    """A stored dataset, as the datasets page leaves one: NAME@VERSION."""
    import_dataset(home, "tiny", tiny_cards.dataset, tiny_cards.root, [])
    [info] = list_datasets(home)
    return f"{info.name}@{info.version}"


def test_the_train_page_offers_the_datasets_backends_and_config_defaults(home: Home, stored: str) -> None:
    page = client_for(home).get("/train").text
    for element_id in TRAIN_PAGE_IDS:
        element(page, element_id)
    assert f'<option value="{stored}"' in page and "trainable" in page
    for info in list_backends():
        assert f'<option value="{info.name}"' in page
    default_backend = next(info for info in list_backends() if info.name == TrainConfig.model_fields["backend"].default)
    assert f'<option value="{default_backend.default_variant}"' in page
    # Each number shown is TrainConfig's own default, not a copy that could drift from it.
    for name in ("epochs", "batch", "imgsz", "patience", "border_eval_images"):
        assert f'value="{TrainConfig.model_fields[name].default}"' in element(page, name), name
    assert f'value="{AugmentConfig().scale}"' in element(page, "augment-scale")
    assert "selected" not in element(page, "threads") and 'data-optional="1"' in element(page, "threads")


@pytest.mark.parametrize(
    ("field", "kind", "default", "minimum", "optional"),
    [
        ("epochs", "int", 30, 1.0, False),  # a bounded whole number
        ("lr", "float", None, 0.0, True),  # left to the backend when empty
        ("device", "choice", "auto", None, False),  # a Literal: a select
        ("pretrained", "bool", True, None, False),  # a checkbox
    ],
)
def test_form_fields_are_read_from_the_config(field: str, kind: str, default: object, minimum: float | None,
                                              optional: bool) -> None:
    [described] = runs_module.form_fields(TrainConfig, (field,))
    assert (described.kind, described.default, described.minimum, described.optional) == (
        kind, TrainConfig.model_fields[field].default, minimum, optional)
    assert described.default == default


def test_the_run_page_renders_a_real_run(home: Home) -> None:
    client = client_for(home)
    run_id = client.post("/api/runs", json=tiny_config(data="tiny").as_json()).json()["id"]
    run = RunDir.in_runs(home.runs, run_id)
    wait_until(lambda: any(e["type"] in TERMINAL for e in read_events(run.events)))
    page = client.get(f"/runs/{run_id}").text
    for element_id in RUN_PAGE_IDS:
        element(page, element_id)
    assert element(page, "progress").startswith("<progress")
    assert f'data-run-id="{run_id}"' in page and "/static/vendor/chart.umd.min.js" in page
    assert ">succeeded<" in page  # the state as the run's events say
    assert "disabled" in element(page, "stop") and "disabled" in element(page, "resume")


def test_two_runs_started_through_the_api_both_appear(home: Home) -> None:
    client = client_for(home, command=fake("succeed", "0.5"))
    started = [client.post("/api/runs", json=tiny_config(data="tiny", role=role).as_json()) for role in
               ("outer", "graphic")]
    assert [response.status_code for response in started] == [201, 201]
    ids = {response.json()["id"] for response in started}
    listed = {run["id"]: run for run in client.get("/api/runs").json()}
    assert set(listed) == ids and {listed[i]["role"] for i in ids} == {"outer", "graphic"}
    assert all(listed[i]["status"] in ("starting", "running") for i in ids)  # two slots: side by side
    page = client.get("/train").text
    assert all(f'data-run-row="{i}"' in page for i in ids)
    active = html.unescape(element(page, "live-runs"))
    assert set(re.search(r'data-active="([^"]*)"', active).group(1).split()) == ids  # a live panel for each
    for run_id in ids:
        run = RunDir.in_runs(home.runs, run_id)
        wait_until(lambda run=run: any(e["type"] in TERMINAL for e in read_events(run.events)))


def trained(home: Home, run_id: str) -> RunDir:
    """A run with epochs, a batch, a heartbeat and a damaged line among its events, ended: what the list and the
    summary must read alike."""
    run = ended_run(home, run_id, None)
    log = EventLog(run.events)
    log.emit("epoch_started", epoch=1, epochs=2, batches=1)
    log.emit("batch", epoch=1, batch=1, batches=1, losses={"total": 0.5})
    log.emit("epoch_end", epoch=1, epochs=2, metrics={"border_error_mm": 0.4}, best_metric=0.1, best_epoch=1)
    log.emit("heartbeat")
    with run.events.open("ab") as stream:
        stream.write(b"{not an event\n")  # a damaged line: skipped by both, with a warning
    log.emit("epoch_end", epoch=2, epochs=2, metrics={"border_error_mm": 0.9}, best_metric=0.1, best_epoch=1)
    log.emit("stopped")
    return run


def test_the_run_list_is_read_from_the_catalog_and_says_what_the_summary_says(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = client_for(home)
    started = client.post("/api/runs", json=tiny_config(data="tiny").as_json()).json()["id"]  # a real worker's log
    wait_until(lambda: any(e["type"] in TERMINAL for e in read_events(RunDir.in_runs(home.runs, started).events)))
    trained(home, "by-hand")
    summaries = {run_id: asdict(summarise(RunDir.in_runs(home.runs, run_id))) for run_id in (started, "by-hand")}
    details = {run_id: client.get(f"/api/runs/{run_id}").json() for run_id in summaries}

    def no_log_reading(*_: object) -> None:
        raise AssertionError("the run list read a whole event log")

    monkeypatch.setattr(training_runs, "iter_events", no_log_reading)  # what `summarise` reads a log with
    listed = {run["id"]: run for run in client.get("/api/runs").json()}
    assert set(listed) == set(summaries)
    for run_id, summary in summaries.items():
        assert {key: listed[run_id][key] for key in summary} == summary, run_id
        assert {key: listed[run_id][key] for key in ("status", "actions", "worker_pid", "queued")} == {
            key: details[run_id][key] for key in ("status", "actions", "worker_pid", "queued")}, run_id
    assert summaries["by-hand"]["epoch"] == 2 and summaries["by-hand"]["border_error_mm"] == 0.4
    assert f'data-run-row="{started}"' in client.get("/train").text  # the page's table: the same list


def logged_run(home: Home, run_id: str, events: int) -> RunDir:
    """A run whose log holds `events` events: run_started, then epoch_started ones."""
    run = ended_run(home, run_id, None)
    log = EventLog(run.events)
    for epoch in range(1, events):
        log.emit("epoch_started", epoch=epoch, epochs=events)
    return run


@pytest.mark.parametrize(
    ("query", "seqs", "more"),
    [
        ("", [1, 2, 3, 4, 5], False),  # all of a short log
        ("?limit=2", [1, 2], True),  # a page of it; the rest remains
        ("?after=3&limit=2", [4, 5], False),  # the last page
        ("?limit=10000", [1, 2, 3], True),  # capped at MAX_EVENTS (3 here), whatever is asked
    ],
)
def test_events_come_in_pages(home: Home, monkeypatch: pytest.MonkeyPatch, query: str, seqs: list[int],
                              more: bool) -> None:
    logged_run(home, "r1", 5)
    if "10000" in query:
        monkeypatch.setattr(runs_module, "MAX_EVENTS", 3)
    answer = client_for(home).get(f"/api/runs/r1/events{query}")
    assert [event["seq"] for event in answer.json()] == seqs
    assert answer.headers["X-More"] == ("true" if more else "false")
    if more:
        assert answer.headers["Link"] == f'</api/runs/r1/events?after={seqs[-1]}&limit={len(seqs)}>; rel="next"'
    else:
        assert "Link" not in answer.headers


def test_events_refuse_an_empty_page(home: Home) -> None:
    logged_run(home, "r1", 2)
    answer = client_for(home).get("/api/runs/r1/events?limit=0")
    assert answer.status_code == 422 and "limit" in str(answer.json()["detail"])


def test_the_replay_sends_only_the_newest_batches_and_every_other_event(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_module, "REPLAY_BATCHES", 2)  # what the page keeps for its chart
    run = ended_run(home, "r1", None)
    log = EventLog(run.events)
    log.emit("epoch_started", epoch=1, epochs=1, batches=4)
    for batch in range(1, 5):
        log.emit("batch", epoch=1, batch=batch, batches=4, losses={"total": 1.0 / batch})
    log.emit("epoch_end", epoch=1, epochs=1, metrics={}, best_metric=0.1, best_epoch=1)
    log.emit("succeeded")
    with client_for(home).websocket_connect("/ws/runs/r1") as socket:
        received = [socket.receive_json() for _ in range(6)]
    assert [(event["type"], event["seq"]) for event in received] == [
        ("run_started", 1), ("epoch_started", 2), ("batch", 5), ("batch", 6), ("epoch_end", 7), ("succeeded", 8)]


def test_the_metrics_count_runs_from_the_catalog(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    for run_id, terminal in (("a", "succeeded"), ("b", "succeeded"), ("c", None)):
        ended_run(home, run_id, terminal)
    catalog = Catalog.open(home)
    metrics = ServerMetrics(home, LocalExecutor(home, slots=1, command=fake("succeed", "0.1")), catalog)
    monkeypatch.setattr(training_runs, "iter_events", lambda *_: iter(()))  # the logs are not read whole
    text = metrics.render().decode()
    assert 'cardmetry_runs{state="succeeded"} 2.0' in text and 'cardmetry_runs{state="running"} 1.0' in text


def test_a_run_not_yet_started_shows_the_variant_it_will_train(home: Home) -> None:
    new_run(home, "waiting", backend="unet", variant=None)  # no worker yet: nothing resolved the variant
    default = {info.name: info.default_variant for info in list_backends()}["unet"]
    page = client_for(home).get("/runs/waiting").text
    assert f"outer · unet / {default} ·" in " ".join(html.unescape(page).split())
