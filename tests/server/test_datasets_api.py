"""The datasets API and pages: stored versions, their reports and stats, the gallery and its thumbnails, box-to-polygon
refinement, uploads of a folder in the real-scans layout, and the page's one list of chosen files."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.requests import Request

from cardmetry.data.instances import OUTER
from cardmetry.data.synth.dataset import SynthOptions, write_synth
from cardmetry.measure.overlay import OUTER_COLOUR
from cardmetry.server.pages import STATIC
from cardmetry.store.home import Home
from cardmetry.store.thumbnails import SIZES, render_thumbnail
from tests.server.test_app import client_for

REAL_SCANS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-scans"
LOOSE_PX = 3.0  # how far a box label lies outside the true outline


@pytest.fixture
def client(home: Home) -> TestClient:
    return client_for(home)


def yolo_box(polygon: list[list[float]], class_id: int, width: int, height: int) -> str:
    """A YOLO detection line for the polygon's extent, loosened by LOOSE_PX: a hand-drawn box label."""
    points = np.asarray(polygon, float)
    x0, y0 = points.min(axis=0) - LOOSE_PX
    x1, y1 = points.max(axis=0) + LOOSE_PX
    return f"{class_id} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} {(x1 - x0) / width:.6f} " \
           f"{(y1 - y0) / height:.6f}"


@pytest.fixture(scope="module")
def box_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """Two rendered cards with loose box labels, and a blank grey image with boxes no edge can be found in."""
    root = tmp_path_factory.mktemp("box-cards")
    rendered = write_synth(root, SynthOptions(count=2, seed=7, dpi=150, supersample=1, max_rotation_deg=2.0))
    files = []
    for image in rendered.images:
        stem = Path(image.path).stem
        lines = [yolo_box(inst.polygon.tolist(), inst.class_id, image.width, image.height) for inst in image.instances]
        files += [(image.path, (root / image.path).read_bytes()), (f"labels/{stem}.txt", "\n".join(lines).encode())]
    blank = io.BytesIO()
    Image.new("RGB", (300, 400), (128, 128, 128)).save(blank, "JPEG")
    files += [("images/blank.jpg", blank.getvalue()), ("labels/blank.txt", b"0 0.5 0.5 0.8 0.8\n1 0.5 0.5 0.6 0.6\n")]
    return files


def upload(client: TestClient, name: str, files: list[tuple[str, bytes]]) -> dict:
    response = client.post(f"/api/datasets/{name}/upload", files=[("files", (n, data)) for n, data in files])
    assert response.status_code == 201, response.text
    return response.json()


def with_bad_label(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The files with the first label file's second line pointing outside its image."""
    changed = list(files)
    index = next(i for i, (name, _) in enumerate(files) if name.startswith("labels/"))
    name, data = files[index]
    first = data.decode().splitlines()[0]
    changed[index] = (name, f"{first}\n0 1.70 0.5 0.2 0.2\n".encode())
    return changed


def test_every_version_is_listed_with_its_figures(client: TestClient, box_files: list) -> None:
    good = upload(client, "cards", box_files)
    bad = upload(client, "broken", with_bad_label(box_files))
    listed = {(v["name"], v["version"]): v for v in client.get("/api/datasets").json()}
    assert set(listed) == {("cards", good["version"]), ("broken", bad["version"])}
    assert listed["cards", good["version"]]["trainable"] is True
    assert listed["broken", bad["version"]]["trainable"] is False
    assert listed["broken", bad["version"]]["problems"] == len(bad["problems"]) > 0
    assert {v["images"] for v in listed.values()} == {good["images"]} == {3}
    assert all(v["format"] == "yolo" and v["created"].endswith("+00:00") for v in listed.values())


def test_the_report_names_each_problem_with_file_and_line(client: TestClient, box_files: list) -> None:
    bad_files = with_bad_label(box_files)
    stored = upload(client, "broken", bad_files)
    report = client.get(f"/api/datasets/broken/{stored['version']}").json()
    label = next(name for name, _ in bad_files if name.startswith("labels/"))
    named = [p for p in report["problems"] if p["file"].endswith(label) and p["line"] == 2]
    assert named and named[0]["severity"] == "error", report["problems"]
    assert report["trainable"] is False and report["errors"] >= 1
    assert report["classes"] == ["outer", "graphic"]
    assert report["stats"]["images"] == 3 and report["stats"]["box_labels"] == report["stats"]["instances"]


@pytest.mark.parametrize(
    ("offset", "limit", "expected"),
    [
        (0, 2, 2),  # a full first page
        (2, 2, 1),  # the last page holds what is left
        (3, 2, 0),  # past the end: an empty page, not an error
        (0, 200, 3),  # a page larger than the dataset
    ],
)
def test_the_gallery_pages_through_the_images(
    client: TestClient, box_files: list, offset: int, limit: int, expected: int
) -> None:
    version = upload(client, "cards", box_files)["version"]
    page = client.get(f"/api/datasets/cards/{version}/images", params={"offset": offset, "limit": limit}).json()
    assert page["total"] == 3 and len(page["images"]) == expected
    everything = client.get(f"/api/datasets/cards/{version}/images").json()["images"]
    assert [e["sha256"] for e in page["images"]] == [e["sha256"] for e in everything[offset:offset + limit]]
    names = {name for name, _ in box_files if name.startswith("images/")}
    assert {e["name"] for e in everything} == names and all(e["instances"] == 2 for e in everything)


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"limit": 0}, 422),  # an empty page is never asked for
        ({"limit": 201}, 422),  # over the largest page
        ({"offset": -1}, 422),  # before the first image
    ],
)
def test_gallery_paging_out_of_range_is_refused(client: TestClient, box_files: list, params: dict, status: int) -> None:
    version = upload(client, "cards", box_files)["version"]
    assert client.get(f"/api/datasets/cards/{version}/images", params=params).status_code == status


@pytest.mark.parametrize(
    "path",
    [
        "/api/datasets/cards/000000000000",  # a version that is not there
        "/api/datasets/cards/../../etc",  # a path, not a version
        "/api/datasets/cards/ABCDEF123456",  # not lower-case hexadecimal
        "/api/datasets/no-such/000000000000/images",  # a dataset that is not there
        "/datasets/cards/000000000000",  # the page of a version that is not there
    ],
)
def test_unknown_versions_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def sha_of_first_image(client: TestClient, name: str, version: str) -> str:
    return client.get(f"/api/datasets/{name}/{version}/images").json()["images"][0]["sha256"]


@pytest.mark.parametrize(
    "digest",
    [
        "abc",  # too short
        "A" * 64,  # upper case
        "g" * 64,  # not hexadecimal
        "0" * 64,  # well formed, but no image of the version
        "other",  # an image of another version (filled in below)
    ],
)
def test_a_thumbnail_only_of_an_image_of_that_version(client: TestClient, box_files: list, digest: str) -> None:
    version = upload(client, "cards", box_files[:2])["version"]  # one card
    other = upload(client, "other", box_files[2:4])["version"]  # the other card
    if digest == "other":
        digest = sha_of_first_image(client, "other", other)
        assert client.get(f"/api/datasets/other/{other}/images/{digest}.jpg").status_code == 200
    response = client.get(f"/api/datasets/cards/{version}/images/{digest}.jpg")
    assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.parametrize("size", [128, 256])
def test_a_thumbnail_is_a_jpeg_of_the_size_asked_and_cached(
    client: TestClient, home: Home, box_files: list, size: int
) -> None:
    version = upload(client, "cards", box_files)["version"]
    digest = sha_of_first_image(client, "cards", version)
    response = client.get(f"/api/datasets/cards/{version}/images/{digest}.jpg", params={"size": size})
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as picture:
        assert picture.format == "JPEG" and max(picture.size) == size
    cached = list((home.root / "cache" / "thumbnails").rglob(f"{digest}-{size}-*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == response.content
    rendered_at = cached[0].stat().st_mtime_ns
    again = client.get(f"/api/datasets/cards/{version}/images/{digest}.jpg", params={"size": size})
    assert again.content == response.content and cached[0].stat().st_mtime_ns == rendered_at  # read, not redrawn


@pytest.mark.parametrize(
    "size",
    [
        0,  # nothing to draw
        32,  # a size that was once allowed: every size between 32 and 1024 was drawn and cached apart
        129,  # one pixel off an allowed size
        300,  # between two allowed sizes
        2048,  # over the largest
    ],
)
def test_a_thumbnail_of_another_size_is_refused_and_nothing_is_cached(
    client: TestClient, home: Home, box_files: list, size: int
) -> None:
    version = upload(client, "cards", box_files)["version"]
    digest = sha_of_first_image(client, "cards", version)
    response = client.get(f"/api/datasets/cards/{version}/images/{digest}.jpg", params={"size": size})
    assert response.status_code == 422
    assert all(str(allowed) in response.json()["detail"] for allowed in SIZES)  # says which sizes to ask for
    assert not list((home.root / "cache").rglob("*.jpg"))


def test_the_page_asks_only_for_sizes_the_server_draws(client: TestClient, box_files: list) -> None:
    version = upload(client, "cards", box_files)["version"]
    html = client.get(f"/datasets/cards/{version}").text
    asked = [int(size) for size in re.findall(r'data-(?:thumbnail|full)-size="(\d+)"', html)]
    assert len(asked) == 2 and set(asked) <= set(SIZES)
    script = (STATIC / "datasets.js").read_text()
    assert "?size=${sizes." in script and not re.search(r"size=\d", script)  # no size of its own in the script


def test_the_thumbnail_draws_the_outer_label_in_its_colour(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("RGB", (400, 300), (128, 128, 128)).save(path)
    outer = {"class_id": OUTER, "is_box": True, "polygon": [[100, 50], [300, 50], [300, 250], [100, 250]]}
    labelled = np.asarray(Image.open(io.BytesIO(render_thumbnail(path, 400, 300, [outer], 200))), float)
    bare = np.asarray(Image.open(io.BytesIO(render_thumbnail(path, 400, 300, [], 200))), float)
    top_edge = (slice(24, 27), slice(60, 140))  # the label's top side, halved: y = 25, x from 50 to 150
    colour = np.array(OUTER_COLOUR, float)
    distance_labelled = np.linalg.norm(labelled[top_edge].mean(axis=(0, 1)) - colour)
    distance_bare = np.linalg.norm(bare[top_edge].mean(axis=(0, 1)) - colour)
    assert distance_labelled < distance_bare - 40
    assert np.abs(labelled[100:140, 10:40] - bare[100:140, 10:40]).max() < 8  # nothing drawn away from the label


def test_refinement_stores_a_new_version_with_polygons(client: TestClient, home: Home, box_files: list) -> None:
    source = upload(client, "cards", box_files)["version"]
    response = client.post(f"/api/datasets/cards/{source}/refine")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["name"] == "cards" and result["new"] and result["version"] != source
    assert result["boxes"] == 6 and result["refined"] == 4  # both cards' boxes; the blank image's stay boxes
    assert {r["image"] for r in result["refusals"]} == {"images/blank.jpg"}
    assert {r["class"] for r in result["refusals"]} == {"outer", "graphic"} and all(r["reason"]
                                                                                   for r in result["refusals"])
    refined = client.get(f"/api/datasets/cards/{result['version']}").json()
    assert refined["stats"]["polygon_labels"] == 4 and refined["derived_from"]["version"] == source
    assert any("box kept, not refined" in p["message"] and p["file"] == "images/blank.jpg"
               for p in refined["problems"])
    assert {v["version"] for v in client.get("/api/datasets").json()} == {source, result["version"]}
    again = client.post(f"/api/datasets/cards/{result['version']}/refine").json()  # only refusals are left
    assert again["version"] == result["version"] and not again["new"] and again["refined"] == 0


def test_refining_a_version_without_boxes_is_a_conflict(client: TestClient, box_files: list) -> None:
    source = upload(client, "cards", box_files[:4])["version"]  # the two cards, no blank
    refined = client.post(f"/api/datasets/cards/{source}/refine").json()
    assert refined["refined"] == refined["boxes"] == 4
    response = client.post(f"/api/datasets/cards/{refined['version']}/refine")
    assert response.status_code == 409 and "no box labels" in response.json()["detail"]


def test_an_upload_of_over_a_thousand_files_is_taken_whole(client: TestClient, box_files: list) -> None:
    # The framework's own form reading stops at 1000 files; a folder of 564 scans with their labels is 1128.
    notes = [(f"notes/note{i:04d}.md", b"not a label") for i in range(1000)]
    stored = upload(client, "many", box_files[:4] + notes)
    assert stored["files"] == 1004 and stored["images"] == 2


@pytest.mark.realscans
@pytest.mark.skipif(not REAL_SCANS.is_dir(), reason=f"{REAL_SCANS} is not there")
def test_a_real_scans_folder_uploads_with_its_readme(client: TestClient) -> None:
    """A folder chosen in the page arrives as its relative paths, README.md included, in one request."""
    stems = sorted(p.stem for p in (REAL_SCANS / "images").glob("*.jpg"))[:2]
    files = [("real-scans/README.md", (REAL_SCANS / "README.md").read_bytes())]
    for stem in stems:
        files += [(f"real-scans/images/{stem}.jpg", (REAL_SCANS / "images" / f"{stem}.jpg").read_bytes()),
                  (f"real-scans/labels/{stem}.txt", (REAL_SCANS / "labels" / f"{stem}.txt").read_bytes())]
    stored = upload(client, "real-scans", files)
    assert stored["files"] == 5 and stored["images"] == 2 and stored["new_images"] == 2
    assert stored["trainable"] is True, stored["problems"]
    gallery = client.get(f"/api/datasets/real-scans/{stored['version']}/images").json()["images"]
    assert sorted(e["name"] for e in gallery) == [f"real-scans/images/{stem}.jpg" for stem in stems]  # as sent
    thumbnail = client.get(f"/api/datasets/real-scans/{stored['version']}/images/{gallery[0]['sha256']}.jpg?size=128")
    assert thumbnail.status_code == 200 and max(Image.open(io.BytesIO(thumbnail.content)).size) == 128


@pytest.mark.parametrize(
    ("path", "ids"),
    [
        ("/datasets", ["upload-panel", "dataset-name", "choose-files", "choose-folder", "choose-zips", "drop-zone",
                       "upload-count", "upload-size", "upload-button", "upload-progress", "versions-body"]),
        ("/datasets/cards/{version}", ["dataset-view", "problems-body", "stats-body", "gallery", "gallery-prev",
                                       "gallery-next", "refine-button", "refine-result"]),
    ],
)
def test_the_pages_carry_their_elements(client: TestClient, box_files: list, path: str, ids: list[str]) -> None:
    version = upload(client, "cards", box_files)["version"]
    html = client.get(path.format(version=version)).text
    missing = [i for i in ids if f'id="{i}"' not in html]
    assert not missing and 'src="/static/datasets.js"' in html


SELECTION_SCRIPT = """
const { FileSelection } = require(process.argv[1]);
const file = (name, size, lastModified = 1) => ({ name, size, lastModified });
const selection = new FileSelection();
const steps = JSON.parse(process.argv[2]);
const outcomes = steps.map(([path, size, modified]) =>
  selection.add(file(path.split("/").pop(), size, modified), path));
console.log(JSON.stringify({ outcomes, count: selection.count, bytes: selection.bytes,
  paths: selection.list().map(([path]) => path) }));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize(
    ("steps", "outcomes", "count", "total_bytes"),
    [
        # the same file through "choose files" and again through "choose a folder": listed once
        ([["a.jpg", 10, 1], ["a.jpg", 10, 1]], ["added", "same"], 1, 10),
        # a folder chosen twice: every file once (564 images are 564, never 1128)
        ([[f"scans/images/{i}.jpg", 5, 1] for i in range(564)] * 2, ["added"] * 564 + ["same"] * 564, 564, 2820),
        # another file at a path already listed replaces it: the server takes each path once
        ([["images/a.jpg", 10, 1], ["images/a.jpg", 12, 2]], ["added", "replaced"], 1, 12),
        # one scan through "choose files" (its bare name), then in its folder: listed once, in the folder
        ([["Test001.jpg", 10, 1], ["scans/images/Test001.jpg", 10, 1]], ["added", "same"], 1, 10),
        # ...and the other way round
        ([["scans/images/Test001.jpg", 10, 1], ["Test001.jpg", 10, 1]], ["added", "same"], 1, 10),
        # a bare name of another file (other size) is another file
        ([["scans/images/Test001.jpg", 10, 1], ["Test001.jpg", 11, 1]], ["added", "added"], 2, 21),
        # two files of one name in different folders are two files
        ([["x/a.jpg", 10, 1], ["y/a.jpg", 10, 1]], ["added", "added"], 2, 20),
        # operating-system clutter in a chosen folder is not sent; its README is
        ([["scans/.DS_Store", 3, 1], ["scans/__MACOSX/a.jpg", 3, 1], ["scans/README.md", 4, 1]],
         ["skipped", "skipped", "added"], 1, 4),
    ],
)
def test_the_page_lists_each_chosen_file_once(steps: list, outcomes: list[str], count: int, total_bytes: int) -> None:
    script = STATIC / "datasets.js"
    ran = subprocess.run(["node", "-e", SELECTION_SCRIPT, str(script), json.dumps(steps)], capture_output=True,
                         text=True, timeout=60, check=True)
    result = json.loads(ran.stdout)
    assert result["outcomes"] == outcomes and result["count"] == count == len(result["paths"])
    assert result["bytes"] == total_bytes
    in_folder = [path for path, _, _ in steps if path.endswith("/Test001.jpg")]
    assert all(path in result["paths"] for path in in_folder)  # the folder's place wins: its label is beside it


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        ({"data": {"note": "x"}}, 422, "no files in the upload"),  # a form without files
        ({"json": {"files": []}}, 422, "no files in the upload"),  # not a form at all
    ],
)
def test_an_upload_without_files_is_refused(client: TestClient, request_body: dict, status: int, message: str) -> None:
    response = client.post("/api/datasets/cards/upload", **request_body)
    assert response.status_code == status and message in response.json()["detail"]


def zip_of(members: dict[str, bytes]) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        for name, data in members.items():
            writer.writestr(name, data)
    return archive.getvalue()


@pytest.mark.parametrize(
    "files",
    [
        [("files", ("a.txt", b"a"))],  # a lone text file: no images, no labels
        [("files", ("notes.zip", zip_of({"a.txt": b"a"})))],  # the same in a zip (what schemathesis sent)
    ],
)
def test_an_upload_that_is_no_dataset_is_400_without_the_servers_paths(
    client: TestClient, home: Home, files: list
) -> None:
    response = client.post("/api/datasets/cards/upload", files=files)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail.startswith("the upload: no labels found") and str(home.root) not in detail


@pytest.mark.parametrize(
    "name",
    [
        "a b",  # a space
        ".hidden",  # not starting with a letter or digit
        "x" * 65,  # longer than 64
    ],
)
def test_a_bad_dataset_name_is_refused_before_the_upload_is_read(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Reading the form receives the whole body (up to the upload limit) and spools it to disk: a name that will be
    # refused anyway must be refused before that.
    reads: list[str] = []

    async def read_form(self: Request, **_: object) -> object:
        reads.append(self.url.path)
        raise AssertionError("the form was read")

    monkeypatch.setattr(Request, "form", read_form)
    response = client.post(f"/api/datasets/{name}/upload", files=[("files", ("labels/a.txt", b"0 0.5 0.5 0.2 0.2"))])
    assert response.status_code == 400 and "invalid dataset name" in response.json()["detail"]
    assert reads == []


def numbered_scans(count: int) -> list[tuple[str, bytes]]:
    """`count` small distinct images named scan1.png ... scanN.png, each with a box label."""
    files = []
    for number in range(1, count + 1):
        picture = io.BytesIO()
        Image.new("RGB", (64, 80), (number * 20, 100, 200 - number * 15)).save(picture, "PNG")
        label = b"0 0.5 0.5 0.8 0.8\n"
        files += [(f"images/scan{number}.png", picture.getvalue()), (f"labels/scan{number}.txt", label)]
    return files


def test_the_gallery_is_sorted_by_name_and_pages_through_it_once(client: TestClient) -> None:
    files = numbered_scans(11)
    random.Random(5).shuffle(files)  # neither the order sent nor the content hashes' order is the gallery's
    version = upload(client, "scans", files)["version"]
    pages = [client.get(f"/api/datasets/scans/{version}/images", params={"offset": offset, "limit": 4}).json()
             for offset in (0, 4, 8)]
    names = [image["name"] for page in pages for image in page["images"]]
    assert names == [f"images/scan{number}.png" for number in range(1, 12)]  # scan2 before scan10, each once
    everything = client.get(f"/api/datasets/scans/{version}/images").json()["images"]
    assert [image["name"] for image in everything] == names  # the same order whatever the page size


def run_node(script: str, *arguments: str) -> object:
    ran = subprocess.run(["node", "-e", script, *arguments], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(ran.stdout)


REFINE_OFFER_SCRIPT = """
const { refineOffer } = require(process.argv[1]);
console.log(JSON.stringify(refineOffer(JSON.parse(process.argv[2]))));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize(
    ("stats", "enabled"),
    [
        ({"box_labels": 6, "polygon_labels": 0}, True),  # boxes to refine
        ({"box_labels": 1, "polygon_labels": 11}, True),  # one box left among polygons
        ({"box_labels": 0, "polygon_labels": 12}, False),  # polygons only: the server would answer 409
        ({}, False),  # a report without the figure offers nothing
    ],
)
def test_refinement_is_offered_only_for_box_labels(stats: dict, enabled: bool) -> None:
    offer = run_node(REFINE_OFFER_SCRIPT, str(STATIC / "datasets.js"), json.dumps(stats))
    assert offer == {"enabled": enabled, "boxes": stats.get("box_labels", 0)}


def test_the_version_page_starts_with_refinement_off_and_its_reason_ready(client: TestClient, box_files: list) -> None:
    version = upload(client, "cards", box_files)["version"]
    html = client.get(f"/datasets/cards/{version}").text
    assert re.search(r'<button[^>]*id="refine-button"[^>]*disabled', html)  # until the report says there are boxes
    hint = re.search(r'id="refine-none"[^>]*hidden>([^<]*)<', html)
    assert hint and "no box labels" in " ".join(hint.group(1).split())


def test_the_upload_page_hides_the_empty_file_list(client: TestClient) -> None:
    html = client.get("/datasets").text
    assert re.search(r'id="upload-chosen"[^>]*hidden', html)
    script = (STATIC / "datasets.js").read_text()
    assert 'ids("upload-chosen").hidden = shown.length === 0' in script


WHEN_SCRIPT = """
const vm = require("vm");
const source = require("fs").readFileSync(process.argv[1], "utf8");
const shared = vm.runInThisContext(`${source}\ncardmetry`);
console.log(JSON.stringify(JSON.parse(process.argv[2]).map((moment) => shared.when(moment))));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize(
    ("moment", "shown"),
    [
        (1_795_951_515, "2026-11-29 11:25 UTC"),  # seconds, as the grading API sends them
        (1_795_951_515.9, "2026-11-29 11:25 UTC"),  # a fraction of a second is not shown
        ("2026-11-29T11:25:15+00:00", "2026-11-29 11:25 UTC"),  # ISO 8601, as the datasets API sends it
        ("2026-11-29T12:25:15+01:00", "2026-11-29 11:25 UTC"),  # another zone: shown in UTC
        ("not a time", "—"),  # unreadable
        (None, "—"),  # missing
    ],
)
def test_every_page_writes_a_moment_the_same_way(moment: object, shown: str) -> None:
    assert run_node(WHEN_SCRIPT, str(STATIC / "common.js"), json.dumps([moment])) == [shown]


@pytest.mark.parametrize("script", ["datasets.js", "grade.js"])
def test_the_pages_write_dates_with_the_shared_formatter(script: str) -> None:
    text = (STATIC / script).read_text()
    assert "cardmetry.when(" in text and "toLocaleString" not in text and "+00:00" not in text
