"""Spiking VGG nets (docs/method.md#models): VGGSNN2 for DVS frames, VGG-11 and VGG-13 for static images.

Every conv is 3x3, no bias, + norm + LIF; ``A`` is a 2x2 average pool. VGGSNN2 flattens the last
feature map into Linear(flat, classes, no bias) (2x48x48 input: 512x3x3 = 4608 features); VGG-11/13
average the last map globally into Linear(512, classes). Feature sizes follow the input, so VGG-13
on Tiny-ImageNet's 64x64 images ends on 2x2 maps (CIFAR 32x32: 1x1). Input ``[B, C, H, W]`` or event
frames ``[B, T, C, H, W]`` -> per-step logits ``[T, B, K]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from asgl.data import DataInfo
from asgl.errors import ModelDataMismatch
from asgl.layers import TimeFold, to_time_major
from asgl.models.blocks import LayerFactories, conv_norm_lif

POOL = "A"


@dataclass(frozen=True)
class VGGLayout:
    name: str
    layers: tuple[int | str, ...]  # conv output channels, or POOL
    head: Literal["flatten", "global"]
    head_bias: bool


VGGS: dict[str, VGGLayout] = {
    "vggsnn2": VGGLayout("vggsnn2", (64, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), "flatten", False),
    "vgg11": VGGLayout("vgg11", (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), "global", True),
    "vgg13": VGGLayout(
        "vgg13", (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), "global", True
    ),
}


class SpikingVGG(nn.Module):
    """conv + norm + LIF stack with average pools and a linear head; ``[B, C, H, W]`` -> ``[T, B, K]``."""

    def __init__(self, info: DataInfo, layout: VGGLayout, layers: LayerFactories, dropout: float = 0.0):
        super().__init__()
        self.time_steps = info.time_steps
        (h, w), channels = info.input_size, info.in_channels
        pools = layout.layers.count(POOL)
        if min(h, w) < 2**pools:
            raise ModelDataMismatch(
                f"{layout.name}: a {h}x{w} input is too small for its {pools} 2x2 average pools (at least {2**pools})"
            )
        stack: list[nn.Module] = []
        for item in layout.layers:
            if item == POOL:
                stack.append(TimeFold(nn.AvgPool2d(2)))
                h, w = h // 2, w // 2
            else:
                stack.append(conv_norm_lif(layers, channels, int(item), (h, w)))
                channels = int(item)
        pool = nn.Flatten() if layout.head == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        features = channels * h * w if layout.head == "flatten" else channels
        self.features = nn.Sequential(*stack, TimeFold(pool))
        self.head = TimeFold(nn.Dropout(dropout), nn.Linear(features, info.num_classes, bias=layout.head_bias))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(to_time_major(x, self.time_steps)))
