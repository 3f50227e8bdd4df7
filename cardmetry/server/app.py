"""The web app: the access token and host checks, the open paths (/healthz, /favicon.ico, /metrics), the static
files, and the routes of each part (runs, datasets, models, grading), each in a module of its own.

It holds no training or measuring logic: runs go to the executor, which runs them in worker processes, and the
pages and API read back what the runs' folders and the store hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server import datasets, grading, models, runs
from cardmetry.server.context import ServerContext
from cardmetry.server.limits import BodyLimit
from cardmetry.server.metrics import CONTENT_TYPE, ServerMetrics
from cardmetry.server.pages import STATIC
from cardmetry.store.database import Catalog
from cardmetry.store.home import Home
from cardmetry.store.uploads import MAX_UPLOAD_BYTES

OPEN_PATHS = ("/healthz", "/favicon.ico")  # answered without the access token
TOKEN_COOKIE = "cardmetry_token"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_TOKEN = "an access token is needed (docs/cli.md, cardmetry serve)"
CATALOG_SYNC_SECONDS = 2.0  # how far the database index may lag the run folders


def create_app(
    home: Home,
    executor: LocalExecutor,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    catalog: Catalog | None = None,
) -> FastAPI:
    """The app over `home`'s runs, starting runs through `executor`. With a `token`, every request but the open
    paths must carry it: `Authorization: Bearer TOKEN`, a `token` query parameter (which also sets a cookie, so a
    browser asks once) or that cookie. With `allowed_hosts` (`cardmetry serve` on loopback, where there is no
    token), a request naming another host, or a WebSocket opened by a page from another origin, is refused: a web
    page the user visits cannot reach the API through DNS rebinding or a cross-site request. The `catalog` (by
    default the home's database) is synced once here and then every couple of seconds while the app runs."""
    catalog = catalog or Catalog.open(home)
    catalog.sync()
    app = FastAPI(title="cardmetry", summary="Train card-border models and measure cards.",
                  lifespan=_keep_in_step(catalog))
    app.add_middleware(BodyLimit, max_bytes=MAX_UPLOAD_BYTES)  # innermost: the token and host checks answer first
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    metrics = ServerMetrics(home, executor)
    ctx = ServerContext(home, executor, metrics, catalog)

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
        if request.url.path not in OPEN_PATHS and not allowed(request.headers, request.query_params, request.cookies):
            response: Response = JSONResponse({"detail": NO_TOKEN}, 401)
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

    @app.get("/", include_in_schema=False)
    def home_page() -> RedirectResponse:
        return RedirectResponse("/train")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(runs.router(ctx, allowed, allowed_hosts, NO_TOKEN))
    app.include_router(datasets.router(ctx))
    app.include_router(models.router(ctx))
    app.include_router(grading.router(ctx))
    return app


def _keep_in_step(catalog: Catalog) -> Any:
    """The app's lifespan: a task that syncs the catalog in a worker thread every CATALOG_SYNC_SECONDS (the sync
    reads files and writes the database; the event loop never waits on it), cancelled when the app stops."""

    async def keep_syncing() -> None:
        while True:
            await asyncio.sleep(CATALOG_SYNC_SECONDS)
            try:
                await asyncio.to_thread(catalog.sync)
            except Exception:  # a failed sync (a locked or unreachable database) is retried, never fatal
                logging.getLogger(__name__).exception("the catalog sync failed; trying again")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(keep_syncing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return lifespan
