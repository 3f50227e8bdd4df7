"""The training commands end to end through Typer, on tiny renders with the toy backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cardmetry.cli import app
from cardmetry.training.events import read_events
from cardmetry.training.runs import RunDir

runner = CliRunner()
TINY = ["--backend", "toy", "--epochs", "2", "--batch", "2", "--imgsz", "48", "--threads", "1"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CARDMETRY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def flat(text: str) -> str:
    """Rich wraps long lines at the terminal's width."""
    return " ".join(text.split())


def only_run(home: Path) -> RunDir:
    (folder,) = (home / "runs").iterdir()
    return RunDir(folder)


def test_train_runs_to_the_end_and_prints_a_summary(tiny_cards, toy_backend, home: Path) -> None:
    result = runner.invoke(app, ["train", "--data", str(tiny_cards.root), *TINY])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output and "mAP50" in result.output
    run = only_run(home)
    assert run.read_config().backend == "toy" and run.best.is_file()
    assert read_events(run.events)[-1]["type"] == "succeeded"

    listed = runner.invoke(app, ["runs"])
    assert run.id[:10] in listed.output and "succeeded" in listed.output

    exported = runner.invoke(app, ["export", run.id, "--onnx"])
    assert exported.exit_code == 0, exported.output
    assert run.onnx.is_file() and "same instances" in flat(exported.output)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--data", "no-such-dataset"], "neither a folder nor a dataset"),  # unknown data
        (["--epochs", "0"], "--epochs"),  # a setting out of range names its option
        (["--role", "corner"], "--role"),  # an unknown role
        (["--backend", "nonesuch"], "unknown backend"),  # an unknown backend fails the run with its reason
    ],
)
def test_train_refuses_bad_settings_with_a_reason(tiny_cards, toy_backend, home, arguments, message) -> None:
    base = ["train", "--data", str(tiny_cards.root), *TINY]
    result = runner.invoke(app, base + arguments)
    assert result.exit_code in (1, 2)
    assert message in flat(result.output)


def test_train_refuses_a_dataset_with_errors(tmp_path: Path, home: Path) -> None:
    (tmp_path / "bad" / "images").mkdir(parents=True)
    (tmp_path / "bad" / "labels").mkdir()
    (tmp_path / "bad" / "images" / "a.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "bad" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    result = runner.invoke(app, ["train", "--data", str(tmp_path / "bad"), "--backend", "unet"])
    assert result.exit_code == 2
    assert "a.jpg" in flat(result.output) and "error" in result.output


def test_stop_cancel_and_resume_by_run_id(tiny_cards, toy_backend, home: Path) -> None:
    assert runner.invoke(app, ["train", "--data", str(tiny_cards.root), *TINY, "--max-steps", "2"]).exit_code == 0
    run = only_run(home)
    assert runner.invoke(app, ["stop", run.id]).exit_code == 0
    assert run.requested() == "stop"
    assert runner.invoke(app, ["cancel", run.id]).exit_code == 0
    assert run.requested() == "cancel"
    result = runner.invoke(app, ["train", "--resume", run.id])
    assert result.exit_code == 2 and "nothing to resume" in flat(result.output)  # it succeeded already
    assert runner.invoke(app, ["stop", "../etc"]).exit_code == 2  # a path is not a run id


def test_backends_lists_each_backend_with_why_it_cannot_run() -> None:
    result = runner.invoke(app, ["backends", "--json"])
    assert result.exit_code == 0
    listed = {b["name"]: b for b in json.loads(result.output)}
    assert {"unet", "maskrcnn", "yolo-seg", "detectron2", "classical"} <= set(listed)
    assert listed["unet"]["available"] and listed["unet"]["default_variant"] in listed["unet"]["variants"]
    if not listed["detectron2"]["available"]:
        assert "detectron2" in listed["detectron2"]["unavailable"]
