"""The `yolo-seg` backend: Ultralytics YOLO11 instance segmentation, an optional extra (`pip install -e '.[yolo]'`).

Ultralytics is AGPL-3.0, so the core never imports it: this module imports it only inside its functions, after
`cardmetry.models.offline.prepare_ultralytics` has set the switches that keep it off the network (see that module
and DEVELOPERS.md). Importing this module, listing backends and the registry work without Ultralytics installed.

Training uses Ultralytics' own trainer (`own_loop`): `fit` writes the job's images and YOLO-seg polygon labels
into a folder with a data.yaml it generates itself (a user's data.yaml is never handed to Ultralytics: its
`download:` key runs code), builds the network from Ultralytics' bundled model yaml with our class count, and
relays the trainer's callbacks to `FitCallbacks`. Weights are kept as plain state dicts in cardmetry checkpoints,
loadable with `torch.load(weights_only=True)`; Ultralytics' own pickled .pt files are never loaded here.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional

from cardmetry.data.instances import DEFAULT_CLASSES
from cardmetry.models.base import Backend, BackendUnavailableError, FitCallbacks, ModelSpec, PredictedInstance
from cardmetry.models.checkpoint import save_checkpoint
from cardmetry.models.offline import prepare_ultralytics, ultralytics_missing_reason
from cardmetry.models.onnx_file import write_onnx
from cardmetry.models.outlines import box_of, largest_outline

log = logging.getLogger(__name__)

STRIDE = 32  # the largest stride of YOLO11's heads: the input side must divide by it
NMS_IOU = 0.7  # Ultralytics' default for prediction
VARIANTS: dict[str, str] = {
    "yolo11n-seg": "YOLO11 nano segmentation (2.9 M parameters), from scratch or your weights",
    "yolo11s-seg": "YOLO11 small segmentation (10 M parameters), from scratch or your weights",
    "yolo11m-seg": "YOLO11 medium segmentation (22 M parameters), from scratch or your weights",
}
# The validated metrics Ultralytics reports, under the names we give them in `epoch_end`.
METRIC_NAMES: dict[str, str] = {
    "metrics/precision(B)": "box_precision",
    "metrics/recall(B)": "box_recall",
    "metrics/mAP50(B)": "box_mAP50",
    "metrics/mAP50-95(B)": "box_mAP50-95",
    "metrics/precision(M)": "mask_precision",
    "metrics/recall(M)": "mask_recall",
    "metrics/mAP50(M)": "mask_mAP50",
    "metrics/mAP50-95(M)": "mask_mAP50-95",
}

Polygon = np.ndarray  # (N, 2) label-convention pixels of the item's image
Item = tuple[np.ndarray | Path | str, Sequence[tuple[int, Polygon]]]  # image (RGB array or file), instances


@dataclass
class YoloJob:
    """What `YoloSegBackend.fit` trains on. `train_items` and `val_items` are (image, instances) pairs: the image an
    RGB uint8 array or an image file, each instance (index into `spec.classes`, polygon in label-convention pixels
    of that image). Everything Ultralytics writes goes under `out_dir`."""

    spec: ModelSpec
    train_items: Sequence[Item]
    val_items: Sequence[Item]
    out_dir: Path
    epochs: int = 100
    batch: int = 16
    lr: float = 0.01  # Ultralytics' lr0 (SGD); its other hyperparameters keep their defaults
    device: str = "cpu"  # "cpu", "0" or "cuda:0" ...
    seed: int = 0
    workers: int = 0  # dataloader worker processes
    threads: int | None = None  # torch CPU threads; None keeps Ultralytics' choice (cores - 1, at most 8)
    patience: int = 50  # epochs without improvement before Ultralytics stops early
    class_names: Sequence[str] = DEFAULT_CLASSES  # indexed by dataset class id, for Ultralytics' logs
    extra: Mapping[str, Any] = field(default_factory=dict)  # further Ultralytics train arguments (mosaic, ...)


def _require() -> None:
    reason = ultralytics_missing_reason()
    if reason:
        raise BackendUnavailableError(reason)


def _weights_state(path: str) -> dict[str, torch.Tensor]:
    """A user's weights as a state dict: a cardmetry checkpoint, or a file holding a plain state dict. Loaded with
    `weights_only=True`, so Ultralytics' pickled .pt files are refused rather than run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path}: cannot be read as plain weights ({type(error).__name__}). Ultralytics' own .pt files are "
            "pickled Python objects that can run code, so they are not loaded; convert one where you trust it with "
            "torch.save(YOLO('file.pt').model.float().state_dict(), 'file.state.pt') and use that file"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: holds no state dict of tensors")
    return state


def _load_matching(model: nn.Module, state: Mapping[str, torch.Tensor], path: str) -> None:
    """Load the tensors whose names and shapes match (a head trained for other classes is left as built)."""
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(matching) < len(own) // 2:
        raise ValueError(f"{path}: only {len(matching)} of {len(own)} tensors fit this variant; wrong model size?")
    model.load_state_dict(matching, strict=False)
    log.info("loaded %d of %d tensors from %s", len(matching), len(own), path)


def _probability_masks(
    protos: torch.Tensor, coefficients: torch.Tensor, boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """(N, size, size) mask probabilities: the prototypes' mix upsampled to the input, zero outside each box (as
    Ultralytics' `process_mask`, which thresholds the same logits at 0, i.e. probability 0.5)."""
    c, mh, mw = protos.shape
    if coefficients.shape[0] == 0:
        return torch.zeros((0, size, size), device=protos.device)
    logits = (coefficients.float() @ protos.float().view(c, -1)).view(-1, mh, mw)
    probabilities = functional.interpolate(logits[None], (size, size), mode="bilinear", align_corners=False)[
        0
    ].sigmoid()
    coords = torch.arange(size, device=protos.device, dtype=torch.float32) + 0.5  # pixel centres, label convention
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    inside = (coords[None, None, :] >= x0) & (coords[None, None, :] < x1)
    inside = inside & (coords[None, :, None] >= y0) & (coords[None, :, None] < y1)
    return probabilities * inside


def decode(
    predictions: torch.Tensor, protos: torch.Tensor, spec: ModelSpec, score_threshold: float
) -> list[list[PredictedInstance]]:
    """Instances per image from the head's raw outputs ((B, 4 + nc + 32, A) and (B, 32, h, w)), after NMS."""
    from ultralytics.utils.nms import non_max_suppression

    kept = non_max_suppression(predictions, score_threshold, NMS_IOU, nc=len(spec.classes), max_det=100)
    out = []
    for detections, image_protos in zip(kept, protos, strict=True):
        masks = _probability_masks(image_protos, detections[:, 6:], detections[:, :4], spec.imgsz).cpu().numpy()
        instances = []
        for row, mask in zip(detections.cpu().numpy(), masks, strict=True):
            polygon = largest_outline(mask >= 0.5)
            if polygon is None:
                continue
            label = spec.classes[int(row[5])]
            instances.append(PredictedInstance(label, float(row[4]), mask.astype(np.float32), polygon, box_of(polygon)))
        out.append(instances)
    return out


class _RawOutputs(nn.Module):
    """The network with only the outputs `decode` needs, for ONNX export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        predictions, protos = self.model(images)[0]
        return predictions, protos


class YoloSegBackend(Backend):
    name = "yolo-seg"
    description = "Ultralytics YOLO11 instance segmentation (optional extra '.[yolo]', AGPL-3.0; own trainer)"
    variants: Mapping[str, str] = VARIANTS
    default_variant = "yolo11n-seg"
    default_lr = 0.01
    own_loop = True

    def unavailable_reason(self) -> str | None:
        return ultralytics_missing_reason()

    # --- the network --------------------------------------------------------------------------------------
    def build(self, spec: ModelSpec) -> nn.Module:
        """Ultralytics' SegmentationModel from its bundled yaml with one output per class in `spec.classes`: from
        scratch, or with the tensors of `spec.weights` that fit (nothing is bundled, nothing downloads)."""
        _require()
        self.check_variant(spec.variant)
        if spec.imgsz % STRIDE:
            raise ValueError(f"yolo-seg needs an input size that divides by {STRIDE}, not {spec.imgsz}")
        prepare_ultralytics()
        from ultralytics.nn.tasks import SegmentationModel, yaml_model_load

        model = SegmentationModel(yaml_model_load(f"{spec.variant}.yaml"), nc=len(spec.classes), verbose=False)
        if spec.weights:
            _load_matching(model, _weights_state(spec.weights), spec.weights)
        return model

    def predict_batch(
        self, model: nn.Module, images: torch.Tensor, spec: ModelSpec, score_threshold: float = 0.05
    ) -> list[list[PredictedInstance]]:
        _require()
        with torch.inference_mode():
            predictions, protos = model(images)[0]
        return decode(predictions, protos, spec, score_threshold)

    def export_onnx(self, model: nn.Module, spec: ModelSpec, path: Path) -> None:
        """The network's raw outputs (before NMS) as ONNX; `decode_onnx` runs NMS and the masks, as `predict` does."""
        _require()
        write_onnx(_RawOutputs(model).cpu(), spec, path, ["predictions", "protos"])

    def decode_onnx(self, outputs: Sequence[np.ndarray], spec: ModelSpec) -> list[PredictedInstance]:
        _require()
        predictions, protos = (torch.from_numpy(np.asarray(output)) for output in outputs[:2])
        return decode(predictions, protos, spec, score_threshold=0.05)[0]

    # --- training -----------------------------------------------------------------------------------------
    def fit(self, job: YoloJob, callbacks: FitCallbacks) -> Path:
        """Train with Ultralytics' trainer; returns the best weights as a cardmetry checkpoint (`out_dir/best.pt`).

        `epoch_started(e)`, `batch(e, i, losses)` and `epoch_end(e, metrics)` count epochs from 0. `metrics` holds
        the mean training losses (`loss_box`, `loss_seg`, `loss_cls`, `loss_dfl`...), the validation losses
        (`val_loss_*`), `box_`/`mask_` precision, recall, mAP50 and mAP50-95, `fitness` and `lr`. The validation of
        the best weights that Ultralytics runs after the last epoch is logged, not reported as another epoch.
        `should_stop()` is asked after every batch and epoch; when true, training ends after validating and saving,
        and the best weights so far are returned.
        """
        _require()
        self.check_variant(job.spec.variant)
        config_dir = prepare_ultralytics()
        out_dir = Path(job.out_dir)
        data_yaml = write_dataset(out_dir / "dataset", job)
        trainer = _make_trainer(self, job, data_yaml, out_dir)
        relay = _Relay(job.spec, callbacks, out_dir / "best.pt")
        relay.attach(trainer)
        if threads := job.threads:  # Ultralytics resets torch's threads as it builds the trainer: set ours again
            trainer.add_callback("on_train_start", lambda _: torch.set_num_threads(threads))
        callbacks.log(f"ultralytics config folder: {config_dir}")
        with _no_amp_download():
            trainer.train()
        if not relay.best.is_file():  # no epoch got as far as saving: keep the weights it has
            relay.save(trainer, best_metric=float("nan"))
        return relay.best


# --- the dataset Ultralytics reads --------------------------------------------------------------------------
def write_dataset(root: Path, job: YoloJob) -> Path:
    """images/{train,val} and labels/{train,val} (YOLO-seg polygon lines) under `root`, and a data.yaml that names
    them by absolute path (no `download:` key); returns the data.yaml."""
    if root.exists():
        shutil.rmtree(root)  # a fresh copy: stale label caches or images from another job must not mix in
    for split, items in (("train", job.train_items), ("val", job.val_items)):
        if not items:
            raise ValueError(f"the yolo-seg job has no {split} images")
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for index, (image, instances) in enumerate(items):
            stem = f"{index:06d}"
            width, height = _write_image(image, root / "images" / split, stem)
            lines = [_label_line(label, polygon, width, height, len(job.spec.classes)) for label, polygon in instances]
            (root / "labels" / split / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines))
    names = {i: _class_name(c, job.class_names) for i, c in enumerate(job.spec.classes)}
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val", "names": names}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _class_name(class_id: int, names: Sequence[str]) -> str:
    return names[class_id] if class_id < len(names) else f"class{class_id}"


def _write_image(image: np.ndarray | Path | str, folder: Path, stem: str) -> tuple[int, int]:
    """Copy or encode the image into `folder`; returns its (width, height)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"training images must be (H, W, 3) uint8 RGB, not {image.shape} {image.dtype}")
        if not cv2.imwrite(str(folder / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {folder / stem}.png")
        return image.shape[1], image.shape[0]
    source = Path(image)
    from PIL import Image  # the size only: the pixels are read by Ultralytics

    with Image.open(source) as opened:
        size = opened.size
    shutil.copyfile(source, folder / f"{stem}{source.suffix.lower()}")
    return size


def _label_line(label: int, polygon: Polygon, width: int, height: int, classes: int) -> str:
    if not 0 <= label < classes:
        raise ValueError(f"instance label {label} is not an index into the spec's {classes} classes")
    points = np.asarray(polygon, float).reshape(-1, 2)
    if len(points) < 3:
        raise ValueError("an instance polygon needs at least 3 points")
    normalised = np.clip(points / np.array([width, height], float), 0.0, 1.0)
    return " ".join([str(label), *(f"{v:.6f}" for v in normalised.ravel())])


# --- the trainer and its callbacks --------------------------------------------------------------------------
def _make_trainer(backend: YoloSegBackend, job: YoloJob, data_yaml: Path, out_dir: Path) -> Any:
    from ultralytics.models.yolo.segment import SegmentationTrainer

    spec = job.spec

    class Trainer(SegmentationTrainer):
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> nn.Module:
            return backend.build(spec)  # ours: the same network `build` gives the predictors, with spec.weights

    on_cpu = str(job.device).lower() == "cpu"
    overrides = {
        "model": f"{spec.variant}.yaml",  # only names the architecture: get_model builds it
        "data": str(data_yaml),
        "epochs": job.epochs,
        "batch": job.batch,
        "imgsz": spec.imgsz,
        "lr0": job.lr,
        "optimizer": "SGD",  # "auto" would ignore lr0 and pick its own optimizer and rate
        "device": job.device,
        "seed": job.seed,
        "deterministic": True,
        "workers": job.workers,
        "patience": job.patience,
        "project": str(out_dir),
        "name": "ultralytics",
        "exist_ok": True,
        "pretrained": False,
        "amp": not on_cpu,  # AMP is for GPUs; on the CPU Ultralytics' AMP check would only waste time
        "plots": False,
        "val": True,
        "verbose": False,
        **job.extra,
    }
    return Trainer(overrides=overrides)


@contextmanager
def _no_amp_download() -> Iterator[None]:
    """Ultralytics' AMP check on a GPU loads yolo26n.pt, downloading it when missing: answer it without that (AMP
    is trusted on the GPUs it does not list as broken, which its check tests before the download)."""
    import ultralytics.engine.trainer as trainer_module

    original = trainer_module.check_amp
    trainer_module.check_amp = _amp_without_download
    try:
        yield
    finally:
        trainer_module.check_amp = original


def _amp_without_download(model: nn.Module) -> bool:
    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    name = torch.cuda.get_device_name(device).lower()
    return not any(gpu in name for gpu in ("1660", "1650", "1630", "t400", "t550", "t600", "t1000", "t1200", "k40m"))


class _Relay:
    """Ultralytics' trainer callbacks to `FitCallbacks`, and our checkpoint each time its best weights improve."""

    def __init__(self, spec: ModelSpec, callbacks: FitCallbacks, best: Path) -> None:
        self.spec, self.callbacks, self.best = spec, callbacks, best
        self.epoch: int | None = None  # the epoch under way, from on_train_epoch_start
        self.batch_index = 0
        self.reported: set[int] = set()

    def attach(self, trainer: Any) -> None:
        handlers: dict[str, Callable[[Any], None]] = {
            "on_train_epoch_start": self.epoch_start,
            "on_train_batch_end": self.batch_end,
            "on_fit_epoch_end": self.fit_epoch_end,
            "on_model_save": self.model_saved,
        }
        for event, handler in handlers.items():
            trainer.add_callback(event, handler)

    def epoch_start(self, trainer: Any) -> None:
        self.epoch, self.batch_index = int(trainer.epoch), 0
        self.callbacks.epoch_started(self.epoch)

    def batch_end(self, trainer: Any) -> None:
        losses = _losses(trainer.loss_names, trainer.loss_items)
        self.callbacks.batch(int(trainer.epoch), self.batch_index, losses)
        self.batch_index += 1
        self._check_stop(trainer)

    def fit_epoch_end(self, trainer: Any) -> None:
        epoch = int(trainer.epoch)
        if epoch != self.epoch or epoch in self.reported:
            # The final validation of best.pt runs with trainer.epoch moved one past the last epoch.
            final = {METRIC_NAMES.get(k, k): _number(v) for k, v in (trainer.metrics or {}).items()}
            self.callbacks.log(f"final validation of the best weights: {json.dumps(final)}")
            return
        self.reported.add(epoch)
        self.callbacks.epoch_end(epoch, epoch_metrics(trainer))
        self._check_stop(trainer)

    def model_saved(self, trainer: Any) -> None:
        if trainer.fitness is not None and trainer.best_fitness == trainer.fitness:
            self.save(trainer, best_metric=_number(trainer.fitness))

    def save(self, trainer: Any, best_metric: float) -> None:
        source = trainer.ema.ema if getattr(trainer, "ema", None) else trainer.model
        state = {
            k: v.detach().float().cpu().clone() if v.is_floating_point() else v.detach().cpu().clone()
            for k, v in source.state_dict().items()
        }
        epoch = int(trainer.epoch)
        save_checkpoint(
            self.best,
            {
                "spec": self.spec.as_json(),
                "model": state,
                "epoch": epoch + 1,
                "best_metric": best_metric,
                "best_epoch": epoch,
            },
        )

    def _check_stop(self, trainer: Any) -> None:
        if not trainer.stop and self.callbacks.should_stop():
            self.callbacks.log("stop asked: ending training after this epoch's validation")
            trainer.stop = True


def epoch_metrics(trainer: Any) -> dict[str, float]:
    """One epoch's numbers from the trainer: mean training losses, validation losses and metrics, lr."""
    metrics = {f"loss_{k}": v for k, v in _losses(trainer.loss_names, trainer.tloss).items()}
    for key, value in (trainer.metrics or {}).items():
        if key.startswith("val/"):
            metrics[f"val_loss_{key.removeprefix('val/').removesuffix('_loss')}"] = _number(value)
        else:
            metrics[METRIC_NAMES.get(key, key)] = _number(value)
    metrics["fitness"] = _number(trainer.fitness) if trainer.fitness is not None else float("nan")
    lrs = list((getattr(trainer, "lr", None) or {}).values())
    if lrs:
        metrics["lr"] = _number(lrs[0])
    return metrics


def _losses(names: Sequence[str], values: Any) -> dict[str, float]:
    """Losses by name, from the trainer's dict of loss tensors (Ultralytics 8.4) or a tensor in `names` order."""
    if values is None:
        return {}
    if isinstance(values, Mapping):
        pairs = list(values.items())
    else:
        pairs = list(zip(names, torch.as_tensor(values).detach().float().cpu().reshape(-1).tolist(), strict=False))
    return {str(name).removesuffix("_loss"): _number(value) for name, value in pairs}


def _number(value: Any) -> float:
    number = float(value.item() if hasattr(value, "item") else value)
    return number if math.isfinite(number) else float("nan")
