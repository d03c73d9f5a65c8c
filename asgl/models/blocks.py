"""Building blocks shared by the spiking models."""

from __future__ import annotations

from torch import nn

from asgl.config import Recipe
from asgl.layers import TimeFold, make_norm
from asgl.neuron import LIF, neuron_from_config


def lif(recipe: Recipe, feature_shape: tuple[int, ...]) -> LIF:
    """A neuron layer for per-sample features ``feature_shape`` from the recipe's neuron/surrogate/noise."""
    return neuron_from_config(recipe.neuron, recipe.surrogate, feature_shape, recipe.noise.prob)


def norm(recipe: Recipe, channels: int, dims: int = 2) -> nn.Module:
    return make_norm(recipe.neuron.norm, channels, recipe.train.time_steps, dims, recipe.neuron.threshold)


def conv_norm_lif(
    recipe: Recipe, in_ch: int, out_ch: int, out_size: tuple[int, int], stride: int = 1, kernel: int = 3
) -> nn.Sequential:
    """conv (no bias) + norm + LIF over [T, B, C, H, W]; ``out_size`` = (H, W) of the output."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return nn.Sequential(TimeFold(conv), norm(recipe, out_ch), lif(recipe, (out_ch, *out_size)))


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
