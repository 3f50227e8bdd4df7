"""What a run trains and validates on, and the torch dataset that feeds the network.

A `DataSource` is a dataset already read (from a folder or the store) with the folder its image paths are
relative to and its version hash. `prepare_data` turns the run's sources into samples for the role: box labels
refined to quads first (a box is only a loose outline of a card), a seeded validation share split off by image
content when no validation data is given. Each epoch's order and every augmentation are drawn from (seed, epoch),
so a resumed run sees exactly the samples the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from cardmetry.data.images import load_image
from cardmetry.data.instances import Instance
from cardmetry.data.problems import Problem
from cardmetry.data.refine import refine_dataset
from cardmetry.data.splits import split_indices
from cardmetry.models.base import ROLE_CLASSES, Target
from cardmetry.models.letterbox import to_tensor_layout
from cardmetry.training.augment import (
    letterbox_homography,
    photometric,
    random_homography,
    rasterise,
    warp_image,
    warp_points,
)
from cardmetry.training.config import AugmentConfig, TrainConfig
from cardmetry.training.sources import DataSource

WORKING_OVERSIZE = 1.5  # images are kept this much larger than the input, so augmentation never upsamples much


@dataclass(frozen=True, eq=False)
class Sample:
    path: Path
    width: int
    height: int
    instances: tuple[Instance, ...]  # only the role's classes, label convention, full-image pixels
    synthetic: bool = False
    reference: tuple[Instance, ...] = ()  # every refined outline, both roles: the border error needs both


@dataclass(eq=False)
class TrainData:
    train: list[Sample]
    val: list[Sample]
    synthetic: list[Sample] = field(default_factory=list)
    version: str = ""  # what the checkpoints record: the hash of every source's version
    problems: list[Problem] = field(default_factory=list)  # refinement warnings, shown in the run's log


def _samples(source: DataSource, classes: tuple[int, ...], synthetic: bool) -> tuple[list[Sample], list[Problem]]:
    dataset, problems = source.dataset, []
    if any(i.is_box for image in dataset.images for i in image.instances if i.class_id in classes):
        dataset, problems = refine_dataset(dataset, source.root)
    samples = []
    for image in dataset.images:
        instances = tuple(i for i in image.instances if i.class_id in classes and not i.is_box)
        if instances:  # an image without the role's outline teaches nothing about it
            reference = tuple(i for i in image.instances if not i.is_box)
            samples.append(
                Sample(source.root / image.path, image.width, image.height, instances, synthetic, reference)
            )
    return samples, problems


def prepare_data(
    config: TrainConfig, data: DataSource, val: DataSource | None = None, synthetic: DataSource | None = None
) -> TrainData:
    classes = ROLE_CLASSES[config.role]
    samples, problems = _samples(data, classes, synthetic=False)
    if val is not None:
        train, (val_samples, more) = samples, _samples(val, classes, synthetic=False)
        problems += more
    else:
        keys = [s.path.name for s in samples]
        split = split_indices(keys, (1 - config.val_share, config.val_share), seed=config.seed)
        train = [samples[i] for i in split["train"]]
        val_samples = [samples[i] for i in split["val"]]
    synth: list[Sample] = []
    if synthetic is not None:
        synth, more = _samples(synthetic, classes, synthetic=True)
        problems += more
    versions = [data.version, val.version if val else f"share{config.val_share}"]
    versions.append(f"{synthetic.version}@{config.synthetic_share}" if synthetic else "")
    version = hashlib.sha256(":".join(versions).encode()).hexdigest()[:12]
    if not train and not synth:
        raise ValueError(f"{config.data}: no image has a usable {config.role} outline to train on")
    if not val_samples:
        raise ValueError(f"{config.val or config.data}: no validation image has a usable {config.role} outline")
    return TrainData(train, val_samples, synth, version, problems)


def epoch_plan(data: TrainData, config: TrainConfig, epoch: int) -> list[tuple[int, int]]:
    """(sample index into train + synthetic, augmentation seed) for every sample of an epoch."""
    rng = np.random.default_rng([config.seed, epoch])
    n_real, n_synth, share = len(data.train), len(data.synthetic), config.synthetic_share
    if n_real and n_synth and 0 < share < 1:
        size = config.epoch_size or n_real + n_synth
        from_synth = rng.random(size) < share
        picks = np.where(from_synth, n_real + rng.integers(n_synth, size=size), rng.integers(n_real, size=size))
    else:  # one kind only: a share of 0 or 1, or only one kind given
        only_synth = n_synth > 0 and (n_real == 0 or share == 1)
        pool = np.arange(n_real, n_real + n_synth) if only_synth else np.arange(n_real)
        size = config.epoch_size or len(pool)
        picks = rng.permutation(np.resize(rng.permutation(pool), size))
    seeds = rng.integers(2**31, size=size)
    return [(int(p), int(s)) for p, s in zip(picks, seeds, strict=True)]


class WorkingImages:
    """Images decoded once and kept shrunk to about the input size (a 600 dpi scan is 10 MB of pixels; the
    network sees a few hundred pixels a side). The least recently used go first beyond `capacity`."""

    def __init__(self, imgsz: int, capacity: int = 2048) -> None:
        self.side = round(imgsz * WORKING_OVERSIZE)
        self.capacity = capacity
        self._cache: OrderedDict[Path, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def get(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """The shrunk image, and the homography from the full image's pixels to its (label convention)."""
        if sample.path in self._cache:
            self._cache.move_to_end(sample.path)
            return self._cache[sample.path]
        image = load_image(sample.path)
        height, width = image.shape[:2]
        scale = min(1.0, self.side / max(height, width))
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        # each axis by its own rounded size: cv2.resize maps pixel edges onto pixel edges, axis by axis
        shrink = np.diag([image.shape[1] / width, image.shape[0] / height, 1.0])
        self._cache[sample.path] = (image, shrink)
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return image, shrink


class CardSegmentation(torch.utils.data.Dataset):
    """Samples as (image tensor, Target) at the network's input size; indexed by (sample index, augmentation
    seed), or by plain index for validation (no augmentation: exactly what inference sees)."""

    def __init__(
        self, samples: Sequence[Sample], classes: tuple[int, ...], imgsz: int, augment: AugmentConfig | None
    ) -> None:
        self.samples, self.classes, self.imgsz, self.augment = list(samples), classes, imgsz, augment
        self.images = WorkingImages(imgsz)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        image, shrink = self.images.get(sample)
        height, width = image.shape[:2]
        if self.augment is None or seed is None:
            homography, rng = letterbox_homography(width, height, self.imgsz), None
        else:
            rng = np.random.default_rng(seed)
            homography = random_homography(rng, width, height, self.imgsz, self.augment)
        pixels = warp_image(image, homography, self.imgsz)
        if rng is not None:
            pixels = photometric(pixels, rng, self.augment)  # type: ignore[arg-type]
        return torch.from_numpy(to_tensor_layout(pixels)), self._target(sample, homography @ shrink)

    def _target(self, sample: Sample, homography: np.ndarray) -> Target:
        labels, boxes, masks = [], [], []
        for instance in sample.instances:
            mask = rasterise(warp_points(instance.polygon, homography), self.imgsz)
            ys, xs = np.nonzero(mask)
            if len(xs) == 0:
                continue  # moved out of view by the augmentation
            labels.append(self.classes.index(instance.class_id))
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            masks.append(mask)
        size = self.imgsz
        return Target(
            torch.tensor(labels, dtype=torch.int64),
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, size, size), dtype=torch.uint8),
        )


def collate(batch: list[tuple[torch.Tensor, Target]]) -> tuple[torch.Tensor, list[Target]]:
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]
