"""Runs: the API that starts, lists, stops, cancels and resumes them, the WebSocket that streams a run's events,
and the train and run pages.

It holds no training logic: runs go to the executor (`cardmetry.orchestrator.local`), which runs them in worker
processes, and everything shown is read back from the runs' folders. A run's events are streamed from its event
log, so a page that connects late, or reconnects with `after=SEQ`, first gets what it missed, and a server restart
loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from cardmetry.server.context import ServerContext
from cardmetry.server.pages import page
from cardmetry.store.datasets import check_name
from cardmetry.training.config import TrainConfig
from cardmetry.training.events import EventFollower, read_events
from cardmetry.training.runs import ControlRequest, RunDir, create_run, run_summaries, summarise

POLL_SECONDS = 0.2  # how often a WebSocket looks for new events
PING_SECONDS = 15.0  # an application-level ping this often keeps proxies from closing a quiet connection


def router(
    ctx: ServerContext, allowed: Callable[[Any, Any, Any], bool], allowed_hosts: Sequence[str] | None, no_token: str
) -> APIRouter:
    """The runs' routes. `allowed` checks a WebSocket's token (the HTTP middleware does not see WebSockets);
    with `allowed_hosts`, a WebSocket opened by a page from another origin is refused."""
    api = APIRouter()
    executor = ctx.executor

    @api.get("/train", response_class=HTMLResponse, include_in_schema=False)
    def train_page(request: Request) -> HTMLResponse:
        return page(request, "train.html", "Train", "train", runs=run_summaries(ctx.home.runs))

    @api.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        run = ctx.run(run_id)
        return page(request, "run.html", f"Run {run.id}", "train", run=summarise(run))

    @api.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        return [asdict(summary) for summary in run_summaries(ctx.home.runs)]

    @api.post("/api/runs", status_code=201)
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
        run = create_run(ctx.home.runs, config)
        executor.submit(run.id)
        return {"id": run.id}

    @api.get("/api/runs/{run_id}")
    def get_run(run_id: str) -> dict[str, Any]:
        run = ctx.run(run_id)
        worker = executor.running().get(run.id)
        queued = run.id in executor.queued()
        return {**asdict(summarise(run)), "config": run.read_config().as_json(), "worker_pid": worker,
                "queued": queued}

    @api.get("/api/runs/{run_id}/events")
    def get_events(run_id: str, after: int = 0) -> list[dict[str, Any]]:
        return read_events(ctx.run(run_id).events, after)

    @api.post("/api/runs/{run_id}/stop")
    def stop_run(run_id: str) -> dict[str, str]:
        return _request(_active(run_id), "stop")

    @api.post("/api/runs/{run_id}/cancel")
    def cancel_run(run_id: str) -> dict[str, str]:
        return _request(_active(run_id), "cancel")

    def _active(run_id: str) -> RunDir:
        """The run, if a worker runs it or it waits for one: a request left for a run that is not running would
        end its next stretch at once (a cancel, deleting its checkpoints)."""
        run = ctx.run(run_id)
        if run.id not in executor.running() and run.id not in executor.queued():
            raise HTTPException(409, f"run {run_id} is not running")
        return run

    @api.post("/api/runs/{run_id}/resume")
    def resume_run(run_id: str) -> dict[str, str]:
        run = ctx.run(run_id)
        try:
            executor.submit(run.id, resume=True)
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        return {"id": run.id}

    @api.websocket("/ws/runs/{run_id}")
    async def run_events(websocket: WebSocket, run_id: str, after: int = 0) -> None:
        """The run's events after `after`, then each new one as it is written; {"type": "ping"} when quiet."""
        if not allowed(websocket.headers, websocket.query_params, websocket.cookies):
            await websocket.close(code=4401, reason=no_token)
            return
        origin = websocket.headers.get("origin")
        if allowed_hosts is not None and origin and urlsplit(origin).hostname not in allowed_hosts:
            await websocket.close(code=4403, reason=f"a page from {origin} may not watch runs here")
            return
        try:
            run = ctx.run(run_id)
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
                        ctx.metrics.event_lag_seconds.observe(max(0.0, time.time() - event["time"]))
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

    return api


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
