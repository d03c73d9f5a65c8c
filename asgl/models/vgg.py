"""Spiking VGG nets: VGGSNN2 for DVS frames, VGG-11 and VGG-13 for static images.

Every conv is 3x3, no bias, + norm + LIF; ``A`` is a 2x2 average pool. VGGSNN2 flattens the last
feature map into Linear(flat, classes, no bias) (2x48x48 input: 512x3x3 = 4608 features); VGG-11/13
average the last map globally into Linear(512, classes). Feature sizes follow the input, so VGG-13
on Tiny-ImageNet's 64x64 images ends on 2x2 maps (CIFAR 32x32: 1x1). Input ``[B, C, H, W]`` or event
frames ``[B, T, C, H, W]`` -> per-step logits ``[T, B, K]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from asgl.config import Recipe
from asgl.data import DataInfo
from asgl.layers import TimeFold, to_time_major
from asgl.models.blocks import conv_norm_lif, init_weights

POOL = "A"


@dataclass(frozen=True)
class VGGLayout:
    layers: tuple[int | str, ...]  # conv output channels, or POOL
    head: Literal["flatten", "global"]
    head_bias: bool


VGGS: dict[str, VGGLayout] = {
    "vggsnn2": VGGLayout((64, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), "flatten", False),
    "vgg11": VGGLayout((64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), "global", True),
    "vgg13": VGGLayout((64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL), "global", True),
}


class SpikingVGG(nn.Module):
    """conv + norm + LIF stack with average pools and a linear head; ``[B, C, H, W]`` -> ``[T, B, K]``."""

    def __init__(self, recipe: Recipe, info: DataInfo, layout: VGGLayout):
        super().__init__()
        self.time_steps = info.time_steps
        (h, w), channels = info.input_size, info.in_channels
        layers: list[nn.Module] = []
        for item in layout.layers:
            if item == POOL:
                if h < 2 or w < 2:
                    raise ValueError(f"{info.input_size} input is too small for the average pools of this VGG")
                layers.append(TimeFold(nn.AvgPool2d(2)))
                h, w = h // 2, w // 2
            else:
                layers.append(conv_norm_lif(recipe, channels, int(item), (h, w)))
                channels = int(item)
        pool = nn.Flatten() if layout.head == "flatten" else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        features = channels * h * w if layout.head == "flatten" else channels
        self.features = nn.Sequential(*layers, TimeFold(pool))
        self.head = TimeFold(
            nn.Dropout(recipe.model.dropout), nn.Linear(features, info.num_classes, bias=layout.head_bias)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(to_time_major(x, self.time_steps)))


def build_vgg(name: str, recipe: Recipe, info: DataInfo) -> nn.Module:
    """The VGG ``name`` of :data:`VGGS`, initialised per ``model.init``, channels-last if the recipe asks."""
    model = SpikingVGG(recipe, info, VGGS[name])
    init_weights(model, recipe.model.init)
    return model.to(memory_format=torch.channels_last) if recipe.model.channels_last else model
