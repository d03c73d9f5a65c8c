"""Building blocks shared by the spiking models, and the layer factories every model takes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from asgl.layers import TimeFold

Shape = tuple[int, ...]
NeuronFactory = Callable[[Shape], nn.Module]  # per-sample feature shape -> neuron layer over [T, B, *shape]
NormFactory = Callable[[int, int], nn.Module]  # (channels, dims) -> norm over [T, B, C, ...]; dims 2 = maps, 1 = flat


@dataclass(frozen=True)
class LayerFactories:
    """How a model makes its neuron layers and its norms (see asgl.builders for the recipe's)."""

    neuron: NeuronFactory
    norm: NormFactory


def conv_norm_lif(
    layers: LayerFactories, in_ch: int, out_ch: int, out_size: tuple[int, int], stride: int = 1, kernel: int = 3
) -> nn.Sequential:
    """conv (no bias) + norm + neuron over [T, B, C, H, W]; ``out_size`` = (H, W) of the output."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return nn.Sequential(TimeFold(conv), layers.norm(out_ch, 2), layers.neuron((out_ch, *out_size)))


def init_weights(model: nn.Module, scheme: str) -> None:
    """Initialise conv / linear weights in place; norm affine parameters and biases stay as built.

    kaiming: He-normal conv weights (fan_out, ReLU gain, as torchvision's ResNets), PyTorch's default for
    linear layers; reference: N(0, 0.5²) for every conv and linear weight (the reference VGG init);
    torch_default: every layer as PyTorch builds it (the published ResNet runs).
    """
    if scheme not in ("kaiming", "reference", "torch_default"):
        raise ValueError(f"unknown init scheme {scheme!r} (kaiming, reference or torch_default)")
    for m in model.modules():
        if scheme == "reference" and isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.5)
        elif scheme == "kaiming" and isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
