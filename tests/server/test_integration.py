"""The path a user takes through a real `cardmetry serve` with real workers: upload (the same file twice, a zip
with `../` paths, a corrupt image, an oversized upload), see the validation, train two runs at once, stop one, and
kill the other's worker."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import zipfile
from pathlib import Path

import httpx

from cardmetry.training.events import TERMINAL
from cardmetry.training.sources import DataSource
from tests.server.test_serve import events_until, server  # noqa: F401 (server is a fixture)
from tests.training.toy import tiny_config


def card_files(cards: DataSource) -> list[tuple[str, bytes]]:
    """The rendered cards as a user's folder holds them: images/ and labels/ (YOLO), by relative path."""
    return [(path.relative_to(cards.root).as_posix(), path.read_bytes())
            for folder in ("images", "labels") for path in sorted((cards.root / folder).iterdir())]


def upload(port: int, name: str, files: list[tuple[str, bytes]]) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/api/datasets/{name}/upload",
                      files=[("files", (file_name, data)) for file_name, data in files], timeout=120)


def stored_versions(port: int) -> list[str]:
    listed = httpx.get(f"http://127.0.0.1:{port}/api/datasets", timeout=30).json()
    return sorted(f"{entry['name']}@{entry['version']}" for entry in listed)


def test_uploads_are_counted_once_checked_and_refused_whole(server, tiny_cards: DataSource) -> None:  # noqa: F811
    port, _ = server
    files = card_files(tiny_cards)
    image_name, image = next((name, data) for name, data in files if name.startswith("images/"))
    stem = Path(image_name).stem
    label = dict(files)[f"labels/{stem}.txt"]
    twice = [*files, (f"images/copy-{Path(image_name).name}", image), (f"labels/copy-{stem}.txt", label)]
    stored = upload(port, "cards", twice)
    assert stored.status_code == 201, stored.text
    body = stored.json()
    copy = f"images/copy-{Path(image_name).name}"
    assert body["images"] == 10 and body["new_images"] == 10, body  # 11 image files, one of them twice
    assert body["duplicates"] == [{"kept": image_name, "duplicate": copy}]
    # Validation names the copy: its labels might differ from the original's, and which to trust is the user's call.
    assert [p["file"] for p in body["problems"]] == [copy] and not body["trainable"]
    before = stored_versions(port)

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("images/fine.png", image)
        bundle.writestr("../outside.txt", "0 0.5 0.5 0.9 0.9\n")
    refused = upload(port, "cards", [*files, ("sneaky.zip", archive.getvalue())])
    assert refused.status_code == 400 and "../outside.txt" in refused.json()["detail"], refused.text

    corrupt = upload(port, "cards", [*files, ("images/broken.png", b"\x89PNG\r\n\x1a\n not really a picture")])
    assert corrupt.status_code == 201, corrupt.text
    assert not corrupt.json()["trainable"]
    assert any("broken.png" in problem["file"] for problem in corrupt.json()["problems"])

    # A declared size over the limit is refused before a byte of the body is read.
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        raw.sendall(b"POST /api/datasets/cards/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 5000000000\r\n\r\n")
        assert raw.recv(200).startswith(b"HTTP/1.1 413 ")
    assert stored_versions(port) == sorted({*before, f"cards@{corrupt.json()['version']}"})  # nothing else stored


def test_two_runs_at_once_one_stopped_and_the_others_worker_killed(server, tiny_cards: DataSource) -> None:  # noqa: F811
    port, _ = server
    uploaded = upload(port, "cards", card_files(tiny_cards))
    assert uploaded.status_code == 201, uploaded.text
    data = f"cards@{uploaded.json()['version']}"
    runs = {}
    for role in ("outer", "graphic"):
        settings = tiny_config(data=data, role=role, backend="unet", imgsz=64, epochs=500).as_json()
        created = httpx.post(f"http://127.0.0.1:{port}/api/runs", json=settings, timeout=30)
        assert created.status_code == 201, created.text
        runs[role] = created.json()["id"]
    seen = {role: events_until(port, run_id, lambda e: e["type"] == "batch") for role, run_id in runs.items()}
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()["running"] == 2  # side by side

    assert httpx.post(f"http://127.0.0.1:{port}/api/runs/{runs['outer']}/stop", timeout=10).status_code == 200
    stopped = events_until(port, runs["outer"], lambda e: e["type"] in TERMINAL, after=seen["outer"][-1]["seq"])
    assert stopped[-1]["type"] == "stopped", stopped[-1]

    pid = httpx.get(f"http://127.0.0.1:{port}/api/runs/{runs['graphic']}", timeout=10).json()["worker_pid"]
    os.kill(pid, signal.SIGKILL)
    failed = events_until(port, runs["graphic"], lambda e: e["type"] in TERMINAL, after=seen["graphic"][-1]["seq"])
    assert failed[-1]["type"] == "failed" and "SIGKILL" in failed[-1]["error"], failed[-1]
    states = {run["id"]: run["state"] for run in httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=10).json()}
    assert (states[runs["outer"]], states[runs["graphic"]]) == ("stopped", "failed")
    # Every event of both runs, replayed from the start, is in order with none missing.
    for run_id in runs.values():
        replayed = json.loads(httpx.get(f"http://127.0.0.1:{port}/api/runs/{run_id}/events", timeout=10).text)
        assert [e["seq"] for e in replayed] == list(range(1, len(replayed) + 1))
