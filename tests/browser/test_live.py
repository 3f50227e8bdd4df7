"""A run watched live in a real browser against a real `cardmetry serve` and a real worker: the run page's WebSocket
is closed under it mid-run, the badge goes reconnecting and back to live by itself, and the events it shows
afterwards have no gap and no double; the train page's panel watches the same run; when the run is cancelled both
say "ended" and let their sockets go, the panel a few seconds later its timers too, keeping the final state shown.

Also, without a browser: the page watcher takes the browser's own cancellations (net::ERR_ABORTED) for what they
are, not for a server's failures. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser.browsing import PageProblems, screenshot, upload_rendered_cards, wait_until_quiet

DATASET = "live-cards"
CARDS = 6
# As test_flow's run: a tiny U-Net whose epochs last well under a second, far more of them than the test waits for,
# and no border evaluation (the run page says so instead of drawing empty axes).
RUN_SETTINGS = {"data": DATASET, "role": "outer", "backend": "unet", "epochs": 300, "imgsz": 64, "batch": 2,
                "threads": 1, "patience": 0, "border_eval_images": 0}
FIRST_EPOCHS_TIMEOUT_MS = 60_000
EPOCH_FIELD = re.compile(r"^(\d+)/(\d+)$")  # the run page's epoch field: "2/300"
# Every text the run page's epoch field takes, recorded from before its scripts draw anything.
EPOCH_RECORDER = """
window.epochTexts = [];
document.addEventListener("DOMContentLoaded", () => {
  const field = document.getElementById("epoch");
  if (!field) return;
  new MutationObserver(() => window.epochTexts.push(field.textContent))
    .observe(field, { childList: true, characterData: true, subtree: true });
});
"""
SNAPSHOT = "(id) => cardmetry.runs.watchers.get(id).snapshot()"


@pytest.fixture(scope="module")
def stored_dataset(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Six rendered cards stored as a dataset through the upload API; its version."""
    return upload_rendered_cards(api, DATASET, tmp_path_factory.mktemp("live-rendered"), CARDS, seed=6262)


def test_a_dropped_socket_reconnects_with_no_gap_and_no_double(
    page: Page, browser_context: BrowserContext, problems: PageProblems, api: httpx.Client, stored_dataset: str
) -> None:
    started = api.post("/api/runs", json=RUN_SETTINGS)
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    assert api.get(f"/api/runs/{run_id}").json()["config"]["data"] == f"{DATASET}@{stored_dataset}"  # pinned

    page.add_init_script(EPOCH_RECORDER)
    page.goto(f"/runs/{run_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live", timeout=30_000)
    epoch_at_least(page, 2, FIRST_EPOCHS_TIMEOUT_MS)

    # Close the page's own socket, as a dropped connection would; the watcher must notice and reconnect by itself.
    before = page.evaluate(SNAPSHOT, run_id)
    epoch_when_dropped = current_epoch(page)
    page.evaluate("(id) => cardmetry.runs.watchers.get(id).watcher.socket.close()", run_id)
    page.wait_for_function(
        """([id, known]) => { const seen = cardmetry.runs.watchers.get(id).snapshot().connections.slice(known);
                              return seen.includes('reconnecting') && seen[seen.length - 1] === 'live'; }""",
        arg=[run_id, len(before["connections"])], timeout=15_000,
    )
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    epoch_at_least(page, epoch_when_dropped + 1, 30_000)  # events flow again after the reconnect

    after = page.evaluate(SNAPSHOT, run_id)
    seen = after["seen"]
    since_drop = after["connections"][len(before["connections"]):]
    assert since_drop[0] == "reconnecting" and since_drop[-1] == "live", since_drop  # by itself, no reload
    assert seen["first"] == 1 and seen["breaks"] == [], seen  # every seq from the first, none skipped or repeated
    assert seen["count"] == seen["last"] > before["seen"]["last"], (before["seen"], seen)
    assert api.get(f"/api/runs/{run_id}").json()["last_seq"] >= seen["last"]
    epochs = [int(m.group(1)) for text in page.evaluate("window.epochTexts") if (m := EPOCH_FIELD.fullmatch(text))]
    assert epochs and epochs == sorted(epochs), f"the epoch counter went back: {epochs}"
    expect(page.locator("#border-note")).to_have_text("border error not measured: border_eval_images is 0")
    expect(page.locator("#chart-border")).to_be_hidden()  # no empty axes
    screenshot(page, "run-reconnected")

    # The train page watches the same run in a panel of its own.
    train = browser_context.new_page()
    problems.watch(train)
    train.goto("/train")
    panel = train.locator(f"#live-runs [data-run-id='{run_id}']")
    expect(panel.locator("[data-field=connection]")).to_have_attribute("data-status", "live", timeout=15_000)
    expect(panel).to_have_attribute("data-watching", "true")

    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel run …? It ends now…"
    page.click("#cancel")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=30_000)
    expect(page.locator("#connection")).to_have_attribute("data-status", "ended")
    assert page.evaluate("(id) => cardmetry.runs.watchers.get(id).watcher.socket", run_id) is None
    expect(page.locator("#log")).to_contain_text("END cancelled")
    expect(page.locator("#log-empty")).to_be_hidden()
    wait_until_quiet(page)
    screenshot(page, "run-live-ended")

    expect(panel.locator("[data-field=state]")).to_have_text("cancelled", timeout=15_000)
    expect(panel.locator("[data-field=connection]")).to_have_attribute("data-status", "ended")
    # Closed a few seconds after the worker is gone: no socket, no timer; the final state stays shown.
    expect(panel).to_have_attribute("data-watching", "false", timeout=20_000)
    assert train.evaluate("(id) => cardmetry.runs.watchers.has(id)", run_id) is False
    expect(panel.locator("[data-testid=dismiss-panel]")).to_be_visible()
    wait_until_quiet(train)
    screenshot(train, "train-panel-ended")
    panel.locator("[data-testid=dismiss-panel]").click()
    expect(panel).to_have_count(0)
    train.close()


def current_epoch(page: Page) -> int:
    match = EPOCH_FIELD.fullmatch(page.locator("#epoch").inner_text().strip())
    return int(match.group(1)) if match else 0


def epoch_at_least(page: Page, epoch: int, timeout_ms: int) -> None:
    """Wait, reading the page only, until its epoch field shows `epoch` or later."""
    page.wait_for_function(
        """(least) => { const m = /^(\\d+)\\/(\\d+)$/.exec(document.getElementById('epoch').textContent.trim());
                        return m !== null && Number(m[1]) >= least; }""",
        arg=epoch, timeout=timeout_ms,
    )


class FailedRequest:
    """What PageProblems reads of a Playwright request that failed."""

    def __init__(self, failure: str) -> None:
        self.failure, self.method, self.url = failure, "GET", "http://127.0.0.1:1/api/runs"


@pytest.mark.parametrize(
    ("failure", "reported"),
    [
        ("net::ERR_ABORTED", False),  # the browser cancelled it (the page was left): not the server's failure
        ("net::ERR_CONNECTION_REFUSED", True),  # the server was not there
        ("net::ERR_EMPTY_RESPONSE", True),  # the server hung up without an answer
    ],
)
def test_the_page_watcher_ignores_only_the_browsers_own_aborts(failure: str, reported: bool) -> None:
    watcher = PageProblems("http://127.0.0.1:1")
    request: Any = FailedRequest(failure)
    watcher._on_request_failed(request)
    assert bool(watcher.problems) is reported, watcher.problems

