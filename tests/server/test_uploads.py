"""Uploading a dataset through the API: every file counted once, bad names and sizes refused naming the file."""

from __future__ import annotations

import io
import zipfile

import httpx
import pytest
from fastapi.testclient import TestClient

from cardmetry.store import uploads
from cardmetry.store.home import Home
from cardmetry.training.sources import DataSource
from tests.server.test_app import client_for


def folder_files(source: DataSource, count: int = 3) -> list[tuple[str, bytes]]:
    """The first `count` cards of a YOLO folder as (relative path, bytes), images and labels."""
    found = []
    for image in sorted((source.root / "images").iterdir())[:count]:
        label = source.root / "labels" / f"{image.stem}.txt"
        found += [(f"images/{image.name}", image.read_bytes()), (f"labels/{label.name}", label.read_bytes())]
    extra = [p for p in source.root.iterdir() if p.is_file()]  # data.yaml and the like: the format's own files
    return found + [(p.name, p.read_bytes()) for p in extra]


def post(client: TestClient, name: str, files: list[tuple[str, bytes]]) -> httpx.Response:
    return client.post(f"/api/datasets/{name}/upload", files=[("files", (n, data)) for n, data in files])


def zipped(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_files_upload_into_a_stored_dataset(home: Home, tiny_cards: DataSource) -> None:
    response = post(client_for(home), "cards", folder_files(tiny_cards))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["images"] == 3 and body["new_images"] == 3 and body["trainable"] is True
    assert (home.datasets / "cards" / body["version"] / "manifest.json").is_file()
    assert not any((home.root / "uploads").iterdir())  # the staging folder is gone


def test_the_same_image_under_two_names_is_counted_once(home: Home, tiny_cards: DataSource) -> None:
    files = folder_files(tiny_cards, 2)
    (image, data), (label, text) = files[0], files[1]
    twice = [*files, (image.replace(".", "-copy."), data), (label.replace(".", "-copy."), text)]
    body = post(client_for(home), "cards", twice).json()
    assert body["images"] == 2 and len(body["duplicates"]) == 1


def test_a_zip_uploads_as_its_files(home: Home, tiny_cards: DataSource) -> None:
    body = post(client_for(home), "cards", [("cards.zip", zipped(folder_files(tiny_cards)))]).json()
    assert body["images"] == 3 and body["files"] == len(folder_files(tiny_cards))


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        # a zip member climbing out of the upload: refused before anything is unpacked
        ([("evil.zip", zipped([("../../outside.txt", b"x")]))], 400, "'../../outside.txt': a path outside"),
        # an absolute name
        ([("/etc/passwd", b"x")], 400, "'/etc/passwd': a path outside"),
        # a Windows path
        ([("images\\a.jpg", b"x")], 400, "not a plain relative file name"),
        # not a zip at all
        ([("broken.zip", b"not a zip")], 400, "broken.zip: not a readable zip archive"),
        # a member damaged in transit (its checksum does not match)
        ([("crc.zip", zipped([("images/a.jpg", b"abcdefgh" * 20)]).replace(b"abcdefgh", b"abcdefgX", 1))], 400,
         "crc.zip: a damaged or unsupported zip archive"),
        # a file and a folder of one name
        ([("clash.zip", zipped([("images", b"x"), ("images/a.jpg", b"y")]))], 400, "a file and a folder"),
        # over the per-file limit (lowered for the test)
        ([("images/big.jpg", b"x" * 3000)], 413, "images/big.jpg: over the upload limit"),
        # a zip that unpacks past the limit, however small it is
        ([("bomb.zip", zipped([("images/a.jpg", b"\0" * 3000)]))], 413, "bomb.zip: images/a.jpg unpacks to over"),
    ],
)
def test_bad_files_are_refused_naming_them(
    home: Home, monkeypatch: pytest.MonkeyPatch, files: list, status: int, message: str
) -> None:
    monkeypatch.setattr(uploads, "MAX_FILE_BYTES", 2000)
    monkeypatch.setattr(uploads.Staging.__init__, "__defaults__", (2000, uploads.MAX_UPLOAD_BYTES))
    response = post(client_for(home), "cards", files)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert not (home.root / "outside.txt").exists() and not any((home.root / "uploads").iterdir())
    assert not home.datasets.exists() or not any(home.datasets.iterdir())


def test_a_corrupt_image_is_stored_with_the_problem_named(home: Home, tiny_cards: DataSource) -> None:
    files = folder_files(tiny_cards, 2)
    files[0] = (files[0][0], b"\xff\xd8 not really a jpeg")
    body = post(client_for(home), "cards", files).json()
    assert body["trainable"] is False
    assert any(files[0][0].split("/")[-1] in str(p["file"]) for p in body["problems"]), body["problems"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../up", "invalid dataset name"),  # a path, not a name
        ("a b", "invalid dataset name"),  # a space
    ],
)
def test_bad_dataset_names_are_refused(home: Home, name: str, message: str) -> None:
    response = post(client_for(home), name, [("labels/a.txt", b"0 0.5 0.5 0.2 0.2\n")])
    assert response.status_code in (400, 404) and (response.status_code == 404 or message in response.json()["detail"])


def test_an_upload_declared_over_the_limit_is_refused_unread(home: Home) -> None:
    response = client_for(home).post("/api/datasets/cards/upload", content=b"x",
                                     headers={"content-length": str(uploads.MAX_UPLOAD_BYTES + 1)})
    assert response.status_code == 413


def test_a_chunked_upload_over_the_limit_is_refused_before_it_is_stored(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No Content-Length: the body is counted as it arrives (the limit made small, so the test sends little).
    from cardmetry.server import app as app_module

    monkeypatch.setattr(app_module, "MAX_UPLOAD_BYTES", 1000)
    head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="labels/a.txt"\r\n\r\n'
    body = iter([head, *(b"0 0.5 0.5 0.2 0.2\n" for _ in range(100)), b"\r\n--b--\r\n"])
    response = client_for(home).post("/api/datasets/cards/upload", content=body,
                                     headers={"content-type": "multipart/form-data; boundary=b"})
    assert response.status_code == 413 and "upload limit" in response.json()["detail"]
    assert not (home.datasets / "cards").exists()
