"""The command line. Each command parses its options, calls one function of the layers below, and prints.

No business logic lives here (DESIGN.md): if a command grows a decision, that decision belongs in a layer.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cardmetry.cli_common import HOME_HELP, console, fail, out, progress_bar
from cardmetry.cli_training import training_app

if TYPE_CHECKING:  # heavy modules load inside the commands that need them, so --help stays fast
    import numpy as np

    from cardmetry.data.instances import Dataset
    from cardmetry.data.problems import Problem
    from cardmetry.data.validation import ValidationReport
    from cardmetry.geometry.specs import CardSpec
    from cardmetry.measure.grades import GradeTable
    from cardmetry.measure.result import Result
    from cardmetry.models.predictors import Predictor


app = typer.Typer(
    help="cardmetry: measure and grade trading-card centering; train the models that find card borders.",
    no_args_is_help=True,
    add_completion=False,
)
dataset_app = typer.Typer(
    help="Check, import, convert, split, refine and describe labelled datasets.", no_args_is_help=True
)
app.add_typer(dataset_app, name="dataset")
app.add_typer(training_app)  # train, stop, cancel, runs, export, backends: top-level commands

@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the dataset into (new or empty).")],
    count: Annotated[int, typer.Option(min=1, help="Number of cards.")] = 10,
    dpi: Annotated[float, typer.Option(min=50, max=2400, help="Scan resolution (ignored with --photo).")] = 600,
    photo: Annotated[bool, typer.Option(help="Phone photos: perspective, 12-20 px/mm, uneven light, glare.")] = False,
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    spec: Annotated[str, typer.Option(help="Card spec: standard (63.5 x 88.9 mm) or small (59 x 86 mm).")] = "standard",
    landscape_share: Annotated[float, typer.Option(min=0, max=1, help="Share of cards lying sideways.")] = 0.0,
    supersample: Annotated[int, typer.Option(min=1, max=8, help="Samples per pixel along each axis.")] = 2,
    max_rotation: Annotated[float, typer.Option(min=0, max=45, help="Largest card rotation, degrees.")] = 5.0,
    max_skew: Annotated[float, typer.Option(min=0, max=5, help="Largest print skew of the frame, degrees.")] = 1.0,
    workers: Annotated[int, typer.Option(min=1, help="Render processes.")] = min(os.cpu_count() or 1, 4),
) -> None:
    """Render synthetic cards with exact truth (quads, polygons, 24 border widths) as YOLO and COCO."""
    from cardmetry.data.synth.dataset import SynthOptions, write_synth
    from cardmetry.geometry.specs import card_spec

    try:
        card_spec(spec)
    except ValueError as exc:
        raise fail(str(exc)) from None
    options = SynthOptions(
        count=count,
        seed=seed,
        dpi=dpi,
        photo=photo,
        spec=spec,
        landscape_share=landscape_share,
        supersample=supersample,
        max_rotation_deg=max_rotation,
        max_skew_deg=max_skew,
    )
    with progress_bar() as progress:
        task = progress.add_task("rendering", total=count)
        try:
            write_synth(out_dir, options, workers=workers, on_card=lambda _: progress.advance(task))
        except OSError as exc:
            raise fail(str(exc)) from None
    console.print(f"wrote {count} cards to {out_dir}")


@dataset_app.command("check")
def dataset_check(
    path: Annotated[Path, typer.Argument(help="Dataset folder or label file (format detected from the files).")],
    fmt: Annotated[str | None, typer.Option("--format", help="yolo, coco or labelstudio; detected if omitted.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
    max_pixels: Annotated[int | None, typer.Option(help="Largest image accepted, in pixels.")] = None,
) -> None:
    """Validate a dataset: every problem at once, each with its file and line. Exit 0 when it can be trained on,
    1 when it has errors. Nothing is modified."""
    report = _validate(path, fmt, max_pixels)
    if as_json:
        out.print_json(json.dumps(report.as_json()))
    else:
        for problem in report.problems:
            colour = "red" if problem.severity == "error" else "yellow"
            out.print(f"[{colour}]{problem}[/{colour}]", highlight=False, markup=True, soft_wrap=True)
        verdict = "[green]trainable[/green]" if report.trainable else "[red]not trainable[/red]"
        n_err = sum(p.severity == "error" for p in report.problems)
        out.print(
            f"{len(report.dataset.images)} images, {n_err} errors, {len(report.problems) - n_err} warnings: {verdict}"
        )
    raise typer.Exit(0 if report.trainable else 1)


def _validate(path: Path, fmt: str | None, max_pixels: int | None) -> ValidationReport:
    from cardmetry.data.images import DEFAULT_MAX_PIXELS
    from cardmetry.data.validation import validate

    if not path.exists():
        raise fail(f"{path}: no such file or folder")
    with progress_bar() as progress:
        task = progress.add_task("checking images", total=None)
        try:
            return validate(path, format=fmt, max_pixels=max_pixels or DEFAULT_MAX_PIXELS,
                            progress=lambda done, total: progress.update(task, completed=done, total=total))
        except ValueError as exc:
            raise fail(str(exc)) from None


def _checked(path: Path, fmt: str | None) -> tuple[Dataset, list[Problem], Path]:
    """The dataset after full validation (every image decoded), its problems, and its root."""
    from cardmetry.data.formats import dataset_root

    report = _validate(path, fmt, None)
    return report.dataset, report.problems, dataset_root(path)


def _read(path: Path, fmt: str | None) -> tuple[Dataset, list[Problem], Path]:
    from cardmetry.data.formats import read_dataset

    if not path.exists():
        raise fail(f"{path}: no such file or folder")
    try:
        dataset, problems = read_dataset(path, format=fmt)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return dataset, problems, path if path.is_dir() else path.parent


@dataset_app.command("import")
def dataset_import(
    path: Annotated[Path, typer.Argument(help="Dataset folder or label file.")],
    name: Annotated[str, typer.Option(help="Dataset name in the store (letters, digits, . _ -).")],
    fmt: Annotated[str | None, typer.Option("--format", help="yolo, coco or labelstudio; detected if omitted.")] = None,
    home: Annotated[
        Path | None, typer.Option(help="CARDMETRY_HOME (default $CARDMETRY_HOME or ./cardmetry-data).")
    ] = None,
) -> None:
    """Store a dataset by content (sha256): the same image imported twice is stored and counted once."""
    from cardmetry.data.formats import dataset_root
    from cardmetry.store.datasets import check_name, import_dataset
    from cardmetry.store.home import Home

    try:
        check_name(name)
    except ValueError as exc:
        raise fail(str(exc)) from None
    report = _validate(path, fmt, None)
    root = dataset_root(path)
    with progress_bar() as progress:
        task = progress.add_task("storing images", total=len(report.dataset.images))
        try:
            result = import_dataset(Home.from_env(home), name, report.dataset, root, report.problems,
                                    progress=lambda done, _: progress.update(task, completed=done))
        except (ValueError, OSError) as exc:
            raise fail(str(exc)) from None
    for kept, duplicate in result.duplicates:
        console.print(f"[yellow]{duplicate}: same content as {kept}, stored and counted once[/yellow]")
    state = "trainable" if result.trainable else "has errors (see `cardmetry dataset check`): not trainable"
    out.print(f"{result.name}@{result.version}: {result.images} images ({result.new_blobs} new), {state}")
    out.print(f"manifest: {result.manifest}")
    _exit_for(report.problems)


@dataset_app.command("convert")
def dataset_convert(
    path: Annotated[Path, typer.Argument(help="Dataset folder or label file.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write (must be empty or missing).")],
    to: Annotated[str, typer.Option(help="yolo, coco or labelstudio.")],
    fmt: Annotated[str | None, typer.Option("--format", help="Source format; detected if omitted.")] = None,
) -> None:
    """Convert between YOLO (boxes and polygons), COCO instance segmentation and Label Studio JSON. A dataset split
    into train/val/test folders keeps its splits."""
    from cardmetry.data.formats import image_splits, write_dataset

    _check_output_format(to)
    dataset, problems, root = _checked(path, fmt)
    _print_problems(problems)
    splits = image_splits(dataset)
    try:
        write_dataset(dataset, root, out_dir, to, splits=splits if len(splits) == len(dataset.images) else None)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    out.print(f"wrote {len(dataset.images)} images as {to} to {out_dir}")
    _exit_for(problems)


@dataset_app.command("split")
def dataset_split(
    path: Annotated[Path, typer.Argument(help="Dataset folder or label file.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the split dataset into.")],
    ratios: Annotated[tuple[float, float, float], typer.Option(help="train val test shares.")] = (0.8, 0.1, 0.1),
    seed: Annotated[int, typer.Option(help="Same seed and images, same split.")] = 0,
    to: Annotated[str, typer.Option(help="Output format: yolo, coco or labelstudio.")] = "yolo",
    fmt: Annotated[str | None, typer.Option("--format", help="Source format; detected if omitted.")] = None,
) -> None:
    """Write a reproducible train/val/test split (ranked by content hash and seed, never by file order)."""
    from collections import Counter

    from cardmetry.data.formats import write_dataset
    from cardmetry.data.splits import split_dataset

    _check_output_format(to)
    dataset, problems, root = _checked(path, fmt)
    _print_problems(problems)
    try:
        splits = split_dataset(dataset, root, ratios, seed)
        write_dataset(dataset, root, out_dir, to, splits=splits)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    sizes = Counter(splits.values())
    out.print(", ".join(f"{name}: {sizes[name]}" for name in ("train", "val", "test")) + f" -> {out_dir}")
    _exit_for(problems)


@dataset_app.command("refine")
def dataset_refine(
    path: Annotated[Path, typer.Argument(help="Dataset folder or label file with box labels.")],
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the refined dataset into.")],
    to: Annotated[str, typer.Option(help="Output format: yolo, coco or labelstudio.")] = "yolo",
    fmt: Annotated[str | None, typer.Option("--format", help="Source format; detected if omitted.")] = None,
    spec: Annotated[str, typer.Option(help="Card spec, for the scale in mm.")] = "standard",
    as_json: Annotated[bool, typer.Option("--json", help="Print totals and every refusal as JSON on stdout.")] = False,
) -> None:
    """Turn box labels of outer and graphic borders into tight quads found in the image; refused boxes stay boxes,
    each with its reason."""
    from cardmetry.data.formats import write_dataset
    from cardmetry.data.refine import refine_dataset
    from cardmetry.geometry.specs import card_spec

    _check_output_format(to)
    dataset, problems, root = _checked(path, fmt)
    _print_problems(problems)
    try:
        card = card_spec(spec)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with progress_bar() as progress:
        task = progress.add_task("refining", total=len(dataset.images))
        refined, refusals = refine_dataset(dataset, root, spec=card,
                                           progress=lambda done, _: progress.update(task, completed=done))
    try:
        write_dataset(refined, root, out_dir, to)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    boxes = sum(i.is_box for image in dataset.images for i in image.instances)
    kept = sum(i.is_box for image in refined.images for i in image.instances)
    if as_json:
        report = {"boxes": boxes, "refined": boxes - kept, "problems": [p.as_json() for p in refusals]}
        out.print_json(json.dumps(report))
    else:
        _print_problems(refusals)
        out.print(f"refined {boxes - kept} of {boxes} boxes; wrote {len(refined.images)} images as {to} to {out_dir}")
    _exit_for(problems)


@dataset_app.command("stats")
def dataset_stats(
    path: Annotated[Path, typer.Argument(help="Dataset folder or label file.")],
    fmt: Annotated[str | None, typer.Option("--format", help="Source format; detected if omitted.")] = None,
    spec: Annotated[str, typer.Option(help="Card spec for border widths.")] = "standard",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """Images, instances per class, image sizes, and border widths where polygon labels allow."""
    from cardmetry.data.stats import dataset_stats as compute
    from cardmetry.geometry.specs import card_spec

    dataset, _, _ = _read(path, fmt)
    try:
        stats = compute(dataset, card_spec(spec))
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(stats))
        return
    table = Table(title=f"{path} ({stats['format']})", show_header=False)
    table.add_row("images", str(stats["images"]))
    for name, n in stats["instances_per_class"].items():  # type: ignore[union-attr]
        table.add_row(f"instances: {name}", str(n))
    table.add_row("box / polygon labels", f"{stats['box_labels']} / {stats['polygon_labels']}")
    size = stats["image_size"]
    for axis in ("width", "height"):
        s = size[axis]  # type: ignore[index]
        table.add_row(f"image {axis} min / median / max", f"{s['min']:.0f} / {s['median']:.0f} / {s['max']:.0f}")
    borders = stats["borders_mm"]
    if borders:
        for side in ("left", "right", "top", "bottom"):
            b = borders[side]  # type: ignore[index]
            table.add_row(f"{side} border mm mean (min-max)", f"{b['mean']:.3f} ({b['min']:.3f}-{b['max']:.3f})")
    else:
        table.add_row("border widths", "unknown (needs outer and graphic polygons; refine box labels first)")
    out.print(table)


def _check_output_format(to: str) -> None:
    from cardmetry.data.formats import FORMATS

    if to not in FORMATS:
        raise fail(f"--to must be one of {', '.join(FORMATS)}, not {to!r}")


def _exit_for(problems: list[Problem]) -> None:
    """Commands that did their work on a dataset with errors still say so: exit status 1."""
    from cardmetry.data.problems import has_errors

    if has_errors(problems):
        console.print("[red]the dataset has errors: see `cardmetry dataset check`[/red]")
        raise typer.Exit(1)


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        console.print(f"[yellow]{problem}[/yellow]", highlight=False)


@app.command()
def measure(
    images: Annotated[list[Path], typer.Argument(help="Card images (scans or photos).")],
    side: Annotated[str, typer.Option(help="front or back.")] = "front",
    spec: Annotated[str, typer.Option(help="Card spec: standard or small.")] = "standard",
    as_json: Annotated[bool, typer.Option("--json", help="Print only the CONTRACT.md document on stdout.")] = False,
    overlay: Annotated[Path | None, typer.Option(help="Write the overlay PNG here (one image).")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the customer's HTML report here (one image).")] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for each card's JSON, overlay and report, and summary.csv.")
    ] = None,
    grade_table: Annotated[
        list[Path] | None, typer.Option(help="A grade table of your own (TOML, docs/grades.md); repeatable.")
    ] = None,
    outer_model: Annotated[
        str | None, typer.Option(help="A run id or model file (.pt, .onnx) that finds the card's edge.")
    ] = None,
    graphic_model: Annotated[
        str | None, typer.Option(help="A run id or model file (.pt, .onnx) that finds the printed frame.")
    ] = None,
    home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None,
) -> None:
    """Measure cards' centering at the 24 stations, with uncertainty, skew, flags and grade ceilings.
    Exit 0 when every card measured, 1 when any was refused or unreadable (each reason on stderr)."""
    from cardmetry.geometry.specs import card_spec
    from cardmetry.measure.files import write_text_atomic
    from cardmetry.measure.grades import load_tables
    from cardmetry.measure.outputs import document_text, output_stems, summary_csv, summary_row, write_pictures

    if side not in ("front", "back"):
        raise fail(f"--side must be front or back, not {side!r}")
    if len(images) > 1 and out_dir is None:
        raise fail("several images need --out DIR (each card's JSON, overlay and report go there)")
    if len(images) > 1 and (as_json or overlay or report):
        raise fail("--json, --overlay and --report take one image; with several, --out DIR writes them all")
    try:
        card = card_spec(spec)
        tables = load_tables(grade_table or ())
    except ValueError as exc:
        raise fail(str(exc)) from None
    for option, target in (("--overlay", overlay), ("--report", report)):
        if target is not None and not target.parent.is_dir():
            raise fail(f"{target}: {option} goes into a folder that does not exist")
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fail(f"{out_dir}: --out must be a folder that can be made ({exc.strerror or exc})") from None
    models = _load_models(outer_model, graphic_model, home)

    rows, refused = [], 0
    stems = output_stems(images)
    with progress_bar() if len(images) > 1 else nullcontext() as progress:
        task = progress.add_task("measuring", total=len(images)) if progress else None
        for path, stem in zip(images, stems, strict=True):
            image, result = _measure_file(path, card, side, tables, models)
            refused += result.status != "ok"
            rows.append(summary_row(result))
            try:
                if out_dir is not None:
                    write_text_atomic(out_dir / f"{stem}.json", document_text(result))
                    if image is not None:
                        write_pictures(image, result, out_dir / f"{stem}.overlay.png", out_dir / f"{stem}.report.html")
                if image is not None:
                    write_pictures(image, result, overlay, report)
            except OSError as exc:  # a full disk, a folder removed meanwhile: the files already written stay whole
                raise fail(str(exc), 1) from None
            if progress:
                progress.advance(task)
            if result.status != "ok":
                console.print(f"[red]refused:[/red] {path}: {result.reason}", soft_wrap=True)
            elif not as_json:
                _print_measurement(result.as_json())
    if out_dir is not None:
        write_text_atomic(out_dir / "summary.csv", summary_csv(rows))
        console.print(f"{len(images) - refused} measured, {refused} refused; results in {out_dir}")
    if as_json:
        typer.echo(document_text(result), nl=False)
    if refused:
        raise typer.Exit(1)


def _load_models(outer: str | None, graphic: str | None, home: Path | None) -> dict[str, Predictor | None]:
    """The predictors --outer-model and --graphic-model name (the same file once for both)."""
    from cardmetry.store.home import Home
    from cardmetry.store.models import ModelUnavailableError, PredictorCache, load_role_models

    try:
        return load_role_models(Home.from_env(home), {"outer": outer, "graphic": graphic}, PredictorCache())
    except ModelUnavailableError as error:
        raise fail(str(error)) from None


def _measure_file(
    path: Path, card: CardSpec, side: str, tables: list[GradeTable], models: dict[str, Predictor | None]
) -> tuple[np.ndarray | None, Result]:
    """Load and measure one image; an unreadable file becomes a refusal naming it, so a batch goes on."""
    from cardmetry.data.images import ImageError, load_image
    from cardmetry.measure.pipeline import measure_image
    from cardmetry.measure.result import Refusal

    try:
        image = load_image(path)
    except ImageError as error:
        return None, Refusal(path.name, side, error.problem)
    if models["outer"] is None and models["graphic"] is None:
        return image, measure_image(image, card, side=side, name=path.name, grade_tables=tables)
    from cardmetry.models.measuring import measure_with_models

    result = measure_with_models(image, card, outer=models["outer"], graphic=models["graphic"], side=side,
                                 name=path.name, grade_tables=tables)
    return image, result


def _print_measurement(document: dict) -> None:
    lr, tb = document["centering"]["left_right"], document["centering"]["top_bottom"]
    out.print(f"{document['image']}: left/right {lr[0]:.1f}/{lr[1]:.1f}, top/bottom {tb[0]:.1f}/{tb[1]:.1f}")
    table = Table("station", "border mm", "+/- mm")
    for point in document["points"]:
        table.add_row(point["id"], f"{point['border_mm']:.3f}", f"{point['uncertainty_mm']:.3f}")
    out.print(table)
    for grader, entry in document["grades"].items():
        ceiling = entry.get("ceiling")
        out.print(f"{grader}: ceiling {ceiling}" if ceiling is not None else f"{grader}: not graded (unsourced)")
    for flag in document["quality"]["flags"]:
        console.print(f"[yellow]flag: {flag}[/yellow]")


@app.command()
def rr(
    images: Annotated[list[Path], typer.Argument(help="Captures of one card (or one, with --perturb).")],
    perturb: Annotated[
        int, typer.Option(min=0, max=100, help="Measure each image under N simulated rescans as well.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the perturbations: same seed, same rescans.")] = 0,
    side: Annotated[str, typer.Option(help="front or back.")] = "front",
    spec: Annotated[str, typer.Option(help="Card spec: standard or small.")] = "standard",
    as_json: Annotated[bool, typer.Option("--json", help="Print the spread as JSON on stdout.")] = False,
) -> None:
    """Gauge repeatability: the per-station spread (std, range in mm) of repeated measurements of one card.
    Exit 1 when fewer than two measured."""
    from cardmetry.geometry.specs import card_spec
    from cardmetry.measure.pipeline import measure_image
    from cardmetry.measure.rr import perturb as perturbed
    from cardmetry.measure.rr import repeatability, sample_perturbations

    if len(images) < 2 and perturb < 2:
        raise fail("give two or more captures of the card, or --perturb N (N >= 2) for one capture")
    try:
        card = card_spec(spec)
    except ValueError as exc:
        raise fail(str(exc)) from None
    rescans = sample_perturbations(perturb, seed)
    results = []
    with progress_bar() as progress:
        task = progress.add_task("measuring", total=len(images) * (1 + perturb))
        for path in images:
            image, result = _measure_file(path, card, side, [], {"outer": None, "graphic": None})
            results.append(result)
            progress.advance(task)
            for rescan in rescans if image is not None else ():
                results.append(measure_image(perturbed(image, rescan), card, side=side, name=path.name))
                progress.advance(task)
    try:
        spread = repeatability(results)
    except ValueError as exc:
        raise fail(str(exc), 1) from None
    if as_json:
        typer.echo(json.dumps(spread.as_json(), indent=1))
        return
    out.print(
        f"{spread.measured} measured, {len(spread.refused)} refused; median station std "
        f"{spread.median_std_mm:.4f} mm, worst {spread.worst_station.id} {spread.worst_station.std_mm:.4f} mm; "
        f"left share std {spread.left_share_std:.3f} pp, top share std {spread.top_share_std:.3f} pp"
    )
    table = Table("station", "mean mm", "std mm", "range mm")
    for station in spread.stations:
        table.add_row(station.id, f"{station.mean_mm:.3f}", f"{station.std_mm:.4f}", f"{station.range_mm:.4f}")
    out.print(table)
    for reason in spread.refused:
        console.print(f"[yellow]refused repeat:[/yellow] {reason}")


@app.command()
def demo(
    home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None,
    count: Annotated[int, typer.Option(min=1, max=50, help="Cards to render.")] = 4,
) -> None:
    """A guided tour on the command line: render cards with exact truth, validate them, describe them, store them,
    refine loose box labels back onto their edges, and measure them."""
    from cardmetry.demo import run_demo
    from cardmetry.store.home import Home

    run_demo(Home.from_env(home), count, out, progress_bar)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface; anything but loopback needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8010,
    home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None,
    workers: Annotated[int, typer.Option(min=1, help="Training runs at once, each in a worker process.")] = 2,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL of the database (default: $CARDMETRY_DATABASE_URL, else sqlite:///HOME/cardmetry.db).",
    )] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Store a small synthetic dataset first if the home has none.")]
    = False,
) -> None:
    """Start the web app's server (HTTP API and run events over WebSocket) with local training workers."""
    import sqlalchemy

    from cardmetry.server.serve import PortTakenError
    from cardmetry.server.serve import serve as run_server
    from cardmetry.store.database import DATABASE_URL_ENV, Catalog
    from cardmetry.store.home import Home

    where = Home.from_env(home)
    if database_url:
        os.environ[DATABASE_URL_ENV] = database_url  # what the app's Catalog.open reads
    try:  # a home that cannot be written: one line, before anything starts
        where.root.mkdir(parents=True, exist_ok=True)
        (where.root / "logs").mkdir(exist_ok=True)
    except OSError as error:
        raise fail(f"--home {where.root} cannot be used: {error.strerror or error}", code=1) from None
    try:  # a wrong URL, a database that cannot be reached or a missing driver: one line, before the port is bound
        Catalog.open(where).close()
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
        raise fail(f"the database cannot be opened: {error}", code=1) from None
    try:
        run_server(where, host, port, workers, open_browser=not no_browser, demo=demo)
    except PortTakenError as error:
        raise fail(str(error), code=1) from None
