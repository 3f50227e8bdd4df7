"""One training run from start (or a checkpoint) to its one terminal event, readable in one file in the manner of
torchvision's references/detection: data, model, optimizer, scheduler, the epoch loop, evaluation, checkpoints.

The run reports only through its event log (events.py) and its folder (runs.py); it never touches HTTP or a
terminal. Everything that goes wrong inside becomes the `failed` event, with the traceback and the last log
lines, and `train_run` returns: a NaN loss, a broken backend or a full disk never end the process.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cardmetry.models.base import ROLE_CLASSES, Backend, BackendUnavailableError, FitCallbacks, ModelSpec
from cardmetry.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from cardmetry.models.registry import get_backend
from cardmetry.training.config import TrainConfig
from cardmetry.training.data import CardSegmentation, TrainData, collate, epoch_plan
from cardmetry.training.evaluate import BorderEvaluator, coco_metrics
from cardmetry.training.events import EventLog
from cardmetry.training.runs import RunDir

MONITOR = "fitness"  # higher is better (see `fitness`); ties keep the earlier epoch
GRAD_CLIP = 10.0
OWN_LOOP_FOLDER = "ultralytics"  # where an own-loop backend's trainer writes, inside the run folder
LOG_TAIL = 40


class RunEnded(Exception):  # noqa: N818 (control flow, not an error: the run ended with this terminal event)
    def __init__(self, terminal: str, **payload: Any) -> None:
        super().__init__(terminal)
        self.terminal, self.payload = terminal, payload


def fitness(metrics: dict[str, float]) -> float:
    """What picks the best epoch, higher is better: the mask mAP50-95, plus the share of validation cards the
    engine measures from the model's outline, plus 1 / (1 + the model's corner error in px). A card's mask
    reaches an mAP50-95 of 1 within a few epochs, long before its edges are right; the border terms keep telling
    epochs apart after that."""
    score = metrics.get("map50_95_mask", 0.0)
    if metrics.get("border_refused") is not None:
        score += 1.0 - metrics["border_refused"]
    if metrics.get("corner_error_px") is not None:
        score += 1.0 / (1.0 + metrics["corner_error_px"])
    return score


def pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def model_spec(config: TrainConfig, backend: Backend) -> ModelSpec:
    variant = backend.check_variant(config.variant or backend.default_variant)
    classes = ROLE_CLASSES[config.role]
    return ModelSpec(config.backend, variant, classes, config.imgsz, config.pretrained, config.weights)


def lr_factor(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to 1 % or steps of x0.1 at 70 % and 90 % of the run."""
    warmup = min(config.warmup_steps, max(total_steps // 5, 0))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.scheduler == "cosine":
            return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return 0.1 ** (int(progress >= 0.7) + int(progress >= 0.9))

    return factor


class _Logger:
    """Log lines go to log.txt and to the event log; the last few ride along on a `failed` event."""

    def __init__(self, run: RunDir, events: EventLog) -> None:
        self.run, self.events, self.tail = run, events, deque(maxlen=LOG_TAIL)

    def __call__(self, message: str, level: str = "info") -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {level.upper()} {message}"
        self.tail.append(line)
        with self.run.log.open("a", encoding="utf-8") as stream:
            stream.write(line + "\n")
        self.events.emit("log", level=level, message=message)


@contextmanager
def _heartbeat(events: EventLog, seconds: float) -> Iterator[None]:
    """A heartbeat event every `seconds` from a thread of its own, so a supervisor can tell a slow epoch from a
    hung or dead worker."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(seconds):
            events.emit("heartbeat")  # dropped before run_started and after the terminal event

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def train_run(
    run: RunDir,
    config: TrainConfig,
    data: TrainData,
    *,
    resume: bool = False,
    listeners: tuple[Callable[[dict[str, Any]], None], ...] = (),
) -> str:
    """Train (or resume) the run in `run` to its end; returns the terminal event's type."""
    events = EventLog(run.events, listeners)
    if resume:
        if events.terminal in ("succeeded", "cancelled"):
            raise ValueError(f"run {run.id} {events.terminal}; there is nothing to resume")
        if get_backend(config.backend).own_loop:
            raise ValueError(f"runs of backend {config.backend!r} cannot be resumed yet; start a new run")
        events.reopen()
    elif events.last_seq:
        raise ValueError(f"run {run.id} already has events; resume it instead")
    log = _Logger(run, events)
    with _heartbeat(events, config.heartbeat_seconds):
        try:
            _train(run, config, data, events, log, resume)
        except RunEnded as ended:
            if ended.terminal == "cancelled":  # cancel keeps nothing: our checkpoints, nor an own-loop trainer's
                shutil.rmtree(run.checkpoints, ignore_errors=True)
                shutil.rmtree(run.path / OWN_LOOP_FOLDER, ignore_errors=True)
            events.emit(ended.terminal, **ended.payload)
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            with contextlib.suppress(OSError):  # a full disk must not keep the terminal event from being tried
                log(message, "error")
            events.emit("failed", error=message, traceback=traceback.format_exc(), log_tail=list(log.tail))
    run.clear_request()  # acted upon, or come too late to matter; it must not end the run's next stretch at once
    return str(events.terminal)


def _train(run: RunDir, config: TrainConfig, data: TrainData, events: EventLog, log: _Logger, resume: bool) -> None:
    backend = get_backend(config.backend)
    reason = backend.unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"backend {config.backend!r} is unavailable: {reason}")
    if not backend.trainable:
        raise ValueError(f"backend {config.backend!r} only predicts; there is nothing to train")
    spec = model_spec(config, backend)
    device = pick_device(config.device)
    if backend.own_loop:
        _fit_own_loop(run, config, data, events, log, backend, spec, device)
    batches_per_epoch = math.ceil(len(epoch_plan(data, config, 0)) / config.batch)
    total_steps = config.epochs * batches_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    # First, before the slow parts (building the model, loading the validation cards): a page watching the run
    # sees it start at once.
    events.emit(
        "run_started", run=run.id, resumed=resume, config=config.as_json(), spec=spec.as_json(), device=str(device),
        epochs=config.epochs, batches_per_epoch=batches_per_epoch, total_steps=total_steps,
        dataset_version=data.version, train_images=len(data.train), synthetic_images=len(data.synthetic),
        val_images=len(data.val),
    )
    log(f"{'resuming' if resume else 'starting'} {config.role} {config.backend}/{spec.variant} on {device}: "
        f"{len(data.train)} training images, {len(data.synthetic)} synthetic, {len(data.val)} for validation "
        f"(dataset {data.version}), {batches_per_epoch} batches an epoch")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels once
    for problem in data.problems:
        log(f"{problem.file}: {problem.message}", "warning")

    model = backend.build(spec).to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr or backend.default_lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, total_steps))
    state = {"epoch": 0, "batch_in_epoch": 0, "step": 0, "best_metric": None, "best_epoch": None, "bad_epochs": 0}
    amp_dtype = None
    if device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    if resume and run.last.is_file():
        state = _restore(run, data, model, optimizer, scheduler, scaler, device)
        log(f"resumed from {run.last.name}: epoch {state['epoch'] + 1}, batch {state['batch_in_epoch']}, "
            f"step {state['step']}")

    train_set = CardSegmentation(data.train + data.synthetic, spec.classes, spec.imgsz, config.augment)
    val_set = CardSegmentation(data.val, spec.classes, spec.imgsz, None)
    border = BorderEvaluator(data.val, config.border_eval_images)
    for skipped in border.skipped:
        log(f"border error leaves out {skipped}")

    def checkpoint(name: str, epoch: int, batch_in_epoch: int) -> None:
        path = run.checkpoints / name
        save_checkpoint(path, {
            "spec": spec.as_json(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch, "batch_in_epoch": batch_in_epoch,
            "step": state["step"], "config": config.as_json(), "dataset": {"version": data.version},
            "best_metric": state["best_metric"], "best_epoch": state["best_epoch"],
            "bad_epochs": state["bad_epochs"], "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            "scaler": scaler.state_dict(),
        })
        events.emit("checkpoint", name=name, path=_in_run(run, path), epoch=epoch, step=state["step"])

    epoch_seconds: list[float] = []
    last_batch_event = 0.0
    epoch = state["epoch"] - 1  # the last epoch done, should a resumed run have none left
    for epoch in range(state["epoch"], config.epochs):
        plan = epoch_plan(data, config, epoch)
        batches = [plan[i : i + config.batch] for i in range(0, len(plan), config.batch)]
        first = state["batch_in_epoch"] if epoch == state["epoch"] else 0
        events.emit("epoch_started", epoch=epoch + 1, epochs=config.epochs, batches=len(batches), first_batch=first + 1,
                    step=state["step"])
        # A generator of its own: making a loader draws from it, and from torch's global stream otherwise, which a
        # resumed run would then see shifted (Mask R-CNN samples its regions from that stream).
        loader = torch.utils.data.DataLoader(
            train_set, batch_sampler=batches[first:], collate_fn=collate, num_workers=config.loader_workers,
            generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch),
        )
        started = time.perf_counter()
        sums: dict[str, float] = {}
        counted = 0
        model.train()
        for index, (images, targets) in enumerate(loader, start=first):
            request = run.requested()
            if request == "cancel":
                raise RunEnded("cancelled", epoch=epoch + 1, step=state["step"])
            if request == "stop":
                checkpoint("last.pt", epoch, index)
                raise RunEnded("stopped", epoch=epoch + 1, step=state["step"], resumable=True,
                               best_metric=state["best_metric"], best_epoch=state["best_epoch"])
            images = images.to(device, non_blocking=True)
            targets = [t.to(device) for t in targets]
            autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else nullcontext()
            with autocast:
                losses = backend.losses(model, images, targets)
            loss = sum(losses.values())
            values = {name: float(value.detach()) for name, value in losses.items()}
            if not torch.isfinite(loss):
                raise RunEnded("failed", error=f"the loss is not finite at epoch {epoch + 1}, batch {index + 1} "
                               f"(step {state['step'] + 1}): {values}; lower --lr or check the labels",
                               traceback="", log_tail=list(log.tail))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(parameters, GRAD_CLIP)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            state["step"] += 1
            counted += 1
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            now = time.perf_counter()
            last = index + 1 == len(batches)
            if last or now - last_batch_event >= config.batch_event_seconds:
                last_batch_event = now
                per_batch = (now - started) / counted
                remaining = (len(batches) - index - 1) * per_batch + _epochs_left(config, epoch) * (
                    np.mean(epoch_seconds) if epoch_seconds else per_batch * len(batches))
                events.emit("batch", epoch=epoch + 1, batch=index + 1, batches=len(batches), step=state["step"],
                            losses=values, lr=scheduler.get_last_lr()[0], eta_s=round(float(remaining), 1))
            if config.max_steps and state["step"] >= config.max_steps:
                break

        metrics = _validate(backend, model, spec, val_set, border, device, config.batch)
        metrics[MONITOR] = fitness(metrics)
        monitored = metrics[MONITOR]
        improved = state["best_metric"] is None or monitored > state["best_metric"] + 1e-9
        if improved:
            state["best_metric"], state["best_epoch"], state["bad_epochs"] = monitored, epoch + 1, 0
        else:
            state["bad_epochs"] += 1
        checkpoint("last.pt", epoch + 1, 0)
        if improved:
            _copy_whole(run.last, run.best)
            events.emit("checkpoint", name="best.pt", path=_in_run(run, run.best), epoch=epoch + 1, step=state["step"])
        epoch_seconds.append(time.perf_counter() - started)
        events.emit(
            "epoch_end", epoch=epoch + 1, epochs=config.epochs, step=state["step"],
            losses={name: total / max(counted, 1) for name, total in sums.items()}, metrics=metrics,
            lr=scheduler.get_last_lr()[0], epoch_seconds=round(epoch_seconds[-1], 2),
            eta_s=round(float(np.mean(epoch_seconds)) * _epochs_left(config, epoch), 1),
            monitor=MONITOR, best_metric=state["best_metric"], best_epoch=state["best_epoch"],
        )
        log(_epoch_line(epoch + 1, config.epochs, sums, counted, metrics, epoch_seconds[-1]))
        if config.max_steps and state["step"] >= config.max_steps:
            log(f"reached --max-steps {config.max_steps}")
            break
        if config.patience and state["bad_epochs"] >= config.patience:
            log(f"stopping early: the {MONITOR} has not improved for {config.patience} epochs")
            break
    if run.requested() == "cancel":  # asked during the last validation: still honoured
        raise RunEnded("cancelled", epoch=epoch + 1, step=state["step"])
    raise RunEnded("succeeded", epochs_done=epoch + 1, step=state["step"], best_metric=state["best_metric"],
                   best_epoch=state["best_epoch"], best=_in_run(run, run.best))


def _in_run(run: RunDir, path: Path) -> str:
    """A file's path within its run folder, as events carry it: they go to pages and API clients, which have no
    business knowing where the server keeps its files."""
    return path.relative_to(run.path).as_posix()


def _epoch_line(epoch: int, epochs: int, sums: dict[str, float], counted: int, metrics: dict[str, Any],
                seconds: float) -> str:
    """One line a person reads in the run's log: the epoch's losses and validation figures."""
    losses = ", ".join(f"{name} {total / max(counted, 1):.4f}" for name, total in sums.items())
    shown = [f"{label} {metrics[key]:.3f}" for label, key in
             (("mask precision", "precision_mask"), ("recall", "recall_mask"), ("mAP50", "map50_mask"))
             if isinstance(metrics.get(key), float)]
    border = metrics.get("border_error_mm")
    if isinstance(border, float):
        shown.append(f"border error {border:.4f} mm")
    return f"epoch {epoch}/{epochs} in {seconds:.1f} s: {losses}; " + (", ".join(shown) or "not validated")


OWN_LOOP_METRICS = {f"{kind}_{name}": f"{key}_{kind}" for kind in ("box", "mask") for name, key in
                    (("precision", "precision"), ("recall", "recall"), ("mAP50", "map50"), ("mAP50-95", "map50_95"))}


def _fit_own_loop(run: RunDir, config: TrainConfig, data: TrainData, events: EventLog, log: _Logger,
                  backend: Backend, spec: ModelSpec, device: torch.device) -> None:
    """A backend with its own trainer (Ultralytics): our run settings in, its callbacks out as our events. Its
    trainer decides the batches, so the synthetic share becomes how many synthetic cards join the training set."""
    from cardmetry.models.backends.yolo import YoloJob  # the only own-loop backend so far

    synthetic = data.synthetic
    if data.train and synthetic and config.synthetic_share < 1:
        wanted = round(len(data.train) * config.synthetic_share / max(1e-9, 1 - config.synthetic_share))
        synthetic = synthetic[:wanted]
    elif config.synthetic_share == 1 and synthetic:
        data = TrainData([], data.val, synthetic, data.version, data.problems)

    def items(samples: list) -> list:
        return [(s.path, [(spec.classes.index(i.class_id), i.polygon) for i in s.instances]) for s in samples]

    job = YoloJob(spec, items(data.train + synthetic), items(data.val), run.path / OWN_LOOP_FOLDER,
                  epochs=config.epochs, batch=config.batch, lr=config.lr or backend.default_lr,
                  device="cpu" if device.type == "cpu" else str(device.index or 0), seed=config.seed,
                  workers=config.loader_workers, threads=config.threads, patience=config.patience or config.epochs)
    steps, started, last_event = [0], [time.perf_counter()], [0.0]
    events.emit("run_started", run=run.id, resumed=False, config=config.as_json(), spec=spec.as_json(),
                device=str(device), epochs=config.epochs, dataset_version=data.version,
                train_images=len(job.train_items), synthetic_images=len(synthetic), val_images=len(data.val))

    def epoch_started(epoch: int) -> None:
        started[0] = time.perf_counter()
        events.emit("epoch_started", epoch=epoch + 1, epochs=config.epochs)

    def batch(epoch: int, index: int, losses: dict[str, float]) -> None:
        steps[0] += 1
        now = time.perf_counter()
        if now - last_event[0] >= config.batch_event_seconds:
            last_event[0] = now
            events.emit("batch", epoch=epoch + 1, batch=index + 1, step=steps[0], losses=dict(losses))

    def epoch_end(epoch: int, metrics: dict[str, Any]) -> None:
        ours = {OWN_LOOP_METRICS.get(k, k): v for k, v in metrics.items()}
        losses = {k.removeprefix("loss_"): v for k, v in ours.items() if k.startswith("loss_")}
        seconds = time.perf_counter() - started[0]
        events.emit("epoch_end", epoch=epoch + 1, epochs=config.epochs, step=steps[0], losses=losses,
                    metrics={k: v for k, v in ours.items() if not k.startswith("loss_")}, lr=ours.get("lr"),
                    epoch_seconds=round(seconds, 2), eta_s=round(seconds * _epochs_left(config, epoch), 1))

    def should_stop() -> bool:
        return run.requested() is not None or bool(config.max_steps and steps[0] >= config.max_steps)

    best = backend.fit(job, FitCallbacks(epoch_started, batch, epoch_end, should_stop, log))
    request = run.requested()
    if request == "cancel":
        raise RunEnded("cancelled", step=steps[0])
    run.checkpoints.mkdir(parents=True, exist_ok=True)
    _copy_whole(best, run.best)
    events.emit("checkpoint", name="best.pt", path=_in_run(run, run.best), step=steps[0])
    if request == "stop":
        raise RunEnded("stopped", step=steps[0], resumable=False)
    raise RunEnded("succeeded", step=steps[0], best=_in_run(run, run.best))


def _copy_whole(source: Path, target: Path) -> None:
    """A checkpoint copied whole or not at all: a crash mid-copy leaves the previous one."""
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.replace(target)


def _epochs_left(config: TrainConfig, epoch: int) -> int:
    return config.epochs - epoch - 1


def _restore(run: RunDir, data: TrainData, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
             device: torch.device) -> dict[str, Any]:
    saved = load_checkpoint(run.last, map_location=device)
    version = saved.get("dataset", {}).get("version")
    if version != data.version:
        raise CheckpointError(f"{run.last}: trained on dataset version {version}, but the data now is version "
                              f"{data.version}; resume needs the same data")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["rng"].cpu())
    if device.type == "cuda" and saved.get("cuda_rng"):
        torch.cuda.set_rng_state_all([state.cpu() for state in saved["cuda_rng"]])
    if saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])
    return {key: saved[key] for key in ("epoch", "batch_in_epoch", "step", "best_metric", "best_epoch", "bad_epochs")}


@torch.inference_mode()
def _validate(backend: Backend, model: torch.nn.Module, spec: ModelSpec, val_set: CardSegmentation,
              border: BorderEvaluator, device: torch.device, batch: int) -> dict[str, float]:
    model.eval()
    targets, predictions = [], []
    for start in range(0, len(val_set), batch):
        items = [val_set[i] for i in range(start, min(start + batch, len(val_set)))]
        images = torch.stack([image for image, _ in items]).to(device)
        predictions += backend.predict_batch(model, images, spec)
        targets += [target for _, target in items]
    metrics = coco_metrics(targets, predictions, spec)
    metrics.update(border.evaluate(backend, model, spec, str(device)))
    model.train()
    return metrics
