"""The web app: its HTTP API and the WebSocket that streams a run's events.

It holds no training logic: runs go to the executor (`cardmetry.orchestrator.local`), which runs them in worker
processes, and everything a page shows is read back from the runs' folders. A run's events are streamed from its
event log, so a page that connects late, or reconnects with `after=SEQ`, first gets what it missed, and a server
restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server.metrics import CONTENT_TYPE, ServerMetrics
from cardmetry.store.datasets import check_name
from cardmetry.store.home import Home
from cardmetry.store.uploads import MAX_UPLOAD_BYTES, UploadError, store_upload
from cardmetry.training.config import TrainConfig
from cardmetry.training.events import EventFollower, read_events
from cardmetry.training.runs import ControlRequest, RunDir, create_run, run_summaries, summarise

POLL_SECONDS = 0.2  # how often a WebSocket looks for new events
PING_SECONDS = 15.0  # an application-level ping this often keeps proxies from closing a quiet connection
OPEN_PATHS = ("/healthz", "/favicon.ico")  # answered without the access token
TOKEN_COOKIE = "cardmetry_token"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_TOKEN = "an access token is needed (docs/cli.md, cardmetry serve)"


def create_app(
    home: Home, executor: LocalExecutor, token: str | None = None, allowed_hosts: Sequence[str] | None = None
) -> FastAPI:
    """The app over `home`'s runs, starting runs through `executor`. With a `token`, every request but the open
    paths must carry it: `Authorization: Bearer TOKEN`, a `token` query parameter (which also sets a cookie, so a
    browser asks once) or that cookie. With `allowed_hosts` (`cardmetry serve` on loopback, where there is no
    token), a request naming another host, or a WebSocket opened by a page from another origin, is refused: a web
    page the user visits cannot reach the API through DNS rebinding or a cross-site request."""
    app = FastAPI(title="cardmetry", summary="Train card-border models and measure cards.")
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    metrics = ServerMetrics(home, executor)

    def allowed(headers: Any, query: Any, cookies: Any) -> bool:
        if token is None:
            return True
        given = query.get("token") or cookies.get(TOKEN_COOKIE) or ""
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            given = bearer[7:]
        return hmac.compare_digest(given.encode(), token.encode())

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        began = time.perf_counter()
        declared = int(request.headers.get("content-length") or 0)
        if request.url.path not in OPEN_PATHS and not allowed(request.headers, request.query_params, request.cookies):
            response: Response = JSONResponse({"detail": NO_TOKEN}, 401)
        elif declared > MAX_UPLOAD_BYTES:  # refused before a byte of it is read
            response = JSONResponse({"detail": f"over the upload limit of {MAX_UPLOAD_BYTES // 1024**2} MB"}, 413)
        else:
            response = await call_next(request)
            if token is not None and request.query_params.get("token") == token:
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        route = getattr(request.scope.get("route"), "path", "unmatched")  # the template: one series per route
        method = request.method if request.method in HTTP_METHODS else "other"  # any token is a method to h11
        metrics.request_seconds.labels(method, route).observe(time.perf_counter() - began)
        return response

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "running": len(executor.running()), "queued": len(executor.queued())}

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        icon = resources.files("cardmetry.server").joinpath("static/favicon.ico").read_bytes()
        return Response(icon, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    @app.post("/api/datasets/{name}/upload", status_code=201)
    async def upload_dataset(name: str, files: list[UploadFile]) -> dict[str, Any]:
        """Store the files (images and labels, each under the relative path given, or zip archives of them) as a
        new version of dataset `name`, and say what was stored and what the validation found."""
        given = [(upload.filename or "", upload.file) for upload in files]
        try:
            result = await asyncio.to_thread(store_upload, home, name, given)
        except UploadError as error:
            raise HTTPException(413 if error.too_large else 400, str(error)) from None
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        stored = result.stored
        return {"name": stored.name, "version": stored.version, "files": result.files, "images": stored.images,
                "new_images": stored.new_blobs, "trainable": stored.trainable, "problems": result.problems,
                "duplicates": [{"kept": kept, "duplicate": duplicate} for kept, duplicate in stored.duplicates]}

    @app.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        return [asdict(summary) for summary in run_summaries(home.runs)]

    @app.post("/api/runs", status_code=201)
    def start_run(settings: dict[str, Any]) -> dict[str, Any]:
        """Start a run from a TrainConfig's fields (the same names as `cardmetry train`'s options)."""
        try:
            config = TrainConfig.model_validate(settings)
        except ValidationError as error:
            raise HTTPException(422, [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]}
                                      for e in error.errors()]) from None
        problems = [{"field": field, "problem": problem} for field in ("data", "val", "synthetic")
                    if (problem := _not_a_stored_dataset(getattr(config, field)))]
        if config.weights is not None:  # a file or address on the server, which some frameworks would fetch
            problems.append({"field": "weights", "problem": "starting weights cannot be named through the web app; "
                                                           "use `cardmetry train --weights` on the server"})
        if problems:
            raise HTTPException(422, problems)
        run = create_run(home.runs, config)
        executor.submit(run.id)
        return {"id": run.id}

    @app.get("/api/runs/{run_id}")
    def get_run(run_id: str) -> dict[str, Any]:
        run = _run(home, run_id)
        worker = executor.running().get(run.id)
        queued = run.id in executor.queued()
        return {**asdict(summarise(run)), "config": run.read_config().as_json(), "worker_pid": worker,
                "queued": queued}

    @app.get("/api/runs/{run_id}/events")
    def get_events(run_id: str, after: int = 0) -> list[dict[str, Any]]:
        return read_events(_run(home, run_id).events, after)

    @app.post("/api/runs/{run_id}/stop")
    def stop_run(run_id: str) -> dict[str, str]:
        return _request(_active(run_id), "stop")

    @app.post("/api/runs/{run_id}/cancel")
    def cancel_run(run_id: str) -> dict[str, str]:
        return _request(_active(run_id), "cancel")

    def _active(run_id: str) -> RunDir:
        """The run, if a worker runs it or it waits for one: a request left for a run that is not running would
        end its next stretch at once (a cancel, deleting its checkpoints)."""
        run = _run(home, run_id)
        if run.id not in executor.running() and run.id not in executor.queued():
            raise HTTPException(409, f"run {run_id} is not running")
        return run

    @app.post("/api/runs/{run_id}/resume")
    def resume_run(run_id: str) -> dict[str, str]:
        run = _run(home, run_id)
        try:
            executor.submit(run.id, resume=True)
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        return {"id": run.id}

    @app.websocket("/ws/runs/{run_id}")
    async def run_events(websocket: WebSocket, run_id: str, after: int = 0) -> None:
        """The run's events after `after`, then each new one as it is written; {"type": "ping"} when quiet."""
        if not allowed(websocket.headers, websocket.query_params, websocket.cookies):
            await websocket.close(code=4401, reason=NO_TOKEN)
            return
        origin = websocket.headers.get("origin")
        if allowed_hosts is not None and origin and urlsplit(origin).hostname not in allowed_hosts:
            await websocket.close(code=4403, reason=f"a page from {origin} may not watch runs here")
            return
        try:
            run = _run(home, run_id)
        except HTTPException as error:
            await websocket.close(code=4404, reason=str(error.detail))
            return
        await websocket.accept()
        follower = EventFollower(run.events, after)
        # The client sends nothing; reading is how its going away is noticed at once, not at the next send (a
        # server shutting down waits for every connection's handler to end).
        closed = asyncio.create_task(_until_disconnected(websocket))
        last_sent, live = time.monotonic(), False  # the first read replays: its lag is not the server's
        try:
            while not closed.done():
                events = await asyncio.to_thread(follower.new_events)
                for event in events:
                    await websocket.send_json(event)
                    if live:
                        metrics.event_lag_seconds.observe(max(0.0, time.time() - event["time"]))
                live = True
                now = time.monotonic()
                if events:
                    last_sent = now
                elif now - last_sent >= PING_SECONDS:
                    await websocket.send_json({"type": "ping", "time": round(time.time(), 3), "after": follower.after})
                    last_sent = now
                await asyncio.wait({closed}, timeout=POLL_SECONDS)
        except (WebSocketDisconnect, RuntimeError):  # gone while sending (RuntimeError: after its close)
            return
        finally:
            closed.cancel()

    return app


async def _until_disconnected(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


def _not_a_stored_dataset(reference: str | None) -> str | None:
    """Why a request's dataset reference is refused, or None. The web app trains on stored datasets only
    (NAME or NAME@VERSION): a request never names a folder on the server, and a name that is also a folder beside
    the server (which `cardmetry train` would read as that folder) is refused rather than guessed."""
    if reference is None:
        return None
    try:
        check_name(reference.partition("@")[0])
    except ValueError as error:
        return f"{error}; the web app trains on stored datasets (NAME or NAME@VERSION)"
    if Path(reference).exists():
        return f"{reference!r} is also a folder beside the server; name a stored dataset only"
    return None


def _request(run: RunDir, what: ControlRequest) -> dict[str, str]:
    run.request(what)
    return {"requested": what}


def _run(home: Home, run_id: str) -> RunDir:
    """The run folder a request names; 404 for an id that is not a run (and never a path outside the runs)."""
    try:
        run = RunDir.in_runs(home.runs, run_id)
    except ValueError as error:
        raise HTTPException(404, str(error)) from None
    if not run.config_file.is_file():
        raise HTTPException(404, f"no run {run_id!r}")
    return run
