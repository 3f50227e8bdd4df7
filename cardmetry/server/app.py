"""The web app: the access token and host checks, the refusal of requests sent by other sites' pages, the
security headers on every answer, the bound on request bodies, the open paths (/healthz and /favicon.ico: every
other path, /metrics included, needs the token when there is one), the static files, the API's own docs page
(/docs, served from the vendored Swagger UI), and the routes of each part (runs, datasets, models, grading),
each in a module of its own.

It holds no training or measuring logic: runs go to the executor, which runs them in worker processes, and the
pages and API read back what the runs' folders and the store hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from importlib import resources
from typing import Any, cast
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import BaseRoute, Route

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server import datasets, grading, models, runs
from cardmetry.server.context import ServerContext
from cardmetry.server.limits import DEFAULT_MAX_BYTES, BodyLimit, RouteLimit
from cardmetry.server.metrics import CONTENT_TYPE, ServerMetrics
from cardmetry.server.pages import STATIC
from cardmetry.store.database import Catalog
from cardmetry.store.home import Home
from cardmetry.store.uploads import MAX_UPLOAD_BYTES
from cardmetry.training.config import TrainConfig

OPEN_PATHS = ("/healthz", "/favicon.ico")  # answered without the access token
TOKEN_COOKIE = "cardmetry_token"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NO_TOKEN = "an access token is needed (docs/cli.md, cardmetry serve)"
CATALOG_SYNC_SECONDS = 2.0  # how far the database index may lag the run folders
# Requests that only read: a page of another site may send these (it cannot read the answer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443}
SWAGGER_UI = "/static/vendor/swagger-ui"
FRAME_POLICY = "frame-ancestors 'none'"


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
    # docs_url=None: FastAPI's own /docs and /redoc load their scripts from CDNs; /docs below is served from here.
    app = FastAPI(title="cardmetry", summary="Train card-border models and measure cards.",
                  lifespan=_keep_in_step(catalog), docs_url=None, redoc_url=None)
    app.openapi = _openapi_with_request_bodies(app)  # type: ignore[method-assign]
    # Innermost: the token, origin and host checks answer first.
    app.add_middleware(BodyLimit, max_bytes=DEFAULT_MAX_BYTES, routes=body_limits())
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    metrics = ServerMetrics(home, executor, catalog)
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
    async def guard(request: Request, call_next: Any) -> Response:
        began = time.perf_counter()
        refusal = cross_site_refusal(request.method, request.headers, allowed_hosts)
        if refusal is not None:
            response: Response = JSONResponse({"detail": refusal}, 403)
        elif request.url.path not in OPEN_PATHS and not allowed(request.headers, request.query_params,
                                                                   request.cookies):
            response = JSONResponse({"detail": NO_TOKEN}, 401)
        else:
            response = await call_next(request)
            if token is not None and request.query_params.get("token") == token:
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        add_security_headers(response)
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

    @app.get("/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        """Swagger UI over /openapi.json, every file of it served from here (offline; no validator badge)."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="cardmetry API", swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css", swagger_favicon_url="/favicon.ico",
            swagger_ui_parameters={"validatorUrl": None})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    parts = [runs.router(ctx, allowed, allowed_hosts, NO_TOKEN), datasets.router(ctx), models.router(ctx),
             grading.router(ctx)]
    for part in parts:
        app.include_router(part)
    every_route = [*app.routes, *(route for part in parts for route in part.routes)]
    app.add_exception_handler(405, method_not_allowed(every_route))
    return app


def method_not_allowed(routes: Iterable[BaseRoute]) -> Callable[[Request, Exception], Any]:
    """The 405 answer, with every method the path takes in `Allow`: the router's own names only the first route
    that matched the path (`Allow: GET` for /api/runs, which takes POST too)."""
    http_routes = [route for route in routes if isinstance(route, Route)]

    async def answer(request: Request, error: Exception) -> Response:
        path = request.scope["path"]
        methods = sorted({method for route in http_routes if route.path_regex.match(path)
                          for method in route.methods or ()})
        if not methods:  # a 405 that is not a route's (the static files'): the framework's own answer
            return await http_exception_handler(request, cast(StarletteHTTPException, error))
        detail = f"{request.method} is not allowed on {path}; it takes {', '.join(methods)}"
        return JSONResponse({"detail": detail}, 405, headers={"Allow": ", ".join(methods)})

    return answer


def body_limits() -> tuple[RouteLimit, ...]:
    """The routes that take files, with the larger bodies they allow (every other route: DEFAULT_MAX_BYTES). Read
    when an app is made, so each number keeps one source: the store's upload limit, the grading form's cap."""
    return (
        RouteLimit("POST", r"/api/datasets/[^/]+/upload", MAX_UPLOAD_BYTES),
        RouteLimit("POST", r"/api/grade", grading.MAX_FORM_BYTES),
    )


def cross_site_refusal(method: str, headers: Any, allowed_hosts: Sequence[str] | None) -> str | None:
    """Why a request that changes something must be refused as sent by another site's page, or None. A browser
    names the page's origin (`Origin`) and, in newer ones, how it relates to this site (`Sec-Fetch-Site`); a
    request without either (curl, scripts) is not a browser's and passes: the token, where there is one, guards
    it. Without this any page the user visits could upload, grade or stop runs on a loopback server."""
    if method.upper() in SAFE_METHODS:
        return None
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return f"refused: a page of another site may not send {method} requests here (Sec-Fetch-Site: cross-site)"
    origin = headers.get("origin")
    if origin is not None and not same_origin(origin, headers.get("host", ""), allowed_hosts):
        return f"refused: a page from {origin} may not send {method} requests here (its origin is not this server)"
    return None


def same_origin(origin: str, host: str, allowed_hosts: Sequence[str] | None) -> bool:
    """Whether `origin` (scheme://host[:port], or "null" from a sandboxed page or a file) names the host and port
    the request was sent to (its `Host`), and, with `allowed_hosts`, one of those hosts."""
    given, own = urlsplit(origin), urlsplit(f"//{host}")
    if given.scheme not in DEFAULT_PORTS or not given.hostname or not own.hostname:
        return False
    try:  # a Host without a port was sent to the default port of the page's scheme
        given_port, own_port = given.port or DEFAULT_PORTS[given.scheme], own.port or DEFAULT_PORTS[given.scheme]
    except ValueError:  # a port that is not a number
        return False
    if (given.hostname, given_port) != (own.hostname, own_port):
        return False
    return allowed_hosts is None or given.hostname in allowed_hosts


def add_security_headers(response: Response) -> None:
    """No page of ours may be framed by another (clickjacking), sniffed into another type, or leak its address
    to another site. A response with a policy of its own (the grading report's) keeps it, framing refused too."""
    headers = response.headers
    policy = headers.get("content-security-policy")
    if policy is None:
        headers["Content-Security-Policy"] = FRAME_POLICY
    elif "frame-ancestors" not in policy:
        headers["Content-Security-Policy"] = f"{policy.rstrip('; ')}; {FRAME_POLICY}"
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")


def _openapi_with_request_bodies(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`, with what the generated document cannot know: POST /api/runs takes a TrainConfig (the route
    reads a plain object so that it can answer 422 with `{field, problem}` items of its own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        first = app.openapi_schema is None  # FastAPI builds the document once and keeps it
        document = build()
        if first:
            _describe_request_bodies(document)
        return document

    return openapi


def _describe_request_bodies(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    config = TrainConfig.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(config.pop("$defs", {}))
    schemas["TrainConfig"] = config
    schemas["FieldProblem"] = {"type": "object", "required": ["field", "problem"], "properties": {
        "field": {"type": "string", "description": "the setting refused, e.g. data or epochs"},
        "problem": {"type": "string", "description": "what is wrong with it"}}}
    start_run = document["paths"]["/api/runs"]["post"]
    start_run["requestBody"] = {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/TrainConfig"}}}}
    start_run["responses"]["422"] = {"description": "settings refused, each with its problem", "content": {
        "application/json": {"schema": {"type": "object", "properties": {
            "detail": {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}}}}}}}


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
