"""The training commands: train, stop, cancel, runs, export and backends (merged into `cardmetry` by cli.py)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cardmetry.cli_common import HOME_HELP, console, fail, out

if TYPE_CHECKING:
    from cardmetry.training.runs import RunDir

training_app = typer.Typer()

ROLE_HELP = "outer (the card's edge), graphic (the printed frame) or both (one model, two classes)."


@training_app.command()
def train(
    data: Annotated[str | None, typer.Option(help="Dataset folder (any format) or stored NAME[@VERSION].")] = None,
    val: Annotated[str | None, typer.Option(help="Validation data; default: a seeded share of --data.")] = None,
    val_share: Annotated[float | None, typer.Option(help="Share of --data kept for validation [0.2].")] = None,
    synthetic: Annotated[str | None, typer.Option(help="Synthetic cards (folder or stored name) mixed in.")] = None,
    synthetic_share: Annotated[float | None, typer.Option(help="Share of each epoch from --synthetic [0.5].")] = None,
    role: Annotated[str | None, typer.Option(help=ROLE_HELP + " [outer]")] = None,
    backend: Annotated[str | None, typer.Option(help="Model backend; `cardmetry backends` lists them [unet].")] = None,
    variant: Annotated[str | None, typer.Option(help="Backend variant; default: the backend's.")] = None,
    weights: Annotated[str | None, typer.Option(help="Weights file to start from (the variant's layout).")] = None,
    pretrained: Annotated[
        bool | None, typer.Option("--pretrained/--no-pretrained", help="Start from bundled weights where any.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs [30].")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step [4].")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Network input side in pixels [384].")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate; default: the backend's.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="cosine or step [cosine].")] = None,
    patience: Annotated[int | None, typer.Option(help="Epochs without gain before stopping; 0 never [10].")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for splits, order and augmentation [0].")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda [auto].")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch; default: all cores.")] = None,
    loader_workers: Annotated[int | None, typer.Option(help="Data-loading processes [0].")] = None,
    epoch_size: Annotated[int | None, typer.Option(help="Samples per epoch; default: every image once.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    config: Annotated[Path | None, typer.Option(help="A config.json to start from; options override it.")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue this run from its last checkpoint.")] = None,
    home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None,
) -> None:
    """Train a border model, with live progress and a summary at the end. Ctrl-C stops at the next step (the best
    weights are kept and the run can be resumed); a second Ctrl-C cancels it (nothing is kept).
    Exit 0 when the run succeeded or was stopped, 1 when it failed or was cancelled."""
    # the options given, before anything else is bound here: they override the config's defaults
    given = {key: value for key, value in locals().items() if value is not None}
    for key in ("config", "resume", "home"):
        given.pop(key, None)
    from pydantic import ValidationError

    from cardmetry.models.registry import get_backend
    from cardmetry.orchestrator.worker import prepare
    from cardmetry.store.home import Home
    from cardmetry.training.config import TrainConfig
    from cardmetry.training.loop import train_run
    from cardmetry.training.runs import RunDir, new_run_id

    store = Home.from_env(home)
    if resume is not None:
        try:
            run = RunDir.in_runs(store.runs, resume)
            settings = run.read_config()
        except (ValueError, FileNotFoundError) as error:
            raise fail(str(error)) from None
        if given:
            console.print(f"[yellow]note:[/yellow] --resume uses the run's own config; ignoring {', '.join(given)}")
    else:
        try:
            base: dict[str, Any] = json.loads(config.read_text()) if config else {}
        except (OSError, ValueError) as error:
            raise fail(f"{config}: not a readable config ({error})") from None
        try:
            settings = TrainConfig.model_validate({**base, **given})
            get_backend(settings.backend)  # an unknown backend is a usage error, before any run folder is made
            run = RunDir.in_runs(store.runs, new_run_id(settings))
        except ValidationError as error:
            raise fail(_validation_message(error)) from None
        except (KeyError, ValueError) as error:
            raise fail(str(error).strip("'\"")) from None
    try:
        with console.status("reading and checking the data"):
            prepared = prepare(store, settings)
    except (ValueError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    if resume is None:
        run.write_config(settings)
    console.print(f"run [bold]{run.id}[/bold] in {run.path}")
    display = _TrainingDisplay()
    with display, _stop_on_signals(run):
        try:
            terminal = train_run(run, settings, prepared, resume=resume is not None, listeners=(display.on_event,))
        except ValueError as error:
            raise fail(str(error)) from None
    display.summary(run)
    raise typer.Exit(0 if terminal in ("succeeded", "stopped") else 1)


def _validation_message(error: Any) -> str:
    return "; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}" for e in error.errors())


class _stop_on_signals:  # noqa: N801 (a context manager used like a function)
    """Ctrl-C or SIGTERM asks the run to stop at its next step; a second asks it to cancel."""

    def __init__(self, run: RunDir) -> None:
        self.run, self.count, self.previous = run, 0, {}

    def handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count == 1:
            self.run.request("stop")
            console.print("[yellow]stopping at the next step[/yellow] (again to cancel and keep nothing)")
        else:
            self.run.request("cancel")
            console.print("[red]cancelling[/red]")

    def __enter__(self) -> _stop_on_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class _TrainingDisplay:
    """Rich progress from the run's events: an epoch bar and a batch bar with the losses and the ETA."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console,
        )
        self.epochs = self.progress.add_task("epoch", total=None, info="")
        self.batches = self.progress.add_task("batch", total=None, info="starting")
        self.rows: list[dict[str, Any]] = []
        self.terminal: dict[str, Any] | None = None

    def __enter__(self) -> _TrainingDisplay:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "run_started":
            self.progress.update(self.epochs, total=event["epochs"])
        elif kind == "epoch_started":
            self.progress.update(self.epochs, completed=event["epoch"] - 1)
            self.progress.update(self.batches, total=event.get("batches"), completed=0, info="")
        elif kind == "batch":
            losses = "  ".join(f"{k} {v:.4f}" for k, v in event["losses"].items())
            info = f"{losses}  eta {_duration(event.get('eta_s'))}"
            self.progress.update(self.batches, completed=event["batch"], total=event.get("batches"), info=info)
        elif kind == "epoch_end":
            self.rows.append(event)
            self.progress.update(self.epochs, completed=event["epoch"], info=_metrics_line(event))
        elif kind == "log" and event.get("level") in ("warning", "error"):
            self.progress.console.print(f"[yellow]{event['level']}:[/yellow] {event['message']}", soft_wrap=True)
        elif kind in ("succeeded", "failed", "stopped", "cancelled"):
            self.terminal = event

    def summary(self, run: RunDir) -> None:
        if self.rows:
            table = Table(title=f"run {run.id}")
            for column in ("epoch", "loss", "P mask", "R mask", "mAP50 mask", "mAP50-95 mask", "border mm", "s"):
                table.add_column(column, justify="right")
            for row in self.rows:
                m = row["metrics"]
                table.add_row(
                    str(row["epoch"]), f"{sum(row['losses'].values()):.4f}", _fmt(m.get("precision_mask")),
                    _fmt(m.get("recall_mask")), _fmt(m.get("map50_mask")), _fmt(m.get("map50_95_mask")),
                    _fmt(m.get("border_error_mm"), 4), f"{row['epoch_seconds']:.0f}",
                )
            out.print(table)
        end = self.terminal or {"type": "failed", "error": "the run ended without a terminal event"}
        colour = {"succeeded": "green", "stopped": "yellow"}.get(end["type"], "red")
        detail = end.get("error") or (f"best epoch {end.get('best_epoch')}" if end.get("best_epoch") else "")
        console.print(f"[{colour}]{end['type']}[/{colour}] {detail}", soft_wrap=True)


def _metrics_line(event: dict[str, Any]) -> str:
    m = event["metrics"]
    border = f"  border {m['border_error_mm']:.3f} mm" if m.get("border_error_mm") is not None else ""
    return f"mAP50 {_fmt(m.get('map50_mask'))}  mAP50-95 {_fmt(m.get('map50_95_mask'))}{border}"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@training_app.command()
def stop(
    run_id: Annotated[str, typer.Argument(help="The run to stop.")],
    home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None,
) -> None:
    """Ask a run to stop at its next step, keeping its best weights (it can be resumed)."""
    _request(run_id, home, "stop")


@training_app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None,
) -> None:
    """Ask a run to end now, keeping nothing."""
    _request(run_id, home, "cancel")


def _request(run_id: str, home: Path | None, what: str) -> None:
    from cardmetry.store.home import Home
    from cardmetry.training.runs import RunDir

    try:
        run = RunDir.in_runs(Home.from_env(home).runs, run_id)
    except ValueError as error:
        raise fail(str(error)) from None
    if not run.config_file.is_file():
        raise fail(f"no run {run_id!r} in {run.path.parent}")
    run.request(what)  # type: ignore[arg-type]
    console.print(f"asked run {run_id} to {what}")


@training_app.command()
def runs(home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None) -> None:
    """List the runs with their role, backend, state, epochs done and best metric."""
    from cardmetry.store.home import Home
    from cardmetry.training.runs import run_summaries

    table = Table()
    for column in ("run", "role", "backend", "state", "epoch", "best fitness", "border mm"):
        table.add_column(column)
    for s in run_summaries(Home.from_env(home).runs):
        table.add_row(s.id, s.role, f"{s.backend} {s.variant}", s.state, str(s.epoch), _fmt(s.best_metric),
                      _fmt(s.border_error_mm, 4))
    out.print(table)


@training_app.command()
def export(
    run_or_file: Annotated[str, typer.Argument(help="A run id or a checkpoint file (.pt).")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Write ONNX (the only export format so far).")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Where to write [the run's model.onnx].")] = None,
    home: Annotated[Path | None, typer.Option(help=HOME_HELP)] = None,
) -> None:
    """Export a trained model to ONNX, then check that onnxruntime predicts what torch predicts."""
    from cardmetry.models.checkpoint import CheckpointError
    from cardmetry.models.export import export_checkpoint
    from cardmetry.store.home import Home
    from cardmetry.store.models import run_checkpoint
    from cardmetry.training.runs import RunDir

    if not onnx:
        raise fail("say which format: --onnx")
    store = Home.from_env(home)
    try:
        checkpoint = run_checkpoint(store, run_or_file)
    except FileNotFoundError as error:
        raise fail(str(error)) from None
    target = out_file or (RunDir(checkpoint.parent.parent).onnx if checkpoint.parent.name == "checkpoints"
                          else checkpoint.with_suffix(".onnx"))
    try:
        report = export_checkpoint(checkpoint, target)
    except (CheckpointError, NotImplementedError) as error:
        raise fail(str(error), 1) from None
    status = "same instances" if report.same_instances else "[red]DIFFERENT instances[/red]"
    masks = (f"largest mask difference {report.max_mask_difference:.2e} over {report.compared} instance(s)"
             if report.compared else "no instance found on the check image, so no mask was compared")
    size_mb = report.size_bytes / 1e6
    console.print(f"wrote {report.path} ({size_mb:.1f} MB); onnxruntime against torch: {status}, {masks}")
    if not report.same_instances or report.max_mask_difference > 1e-3:
        raise typer.Exit(1)


@training_app.command()
def backends(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the model backends, their variants, and why any cannot run here."""
    from cardmetry.models.registry import list_backends

    infos = list_backends()
    if as_json:
        typer.echo(json.dumps([i.as_json() for i in infos], indent=1))
        return
    table = Table()
    for column in ("backend", "variants (default first)", "available"):
        table.add_column(column)
    for info in infos:
        variants = sorted(info.variants, key=lambda v: v != info.default_variant)
        table.add_row(info.name, ", ".join(variants), "yes" if info.unavailable is None else info.unavailable)
    out.print(table)
