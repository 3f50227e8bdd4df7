"""Helpers for the browser tests: what a page did wrong while a test drove it, and screenshots under test-output/.

Imported by the tests and by conftest.py; the fixtures themselves live in conftest.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Locator, Page, Request, Response, WebSocket, expect

from cardmetry.data.synth.dataset import SynthOptions, write_synth

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
SCREENSHOT_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
LOCAL_SCHEMES = ("data:", "blob:", "about:")  # never leave the browser, so never reach a network
# Chromium also logs every 4xx/5xx answer to the console in these words; the response listener reports those, with
# the status and the path, and knows which ones a test expects.
RESOURCE_CONSOLE_ERROR = "Failed to load resource: the server responded with a status of"
# How Chromium reports a request it cancelled itself, as when the page that made it is left: no server failed.
ABORTED = "net::ERR_ABORTED"


@dataclass
class LiveServer:
    """A real `cardmetry serve` the browser talks to."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    token: str
    home: Path


@dataclass
class PageProblems:
    """Everything that went wrong in the pages a test drove: JavaScript errors (logged or thrown), answers of 400
    and over from the app, requests that failed on the way (but not those the browser aborted itself, as it does
    with a page's fetches when the page is left), and requests to any other origin (the app is offline: no CDN, no
    web fonts). A test that provokes an error answer on purpose says so with `allow`."""

    origin: str
    problems: list[str] = field(default_factory=list)
    allowed: list[tuple[int, str]] = field(default_factory=list)
    answered_with_error: set[str] = field(default_factory=set)  # URLs already reported by their status

    def allow(self, status: int, path: str) -> None:
        """An answer with `status` to a request for exactly `path` (no query) is expected, not a problem."""
        self.allowed.append((status, path))

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught JavaScript error: {error.name}: {error}"))
        page.on("request", self._on_request)
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_request_failed)
        page.on("websocket", self._on_websocket)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(RESOURCE_CONSOLE_ERROR):
            where = message.location
            self.problems.append(f"console error at {where.get('url')}:{where.get('lineNumber')}: {message.text}")

    def _on_request(self, request: Request) -> None:
        if not request.url.startswith((self.origin, *LOCAL_SCHEMES)):
            self.problems.append(f"request to another origin (the app must work offline): {request.url}")

    def _on_response(self, response: Response) -> None:
        path = urlsplit(response.url).path
        if response.status >= 400:
            self.answered_with_error.add(response.url)
            if (response.status, path) not in self.allowed:
                self.problems.append(f"{response.status} answer to {response.request.method} {path}")

    def _on_request_failed(self, request: Request) -> None:
        if request.url in self.answered_with_error:
            return  # Chromium also aborts a script or style sheet that came back 404: one problem, told once
        if request.failure == ABORTED:
            return  # cancelled by the browser (the page was left, or replaced the request), not failed by the server
        self.problems.append(f"request failed ({request.failure}): {request.method} {request.url}")

    def _on_websocket(self, socket: WebSocket) -> None:
        socket.on("socketerror", lambda error: self.problems.append(f"WebSocket {socket.url} failed: {error}"))

    def check(self) -> None:
        """Fail the test when anything went wrong, naming every problem."""
        if self.problems:
            pytest.fail("the pages had problems:\n" + "\n".join(self.problems), pytrace=False)


def sign_in(context: BrowserContext, server: LiveServer) -> None:
    """Put the access token in the context's cookie jar without opening a page. Any URL with `?token=` sets the
    cookie: the token-flow test opens the one `cardmetry serve` prints (/, which shows the Train page), while
    /healthz does it here, so that a broken Train page fails its own tests and not every test."""
    answer = context.request.get(f"/healthz?token={server.token}")
    assert answer.ok, f"signing in: {answer.status}"


def screenshot(page: Page, name: str) -> Path:
    """The whole page as test-output/screenshots/NAME.png (NAME: lower-case letters, digits and dashes)."""
    if not SCREENSHOT_NAME.fullmatch(name):
        raise ValueError(f"screenshot name {name!r}: use lower-case letters, digits and dashes only")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def wait_until_quiet(page: Page, quiet_ms: int = 2500, timeout_ms: int = 30_000) -> None:
    """Wait until none of the page's requests has been in flight for `quiet_ms`: the page has settled (a run page
    asks the server again until an ended run's worker has exited). Playwright's "networkidle" is only 500 ms of
    quiet, shorter than the pauses between the run page's follow-up requests."""
    page.wait_for_load_state("networkidle")
    in_flight: set[Request] = set()
    changes = [0]  # bumped by every start and end of a request

    def started(request: Request) -> None:
        in_flight.add(request)
        changes[0] += 1

    def ended(request: Request) -> None:
        in_flight.discard(request)
        changes[0] += 1

    listeners = {"request": started, "requestfinished": ended, "requestfailed": ended}
    for event, listener in listeners.items():
        page.on(event, listener)
    tick_ms, quiet_for, waited = 100, 0, 0
    try:
        while quiet_for < quiet_ms:
            if waited > timeout_ms:
                raise AssertionError(f"the page was not quiet for {quiet_ms} ms within {timeout_ms} ms: {in_flight}")
            seen = changes[0]
            page.wait_for_timeout(tick_ms)  # lets Playwright deliver the page's events meanwhile
            waited += tick_ms
            quiet_for = quiet_for + tick_ms if changes[0] == seen and not in_flight else 0
    finally:
        for event, listener in listeners.items():
            page.remove_listener(event, listener)


def upload_rendered_cards(api: httpx.Client, name: str, scratch: Path, count: int, seed: int) -> str:
    """`count` rendered cards (100 dpi) stored as dataset `name` through the upload API; the version stored."""
    write_synth(scratch, SynthOptions(count=count, seed=seed, dpi=100, supersample=1))
    files = [("files", (f"cards/{part}/{path.name}", path.read_bytes()))
             for part in ("images", "labels") for path in sorted((scratch / part).iterdir())]
    answer = api.post(f"/api/datasets/{name}/upload", files=files)
    assert answer.status_code == 201, answer.text
    assert answer.json()["trainable"] is True, answer.json()["problems"]
    return str(answer.json()["version"])


def submit_card(page: Page, image: Path) -> Locator:
    """Open the Grade page, measure `image` as a card's front, and wait for the answer; the result panel."""
    page.goto("/grade")
    page.wait_for_load_state("networkidle")
    page.set_input_files("#front", image)
    page.click("#measure")
    result = page.locator("#result")
    expect(result).to_be_visible(timeout=60_000)
    return result

