"""Runs: the API that starts, lists, stops, cancels and resumes them, the WebSocket that streams a run's events,
and the train and run pages.

It holds no training logic: runs go to the executor (`cardmetry.orchestrator.local`), which runs them in worker
processes, and everything shown is read back from the runs' folders. A run's events are streamed from its event
log, so a page that connects late, or reconnects with `after=SEQ`, first gets what it missed, and a server restart
loses nothing. The list of runs (GET /api/runs, the train page) is read from the catalog, the database index over
the runs' logs, synced first (it reads only what was written since the last sync), so a poll does not read every
run's whole log; one run (GET /api/runs/{id}, the run page) is summarised from its log itself, exact to the event.

A run's detail adds what only the executor knows to the summary the events give: `status` (queued, starting,
running, or how it ended) and the `actions` (stop, cancel, resume) the API accepts now, so the pages never guess
either. The train page's start form is built from TrainConfig's own fields (types, defaults, bounds, help); the
pages' live parts are static/run.js (watching a run) and static/train.js.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import annotated_types
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from cardmetry.models.registry import list_backends
from cardmetry.orchestrator.local import OUTPUT_FILE, WORKER_FILE, LocalExecutor
from cardmetry.server.context import ServerContext
from cardmetry.server.errors import error_responses
from cardmetry.server.pages import page
from cardmetry.server.threads import run_poll
from cardmetry.store.database import Catalog
from cardmetry.store.datasets import check_name, list_datasets, load_version
from cardmetry.store.home import Home
from cardmetry.training.config import AugmentConfig, TrainConfig
from cardmetry.training.events import TERMINAL, EventFollower, iter_events, read_events
from cardmetry.training.runs import ControlRequest, RunDir, RunSummary, create_run, summarise, tail_lines

POLL_SECONDS = 0.2  # how often a WebSocket looks for new events
PING_SECONDS = 15.0  # an application-level ping this often keeps proxies from closing a quiet connection
MAX_LOG_LINES = 500  # the most lines /api/runs/{id}/log answers with, whatever is asked
MAX_EVENTS = 1000  # the most events /api/runs/{id}/events answers with, whatever is asked; X-More says if more remain
# A WebSocket's first read (the replay) sends only this many of the batch events it holds, the newest: the run
# page keeps that many per-batch losses for its chart (static/run.js, BATCH_POINTS), and a long run's older batch
# events are most of its log. Every other event is replayed.
REPLAY_BATCHES = 3000
# A run that ended so goes on from its last checkpoint. A "created" run with neither a worker nor a place in the
# queue never started (its queue marker was lost, or it was made by hand): resuming it starts it.
RESUMABLE = ("stopped", "failed", "created")
# The start form's settings, read from TrainConfig itself (type, default, bounds, help) so they never drift from
# it. The data sets, role, backend and variant have controls of their own; `weights` is refused by the API and
# the event throttles are not a user's business.
BASIC_SETTINGS = ("epochs", "batch", "imgsz", "lr", "patience", "device", "threads")
ADVANCED_SETTINGS = ("val_share", "synthetic_share", "pretrained", "weight_decay", "scheduler", "warmup_steps", "seed",
                     "loader_workers", "epoch_size", "max_steps", "border_eval_images")


def router(
    ctx: ServerContext, allowed: Callable[[Any, Any, Any], bool], allowed_hosts: Sequence[str] | None, no_token: str
) -> APIRouter:
    """The runs' routes. `allowed` checks a WebSocket's token (the HTTP middleware does not see WebSockets);
    with `allowed_hosts`, a WebSocket opened by a page from another origin is refused."""
    api = APIRouter()
    executor = ctx.executor

    @api.get("/train", response_class=HTMLResponse, include_in_schema=False)
    def train_page(request: Request) -> HTMLResponse:
        return page(request, "train.html", "Train", "train", runs=_listed_runs(executor, ctx.catalog),
                    datasets=list_datasets(ctx.home), backends=[info.as_json() for info in list_backends()],
                    **start_form())

    @api.get("/runs/{run_id}", response_class=HTMLResponse, include_in_schema=False)
    def run_page(request: Request, run_id: str) -> HTMLResponse:
        run = ctx.run(run_id)
        detail, config = _detail(run), run.read_config()
        # Before its worker has resolved it, a run started without a variant trains on its backend's default.
        defaults = {info.name: info.default_variant for info in list_backends()}
        variant = detail["variant"] or defaults.get(config.backend, "")
        return page(request, "run.html", f"Run {run.id}", "train", run=detail, config=config, variant=variant)

    @api.get("/api/backends")
    def backends() -> list[dict[str, object]]:
        """Every backend with its variants, default variant, and whether it can train here (and why not)."""
        return [info.as_json() for info in list_backends()]

    @api.get("/api/runs")
    def list_runs() -> list[dict[str, Any]]:
        """Every run, newest first: its summary as its events give it, status and actions as in one run's."""
        return _listed_runs(executor, ctx.catalog)

    @api.post("/api/runs", status_code=201)
    def start_run(settings: Annotated[dict[str, Any], Depends(settings_object)]) -> dict[str, Any]:
        """Start a run from a TrainConfig's fields (the same names as `cardmetry train`'s options)."""
        try:
            config = TrainConfig.model_validate(settings)
        except ValidationError as error:
            raise HTTPException(422, [{"field": ".".join(map(str, e["loc"])), "problem": _problem(e["msg"])}
                                      for e in error.errors()]) from None
        problems, pinned = [], {}
        for field in ("data", "val", "synthetic"):
            reference = getattr(config, field)
            if reference is None:
                continue
            try:
                pinned[field] = _stored_version(ctx.home, reference)
            except ValueError as error:
                problems.append({"field": field, "problem": str(error)})
        if config.weights is not None:  # a file or address on the server, which some frameworks would fetch
            problems.append({"field": "weights", "problem": "starting weights cannot be named through the web app; "
                                                           "use `cardmetry train --weights` on the server"})
        if problems:
            raise HTTPException(422, problems)
        # Pinned to the version stored now: a resume, or a rerun of this config, trains on exactly these images.
        run = create_run(ctx.home.runs, config.model_copy(update=pinned))
        executor.submit(run.id)
        return {"id": run.id}

    def _detail(run: RunDir) -> dict[str, Any]:
        last_seq = last_event_seq(run.events)  # read first: the summary then covers at least this event
        listed = _listed(run, summarise(run), executor.running(), executor.queued())
        return {**listed, "config": run.read_config().as_json(), "last_seq": last_seq}

    @api.get("/api/runs/{run_id}", responses=error_responses(404))
    def get_run(run_id: str) -> dict[str, Any]:
        """The run's summary, its config, its worker (pid, or None) and whether it waits in the queue; `status`
        tells "queued" and "starting" (a worker reading the data) apart from a run merely created, and `actions`
        says which of stop, cancel and resume the API would accept now."""
        return _detail(ctx.run(run_id))

    @api.get("/api/runs/{run_id}/log", responses=error_responses(404, 422))
    def get_log(run_id: str, lines: int = Query(100, ge=1, description=f"at most {MAX_LOG_LINES}")) -> dict[str, Any]:
        """The last lines of the run's log.txt; for a failed run also those of worker.log (what its worker
        process printed: a crash before the run's own log began shows only there)."""
        run = ctx.run(run_id)
        count = min(lines, MAX_LOG_LINES)
        failed = summarise(run).state == "failed"
        return {"lines": tail_lines(run.log, count), "worker_output": tail_lines(run.path / OUTPUT_FILE, count)
                if failed else None}

    @api.get("/api/runs/{run_id}/events", responses=error_responses(404, 422))
    def get_events(
        run_id: str, response: Response, after: int = 0,
        limit: int = Query(MAX_EVENTS, ge=1, description=f"at most {MAX_EVENTS}"),
    ) -> list[dict[str, Any]]:
        """The run's first `limit` (at most MAX_EVENTS) events after `after`, in order. `X-More: true` when more
        remain, with a `Link` header naming the next page (after the last seq here)."""
        run, count = ctx.run(run_id), min(limit, MAX_EVENTS)
        events = list(itertools.islice(iter_events(run.events, after), count + 1))
        more = len(events) > count
        if more:
            events.pop()
            following = f"/api/runs/{run.id}/events?after={events[-1]['seq']}&limit={count}"
            response.headers["Link"] = f'<{following}>; rel="next"'
        response.headers["X-More"] = "true" if more else "false"
        return events

    @api.post("/api/runs/{run_id}/stop", responses=error_responses(404, 409))
    def stop_run(run_id: str) -> dict[str, str]:
        return _request(_active(run_id), "stop")

    @api.post("/api/runs/{run_id}/cancel", responses=error_responses(404, 409))
    def cancel_run(run_id: str) -> dict[str, str]:
        return _request(_active(run_id), "cancel")

    def _active(run_id: str) -> RunDir:
        """The run, if a worker runs it or it waits for one: a request left for a run that is not running would
        end its next stretch at once (a cancel, deleting its checkpoints)."""
        run = ctx.run(run_id)
        if run.id not in executor.running() and run.id not in executor.queued():
            raise HTTPException(409, f"run {run_id} is not running")
        return run

    @api.post("/api/runs/{run_id}/resume", responses=error_responses(404, 409))
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
                events = await run_poll(follower.new_events)  # a pool of its own: never starved
                if not live:
                    events = replayed(events)
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


def _problem(message: str) -> str:
    """A validator's message as the form shows it: pydantic puts "Value error, " before a check's own words."""
    return message.removeprefix("Value error, ")


async def settings_object(request: Request) -> dict[str, Any]:
    """POST /api/runs's body, a JSON object, read here rather than by the framework so that every refusal of the
    route has the one shape the train page shows beside its fields, `[{field, problem}]`: the framework answers a
    missing or malformed body in a shape of its own."""
    body = await request.body()
    try:
        settings = json.loads(body) if body.strip() else {}
    except ValueError as error:  # not JSON, or not UTF-8 (UnicodeDecodeError is a ValueError)
        raise HTTPException(422, [{"field": "body", "problem": f"not JSON: {error}"}]) from None
    if not isinstance(settings, dict) or not body.strip():
        given = f"JSON {json.dumps(settings)[:40]}" if body.strip() else "an empty body"
        raise HTTPException(422, [{"field": "body", "problem": f"send the run's settings as a JSON object "
                                                               f"(TrainConfig's fields), not {given}"}])
    return settings


async def _until_disconnected(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


def _stored_version(home: Home, reference: str) -> str:
    """The stored, trainable dataset version a request names, as NAME@VERSION; ValueError saying why not. The web
    app trains on stored datasets only (NAME or NAME@VERSION): a request never names a folder on the server, and a
    name that is also a folder beside the server (which `cardmetry train` would read as that folder) is refused
    rather than guessed."""
    name, _, version = reference.partition("@")
    try:
        check_name(name)
    except ValueError as error:
        raise ValueError(f"{error}; the web app trains on stored datasets (NAME or NAME@VERSION)") from None
    if Path(reference).exists():
        raise ValueError(f"{reference!r} is also a folder beside the server; name a stored dataset only")
    try:
        _, document = load_version(home, name, version or None)
    except (FileNotFoundError, ValueError):
        raise ValueError(f"no stored dataset {reference!r}: upload it on the Datasets page") from None
    validation = document.get("validation")
    if isinstance(validation, dict) and not validation.get("trainable", True):
        raise ValueError(f"{name}@{document['version']} has validation errors: its page on Datasets lists them")
    return f"{name}@{document['version']}"


def _request(run: RunDir, what: ControlRequest) -> dict[str, str]:
    run.request(what)
    return {"requested": what}


def replayed(events: list[dict[str, Any]], keep_batches: int | None = None) -> list[dict[str, Any]]:
    """What a WebSocket's first read sends of the events it read: all but the batch events older than the newest
    `keep_batches` (default REPLAY_BATCHES)."""
    keep = REPLAY_BATCHES if keep_batches is None else keep_batches
    skip = sum(event["type"] == "batch" for event in events) - keep
    if skip <= 0:
        return events
    kept = []
    for event in events:
        if event["type"] == "batch" and skip > 0:
            skip -= 1
            continue
        kept.append(event)
    return kept


def _listed_runs(executor: LocalExecutor, catalog: Catalog) -> list[dict[str, Any]]:
    """Every run, newest first, from the catalog (its runs synced first: a run started a moment ago is there)."""
    catalog.sync_runs()
    running, queued = executor.running(), executor.queued()
    runs_root = catalog.home.runs
    return [_listed(RunDir(runs_root / row["id"]), _summary_of(row), running, queued) for row in catalog.runs()]


def _summary_of(row: dict[str, Any]) -> RunSummary:
    """The RunSummary `summarise` would give, from the run's row in the catalog (which folds the same events)."""
    return RunSummary(row["id"], row["role"], row["backend"], row["variant"], row["state"], row["epochs_finished"],
                      row["best_metric"], row["border_error_mm"])


def _listed(run: RunDir, summary: RunSummary, running: dict[str, int], queued: list[str]) -> dict[str, Any]:
    """A run's summary with what only the executor knows: its worker, whether it is queued, its status and the
    actions the API accepts now (the same checks as the stop, cancel and resume routes)."""
    worker, waiting = running.get(summary.id), summary.id in queued
    exiting = worker is not None and summary.state in TERMINAL and _ended_since_launch(run)
    working = worker is not None and not exiting
    actions = {"stop": working or waiting, "cancel": working or waiting,
               "resume": worker is None and not waiting and summary.state in RESUMABLE}
    return {**asdict(summary), "worker_pid": worker, "queued": waiting,
            "status": run_status(summary.state, working, waiting), "actions": actions}


def run_status(state: str, working: bool, queued: bool) -> str:
    """What a run is doing, for people: the summary's state (from the events), except that a run waiting for a
    worker is "queued", and one whose worker has not yet written this stretch's run_started (it reads the data
    first) is "starting", not the previous stretch's end nor a bare "created"."""
    if queued:
        return "queued"
    if working and state != "running":
        return "starting"
    return state


def _ended_since_launch(run: RunDir) -> bool:
    """Whether the run's events went on after its worker was launched (worker.json's `from_seq`): with a terminal
    state, that worker has written its end and is exiting; without, it is a resumed run's worker still starting."""
    try:
        from_seq = int(json.loads((run.path / WORKER_FILE).read_text(encoding="utf-8"))["from_seq"])
    except (OSError, ValueError, KeyError, TypeError):  # gone already: the worker has been reaped
        return True
    return last_event_seq(run.events) > from_seq


def last_event_seq(path: Path) -> int:
    """The seq of the run's last complete event (0 before any), read from the log's end."""
    lines = tail_lines(path, 1, window=64 * 1024)
    try:
        return int(json.loads(lines[-1])["seq"]) if lines else 0
    except (ValueError, KeyError, TypeError):  # a line still being written, or one longer than the window
        events = read_events(path)
        return events[-1]["seq"] if events else 0


def start_form() -> dict[str, Any]:
    """What the train page's start form shows, every default from TrainConfig."""
    fields = TrainConfig.model_fields
    return {
        "roles": typing.get_args(fields["role"].annotation), "default_role": fields["role"].default,
        "default_backend": fields["backend"].default, "basic": form_fields(TrainConfig, BASIC_SETTINGS),
        "advanced": form_fields(TrainConfig, ADVANCED_SETTINGS),
        "augment": form_fields(AugmentConfig, tuple(AugmentConfig.model_fields), prefix="augment"),
    }


@dataclass(frozen=True)
class FormField:
    """One setting of the start form, described from a pydantic field."""

    name: str  # the config key, dotted when nested ("augment.scale"); what a 422's `field` names
    input_id: str  # the HTML id: the name with "." as "-"
    kind: Literal["int", "float", "bool", "choice"]
    default: Any  # None: left to the run (the backend's value, all cores...), said in `description`
    optional: bool  # may be left empty
    choices: tuple[str, ...]
    minimum: float | None
    maximum: float | None
    description: str


def form_fields(model: type[BaseModel], names: Sequence[str], prefix: str = "") -> list[FormField]:
    return [_form_field(f"{prefix}.{name}" if prefix else name, model.model_fields[name]) for name in names]


def _form_field(name: str, info: FieldInfo) -> FormField:
    annotation, optional = info.annotation, False
    arguments = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        optional = type(None) in arguments
        annotation = next(argument for argument in arguments if argument is not type(None))
    kind: Literal["int", "float", "bool", "choice"]
    choices: tuple[str, ...] = ()
    if typing.get_origin(annotation) is Literal:
        kind, choices = "choice", tuple(str(choice) for choice in typing.get_args(annotation))
    elif annotation is bool:
        kind = "bool"
    elif annotation is int:
        kind = "int"
    elif annotation is float:
        kind = "float"
    else:
        raise TypeError(f"the start form cannot show {name} ({annotation})")
    minimum = maximum = None
    for bound in info.metadata:
        if isinstance(bound, annotated_types.Ge | annotated_types.Gt):
            minimum = float(bound.ge if isinstance(bound, annotated_types.Ge) else bound.gt)
            if kind == "int" and isinstance(bound, annotated_types.Gt):
                minimum += 1
        elif isinstance(bound, annotated_types.Le | annotated_types.Lt):
            maximum = float(bound.le if isinstance(bound, annotated_types.Le) else bound.lt)
            if kind == "int" and isinstance(bound, annotated_types.Lt):
                maximum -= 1
    return FormField(name, name.replace(".", "-"), kind, info.get_default(call_default_factory=True), optional,
                     choices, minimum, maximum, info.description or "")
