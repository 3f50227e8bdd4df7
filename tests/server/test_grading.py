"""The Grade page's API through FastAPI's test client: rendered cards measured against their exact truth, the
grading folder, refusals, bad uploads, the files served back, and measuring with the model the catalog chose."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from cardmetry.data.synth import Rendered, render, sample_scene
from cardmetry.measure.classical import MIN_IMAGE_SIDE_PX
from cardmetry.models.base import ModelSpec
from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.server import grading
from cardmetry.server.app import create_app
from cardmetry.store import measurements
from cardmetry.store import models as store_models
from cardmetry.store.database import Catalog
from cardmetry.store.home import Home
from cardmetry.store.measurements import META_KEYS
from cardmetry.training.events import EventLog
from cardmetry.training.runs import create_run
from tests.orchestrator.fakes import fake
from tests.training.toy import ToyBackend, tiny_config

Files = dict[str, tuple[str, bytes, str]]


@pytest.fixture(scope="module")
def cards() -> dict[str, Rendered]:
    """Two small scans (200 dpi, about 600 x 780 px): quick to measure, with exact truth to check against."""
    return {"front": render(sample_scene(201, dpi=200, supersample=1)),
            "back": render(sample_scene(3, dpi=200, supersample=1))}


def png(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


@pytest.fixture
def catalog(home: Home) -> Iterator[Catalog]:
    opened = Catalog.open(home)
    yield opened
    opened.close()


@pytest.fixture
def client(home: Home, catalog: Catalog) -> TestClient:
    executor = LocalExecutor(home, slots=1, command=fake("succeed", "0.1"))  # type: ignore[arg-type]
    return TestClient(create_app(home, executor, catalog=catalog))


def folders(home: Home) -> list[Path]:
    root = home.root / "measurements"
    return sorted(root.iterdir()) if root.is_dir() else []


def test_front_and_back_are_measured_to_their_truth(client: TestClient, cards: dict[str, Rendered]) -> None:
    files = {side: (f"{side}-card.png", png(card.image), "image/png") for side, card in cards.items()}
    answer = client.post("/api/grade", files=files, data={"spec": "standard"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["models"] == {"outer": None, "graphic": None}  # nothing chosen: the classical detector
    assert set(body["sides"]) == {"front", "back"}
    for side, card in cards.items():
        document = body["sides"][side]["document"]
        assert document["status"] == "ok" and document["side"] == side and document["image"] == f"{side}-card.png"
        truth = {width.station.id: width.border_mm for width in card.truth.widths}
        assert len(document["points"]) == 24
        assert max(abs(p["border_mm"] - truth[p["id"]]) for p in document["points"]) < 0.01
        assert document["centering"]["left_right"][0] == pytest.approx(card.truth.centering["left_right"][0], abs=0.3)
        assert client.get(body["sides"][side]["json"]).json() == document  # the file says what the answer said


def test_the_files_are_served_and_downloadable(client: TestClient, cards: dict[str, Rendered]) -> None:
    body = client.post("/api/grade", files={"front": ("card.png", png(cards["front"].image), "image/png")}).json()
    urls = body["sides"]["front"]
    overlay = client.get(urls["overlay"])
    assert overlay.headers["content-type"] == "image/png" and overlay.content[:8] == b"\x89PNG\r\n\x1a\n"
    report = client.get(urls["report"])
    assert report.headers["content-type"].startswith("text/html") and "L4" in report.text
    assert "default-src 'none'" in report.headers["content-security-policy"]  # our HTML, allowed nothing
    assert "attachment" not in report.headers.get("content-disposition", "")
    download = client.get(urls["report"], params={"download": 1})
    assert download.headers["content-disposition"].startswith("attachment")
    assert f"{body['id']}-front.report.html" in download.headers["content-disposition"]
    assert client.get(f"/api/measurements/{body['id']}").json() == body  # reopened later, the same answer


def test_the_folder_holds_its_files_and_meta_written_for_the_index(
    client: TestClient, home: Home, catalog: Catalog, cards: dict[str, Rendered]
) -> None:
    image = png(cards["front"].image)
    body = client.post("/api/grade", files={"front": ("scan 1.PNG", image, "image/png")}).json()
    [folder] = folders(home)
    assert folder.name == body["id"]
    meta = json.loads((folder / "meta.json").read_text())
    assert tuple(meta) == META_KEYS
    assert meta["sides"] == ["front"] and meta["name"] == "scan 1.PNG"
    assert meta["sha256"] == {"front": hashlib.sha256(image).hexdigest()}
    assert (folder / "front.png").read_bytes() == image  # the upload, kept as it came
    assert sorted(p.name for p in folder.iterdir()) == [
        "front.json", "front.overlay.png", "front.png", "front.report.html", "meta.json"]
    listed = client.get("/api/measurements").json()
    assert [(m["id"], m["status"]) for m in listed] == [(body["id"], {"front": "ok"})]
    catalog.sync()
    assert [row["id"] for row in catalog.recent_measurements()] == [body["id"]]


def test_a_refused_card_is_an_answer_with_its_reason(client: TestClient, home: Home) -> None:
    blank = png(np.full((600, 450, 3), 90, np.uint8))  # no card to find
    answer = client.post("/api/grade", files={"front": ("blank.png", blank, "image/png")})
    assert answer.status_code == 201
    side = answer.json()["sides"]["front"]
    assert side["document"]["status"] == "refused" and "does not stand out" in side["document"]["reason"]
    assert "points" not in side["document"]  # nothing that reads as a width
    assert side["document"]["reason"] in client.get(side["report"]).text  # the customer's page says why
    assert client.get(side["overlay"]).status_code == 200


@pytest.mark.parametrize(
    ("front", "back", "named"),
    [
        (b"\xff\xd8 not really a jpeg", None, "broken.jpg"),  # a corrupt front
        (None, b"\x89PNG\r\n\x1a\n truncated", "broken.jpg"),  # a good front, a corrupt back
        (b"", None, "broken.jpg"),  # an empty file
    ],
)
def test_an_unreadable_image_is_400_naming_it_and_leaves_nothing(
    client: TestClient, home: Home, cards: dict[str, Rendered], front: bytes | None, back: bytes | None, named: str
) -> None:
    good = ("card.png", png(cards["front"].image), "image/png")
    files: Files = {"front": ("broken.jpg", front, "image/jpeg") if front is not None else good}
    if back is not None:
        files["back"] = ("broken.jpg", back, "image/png")
    answer = client.post("/api/grade", files=files)
    assert answer.status_code == 400 and named in answer.json()["detail"]
    assert folders(home) == []  # no half grading left behind


@pytest.mark.parametrize(
    ("height", "width"),
    [
        (1, 1),  # one pixel: the classical detector's background model failed on it (a 500, found by schemathesis)
        (4, 4),  # dark and tiny: the same failure
        (1, 500),  # a single row
        (MIN_IMAGE_SIDE_PX - 1, 600),  # one pixel short of the least that is measured
    ],
)
def test_an_image_too_small_to_hold_a_card_is_refused_saying_so(client: TestClient, height: int, width: int) -> None:
    tiny = png(np.zeros((height, width, 3), np.uint8))
    answer = client.post("/api/grade", files={"front": ("tiny.png", tiny, "image/png")})
    assert answer.status_code == 201, answer.text
    document = answer.json()["sides"]["front"]["document"]
    assert document["status"] == "refused" and f"{width} x {height} px: too small" in document["reason"]


@pytest.mark.parametrize(
    ("files", "data", "field"),
    [
        ({}, {"spec": "standard"}, "front"),  # no front
        ({"back": ("b.png", b"x", "image/png")}, {}, "front"),  # a back alone
        ({"front": ("f.png", b"x", "image/png")}, {"spec": "jumbo"}, "spec"),  # an unknown card size
    ],
)
def test_a_form_without_a_front_or_with_an_unknown_spec_is_422(
    client: TestClient, home: Home, files: Files, data: dict[str, str], field: str
) -> None:
    answer = client.post("/api/grade", files=files or {"other": ("o.txt", b"x", "text/plain")}, data=data)
    assert answer.status_code == 422 and answer.json()["detail"].startswith(f"{field}:")
    assert folders(home) == []


def test_an_empty_back_input_is_no_back(client: TestClient, cards: dict[str, Rendered]) -> None:
    # What a browser sends for a file input left empty: a part with no file name and no bytes.
    files = {"front": ("card.png", png(cards["front"].image), "image/png"),
             "back": ("", b"", "application/octet-stream")}
    answer = client.post("/api/grade", files=files)
    assert answer.status_code == 201 and list(answer.json()["sides"]) == ["front"]


@pytest.mark.parametrize("streamed", [False, True])  # with a Content-Length, and chunked without one
def test_an_oversized_upload_is_413(
    home: Home, catalog: Catalog, monkeypatch: pytest.MonkeyPatch, streamed: bool
) -> None:
    monkeypatch.setattr(grading, "MAX_FORM_BYTES", 4096)  # read by the app's body limits when it is made
    executor = LocalExecutor(home, slots=1, command=fake("succeed", "0.1"))  # type: ignore[arg-type]
    client = TestClient(create_app(home, executor, catalog=catalog))
    body = b"--b\r\nContent-Disposition: form-data; name=\"front\"; filename=\"big.png\"\r\n\r\n" + b"x" * 8192
    content = iter([body[:1000], body[1000:]]) if streamed else body
    answer = client.post("/api/grade", content=content, headers={"content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 413 and "4096 bytes" in answer.json()["detail"]
    assert folders(home) == []


def test_an_image_over_the_per_side_limit_is_413(
    client: TestClient, home: Home, monkeypatch: pytest.MonkeyPatch, cards: dict[str, Rendered]
) -> None:
    monkeypatch.setattr(measurements, "MAX_IMAGE_BYTES", 1000)  # the whole form stays under its own cap
    answer = client.post("/api/grade", files={"front": ("card.png", png(cards["front"].image), "image/png")})
    assert answer.status_code == 413 and "card.png" in answer.json()["detail"]
    assert folders(home) == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/measurements/..%2F..%2Fcardmetry.db/front.json",  # a path for an id
        "/api/measurements/../../cardmetry.db",  # a literal climb
        "/api/measurements/20261129T110821123456-1a2b3c4d/front.json",  # a well-formed id that is no grading
        "/api/measurements/20261129T110821123456-1A2B3C4D",  # not the exact pattern (upper-case hex)
        "/api/measurements/{id}/..%2Fmeta.json",  # a climb in the file name
        "/api/measurements/{id}/meta.json",  # a file of the folder that is not served
        "/api/measurements/{id}/front.png",  # the upload itself is not served
        "/api/measurements/{id}/back.json",  # a side it does not have
    ],
)
def test_names_outside_a_grading_are_404(client: TestClient, cards: dict[str, Rendered], path: str) -> None:
    body = client.post("/api/grade", files={"front": ("card.png", png(cards["front"].image), "image/png")}).json()
    assert client.get(path.replace("{id}", body["id"])).status_code == 404


def toy_model_run(home: Home, role: str = "outer") -> str:
    """A run that succeeded with a (random) toy checkpoint: a model of `role` as far as the catalog knows."""
    run = create_run(home.runs, tiny_config(role=role))
    log = EventLog(run.events)
    log.emit("run_started")
    log.emit("succeeded")
    spec = ModelSpec("toy", "tiny", (0, 1) if role == "both" else (store_models.ROLE_CLASS[role],), 48, False)
    from cardmetry.models.checkpoint import save_checkpoint

    save_checkpoint(run.best, {"spec": spec.as_json(), "model": ToyBackend().build(spec).state_dict()})
    return run.id


def counting_loader(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    loaded: list[Path] = []
    real: Callable = store_models._load_predictor

    def load(path: Path) -> object:
        loaded.append(path)
        return real(path)

    monkeypatch.setattr(store_models, "_load_predictor", load)
    return loaded


def test_the_chosen_model_measures_and_is_loaded_once(
    client: TestClient, home: Home, catalog: Catalog, cards: dict[str, Rendered], toy_backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = toy_model_run(home)
    catalog.sync()
    catalog.set_active_model("outer", run_id)
    loaded = counting_loader(monkeypatch)
    files = {"front": ("card.png", png(cards["front"].image), "image/png")}
    first, second = (client.post("/api/grade", files=files) for _ in range(2))
    for answer in (first, second):
        assert answer.status_code == 201, answer.text
        body = answer.json()
        # An untrained toy model may find nothing: a refusal is fine, but it must say which model measured.
        assert body["models"] == {"outer": run_id, "graphic": None}
        assert body["sides"]["front"]["document"]["status"] in ("ok", "refused")
        meta = json.loads((home.root / "measurements" / body["id"] / "meta.json").read_text())
        assert (meta["outer_model"], meta["graphic_model"]) == (run_id, None)
    assert len(loaded) == 1  # the second card found the model loaded


def test_a_chosen_model_that_cannot_load_is_409(
    client: TestClient, home: Home, catalog: Catalog, cards: dict[str, Rendered], toy_backend: str
) -> None:
    run_id = toy_model_run(home)
    catalog.sync()
    catalog.set_active_model("outer", run_id)
    (home.runs / run_id / "checkpoints" / "best.pt").write_bytes(b"damaged")
    answer = client.post("/api/grade", files={"front": ("card.png", png(cards["front"].image), "image/png")})
    assert answer.status_code == 409 and "outer model" in answer.json()["detail"] and run_id in answer.json()["detail"]
    assert folders(home) == []


def test_the_page_has_the_elements_browser_tests_use(client: TestClient) -> None:
    page = client.get("/grade")
    assert page.status_code == 200
    for element in ("grade-form", "front", "back", "spec", "measure", "result", "overlay", "centering",
                    "worst-station", "skew", "grades", "flags", "download-json", "download-report", "refusal"):
        assert f'id="{element}"' in page.text, element
    assert "/static/grade.js" in page.text and client.get("/static/grade.js").status_code == 200


@pytest.mark.parametrize(
    "damage",
    [
        lambda folder: (folder / "front.json").write_text("{not json"),  # a document cut short
        lambda folder: (folder / "front.json").unlink(),  # a document removed by hand
        lambda folder: (folder / "front.json").write_text("[]"),  # a document of the wrong shape
        lambda folder: (folder / "meta.json").write_text(json.dumps({"id": folder.name})),  # no sides in meta.json
    ],
)
def test_a_damaged_grading_is_left_out_of_the_list_not_a_500(
    client: TestClient, home: Home, cards: dict[str, Rendered], damage: Callable[[Path], object],
    caplog: pytest.LogCaptureFixture,
) -> None:
    image = ("card.png", png(cards["front"].image), "image/png")
    damaged, kept = (client.post("/api/grade", files={"front": image}).json()["id"] for _ in range(2))
    damage(home.root / "measurements" / damaged)
    listed = client.get("/api/measurements")
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()] == [kept]  # the others are still listed
    assert f"grading {damaged} is not listed" in caplog.text  # and the damaged one is logged, named


def test_models_load_and_each_side_is_kept_decoded_and_measured_in_one_long_job(
    client: TestClient, cards: dict[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing is decoded outside the bounded pool, so no decoded image waits in memory for a thread.
    jobs: list[str] = []
    real = grading.run_long

    async def recorded(fn: Callable, *args: object, **kwargs: object) -> object:
        jobs.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(grading, "run_long", recorded)
    files = {side: (f"{side}.png", png(card.image), "image/png") for side, card in cards.items()}
    answer = client.post("/api/grade", files=files)
    assert answer.status_code == 201, answer.text
    assert sorted(jobs) == ["grade_side", "grade_side", "load_role_models"]
