"""From a finished run to the model that measures: a tiny U-Net trains to its end, the Models page lists it under its
role, "Use for measuring" makes it the outer model, and the Grade page then measures a card with it and says so.
Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from cardmetry.training.events import TERMINAL
from tests.browser.browsing import screenshot, submit_card, upload_rendered_cards

DATASET = "model-cards"
# Two short epochs and no border evaluation: a model in seconds. Its quality does not matter here, only that the
# run ends with a best checkpoint, which is what makes it a model.
RUN_SETTINGS = {"role": "outer", "backend": "unet", "epochs": 2, "imgsz": 64, "batch": 2, "threads": 1,
                "patience": 0, "border_eval_images": 0}
RUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def model_run(api: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A run trained to its end on stored cards; the outer model choice is cleared again afterwards (the server
    is shared with the other browser tests, which grade with the classical detector)."""
    version = upload_rendered_cards(api, DATASET, tmp_path_factory.mktemp("model-rendered"), 6, seed=7373)
    started = api.post("/api/runs", json={**RUN_SETTINGS, "data": f"{DATASET}@{version}"})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (state := api.get(f"/api/runs/{run_id}").json()["state"]) not in TERMINAL:
        assert time.monotonic() < deadline, f"run {run_id} still {state} after {RUN_TIMEOUT_S} s"
        time.sleep(0.5)
    assert state == "succeeded", api.get(f"/api/runs/{run_id}/log").json()
    yield run_id
    api.put("/api/models/active", json={"role": "outer", "run_id": None})


def test_a_finished_run_becomes_the_model_that_grades(page: Page, model_run: str, card_image: Path) -> None:
    page.goto("/models")
    row = page.locator(f"#models-outer [data-testid=model-row][data-run-id='{model_run}']")
    expect(row).to_be_visible()
    expect(page.locator(f"#models-graphic [data-run-id='{model_run}']")).to_have_count(0)  # an outer model only
    expect(page.locator("#active-outer")).to_have_text("classical only")
    row.get_by_test_id("use-model").click()
    expect(page.locator("#active-outer")).to_have_text(model_run)
    expect(row.get_by_test_id("in-use")).to_be_visible()
    page.wait_for_load_state("networkidle")
    screenshot(page, "models-in-use")

    result = submit_card(page, card_image)
    expect(page.locator("#models-used")).to_contain_text(model_run)
    # Two epochs at 64 px make a rough model: the card is measured, or refused with a reason, never guessed.
    if result.get_attribute("data-status") == "ok":
        expect(page.locator("#centering tbody tr[data-station]")).to_have_count(12)
    else:
        expect(page.locator("#refusal")).to_contain_text("Not measured: ")
    page.wait_for_load_state("networkidle")
    screenshot(page, "grade-with-model")

    page.goto("/models")
    page.locator("#classical-outer").click()
    expect(page.locator("#active-outer")).to_have_text("classical only")
