"""Two runs watched at once: "Start outer and graphic" on the Train page starts one run per border, both train side
by side in worker processes of their own, and each has a live panel that moves past its first epoch; each is then
cancelled from its own panel. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from tests.browser.browsing import screenshot, upload_rendered_cards

DATASET = "pair-cards"
# As the flow test's run: epochs of well under a second, far more of them than the test waits for.
SETTINGS = {"epochs": "300", "imgsz": "64", "batch": "2", "threads": "1", "patience": "0"}
ADVANCED = {"border_eval_images": "0"}
FIRST_EPOCH_TIMEOUT_MS = 90_000
PAST_FIRST_EPOCH = """(panel) => { const m = /^(\\d+)\\/(\\d+)$/.exec(
    panel.querySelector('[data-field=epoch]').textContent.trim()); return m !== null && Number(m[1]) >= 2; }"""


@pytest.fixture(scope="module")
def version(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    return upload_rendered_cards(api, DATASET, tmp_path_factory.mktemp("pair-rendered"), 6, seed=8484)


def test_outer_and_graphic_train_side_by_side_each_watched_live(page: Page, api: httpx.Client, version: str) -> None:
    started: list[str] = []

    def note_start(answer: Response) -> None:
        if urlsplit(answer.url).path == "/api/runs" and answer.request.method == "POST" and answer.status == 201:
            started.append(answer.json()["id"])

    page.on("response", note_start)
    page.on("dialog", lambda dialog: dialog.accept())  # cancel asks to confirm
    page.goto("/train")
    page.wait_for_load_state("networkidle")
    page.select_option("#dataset", f"{DATASET}@{version}")
    page.select_option("#backend", "unet")
    for name, value in SETTINGS.items():
        page.fill(f"#{name}", value)
    page.click("#advanced > summary")
    for name, value in ADVANCED.items():
        page.fill(f"#{name}", value)
    page.click("#start-pair")
    for _ in range(300):  # the two POSTs' answers (other tests' runs may have panels on this server too)
        if len(started) == 2:
            break
        page.wait_for_timeout(100)
    assert len(started) == 2, started
    roles = {api.get(f"/api/runs/{run_id}").json()["role"] for run_id in started}
    assert roles == {"outer", "graphic"}

    panels = [page.locator(f"#live-runs [data-run-id='{run_id}']") for run_id in started]
    for panel in panels:
        page.wait_for_function(PAST_FIRST_EPOCH, arg=panel.element_handle(), timeout=FIRST_EPOCH_TIMEOUT_MS)
        expect(panel.locator("[data-field=connection]")).to_have_text("live")
    details = [api.get(f"/api/runs/{run_id}").json() for run_id in started]
    assert all(d["status"] == "running" and d["worker_pid"] for d in details), details  # at once, not in turn
    page.wait_for_load_state("networkidle")
    screenshot(page, "train-two-runs")

    for panel in panels:
        panel.locator("[data-action=cancel]").click()
    for panel in panels:
        expect(panel.locator("[data-field=state]")).to_have_text("cancelled", timeout=60_000)
