"""The app through FastAPI's test client: the open paths, the token, runs, and the events WebSocket."""

from __future__ import annotations

import os
import signal
import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from cardmetry.data.problems import Problem
from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server import runs as runs_module
from cardmetry.server.app import create_app
from cardmetry.store.datasets import import_dataset
from cardmetry.store.home import Home
from cardmetry.training.events import TERMINAL, EventLog, read_events
from cardmetry.training.runs import RunDir
from cardmetry.training.sources import DataSource
from tests.orchestrator.fakes import fake, new_run, wait_until
from tests.server.conftest import store_tiny
from tests.training.toy import tiny_config


@pytest.fixture
def home(home: Home, tiny_cards: DataSource) -> Home:
    store_tiny(home, tiny_cards)  # what the runs started here train on
    return home


def client_for(home: Home, token: str | None = None, command: object = None) -> TestClient:
    executor = LocalExecutor(home, slots=2, command=command or fake("succeed", "0.1"))  # type: ignore[arg-type]
    return TestClient(create_app(home, executor, token))


def test_favicon_and_health_answer(home: Home) -> None:
    client = client_for(home)
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's header
    assert client.get("/healthz").json() == {"status": "ok", "running": 0, "queued": 0}


@pytest.mark.parametrize(
    ("path", "auth", "status"),
    [
        ("/api/runs", {}, 401),  # no token
        ("/api/runs", {"headers": {"Authorization": "Bearer wrong"}}, 401),  # a wrong one
        ("/api/runs", {"headers": {"Authorization": "Bearer s3cret"}}, 200),  # the right one, as a header
        ("/api/runs?token=s3cret", {}, 200),  # the right one, in the address
        ("/healthz", {}, 200),  # open: a load balancer's probe has no token
        ("/favicon.ico", {}, 200),  # open: the browser asks before any page
    ],
)
def test_the_token_guards_everything_but_the_open_paths(home: Home, path: str, auth: dict, status: int) -> None:
    assert client_for(home, token="s3cret").get(path, **auth).status_code == status


def test_a_token_in_the_address_is_kept_in_a_cookie(home: Home) -> None:
    client = client_for(home, token="s3cret")
    assert client.get("/api/runs?token=s3cret").status_code == 200
    assert client.get("/api/runs").status_code == 200  # the cookie carries it now


def test_a_run_started_through_the_api_runs_in_a_worker_and_ends(home: Home) -> None:
    client = client_for(home)
    settings = tiny_config().as_json()
    created = client.post("/api/runs", json=settings)
    assert created.status_code == 201
    run_id = created.json()["id"]
    run = RunDir.in_runs(home.runs, run_id)
    wait_until(lambda: any(e["type"] in TERMINAL for e in read_events(run.events)))
    assert [s["id"] for s in client.get("/api/runs").json()] == [run_id]
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["state"] == "succeeded" and detail["config"]["backend"] == "toy"
    assert [e["type"] for e in client.get(f"/api/runs/{run_id}/events").json()] == ["run_started", "succeeded"]
    assert client.get(f"/api/runs/{run_id}/events?after=1").json()[0]["seq"] == 2


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"data": "d", "epochs": 0}, "epochs"),  # out of range
        ({"data": "d", "role": "corner"}, "role"),  # not a role
        ({"epochs": 3}, "data"),  # no data named
        ({"data": ""}, "data"),  # named empty: the config's own check (pydantic put "Value error, " before it)
        ({"data": "/etc"}, "data"),  # a folder on the server: never read from a request
        ({"data": "tiny", "val": "../elsewhere"}, "val"),  # a relative path
        ({"data": "cardmetry"}, "data"),  # a name that is also a folder beside the server
        ({"data": "nosuch"}, "data"),  # no dataset stored under that name
        ({"data": "tiny@0123456789ab"}, "data"),  # a version that was never stored
        ({"data": "tiny", "synthetic": "nosuch"}, "synthetic"),  # every dataset named is checked
    ],
)
def test_a_bad_config_is_refused_naming_the_field(home: Home, settings: dict, field: str) -> None:
    response = client_for(home).post("/api/runs", json=settings)
    assert response.status_code == 422
    assert field in {problem["field"] for problem in response.json()["detail"]}
    assert not any(problem["problem"].startswith("Value error") for problem in response.json()["detail"])
    assert not home.runs.exists() or not any(home.runs.iterdir())  # nothing was created


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not an empty body"),  # no body at all: the framework's own 422 had another shape
        (b"{", "not JSON"),  # malformed JSON
        (b"\xff", "not JSON"),  # not even UTF-8: the framework answered 400 "error parsing the body"
        (b"[1, 2]", "not JSON [1, 2]"),  # JSON, but not an object
        (b"null", "not JSON null"),
    ],
)
def test_a_body_that_is_no_settings_object_is_refused_in_the_routes_own_shape(
    home: Home, body: bytes, problem: str
) -> None:
    response = client_for(home).post("/api/runs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert [(p["field"], problem in p["problem"]) for p in response.json()["detail"]] == [("body", True)]
    assert not home.runs.exists() or not any(home.runs.iterdir())


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/api/runs", "GET, POST"),  # the router named only the first route's methods: GET
        ("DELETE", "/api/models/active", "GET, PUT"),
        ("PUT", "/api/runs/some-run/stop", "POST"),
    ],
)
def test_a_method_not_allowed_names_every_method_the_path_takes(
    home: Home, method: str, path: str, allowed: str
) -> None:
    response = client_for(home).request(method, path)
    assert response.status_code == 405 and response.headers["allow"] == allowed
    assert method in response.json()["detail"] and allowed in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/no-such-run",  # unknown
        "/api/runs/..%2F..%2Fetc",  # a path, not an id
        "/api/runs/no-such-run/events",
    ],
)
def test_unknown_runs_are_404(home: Home, path: str) -> None:
    assert client_for(home).get(path).status_code == 404


def test_stop_and_cancel_reach_a_running_run_only(home: Home) -> None:
    # A request left for a run that is not running would end its next stretch at once: refused.
    running, idle = new_run(home, "r1"), new_run(home, "r2")
    client = client_for(home, command=fake("sleep"))
    client.post("/api/runs/r1/resume")  # no events yet: the worker starts it
    assert client.post("/api/runs/r1/stop").json() == {"requested": "stop"}
    assert running.requested() == "stop"
    client.post("/api/runs/r1/cancel")
    assert running.requested() == "cancel"
    assert client.post("/api/runs/r2/cancel").status_code == 409 and idle.requested() is None
    os.killpg(client.get("/api/runs/r1").json()["worker_pid"], signal.SIGKILL)


@pytest.mark.parametrize(
    ("terminal", "status"),
    [
        ("succeeded", 409),  # nothing to resume: it must not turn into a failed run
        ("cancelled", 409),  # its checkpoints are gone
        ("stopped", 200),  # what resume is for
    ],
)
def test_only_an_unfinished_run_resumes(home: Home, terminal: str, status: int) -> None:
    run = new_run(home, "r1")
    log = EventLog(run.events)
    log.emit("run_started", run="r1")
    log.emit(terminal)
    client = client_for(home, command=fake("succeed", "0.1"))
    assert client.post("/api/runs/r1/resume").status_code == status
    if status == 409:
        assert [e["type"] for e in terminals_of(run)] == [terminal]


def terminals_of(run: RunDir) -> list[dict]:
    return [e for e in read_events(run.events) if e["type"] in TERMINAL]


def test_starting_weights_cannot_be_named_through_the_api(home: Home) -> None:
    response = client_for(home).post("/api/runs", json={"data": "tiny", "weights": "https://example.com/x.pkl"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "weights"


@pytest.mark.parametrize(
    ("host", "origin", "status"),
    [
        ("127.0.0.1:8010", None, 200),  # the page itself
        ("localhost:8010", "http://localhost:8010", 200),
        ("evil.example:8010", None, 400),  # DNS rebinding: a name that now points here
    ],
)
def test_on_loopback_only_requests_naming_this_machine_are_answered(
    home: Home, host: str, origin: str | None, status: int
) -> None:
    executor = LocalExecutor(home, slots=1, command=fake("sleep"))
    client = TestClient(create_app(home, executor, allowed_hosts=["127.0.0.1", "localhost"]))
    headers = {"host": host, **({"origin": origin} if origin else {})}
    assert client.get("/api/runs", headers=headers).status_code == status


def test_a_websocket_from_another_origin_is_refused(home: Home) -> None:
    written_run(home, 1)
    executor = LocalExecutor(home, slots=1, command=fake("sleep"))
    client = TestClient(create_app(home, executor, allowed_hosts=["testserver", "127.0.0.1"]))
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect(
        "/ws/runs/r1", headers={"origin": "http://evil.example"}
    ) as socket:
        socket.receive_json()
    assert refused.value.code == 4403


def written_run(home: Home, count: int) -> tuple[RunDir, EventLog]:
    run = new_run(home, "r1")
    log = EventLog(run.events)
    log.emit("run_started", run="r1")
    for epoch in range(count - 1):
        log.emit("epoch_started", epoch=epoch)
    return run, log


def test_the_websocket_replays_what_was_missed_then_streams_live(home: Home) -> None:
    run, log = written_run(home, 4)
    client = client_for(home)
    with client.websocket_connect("/ws/runs/r1?after=2") as socket:
        assert [socket.receive_json()["seq"] for _ in range(2)] == [3, 4]  # missed: replayed in order
        log.emit("succeeded")
        assert socket.receive_json() == read_events(run.events)[-1]  # live
    with client.websocket_connect("/ws/runs/r1") as socket:  # from the start
        assert [socket.receive_json()["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]


def test_a_quiet_websocket_is_pinged(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    written_run(home, 1)
    monkeypatch.setattr(runs_module, "PING_SECONDS", 0.3)
    with client_for(home).websocket_connect("/ws/runs/r1?after=1") as socket:
        began = time.monotonic()
        ping = socket.receive_json()
        assert ping["type"] == "ping" and ping["after"] == 1 and time.monotonic() - began >= 0.25


@pytest.mark.parametrize(
    ("path", "token", "code"),
    [
        ("/ws/runs/no-such-run", None, 4404),  # unknown run
        ("/ws/runs/r1", "s3cret", 4401),  # no token given
    ],
)
def test_the_websocket_refuses_with_a_reason(home: Home, path: str, token: str | None, code: int) -> None:
    written_run(home, 1)
    with pytest.raises(WebSocketDisconnect) as refused, client_for(home, token).websocket_connect(path) as socket:
        socket.receive_json()
    assert refused.value.code == code


def test_metrics_count_runs_by_state_the_queue_requests_and_event_lag(home: Home) -> None:
    _, log = written_run(home, 1)
    client = client_for(home)
    with client.websocket_connect("/ws/runs/r1?after=1") as socket:
        log.emit("epoch_started", epoch=0)  # may come in the socket's first read, the replay, or after it
        socket.receive_json()
        log.emit("succeeded")  # written after the first read had been sent: a live event
        socket.receive_json()
    client.get("/api/runs")
    text = client.get("/metrics").text
    assert 'cardmetry_runs{state="succeeded"} 1.0' in text and 'cardmetry_runs{state="running"} 0.0' in text
    assert "cardmetry_queue_length 0.0" in text and "cardmetry_workers 0.0" in text
    assert 'cardmetry_request_seconds_count{method="GET",route="/api/runs"} 1.0' in text
    lag_count = next(line for line in text.splitlines() if line.startswith("cardmetry_event_lag_seconds_count"))
    assert lag_count.split()[-1] in ("1.0", "2.0")  # the live events; what the first read replayed is not counted


def test_odd_methods_do_not_grow_the_metrics(home: Home) -> None:
    client = client_for(home)
    client.request("FOO1", "/api/runs")
    assert "FOO1" not in client.get("/metrics").text


def test_a_run_trains_on_the_version_stored_when_it_started(home: Home, tiny_cards: DataSource) -> None:
    client = client_for(home)
    version = store_tiny(home, tiny_cards)
    created = client.post("/api/runs", json=tiny_config(data="tiny").as_json())
    assert created.status_code == 201, created.text
    assert client.get(f"/api/runs/{created.json()['id']}").json()["config"]["data"] == version  # pinned


def test_a_version_with_validation_errors_is_not_trained_on(home: Home, tiny_cards: DataSource) -> None:
    problem = Problem("images/x.png", "not a readable image")
    broken = import_dataset(home, "broken", tiny_cards.dataset, tiny_cards.root, [problem])
    response = client_for(home).post("/api/runs", json=tiny_config(data="broken").as_json())
    assert response.status_code == 422
    assert response.json()["detail"] == [{"field": "data", "problem": f"broken@{broken.version} has validation "
                                          "errors: its page on Datasets lists them"}]

