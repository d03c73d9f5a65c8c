"""Spiking ResNets with the CIFAR stem (docs/method.md#models): ResNet-18, ResNet-34 and ResNet-19.

Stem conv3x3 + norm + LIF, no max-pool; BasicBlocks whose residual sum goes through the block's second
LIF; 1x1 conv + norm shortcut when the shape changes; global average pool; a linear head (ResNet-19:
Linear 512->256 -> LIF -> Linear 256->classes, no biases). Input ``[B, C, H, W]`` (or event frames
``[B, T, C, H, W]``) -> per-step logits ``[T, B, K]``. Feature sizes follow the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from asgl.data import DataInfo
from asgl.layers import TimeFold, to_time_major
from asgl.models.blocks import LayerFactories, conv_norm_lif


def _downsample(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Output (H, W) of a 3x3 pad-1 (or 1x1 pad-0) conv with ``stride``."""
    return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)


class BasicBlock(nn.Module):
    """conv3x3(stride) + norm + LIF -> conv3x3 + norm, plus shortcut, -> LIF.

    ``[T, B, in_ch, H, W]`` -> ``[T, B, out_ch, H', W']`` with ``(H', W') = out_size``.
    """

    def __init__(self, layers: LayerFactories, in_ch: int, out_ch: int, stride: int, out_size: tuple[int, int]):
        super().__init__()
        self.residual = nn.Sequential(
            conv_norm_lif(layers, in_ch, out_ch, out_size, stride),
            TimeFold(nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)),
            layers.norm(out_ch, 2),
        )
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                TimeFold(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)), layers.norm(out_ch, 2)
            )
        self.lif = layers.neuron((out_ch, *out_size))

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(self.residual(x) + self.shortcut(x))


@dataclass(frozen=True)
class ResNetLayout:
    stem: int  # stem conv channels
    widths: tuple[int, ...]  # channels of each stage
    depths: tuple[int, ...]  # BasicBlocks per stage
    strides: tuple[int, ...]  # stride of each stage's first block
    hidden: int | None  # spiking hidden linear layer before the head (ResNet-19), None = direct head


RESNETS: dict[str, ResNetLayout] = {
    "resnet18": ResNetLayout(64, (64, 128, 256, 512), (2, 2, 2, 2), (1, 2, 2, 2), None),
    "resnet34": ResNetLayout(64, (64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2), None),
    "resnet19": ResNetLayout(128, (128, 256, 512), (3, 3, 2), (1, 2, 2), 256),
}


class SpikingResNet(nn.Module):
    """CIFAR-stem spiking ResNet; ``[B, C, H, W]`` -> per-step logits ``[T, B, K]``."""

    def __init__(self, info: DataInfo, layout: ResNetLayout, layers: LayerFactories, dropout: float = 0.0):
        super().__init__()
        self.time_steps = info.time_steps
        size = info.input_size
        blocks: list[nn.Module] = [conv_norm_lif(layers, info.in_channels, layout.stem, size)]
        in_ch = layout.stem
        for width, depth, stride in zip(layout.widths, layout.depths, layout.strides):
            for i in range(depth):
                block_stride = stride if i == 0 else 1
                size = _downsample(size, block_stride)
                blocks.append(BasicBlock(layers, in_ch, width, block_stride, size))
                in_ch = width
        self.features = nn.Sequential(*blocks, TimeFold(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        if layout.hidden is None:
            self.head: nn.Module = TimeFold(nn.Dropout(dropout), nn.Linear(in_ch, info.num_classes))
        else:
            self.head = nn.Sequential(
                TimeFold(nn.Linear(in_ch, layout.hidden, bias=False)),
                layers.neuron((layout.hidden,)),
                TimeFold(nn.Dropout(dropout), nn.Linear(layout.hidden, info.num_classes, bias=False)),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(to_time_major(x, self.time_steps)))
