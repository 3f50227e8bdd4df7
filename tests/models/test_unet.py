"""The unet backend: building each variant, training a step, decoding its maps, ONNX export and user weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cardmetry.data.instances import GRAPHIC, OUTER
from cardmetry.models.backends.unet import NormalisedUnet, UNetBackend, decode_probabilities
from cardmetry.models.base import ModelSpec, Target
from cardmetry.models.predictors import OnnxPredictor, TorchPredictor
from cardmetry.models.pretrained import effnet_lite0_state_dict
from cardmetry.models.registry import get_backend

SIZE = 64
OUTER_BOX = (8, 10, 52, 58)  # x0, y0, x1, y1 of the "card" in the tiny training image
GRAPHIC_BOX = (16, 18, 44, 50)


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # the test machine's cores are shared


@pytest.fixture(scope="module")
def bundled() -> dict[str, torch.Tensor]:
    return effnet_lite0_state_dict()


def spec_of(variant: str = "effnet-lite0-light", role_classes: tuple[int, ...] = (OUTER,), **changes) -> ModelSpec:
    return dataclasses.replace(ModelSpec("unet", variant, role_classes, SIZE), **changes)


def card_sample() -> tuple[torch.Tensor, list[Target]]:
    """A grey card with a dark frame inside it on a black background, and its two instances."""
    image = torch.zeros(1, 3, SIZE, SIZE)
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    for index, ((x0, y0, x1, y1), value) in enumerate(((OUTER_BOX, 0.9), (GRAPHIC_BOX, 0.3))):
        image[:, :, y0:y1, x0:x1] = value
        masks[index, y0:y1, x0:x1] = 1
    boxes = torch.tensor([OUTER_BOX, GRAPHIC_BOX], dtype=torch.float32)
    return image, [Target(torch.tensor([0, 1]), boxes, masks)]


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, ModelSpec, torch.Tensor]:
    """The light variant overfitted on the one card (a few seconds): it must find both borders again."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    backend = UNetBackend()
    spec = spec_of(role_classes=(OUTER, GRAPHIC))
    model = backend.build(spec).train()
    image, targets = card_sample()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        loss = sum(backend.losses(model, image, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), spec, image


def as_rgb(image: torch.Tensor) -> np.ndarray:
    return (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def test_the_registry_finds_the_backend() -> None:
    backend = get_backend("unet")
    assert isinstance(backend, UNetBackend) and backend.default_variant in backend.variants
    assert backend.unavailable_reason() is None


@pytest.mark.parametrize(
    ("variant", "pretrained", "loads_bundled"),
    [
        ("effnet-lite0", True, True),  # the full decoder on the bundled ImageNet encoder
        ("effnet-lite0-scratch", True, False),  # the scratch variant ignores `pretrained`
        ("effnet-lite0-light", True, True),  # narrow decoder, same bundled encoder
        ("effnet-lite0-light", False, False),  # any variant from random weights when asked
    ],
)
def test_build_loads_the_bundled_encoder_and_one_step_trains(
    variant: str, pretrained: bool, loads_bundled: bool, bundled: dict[str, torch.Tensor]
) -> None:
    torch.manual_seed(1)
    backend = UNetBackend()
    model = backend.build(spec_of(variant, (OUTER, GRAPHIC), pretrained=pretrained))
    assert isinstance(model, NormalisedUnet)
    stem = model.unet.encoder.model.conv_stem.weight
    assert torch.equal(stem, bundled["conv_stem.weight"]) is loads_bundled
    head = model.unet.segmentation_head[0].weight
    before = head.detach().clone()
    image, targets = card_sample()
    losses = backend.losses(model.train(), image, targets)
    assert set(losses) == {"bce", "dice"} and all(torch.isfinite(v) and v > 0 for v in losses.values())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    sum(losses.values()).backward()
    optimizer.step()
    assert not torch.equal(head, before)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (spec_of(imgsz=100), "divisible by 32"),  # the encoder halves the input five times
        (spec_of("resnet50"), "no variant"),  # a variant the backend does not have
    ],
)
def test_build_refuses_what_it_cannot_build(spec: ModelSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UNetBackend().build(spec)


def test_losses_of_an_image_without_instances_are_finite() -> None:
    # A background-only image: Dice's smoothing keeps it defined, and the loss still pulls the map to zero.
    backend = UNetBackend()
    model = backend.build(spec_of(pretrained=False)).train()
    empty = Target(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), torch.zeros(0, SIZE, SIZE, dtype=torch.uint8))
    losses = backend.losses(model, torch.rand(1, 3, SIZE, SIZE), [empty])
    assert all(torch.isfinite(v) for v in losses.values())


def region_map(*regions: tuple[tuple[int, int, int, int], float]) -> np.ndarray:
    """A (S, S) probability map, 0.1 outside the given boxes and each box's value inside it."""
    prob = np.full((SIZE, SIZE), 0.1, np.float32)
    for (x0, y0, x1, y1), value in regions:
        prob[y0:y1, x0:x1] = value
    return prob


@pytest.mark.parametrize(
    ("maps", "expected"),
    [
        # one clear region per channel: both classes, in the spec's class order, each scored by its region
        (
            [region_map((OUTER_BOX, 0.9)), region_map((GRAPHIC_BOX, 0.7))],
            [(OUTER, 0.9, OUTER_BOX), (GRAPHIC, 0.7, GRAPHIC_BOX)],
        ),
        # a channel below 0.5 everywhere gives no instance
        ([region_map((OUTER_BOX, 0.9)), region_map((GRAPHIC_BOX, 0.45))], [(OUTER, 0.9, OUTER_BOX)]),
        # two regions: the larger one is the instance, and only its pixels score it
        ([region_map(((0, 0, 6, 6), 1.0), (OUTER_BOX, 0.6)), region_map()], [(OUTER, 0.6, OUTER_BOX)]),
    ],
)
def test_decoding_takes_each_channels_largest_region(maps: list[np.ndarray], expected: list[tuple]) -> None:
    instances = decode_probabilities(np.stack(maps), spec_of(role_classes=(OUTER, GRAPHIC)))
    assert [inst.class_id for inst in instances] == [class_id for class_id, _, _ in expected]
    for inst, (class_id, score, (x0, y0, x1, y1)) in zip(instances, expected, strict=True):
        assert inst.score == pytest.approx(score, abs=1e-6)
        assert inst.mask.dtype == np.float32 and inst.mask.shape == (SIZE, SIZE)
        np.testing.assert_array_equal(inst.mask, maps[spec_of(role_classes=(OUTER, GRAPHIC)).classes.index(class_id)])
        # The outline runs through the region's edge pixels' centres: half a pixel inside its edges.
        np.testing.assert_allclose(inst.box, (x0 + 0.5, y0 + 0.5, x1 - 0.5, y1 - 0.5))


def test_predict_batch_finds_the_borders_it_was_trained_on(trained: tuple[nn.Module, ModelSpec, torch.Tensor]) -> None:
    model, spec, image = trained
    instances = UNetBackend().predict_batch(model, torch.cat([image, image]), spec)
    assert len(instances) == 2  # one list per image
    for found in instances:
        assert [inst.class_id for inst in found] == [OUTER, GRAPHIC]
        for inst, (x0, y0, x1, y1) in zip(found, (OUTER_BOX, GRAPHIC_BOX), strict=True):
            assert 0.8 < inst.score <= 1.0
            assert inst.mask.min() >= 0 and inst.mask.max() <= 1
            np.testing.assert_allclose(inst.box, (x0 + 0.5, y0 + 0.5, x1 - 0.5, y1 - 0.5), atol=1.0)


def test_onnx_export_predicts_as_torch_does(trained: tuple[nn.Module, ModelSpec, torch.Tensor], tmp_path: Path) -> None:
    model, spec, image = trained
    backend = UNetBackend()
    path = tmp_path / "unet.onnx"
    backend.export_onnx(model, spec, path)
    onnx_predictor = OnnxPredictor(path, threads=1)
    assert onnx_predictor.spec == spec
    # The raw maps: the exported graph normalises and applies the sigmoid as the torch path does.
    (probs,) = onnx_predictor.session.run(None, {onnx_predictor.input_name: image.numpy()})
    with torch.inference_mode():
        expected = torch.sigmoid(model(image)).numpy()
    assert probs.shape == (1, 2, SIZE, SIZE)
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    # The instances on a full image (here twice the network's input), through both predictors.
    rgb = np.kron(as_rgb(image), np.ones((2, 2, 1), np.uint8))
    from_onnx, from_torch = (
        sorted(predictor.predict(rgb), key=lambda inst: inst.class_id)  # best first: near-ties may swap
        for predictor in (onnx_predictor, TorchPredictor(backend, model, spec))
    )
    assert [i.class_id for i in from_onnx] == [i.class_id for i in from_torch] == [OUTER, GRAPHIC]
    for a, b in zip(from_onnx, from_torch, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-4)
        np.testing.assert_allclose(a.box, b.box, atol=1.0)


@pytest.mark.parametrize(
    "part",
    [
        "model",  # the whole model's state dict, as a checkpoint's "model" holds it
        "checkpoint",  # a cardmetry checkpoint itself
        "unet",  # the smp U-Net's own state dict
        "encoder",  # a backbone trained elsewhere: only the encoder's tensors
    ],
)
def test_user_weights_are_loaded(part: str, trained: tuple[nn.Module, ModelSpec, torch.Tensor], tmp_path: Path) -> None:
    model, spec, _ = trained
    states = {
        "model": model.state_dict(),
        "checkpoint": {"format": "cardmetry.checkpoint/v1", "spec": spec.as_json(), "model": model.state_dict()},
        "unet": model.unet.state_dict(),
        "encoder": model.unet.encoder.model.state_dict(),
    }
    path = tmp_path / "weights.pt"
    torch.save(states[part], path)
    loaded = UNetBackend().build(dataclasses.replace(spec, pretrained=False, weights=str(path)))
    reference = model.unet.encoder.model.conv_stem.weight
    assert torch.equal(loaded.unet.encoder.model.conv_stem.weight, reference)
    head_loaded = torch.equal(loaded.unet.segmentation_head[0].weight, model.unet.segmentation_head[0].weight)
    assert head_loaded is (part != "encoder")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"some.tensor": torch.zeros(2)}, "not those of this unet variant"),  # another network's weights
        ([torch.zeros(2)], "not a state dict"),  # a file holding something other than a mapping
    ],
)
def test_unusable_user_weights_are_refused(content: object, message: str, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        UNetBackend().build(spec_of(pretrained=False, weights=str(path)))
