"""Feature-pyramid backbones for the torchvision detectors: every one returns an ordered dict of 256-channel maps
at strides 8, 16 and 32 (keys "0", "1", "2") plus a max-pooled level at stride 64 ("pool"), and has `out_channels`.

Strides 8 to 64 and not 4: a card (or its printed frame) fills much of the input, so the stride-4 level would only
cost time; the mask head's resolution comes from RoIAlign, not from the finest map.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from cardmetry.models.pretrained import EFFNET_LITE0, load_effnet_lite0

FPN_CHANNELS = 256
FEATURE_NAMES = ("0", "1", "2")  # the maps RoIAlign pools from; "pool" only feeds the region proposals
EFFNET_OUT_INDICES = (2, 3, 4)  # timm's stages at strides 8, 16, 32 (24, 40, 112, 320 channels at 4..32)
# torchvision's MobileNetV3 stage indices: 2 and 3 are the stride-8 and stride-16 stages, 5 the last (960-channel)
# layer at stride 32 (4 is the start of that same stride-32 stage, which would duplicate a level).
MOBILENET_RETURNED_LAYERS = [2, 3, 5]
FPN_GROUPS = 32  # group norm's groups in the EfficientNet pyramid


class EffNetLite0FPN(nn.Module):
    """timm's `tf_efficientnet_lite0` (features only) under a feature pyramid.

    With the bundled ImageNet weights the batch-norm statistics are kept as they were trained (the layers stay in
    eval mode while the rest trains): detection batches are a few near-identical card photos, too few and too alike
    to re-estimate them, which is why torchvision freezes them too. The affine parameters still learn. Without
    the weights the statistics must be learnt, so they train normally.
    """

    def __init__(self, pretrained: bool) -> None:
        super().__init__()
        import timm  # imported here: listing backends must not import timm

        self.body = timm.create_model(
            EFFNET_LITE0, pretrained=False, features_only=True, out_indices=EFFNET_OUT_INDICES
        )
        if pretrained:
            load_effnet_lite0(self.body)
        self.keep_bn_stats = pretrained
        # Group norm in the pyramid: EfficientNet's stage outputs are linear bottlenecks with a spread of several
        # units (ResNet's are ReLU'd and near 1), which an unnormalised pyramid passes on to the heads, whose
        # mask logits then start in the tens. Group norm, not batch norm: it does not depend on the batch.
        self.fpn = FeaturePyramidNetwork(
            list(self.body.feature_info.channels()),
            FPN_CHANNELS,
            extra_blocks=LastLevelMaxPool(),
            norm_layer=partial(nn.GroupNorm, FPN_GROUPS),
        )
        self.out_channels = FPN_CHANNELS

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(images)
        return self.fpn(OrderedDict(zip(FEATURE_NAMES, features, strict=True)))

    def train(self, mode: bool = True) -> EffNetLite0FPN:
        super().train(mode)
        if mode and self.keep_bn_stats:
            for module in self.body.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def mobilenet_v3_fpn() -> nn.Module:
    """torchvision's MobileNetV3-Large under a feature pyramid, from scratch: all layers train, and with ordinary
    batch norm (torchvision's default here is frozen batch norm, which without trained statistics is no
    normalisation at all)."""
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    return mobilenet_backbone(
        backbone_name="mobilenet_v3_large",
        weights=None,
        fpn=True,
        norm_layer=nn.BatchNorm2d,
        trainable_layers=6,
        returned_layers=MOBILENET_RETURNED_LAYERS,
        extra_blocks=LastLevelMaxPool(),
    )
