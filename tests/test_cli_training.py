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


@pytest.fixture(scope="module")
def rendered_card(tmp_path_factory: pytest.TempPathFactory):
    from cardmetry.data.synth import render, sample_scene
    from cardmetry.measure.files import write_png

    card = render(sample_scene(101, dpi=300, supersample=1))
    path = tmp_path_factory.mktemp("card") / "card.png"
    write_png(path, card.image)
    return path, card


def test_measure_with_models_uses_them_for_the_coarse_borders(rendered_card, tmp_path, monkeypatch) -> None:
    from cardmetry.data.instances import GRAPHIC, OUTER
    from cardmetry.models import predictors
    from tests.models.test_measuring import FakePredictor, moved

    path, card = rendered_card
    outer = FakePredictor((OUTER, 0.9, moved(card.truth.outer_quad_px, 3)))
    graphic = FakePredictor((GRAPHIC, 0.9, moved(card.truth.graphic_quad_px, -3)), classes=(GRAPHIC,))
    files = {tmp_path / "outer.pt": outer, tmp_path / "graphic.onnx": graphic}
    for file in files:
        file.write_bytes(b"")
    monkeypatch.setattr(predictors, "load_predictor", lambda p: files[p])
    result = runner.invoke(app, ["measure", str(path), "--json", "--outer-model", str(tmp_path / "outer.pt"),
                                 "--graphic-model", str(tmp_path / "graphic.onnx")])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {"outer_model", "graphic_model"} <= set(document["timing_ms"])
    truth = {w.station.id: w.border_mm for w in card.truth.widths}
    assert max(abs(p["border_mm"] - truth[p["id"]]) for p in document["points"]) < 0.02
    assert outer.calls == graphic.calls == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--outer-model", "no-such-run", "neither a model file nor a run"),  # unknown run id
        ("--outer-model", "../escape", "neither a model file nor a run"),  # a path-like id never reaches the disk
        ("--graphic-model", "README.md", "a model file is a checkpoint"),  # a file of another kind
    ],
)
def test_measure_refuses_a_model_it_cannot_load(rendered_card, home, option, value, message) -> None:
    result = runner.invoke(app, ["measure", str(rendered_card[0]), option, value])
    assert result.exit_code == 2 and message in flat(result.output)


def test_measure_refuses_a_model_of_the_other_role(rendered_card, tmp_path, monkeypatch) -> None:
    from cardmetry.data.instances import GRAPHIC
    from cardmetry.models import predictors
    from tests.models.test_measuring import FakePredictor

    (tmp_path / "graphic.pt").write_bytes(b"")
    monkeypatch.setattr(predictors, "load_predictor", lambda p: FakePredictor(classes=(GRAPHIC,)))
    result = runner.invoke(app, ["measure", str(rendered_card[0]), "--outer-model", str(tmp_path / "graphic.pt")])
    assert result.exit_code == 2 and "not the outer border" in flat(result.output)
