"""The maskrcnn backend: each variant builds and trains a step, detections decode to instances, the bundled and
user weights load, and the ONNX export predicts what the torch model does."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from cardmetry.data.instances import GRAPHIC, OUTER
from cardmetry.models.backends.maskrcnn import MaskRCNNBackend, load_user_weights
from cardmetry.models.base import ModelSpec, PredictedInstance, Target
from cardmetry.models.onnx_file import ONNX_SPEC_KEY
from cardmetry.models.predictors import OnnxPredictor, TorchPredictor
from cardmetry.models.pretrained import effnet_lite0_state_dict
from cardmetry.models.registry import get_backend

SIZE = 64
LOSS_KEYS = {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
VARIANTS = ("effnet-lite0-fpn", "mobilenet-v3-fpn", "r50-fpn-v2")


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # the test machine's cores are shared


def spec_of(variant: str = "effnet-lite0-fpn", classes: tuple[int, ...] = (OUTER,), **changes) -> ModelSpec:
    return dataclasses.replace(ModelSpec("maskrcnn", variant, classes, SIZE, pretrained=False), **changes)


def card_mask(centre: tuple[float, float], size: tuple[float, float], angle: float) -> np.ndarray:
    """A filled rotated rectangle (a card seen turned a little), (SIZE, SIZE) uint8 0/1."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(mask, [np.round(cv2.boxPoints((centre, size, angle))).astype(np.int32)], 1)
    return mask


def card_batch() -> tuple[torch.Tensor, list[Target]]:
    """Two images: a bright turned card with its darker graphic frame, and one with the card only."""
    images = torch.full((2, 3, SIZE, SIZE), 0.15)
    targets = []
    for index, (angle, classes) in enumerate(((8.0, (0, 1)), (-5.0, (0,)))):
        masks = [card_mask((32, 32), (36, 50), angle), card_mask((32, 32), (28, 40), angle)][: len(classes)]
        for mask, value in zip(masks, (0.9, 0.4), strict=False):
            images[index, :, torch.from_numpy(mask).bool()] = value
        boxes = []
        for mask in masks:
            ys, xs = np.nonzero(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        targets.append(
            Target(torch.tensor(classes), torch.tensor(boxes, dtype=torch.float32), torch.from_numpy(np.stack(masks)))
        )
    return images, targets


def check_instance(instance: PredictedInstance, spec: ModelSpec, threshold: float) -> None:
    assert instance.class_id in spec.classes
    assert instance.score >= threshold
    assert instance.mask.shape == (SIZE, SIZE) and instance.mask.dtype == np.float32
    assert instance.mask.min() >= 0.0 and instance.mask.max() <= 1.0
    assert instance.polygon.ndim == 2 and instance.polygon.shape[1] == 2 and len(instance.polygon) >= 3
    x0, y0, x1, y1 = instance.box
    assert (x0, y0) == tuple(instance.polygon.min(axis=0)) and (x1, y1) == tuple(instance.polygon.max(axis=0))


@pytest.mark.parametrize(
    "variant",
    [
        "effnet-lite0-fpn",  # the default: EfficientNet-Lite0 under a group-normed pyramid
        "mobilenet-v3-fpn",  # torchvision's MobileNetV3 pyramid, from scratch
        "r50-fpn-v2",  # torchvision's ResNet-50 v2 model, from scratch
    ],
)
def test_variant_trains_a_step_and_predicts(variant: str) -> None:
    torch.manual_seed(0)
    backend = MaskRCNNBackend()
    spec = spec_of(variant, (OUTER, GRAPHIC))
    model = backend.build(spec)
    images, targets = card_batch()
    before = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = backend.losses(model, images, targets)
    assert set(losses) == LOSS_KEYS
    assert all(torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    optimizer.step()
    changed = [name for name, p in model.named_parameters() if name in before and not torch.equal(p, before[name])]
    assert any(name.startswith("backbone.") for name in changed)
    assert any(name.startswith("roi_heads.mask_predictor") for name in changed)

    found = backend.predict_batch(model, images, spec, score_threshold=0.0)
    assert len(found) == len(images)
    for instances in found:
        assert len(instances) <= 20
        for instance in instances:
            check_instance(instance, spec, 0.0)
    assert model.roi_heads.score_thresh == 0.05  # the call's threshold does not stick to the model


class FakeDetector(nn.Module):
    """Stands in for a trained Mask R-CNN: returns fixed detections, keeping only those over the threshold the
    way torchvision's region heads do."""

    def __init__(self, detections: list[tuple[int, float, np.ndarray]]) -> None:
        super().__init__()
        self.detections = detections
        self.roi_heads = nn.Module()
        self.roi_heads.score_thresh = 0.05

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        kept = [d for d in self.detections if d[1] > self.roi_heads.score_thresh]
        masks = np.stack([d[2] for d in kept]) if kept else np.zeros((0, SIZE, SIZE), np.float32)
        found = {
            "boxes": torch.zeros(len(kept), 4),
            "labels": torch.tensor([d[0] for d in kept], dtype=torch.int64),
            "scores": torch.tensor([d[1] for d in kept]),
            "masks": torch.from_numpy(masks).float()[:, None],
        }
        return [found for _ in images]


def soft_rectangle(x0: int, y0: int, x1: int, y1: int, inside: float = 0.9) -> np.ndarray:
    mask = np.full((SIZE, SIZE), 0.1, np.float32)
    mask[y0:y1, x0:x1] = inside
    return mask


@pytest.mark.parametrize(
    ("detections", "threshold", "expected"),
    [
        # one detection of the first class: label 1 is spec.classes[0]
        ([(1, 0.9, soft_rectangle(5, 10, 41, 31))], 0.5, [(OUTER, (5, 10, 41, 31))]),
        # label 2 is the second class; best first as the detector gives them
        (
            [(2, 0.8, soft_rectangle(8, 8, 56, 56)), (1, 0.7, soft_rectangle(2, 2, 62, 62))],
            0.5,
            [(GRAPHIC, (8, 8, 56, 56)), (OUTER, (2, 2, 62, 62))],
        ),
        # a detection under the threshold is left out
        (
            [(1, 0.9, soft_rectangle(5, 10, 41, 31)), (2, 0.3, soft_rectangle(8, 8, 56, 56))],
            0.5,
            [(OUTER, (5, 10, 41, 31))],
        ),
        # a mask under 0.5 everywhere has no outline: dropped
        ([(1, 0.9, soft_rectangle(5, 10, 41, 31, inside=0.45))], 0.5, []),
    ],
)
def test_detections_decode_to_instances(detections: list, threshold: float, expected: list) -> None:
    backend = MaskRCNNBackend()
    spec = spec_of(classes=(OUTER, GRAPHIC))
    found = backend.predict_batch(FakeDetector(detections), torch.zeros(1, 3, SIZE, SIZE), spec, threshold)[0]
    assert [(i.class_id, i.box) for i in found] == [
        (class_id, (x0 + 0.5, y0 + 0.5, x1 - 0.5, y1 - 0.5)) for class_id, (x0, y0, x1, y1) in expected
    ]  # outlines run through the edge pixels' centres (label convention)
    for instance, (_, score, mask) in zip(found, [d for d in detections if d[1] >= threshold], strict=False):
        check_instance(instance, spec, threshold)
        assert instance.score == pytest.approx(score) and np.array_equal(instance.mask, mask)

    # The ONNX outputs hold the same detections (masks (N, 1, S, S)); the exported model thresholds them itself.
    kept = [d for d in detections if d[1] >= threshold]
    outputs = [
        np.zeros((len(kept), 4), np.float32),
        np.array([d[0] for d in kept], np.int64),
        np.array([d[1] for d in kept], np.float32),
        np.stack([d[2] for d in kept])[:, None] if kept else np.zeros((0, 1, SIZE, SIZE), np.float32),
    ]
    assert [(i.class_id, i.box) for i in backend.decode_onnx(outputs, spec)] == [(i.class_id, i.box) for i in found]


@pytest.mark.parametrize(
    ("pretrained", "bundled_stem"),
    [
        (True, True),  # the bundled ImageNet weights fill the backbone, and its batch-norm statistics stay put
        (False, False),  # from scratch: random weights, statistics that learn
    ],
)
def test_effnet_backbone_starts_from_the_bundled_weights(pretrained: bool, bundled_stem: bool) -> None:
    torch.manual_seed(0)
    backend = MaskRCNNBackend()
    model = backend.build(spec_of(pretrained=pretrained))
    body = model.backbone.body
    assert torch.equal(body.conv_stem.weight, effnet_lite0_state_dict()["conv_stem.weight"]) is bundled_stem
    running_mean = body.bn1.running_mean.clone()
    images, targets = card_batch()
    backend.losses(model, images, [dataclasses.replace(t, labels=torch.zeros_like(t.labels)) for t in targets])
    assert torch.equal(body.bn1.running_mean, running_mean) is pretrained


@pytest.mark.parametrize(
    ("variant", "wrap"),
    [
        ("r50-fpn-v2", None),  # a bare state dict, as torchvision's COCO checkpoints are
        ("mobilenet-v3-fpn", "model"),  # inside a training checkpoint's "model"
        ("mobilenet-v3-fpn", "state_dict"),  # inside a Lightning checkpoint's "state_dict"
    ],
)
def test_user_weights_load_all_but_the_class_heads(
    variant: str, wrap: str | None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    backend = MaskRCNNBackend()
    source = backend.build(spec_of(variant, (OUTER, GRAPHIC)))  # three outputs; the model below has two
    path = tmp_path / "weights.pt"
    state = source.state_dict()
    torch.save(state if wrap is None else {wrap: state, "epoch": torch.tensor(3)}, path)

    torch.manual_seed(1)
    with caplog.at_level(logging.INFO, logger="cardmetry.models.backends.maskrcnn"):
        model = backend.build(spec_of(variant, (OUTER,), weights=str(path)))
    stem = next(name for name in state if name.startswith("backbone.body.") and name.endswith("weight"))
    assert torch.equal(model.state_dict()[stem], state[stem])
    fresh_head = model.roi_heads.box_predictor.cls_score.weight[0]
    assert not torch.equal(fresh_head, state["roi_heads.box_predictor.cls_score.weight"][0])

    heads = {
        f"roi_heads.{name}.{kind}"
        for name in ("box_predictor.cls_score", "box_predictor.bbox_pred", "mask_predictor.mask_fcn_logits")
        for kind in ("weight", "bias")
    }
    assert f"loaded {len(state) - len(heads)} tensors, skipped {len(heads)}" in caplog.text
    report = load_user_weights(model, path)
    assert set(report.skipped) == heads
    assert report.loaded == len(state) - len(heads) and report.missing == len(heads)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (None, FileNotFoundError, "no such weights file"),  # the path names nothing
        ({"conv.weight": torch.zeros(3, 3)}, ValueError, "none of its 1 tensors"),  # another network's weights
        ({"model": "not tensors"}, ValueError, "not a state dict"),  # not weights at all
    ],
)
def test_unusable_weights_files_are_refused(content: object, error: type, message: str, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    if content is not None:
        torch.save(content, path)
    with pytest.raises(error, match=message):
        MaskRCNNBackend().build(spec_of("mobilenet-v3-fpn", weights=str(path)))


def test_unknown_variant_is_refused() -> None:
    backend = get_backend("maskrcnn")
    assert backend.default_variant in backend.variants and set(backend.variants) == set(VARIANTS)
    with pytest.raises(ValueError, match="no variant 'r101'"):
        backend.build(spec_of("r101"))


def test_onnx_export_predicts_what_torch_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    backend = MaskRCNNBackend()
    spec = spec_of(classes=(OUTER, GRAPHIC))
    model = backend.build(spec).eval()
    path = tmp_path / "model.onnx"
    backend.export_onnx(model, spec, path)

    exported = onnx.load(str(path))
    assert [tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in exported.graph.input] == [
        (1, 3, SIZE, SIZE)
    ]
    assert json.loads({p.key: p.value for p in exported.metadata_props}[ONNX_SPEC_KEY]) == spec.as_json()

    image = cv2.resize(np.uint8(card_batch()[0][0].permute(1, 2, 0).numpy() * 255), (48, 64))  # letterboxed
    expected = TorchPredictor(backend, model, spec).predict(image)
    found = OnnxPredictor(path, threads=1).predict(image)
    assert expected  # an untrained model still finds something at the default threshold: the test compares
    assert [i.class_id for i in found] == [i.class_id for i in expected]
    assert np.allclose([i.score for i in found], [i.score for i in expected], atol=1e-3)
    for ours, theirs in zip(found, expected, strict=True):
        overlap = np.logical_and(ours.mask >= 0.5, theirs.mask >= 0.5).sum()
        assert overlap / max(1, np.logical_or(ours.mask >= 0.5, theirs.mask >= 0.5).sum()) > 0.98
