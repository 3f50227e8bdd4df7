"""The whole path a user takes in a real browser against a real `cardmetry serve` with real workers: upload a
rendered dataset (a folder, and one of its files chosen again), see its version and gallery, train a small U-Net on
it and watch the run page pass the first epoch, cancel the run, then grade a rendered card and download its JSON.

One test, in steps that share what the earlier ones made (the dataset's version, the run): each step is what the
next one needs, so they cannot run apart or in another order. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from cardmetry.data.synth.dataset import SynthOptions, write_synth
from tests.browser.browsing import screenshot, submit_card, wait_until_quiet

DATASET = "flow-cards"
CARDS = 6
# Small enough that an epoch takes well under a second here; border_eval_images 0 skips the slowest part of each
# epoch's evaluation. Far more epochs than the test waits for (a dozen or more end while it opens the run page),
# so the run is still going when it is cancelled; patience 0: it never stops early either.
TRAIN_SETTINGS = {"epochs": "300", "imgsz": "64", "batch": "2", "threads": "1", "patience": "0"}
ADVANCED_SETTINGS = {"border_eval_images": "0"}
FIRST_EPOCH_TIMEOUT_MS = 120_000
EPOCH_FIELD = re.compile(r"^(\d+)/(\d+)$")  # the run page's epoch field: "2/300"


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six rendered cards as a user's folder holds them: cards/images/ and cards/labels/*.txt (YOLO), and
    nothing else (the renderer's COCO file and truth would be a second format in the same folder)."""
    rendered = tmp_path_factory.mktemp("rendered")
    write_synth(rendered, SynthOptions(count=CARDS, seed=5151, dpi=100, supersample=1))
    folder = tmp_path_factory.mktemp("upload") / "cards"
    for part in ("images", "labels"):
        shutil.copytree(rendered / part, folder / part)
    return folder


def test_upload_train_watch_and_grade(page: Page, dataset_folder: Path, card_image: Path) -> None:
    version = upload_the_dataset(page, dataset_folder)
    see_the_version(page, version)
    run_id = start_a_run(page, version)
    watch_the_run_and_cancel_it(page, run_id)
    grade_a_card(page, card_image)


# ---- 1. upload -----------------------------------------------------------------------------------------------


def upload_the_dataset(page: Page, folder: Path) -> str:
    """Choose the folder, then one of its images again by itself, upload, and check what was stored; the version."""
    page.goto("/datasets")
    page.wait_for_load_state("networkidle")
    page.fill("#dataset-name", DATASET)
    page.set_input_files("#choose-folder", folder)
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    expect(page.locator("#upload-count")).to_have_text(str(len(files)))
    expect(page.locator("[data-testid=chosen-file]")).to_have_count(len(files))

    # The same image again, by its bare name this time: it is recognised and not counted twice.
    page.set_input_files("#choose-files", folder / "images" / sorted((folder / "images").iterdir())[0].name)
    expect(page.locator("#upload-note")).to_contain_text("1 already listed")
    expect(page.locator("#upload-count")).to_have_text(str(len(files)))

    page.click("#upload-button")
    result = page.locator("#upload-result")
    expect(result).to_be_visible(timeout=60_000)
    expect(page.locator("#result-files")).to_have_text(str(len(files)))
    expect(page.locator("#result-images")).to_have_text(str(CARDS))
    expect(page.locator("#result-new-images")).to_have_text(str(CARDS))
    expect(page.locator("#result-duplicates")).to_have_text("0")
    expect(page.locator("#result-trainable")).to_have_text("yes")
    expect(page.locator("#result-problems")).to_be_hidden()
    link = page.locator("#upload-version-link")
    expect(link).to_have_text(re.compile(rf"^{DATASET}/\S+$"))
    version = link.inner_text().split("/", 1)[1]
    row = page.locator(f"[data-testid=version-row][data-name={DATASET}][data-version='{version}']")
    expect(row).to_have_count(1)  # the list of stored versions shows it too
    expect(page.locator("#upload-count")).to_have_text("0")  # the list is emptied for the next upload
    screenshot(page, "datasets-uploaded")
    link.click()
    page.wait_for_url(f"**/datasets/{DATASET}/{version}")
    return version


def see_the_version(page: Page, version: str) -> None:
    """The version's page: its report, stats and a gallery whose thumbnails loaded."""
    view = page.locator("#dataset-view")
    expect(view).to_have_attribute("data-version", version)
    expect(page.locator("#report-images")).to_have_text(str(CARDS))
    expect(page.locator("#report-trainable")).to_have_text("yes")
    expect(page.locator("#problems-empty")).to_be_visible()
    expect(page.locator("[data-testid=stat]").first).to_be_visible()
    items = page.locator("[data-testid=gallery-item]")
    expect(items).to_have_count(CARDS)
    expect(page.locator("#gallery-range")).to_have_text(f"1–{CARDS} of {CARDS}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every((img) => img.complete && img.naturalWidth > 0)"
    )
    page.wait_for_load_state("networkidle")
    screenshot(page, "dataset-version")


# ---- 2. train ------------------------------------------------------------------------------------------------


def start_a_run(page: Page, version: str) -> str:
    """Fill the start form as a user would, start, and follow the new run's live panel to its page; the run's id."""
    page.goto("/train")
    page.wait_for_load_state("networkidle")
    page.select_option("#dataset", f"{DATASET}@{version}")
    page.select_option("#role", "outer")
    page.select_option("#backend", "unet")
    expect(page.locator("#variant option:checked")).to_contain_text("(default)")
    for name, value in TRAIN_SETTINGS.items():
        page.fill(f"#{name}", value)
    page.click("#advanced > summary")  # the advanced settings are folded away
    for name, value in ADVANCED_SETTINGS.items():
        page.fill(f"#{name}", value)
    # The id from the page's own request: other tests' runs may share this server and the list of live panels.
    with page.expect_response(lambda answer: urlsplit(answer.url).path == "/api/runs"
                              and answer.request.method == "POST") as started:
        page.click("#start")
    assert started.value.status == 201, started.value.text()
    run_id = started.value.json()["id"]
    expect(page.locator("#form-errors")).to_be_hidden()
    expect(page.locator("#message")).to_contain_text(f"started {run_id}")
    panel = page.locator(f"#live-runs [data-run-id='{run_id}']")
    expect(panel).to_be_visible()
    expect(page.locator(f"#runs-table [data-run-row='{run_id}']")).to_have_count(1)
    expect(panel.locator("[data-field=state]")).to_have_text("running", timeout=60_000)
    panel.locator("[data-field=link]").click()
    page.wait_for_url(f"**/runs/{run_id}")
    return run_id


def watch_the_run_and_cancel_it(page: Page, run_id: str) -> None:
    """Wait, reading the page only, until the run is in its second epoch with the first one charted; then cancel
    it through its button and see it end."""
    expect(page.locator("#run-id")).to_have_text(run_id)
    expect(page.locator("#connection")).to_have_attribute("data-status", "live", timeout=30_000)
    # The epoch field reads "N/300"; N >= 2 means the first epoch is over and its end event has been drawn.
    page.wait_for_function(
        """() => { const m = /^(\\d+)\\/(\\d+)$/.exec(document.getElementById('epoch').textContent.trim());
                   return m !== null && Number(m[1]) >= 2; }""",
        timeout=FIRST_EPOCH_TIMEOUT_MS,
    )
    epoch = EPOCH_FIELD.fullmatch(page.locator("#epoch").inner_text().strip())
    assert epoch and epoch.group(2) == TRAIN_SETTINGS["epochs"], page.locator("#epoch").inner_text()
    expect(page.locator("#state")).to_have_text("running")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    expect(page.locator("#latest")).to_have_text(re.compile(r"^epoch \d+: loss \d+\.\d{4} · precision"))
    assert float(page.locator("#progress").get_attribute("value") or 0) > 0
    assert chart_points(page, "chart-loss") >= 1, "the loss chart has no point after the first epoch"
    assert chart_painted(page, "chart-loss"), "the loss chart's canvas is blank"
    screenshot(page, "run-progress")

    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel run …? It ends now…"
    page.click("#cancel")
    expect(page.locator("#state")).to_have_text("cancelled", timeout=60_000)
    expect(page.locator("#progress-text")).to_have_text("cancelled")
    expect(page.locator("#log")).to_contain_text("END cancelled")
    for button in ("#stop", "#cancel"):
        expect(page.locator(button)).to_be_disabled()
    expect(page.locator("#connection")).to_have_attribute("data-status", "ended")  # no socket is held any more
    wait_until_quiet(page)  # the page asks the server again until the worker has exited: let it settle
    expect(page.locator("#resume")).to_be_disabled()  # a cancelled run has no checkpoint to resume from
    screenshot(page, "run-ended")


def chart_points(page: Page, canvas_id: str) -> int:
    """How many points the Chart.js chart on the canvas holds, over all its series."""
    return page.evaluate(
        "(id) => Chart.getChart(id).data.datasets.reduce((sum, series) => sum + series.data.length, 0)", canvas_id
    )


def chart_painted(page: Page, canvas_id: str) -> bool:
    """Whether anything is drawn on the canvas (a blank one is all transparent)."""
    return page.evaluate(
        """(id) => { const canvas = document.getElementById(id);
                     const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                     return pixels.some((value, index) => index % 4 === 3 && value > 0); }""",
        canvas_id,
    )


# ---- 3. grade ------------------------------------------------------------------------------------------------


def grade_a_card(page: Page, image: Path) -> None:
    """Measure a card's front and read the answer: overlay, the 12 station pairs, worst station, grades, and the
    JSON download, which is the contract's document."""
    result = submit_card(page, image)
    expect(result).to_have_attribute("data-status", "ok")
    expect(page.locator("#refusal")).to_be_hidden()
    page.wait_for_function("() => { const img = document.getElementById('overlay');"
                           " return img.complete && img.naturalWidth > 0; }")
    expect(page.locator("#centering tbody tr[data-station]")).to_have_count(12)  # 7 left/right + 5 top/bottom
    expect(page.locator("#centering tbody tr[data-worst=true]")).to_have_count(2)  # one per axis
    expect(page.locator("#worst-station")).to_contain_text(re.compile(r"Worst station: left/right .* at L\d/R\d"))
    expect(page.locator("#skew")).to_contain_text("frame")
    expect(page.locator("#grades tbody tr").first).to_be_visible()
    expect(page.locator("#image-name")).to_have_text(f"front: {image.name}")

    href = page.locator("#download-json").get_attribute("href")
    assert href and href != "#", f"the JSON link is {href!r}"
    answer = page.request.get(href)
    assert answer.status == 200, f"{href}: {answer.status}"
    document = answer.json()
    assert document["schema"] == "cardmetry.measurement/v1", document.get("schema")
    assert document["status"] == "ok" and document["image"] == image.name
    assert len(document["points"]) == 24
    page.wait_for_load_state("networkidle")
    screenshot(page, "grade-result")
