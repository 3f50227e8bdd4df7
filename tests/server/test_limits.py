"""The request body limits (per route, chunked bodies included), the long-work threads that leave the default
pool free and do not hold up a stopping server, and the WebSockets' own poll pool."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, UploadFile, WebSocket
from fastapi.testclient import TestClient
from starlette.types import Message

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server import grading, threads
from cardmetry.server import runs as runs_module
from cardmetry.server.app import body_limits, create_app
from cardmetry.server.limits import DEFAULT_MAX_BYTES, BodyLimit, RouteLimit
from cardmetry.store.home import Home
from cardmetry.store.uploads import MAX_UPLOAD_BYTES
from cardmetry.training.events import EventLog
from tests.orchestrator.fakes import fake, new_run

LIMIT = 1000


def tiny_app(limit_inside: bool = True) -> FastAPI:
    """An app that reads its whole body one way or another, behind a pass-through middleware of the kind the
    real app's token check is (`@app.middleware("http")`, which reads the body in a task group of its own), with
    the limit inside it or around it."""
    app = FastAPI()
    if limit_inside:  # added first: Starlette wraps each middleware added later around those before it
        app.add_middleware(BodyLimit, max_bytes=LIMIT)

    @app.middleware("http")
    async def passing(request: Request, call_next: Any) -> Any:
        return await call_next(request)

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/files")
    async def files(files: list[UploadFile]) -> dict[str, int]:  # FastAPI turns a body error into a 400 here
        return {"received": sum(len(await upload.read()) for upload in files)}

    if not limit_inside:
        app.add_middleware(BodyLimit, max_bytes=LIMIT)
    return app


def chunks(total: int, size: int = 100) -> Iterator[bytes]:
    """`total` bytes as a chunked body: no Content-Length is sent."""
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.parametrize("limit_inside", [True, False])
@pytest.mark.parametrize(
    ("make_request", "status"),
    [
        (lambda: {"content": chunks(LIMIT)}, 200),  # chunked, at the limit: accepted
        (lambda: {"content": chunks(LIMIT + 1)}, 413),  # chunked, one byte over: refused, though no length declared
        (lambda: {"content": b"x" * LIMIT}, 200),  # a declared length at the limit
        (lambda: {"content": b"x" * (LIMIT + 1)}, 413),  # a declared length over it
        # a length declared over the limit is refused whatever follows (here a short body)
        (lambda: {"content": b"x", "headers": {"content-length": str(LIMIT + 1)}}, 413),
    ],
)
def test_a_body_over_the_limit_is_refused_with_or_without_a_declared_length(
    make_request: Callable[[], dict[str, Any]], status: int, limit_inside: bool
) -> None:
    kwargs = make_request()  # made anew for each case: a chunked body is a generator, read once
    response = TestClient(tiny_app(limit_inside)).post("/raw", **kwargs)
    assert response.status_code == status, response.text
    if status == 413:
        assert response.json() == {"detail": f"the request body is over the upload limit of {LIMIT} bytes"}
        assert response.headers["connection"] == "close"  # the unread rest of the body ends the connection
    else:
        assert response.json() == {"received": LIMIT}


@pytest.mark.parametrize("limit_inside", [True, False])
def test_a_chunked_upload_over_the_limit_is_a_413_not_the_frameworks_400(limit_inside: bool) -> None:
    # FastAPI turns any error while it parses a form into "There was an error parsing the body" (400).
    multipart_head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n'
    body = iter([multipart_head, *chunks(2 * LIMIT), b"\r\n--b--\r\n"])
    response = TestClient(tiny_app(limit_inside)).post("/files", content=body,
                                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413 and "upload limit" in response.json()["detail"]


def test_the_body_stops_being_read_once_it_passes_the_limit() -> None:
    # At the ASGI level, so every chunk is a message of its own: the app is not handed the rest of the body.
    pulled: list[int] = []
    sent: list[Message] = []
    chunk = 300

    async def receive() -> Message:
        pulled.append(chunk)
        return {"type": "http.request", "body": b"x" * chunk, "more_body": True}  # an endless chunked body

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/raw", "headers": [], "query_string": b"",
             "root_path": "", "scheme": "http", "server": ("test", 80), "client": ("test", 1)}
    asyncio.run(tiny_app()(scope, receive, send))
    assert sum(pulled) == (LIMIT // chunk + 1) * chunk  # up to the chunk that crossed the limit, not one more
    # One answer, the 413: the app's own answer to the error it was given went nowhere.
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [413]
    assert b"upload limit" in b"".join(m.get("body", b"") for m in sent)


def test_websockets_pass_through_untouched() -> None:
    app = FastAPI()

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    with TestClient(BodyLimit(app, max_bytes=1)).websocket_connect("/ws") as socket:  # type: ignore[arg-type]
        socket.send_text("longer than one byte")
        assert socket.receive_text() == "longer than one byte"


def test_the_real_upload_route_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    # The app as `cardmetry serve` builds it, with the limit around it (app.py adds it itself).
    home = Home(tmp_path / "home")
    app = create_app(home, LocalExecutor(home, slots=1, command=fake("succeed", "0.1")))
    multipart_head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="images/a.jpg"\r\n\r\n'
    body = iter([multipart_head, *chunks(2 * LIMIT), b"\r\n--b--\r\n"])
    response = TestClient(BodyLimit(app, max_bytes=LIMIT)).post(
        "/api/datasets/cards/upload", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413
    assert not (home.datasets / "cards").exists()


def test_a_slow_upload_leaves_the_default_pool_free() -> None:
    # A default pool of one thread, as a busy server's is once uploads take its threads: a poll must still run.
    release = threading.Event()

    async def scenario() -> float:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        upload = asyncio.ensure_future(threads.run_long(release.wait, 30))
        await asyncio.sleep(0.05)  # the upload holds its thread now
        began = time.monotonic()
        await asyncio.wait_for(asyncio.to_thread(lambda: None), timeout=5)  # a WebSocket's poll of its log
        waited = time.monotonic() - began
        release.set()
        assert await upload is True
        return waited

    try:
        assert asyncio.run(scenario()) < 1.0
    finally:
        release.set()


def test_uploads_run_a_bounded_number_at_a_time_and_give_back_their_results() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def job(number: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.1)
        with lock:
            running -= 1
        if number == 3:
            raise ValueError("a refused file")
        return number * 10

    async def scenario() -> list[Any]:
        names: set[str] = set()
        names.add(await threads.run_long(lambda: threading.current_thread().name))
        assert all(name.startswith("long-work") for name in names)
        return await asyncio.gather(*(threads.run_long(job, n) for n in range(4)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError)
    assert most == threads.LONG_WORK_THREADS


def routed_app() -> FastAPI:
    """Two routes that read their whole body, one of them (the "upload") with a larger bound of its own."""
    app = FastAPI()

    @app.post("/api/things/{name}/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/api/runs")
    async def settings(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    app.add_middleware(BodyLimit, max_bytes=LIMIT, routes=[RouteLimit("POST", r"/api/things/[^/]+/upload", 10 * LIMIT)])
    return app


@pytest.mark.parametrize("streamed", [False, True])  # with a Content-Length, and chunked without one
@pytest.mark.parametrize(
    ("path", "size", "status"),
    [
        ("/api/runs", LIMIT, 200),  # the default bound
        ("/api/runs", LIMIT + 1, 413),  # the default bound, passed: a JSON route is not read past it
        ("/api/things/cards/upload", 10 * LIMIT, 200),  # the route's own bound
        ("/api/things/cards/upload", 10 * LIMIT + 1, 413),
    ],
)
def test_each_route_has_its_own_bound(path: str, size: int, status: int, streamed: bool) -> None:
    body = chunks(size, 500) if streamed else b"x" * size
    response = TestClient(routed_app()).post(path, content=body)
    assert response.status_code == status, response.text
    if status == 413:
        bound = 10 * LIMIT if path.endswith("/upload") else LIMIT
        assert response.json()["detail"].endswith(f"limit of {bound} bytes")


@pytest.mark.parametrize(
    ("method", "path", "bound"),
    [
        ("POST", "/upload", 10 * LIMIT),  # the route's own
        ("PUT", "/upload", LIMIT),  # another method: the default
        ("POST", "/upload/extra", LIMIT),  # the pattern matches a whole path only
        ("POST", "/x/upload", LIMIT),
    ],
)
def test_a_routes_bound_is_for_its_method_and_whole_path_only(method: str, path: str, bound: int) -> None:
    limit = BodyLimit(FastAPI(), max_bytes=LIMIT, routes=[RouteLimit("POST", "/upload", 10 * LIMIT)])
    assert limit.bound_for({"method": method, "path": path}) == bound


def test_a_broken_route_pattern_fails_when_the_app_is_built() -> None:
    with pytest.raises(re.error):
        RouteLimit("POST", "/api/(unclosed", 1)


@pytest.mark.parametrize(
    ("method", "path", "bound"),
    [
        ("POST", "/api/runs", DEFAULT_MAX_BYTES),  # settings: a small JSON document
        ("POST", "/api/runs/r1/stop", DEFAULT_MAX_BYTES),
        ("POST", "/api/datasets/cards/upload", MAX_UPLOAD_BYTES),  # a dataset: gigabytes
        ("POST", "/api/grade", grading.MAX_FORM_BYTES),  # two images and a few fields
        ("PUT", "/api/grade", DEFAULT_MAX_BYTES),  # the route's bound is for its own method
    ],
)
def test_the_apps_bounds(method: str, path: str, bound: int) -> None:
    assert BodyLimit(FastAPI(), routes=body_limits()).bound_for({"method": method, "path": path}) == bound


def test_a_large_json_body_to_the_runs_api_is_refused_unread(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    client = TestClient(create_app(home, LocalExecutor(home, slots=1, command=fake("succeed", "0.1"))))
    response = client.post("/api/runs", content=chunks(2 * DEFAULT_MAX_BYTES, 64 * 1024),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413 and "1 MB" in response.json()["detail"]
    assert not home.runs.exists() or not any(home.runs.iterdir())


def test_a_slow_job_in_the_default_pool_does_not_delay_a_poll() -> None:
    # Thumbnails and other short jobs use asyncio's default pool; a WebSocket's event-log read must not queue
    # behind them. Here the default pool has one thread and it is taken.
    release = threading.Event()

    async def scenario() -> float:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
        busy = asyncio.ensure_future(asyncio.to_thread(release.wait, 30))
        await asyncio.sleep(0.05)  # the slow job holds the default pool's only thread now
        began = time.monotonic()
        name = await asyncio.wait_for(threads.run_poll(lambda: threading.current_thread().name), timeout=5)
        waited = time.monotonic() - began
        release.set()
        await busy
        assert name.startswith("event-poll")
        return waited

    try:
        assert asyncio.run(scenario()) < 1.0
    finally:
        release.set()


def test_the_websocket_polls_its_log_in_the_poll_pool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    EventLog(new_run(home, "r1").events).emit("run_started", run="r1")
    polled: list[str] = []
    real = threads.run_poll

    async def counted(fn: Callable[[], Any]) -> Any:
        polled.append(getattr(fn, "__name__", ""))
        return await real(fn)

    monkeypatch.setattr(runs_module, "run_poll", counted)
    client = TestClient(create_app(home, LocalExecutor(home, slots=1, command=fake("sleep"))))
    with client.websocket_connect("/ws/runs/r1") as socket:
        assert socket.receive_json()["type"] == "run_started"
    assert "new_events" in polled


def test_long_work_runs_in_daemon_threads_so_a_stopping_server_does_not_wait() -> None:
    async def scenario() -> tuple[bool, str]:
        return await threads.run_long(lambda: (threading.current_thread().daemon, threading.current_thread().name))

    daemon, name = asyncio.run(scenario())
    assert daemon and name.startswith("long-work")


def test_a_cancelled_caller_keeps_its_slot_until_its_thread_ends() -> None:
    # The bound counts threads at work: a client that went away must not let a third job start beside two.
    release = threading.Event()
    started: list[int] = []

    def job(number: int) -> int:
        started.append(number)
        release.wait(10)
        return number

    async def scenario() -> list[int]:
        first = asyncio.ensure_future(threads.run_long(job, 1))
        second = asyncio.ensure_future(threads.run_long(job, 2))
        await asyncio.sleep(0.1)
        first.cancel()  # its caller gives up; its thread still works
        third = asyncio.ensure_future(threads.run_long(job, 3))
        await asyncio.sleep(0.2)
        waiting = sorted(started)
        release.set()
        assert await second == 2 and await third == 3
        return waiting

    try:
        assert asyncio.run(scenario()) == [1, 2][: threads.LONG_WORK_THREADS]
    finally:
        release.set()


def test_a_long_jobs_error_reaches_its_caller() -> None:
    def fails() -> None:
        raise StopIteration  # even this one, which a future would refuse as it is

    async def scenario() -> None:
        await threads.run_long(fails)

    with pytest.raises(RuntimeError, match="StopIteration"):
        asyncio.run(scenario())
