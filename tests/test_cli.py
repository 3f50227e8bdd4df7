"""The command line, end to end on small renders: exit codes, outputs, and errors that name the problem."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from cardmetry.cli import app
from cardmetry.data.synth import render, sample_scene

runner = CliRunner()


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "cards"
    result = runner.invoke(app, ["synth", str(out), "--count", "3", "--dpi", "100", "--seed", "4", "--workers", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_synth_writes_images_labels_coco_and_truth(cards: Path) -> None:
    assert len(list((cards / "images").iterdir())) == 3
    assert len(list((cards / "labels").glob("*.txt"))) == 3
    assert len(json.loads((cards / "annotations.json").read_text())["annotations"]) == 6
    assert len(json.loads((cards / "truth" / "card_00002.json").read_text())["points"]) == 24


def test_check_passes_a_clean_dataset(cards: Path) -> None:
    result = runner.invoke(app, ["dataset", "check", str(cards), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["problems"] == []


def test_check_fails_and_names_the_file_and_line(cards: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    runner.invoke(app, ["dataset", "convert", str(cards), str(broken), "--to", "yolo"])
    label = sorted((broken / "labels").glob("*.txt"))[0]
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    result = runner.invoke(app, ["dataset", "check", str(broken)])
    assert result.exit_code == 1
    assert f"labels/{label.name}:3" in result.stdout and "class id 7" in result.stdout


def test_convert_round_trip_keeps_border_statistics(cards: Path, tmp_path: Path) -> None:
    before = runner.invoke(app, ["dataset", "stats", str(cards), "--json"])
    for fmt in ("coco", "labelstudio"):
        converted = tmp_path / fmt
        result = runner.invoke(app, ["dataset", "convert", str(cards), str(converted), "--to", fmt])
        assert result.exit_code == 0, result.output
        after = runner.invoke(app, ["dataset", "stats", str(converted), "--json"])
        b, a = json.loads(before.stdout)["borders_mm"], json.loads(after.stdout)["borders_mm"]
        for side in ("left", "right", "top", "bottom"):
            assert a[side]["mean"] == pytest.approx(b[side]["mean"], abs=1e-4)


def test_split_is_reproducible(cards: Path, tmp_path: Path) -> None:
    outputs = []
    for name in ("one", "two"):
        result = runner.invoke(app, ["dataset", "split", str(cards), str(tmp_path / name), "--ratios", "0.34",
                                     "0.33", "0.33", "--seed", "3"])
        assert result.exit_code == 0, result.output
        outputs.append(sorted(p.relative_to(tmp_path / name).as_posix() for p in (tmp_path / name).glob("images/*/*")))
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3


def test_import_twice_counts_once(cards: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = runner.invoke(app, ["dataset", "import", str(cards), "--name", "demo", "--home", str(home)])
    second = runner.invoke(app, ["dataset", "import", str(cards), "--name", "demo", "--home", str(home)])
    assert first.exit_code == second.exit_code == 0
    assert "3 images (3 new)" in first.stdout and "3 images (0 new)" in second.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dataset", "check", "/nonexistent/cards"], "no such file or folder"),  # a path that is not there
        (["dataset", "convert", "CARDS", "OUT", "--to", "pascal"], "--to must be one of"),  # unknown output format
        (["dataset", "import", "CARDS", "--name", "../escape"], "invalid dataset name"),  # a name that is a path
        (["synth", "OUT", "--spec", "poker"], "unknown card spec"),  # unknown card spec
        (["dataset", "stats", "CARDS", "--format", "voc"], "unknown format"),  # unknown input format
    ],
)
def test_usage_errors_exit_2_with_a_message(cards: Path, tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(cards) if a == "CARDS" else str(tmp_path / "out") if a == "OUT" else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output


def test_output_folders_that_would_lose_or_mix_data_are_refused(cards: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["synth", str(tmp_path / "full"), "--count", "1", "--dpi", "60"])
    assert result.exit_code == 2 and "not empty" in result.output
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    inside = runner.invoke(app, ["dataset", "convert", str(cards), str(cards / "converted"), "--to", "coco"])
    assert inside.exit_code == 2 and "inside the source dataset" in inside.output
    assert not (cards / "converted").exists()


def test_convert_keeps_splits_and_reports_errors_by_exit_status(cards: Path, tmp_path: Path) -> None:
    split = tmp_path / "split"
    runner.invoke(app, ["dataset", "split", str(cards), str(split), "--ratios", "0.34", "0.33", "0.33"])
    converted = runner.invoke(app, ["dataset", "convert", str(split), str(tmp_path / "coco"), "--to", "coco"])
    assert converted.exit_code == 0, converted.output
    assert sorted(p.name for p in (tmp_path / "coco" / "images").iterdir()) == ["test", "train", "val"]
    # The same image twice: the conversion still writes everything, and exits 1 to say the data has errors.
    images = sorted((split / "images").rglob("*.jpg"))
    images[1].write_bytes(images[0].read_bytes())
    duplicated = runner.invoke(app, ["dataset", "convert", str(split), str(tmp_path / "ls"), "--to", "labelstudio"])
    assert duplicated.exit_code == 1 and "same image content" in duplicated.output
    assert (tmp_path / "ls").is_dir()
    # A class the format cannot hold: nothing is written, and the message says which image and class.
    label = sorted((split / "labels").rglob("*.txt"))[0]
    label.write_text(label.read_text() + "9 0.5 0.5 0.1 0.1\n")
    unknown = runner.invoke(app, ["dataset", "convert", str(split), str(tmp_path / "ls2"), "--to", "labelstudio"])
    assert unknown.exit_code == 2 and "class id 9" in unknown.output


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 300 dpi scans the classical path measures, and a file that is not an image."""
    out = tmp_path_factory.mktemp("measure") / "scans"
    args = ["synth", str(out), "--count", "2", "--dpi", "300", "--seed", "11", "--workers", "1"]
    assert runner.invoke(app, args).exit_code == 0
    corrupt = out / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    return [*sorted((out / "images").iterdir()), corrupt]


def test_measure_many_writes_every_card_and_a_summary(scans: list[Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["measure", *map(str, scans), "--out", str(tmp_path / "results")])
    assert result.exit_code == 1  # the broken file is refused; the others are still measured
    assert "broken.jpg" in result.output and "not a readable image" in result.output
    written = sorted(p.name for p in (tmp_path / "results").iterdir())
    stems = [p.stem for p in scans[:2]]
    per_card = [f"{s}.{kind}" for s in stems for kind in ("json", "overlay.png", "report.html")]
    assert written == sorted(["summary.csv", "broken.json", *per_card])
    documents = [json.loads((tmp_path / "results" / f"{s}.json").read_text()) for s in stems]
    assert [d["status"] for d in documents] == ["ok", "ok"] and len(documents[0]["points"]) == 24
    assert "psa" in documents[0]["grades"]
    summary = (tmp_path / "results" / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and summary[3].startswith("broken.jpg,refused")


def test_measure_one_writes_overlay_and_report(scans: list[Path], tmp_path: Path) -> None:
    overlay, report = tmp_path / "card.png", tmp_path / "card.html"
    result = runner.invoke(app, ["measure", str(scans[0]), "--overlay", str(overlay), "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "L4" in report.read_text() and "<html" in report.read_text().lower()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["measure", "A", "B"], "several images need --out"),  # a batch without a place for its results
        (["measure", "A", "B", "--out", "OUT", "--json"], "take one image"),  # --json prints one document
        (["measure", "A", "--side", "middle"], "--side must be front or back"),  # a side that does not exist
        (["measure", "A", "--grade-table", "MISSING"], "MISSING"),  # a grade table that is not there
        (["measure", "A", "--overlay", "NOWHERE"], "folder that does not exist"),  # an overlay with no folder to go to
        (["measure", "A", "B", "--out", "A"], "--out must be a folder"),  # --out naming a file
        (["rr", "A"], "--perturb N"),  # one capture and nothing to repeat
    ],
)
def test_measure_usage_errors_exit_2(scans: list[Path], tmp_path: Path, args: list[str], message: str) -> None:
    names = {
        "A": str(scans[0]),
        "B": str(scans[1]),
        "OUT": str(tmp_path / "out"),
        "MISSING": str(tmp_path / "no.toml"),
        "NOWHERE": str(tmp_path / "missing" / "card.png"),
    }
    result = runner.invoke(app, [names.get(a, a) for a in args])
    assert result.exit_code == 2 and names.get(message, message) in result.output


def test_rr_perturbs_one_scan_and_reports_the_spread(scans: list[Path]) -> None:
    result = runner.invoke(app, ["rr", str(scans[0]), "--perturb", "3", "--json"])
    assert result.exit_code == 0, result.output
    spread = json.loads(result.stdout)
    assert spread["measured"] + len(spread["refused"]) == 4 and len(spread["stations"]) == 24
    assert 0 < spread["median_station_std_mm"] < 0.05


def test_demo_runs_every_step_and_writes_a_report(tmp_path: Path) -> None:
    # What `make run` shows: it must not rot while the web app is still to come.
    result = runner.invoke(app, ["demo", "--home", str(tmp_path), "--count", "2"])
    assert result.exit_code == 0, result.output
    assert "7. what a customer sees" in result.output and "measured" in result.output
    reports = list((tmp_path / "demo" / "reports").glob("*.report.html"))
    assert len(reports) == 1 and "L4" in reports[0].read_text()


def test_measure_command_prints_only_the_contract_document(tmp_path: Path) -> None:
    rendered = render(sample_scene(201, dpi=300))
    path = tmp_path / "card.png"
    cv2.imwrite(str(path), cv2.cvtColor(rendered.image, cv2.COLOR_RGB2BGR))
    result = runner.invoke(app, ["measure", str(path), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["status"] == "ok" and len(document["points"]) == 24
    truth = {w.station.id: w.border_mm for w in rendered.truth.widths}
    assert max(abs(p["border_mm"] - truth[p["id"]]) for p in document["points"]) < 0.01


def test_measure_command_refuses_with_a_reason_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    cv2.imwrite(str(path), np.full((600, 450, 3), 90, np.uint8))
    result = runner.invoke(app, ["measure", str(path), "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["status"] == "refused" and "does not stand out" in document["reason"]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    result = runner.invoke(app, ["measure", str(corrupt), "--json"])
    document = json.loads(result.stdout)
    assert result.exit_code == 1 and document["image"] == "corrupt.jpg" and "not a readable image" in document["reason"]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--home", "/proc/no-such-home"], "--home /proc/no-such-home cannot be used: "),  # a home that cannot be made
        (["--database-url", "nosuch://x"], "the database cannot be opened: "),  # a database URL nothing can open
    ],
)
def test_serve_that_cannot_start_says_why_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str], said: str
) -> None:
    monkeypatch.setenv("CARDMETRY_DATABASE_URL", "")  # restored after the test: serve sets it from --database-url
    arguments = ["serve", "--no-browser", "--port", "0", "--home", str(tmp_path / "home"), *options]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1 and said in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
