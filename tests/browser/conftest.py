"""Browser tests: a real `cardmetry serve` (one per test session, with an access token, so every page must carry it
in its cookie as a user's browser does), driven by Playwright in Debian's Chromium, which `make test` installs.
Playwright never downloads a browser of its own here.

Each xdist worker that runs a browser test starts its own server and its own Chromium; Playwright gives every
launched Chromium a fresh temporary profile (--user-data-dir), so two never share one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from cardmetry.data.synth.dataset import SynthOptions, write_synth
from tests.browser.browsing import LiveServer, PageProblems, sign_in
from tests.server.servers import free_port, shut_down, start_server, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
# Without these, Chromium calls Google's services at every start (updates, sync, safe browsing, QUIC probes), and
# on a closed network each of those is a refused connection. --no-sandbox: CI runs as root, where the sandbox
# cannot start. Headless is Playwright's default and it adds --headless itself.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 860}
NO_CHROMIUM = f"Debian's chromium is not installed ({CHROMIUM} is missing): run `make test`, which installs it"


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require_chromium() -> None:
    """Skip without Chromium, as on a machine where someone ran pytest without make; under CI, fail instead: a
    missing install step must never turn into a green run that tested no page."""
    if CHROMIUM.exists():
        return
    if under_ci():
        pytest.fail(NO_CHROMIUM)
    pytest.skip(NO_CHROMIUM)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`cardmetry serve` over an empty home, as a user starts it, with an access token."""
    folder = tmp_path_factory.mktemp("browser-server")
    port, token = free_port(), secrets.token_urlsafe(16)
    log = folder / "serve.log"
    with log.open("w") as output:
        process = start_server(folder / "home", port, token=token, output=output)
        try:
            wait_healthy(port, process)
            yield LiveServer(f"http://127.0.0.1:{port}", token, folder / "home")
        finally:
            shut_down(process)
    assert "Traceback" not in log.read_text(), log.read_text()  # an error the pages did not show is still an error


# Per module, not per session: Playwright's sync API keeps an event loop running in this thread while it is open,
# and any later test on the same pytest worker that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def browser_context(browser: Browser, live_server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh context (no cookies yet), with relative URLs resolved against the server."""
    context = browser.new_context(base_url=live_server.url, viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture(scope="module")
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    """The app's API as a script uses it, with the access token in a header."""
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {live_server.token}"},
                      timeout=60) as client:
        yield client


@pytest.fixture
def problems(live_server: LiveServer) -> PageProblems:
    return PageProblems(live_server.url)


@pytest.fixture
def page(browser_context: BrowserContext, live_server: LiveServer, problems: PageProblems) -> Iterator[Page]:
    """A signed-in page with nothing opened yet. After the test, any console error, failed request or error answer
    from the app fails it."""
    sign_in(browser_context, live_server)
    tab = browser_context.new_page()
    problems.watch(tab)
    yield tab
    tab.close()
    problems.check()


@pytest.fixture(scope="session")
def card_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One card rendered at 300 dpi, nearly straight: the classical detector measures it (a refusal would show as a
    missing centering table)."""
    rendered = tmp_path_factory.mktemp("card") / "card"
    write_synth(rendered, SynthOptions(count=1, seed=7, dpi=300, max_rotation_deg=0.5))
    [image] = sorted((rendered / "images").iterdir())
    return image

