"""Networks written in the recipe: ``model.name = "sequential"`` with a ``model.layers`` list.

Layers (see the ``model.layers`` block of :mod:`asgl.config`): conv, linear, pool, flatten, dropout and
residual blocks. Each conv / linear layer is followed by a norm and a LIF layer unless it says
otherwise; a residual block adds its input to its output (through a 1x1 conv or a linear projection +
norm when the shape changes), then applies a LIF layer. After the last layer, features still in maps
are flattened and a linear classifier (after dropout) gives per-step logits ``[T, B, K]``.

Shapes here are per-sample feature shapes: ``(C, H, W)`` for maps, ``(F,)`` for flat features. They are
computed by pure arithmetic (:func:`layer_shapes`) before any module is built, so a recipe whose layers
do not fit its data is refused with the index of the first layer that does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from asgl.config import (
    ConvLayer,
    DropoutLayer,
    FlattenLayer,
    LayerSpec,
    LinearLayer,
    PoolLayer,
    RecipeError,
)
from asgl.data import DataInfo
from asgl.layers import TimeFold, to_time_major
from asgl.models.blocks import LayerFactories, NeuronFactory, NormFactory, Shape


def input_shape(info: DataInfo) -> Shape:
    """Per-sample input features: ``(C, H, W)`` for images and event frames, ``(F,)`` for sequences."""
    return tuple(info.input_size) if info.kind == "sequence" else (info.in_channels, *info.input_size)


def _shortcut_stride(shape: Shape, out: Shape) -> int | None:
    """The stride of a 1x1 conv taking maps ``shape`` to the spatial size of ``out``, None if there is none."""
    stride = math.ceil(shape[1] / out[1])
    fits = all((size - 1) // stride + 1 == target for size, target in zip(shape[1:], out[1:]))
    return stride if fits else None


def _maps(shape: Shape, what: str) -> Shape:
    if len(shape) != 3:
        raise ValueError(f"{what} needs feature maps (C, H, W), got flat features {list(shape)}")
    return shape


def output_shape(layer: LayerSpec, shape: Shape, where: str) -> Shape:
    """Per-sample output shape of ``layer`` for input ``shape``; ``ValueError`` when it does not fit."""
    if isinstance(layer, ConvLayer):
        c, *size = _maps(shape, "a conv layer")
        pad = layer.kernel // 2 if layer.padding is None else layer.padding
        out = tuple((s + 2 * pad - layer.kernel) // layer.stride + 1 for s in size)
        if min(out) < 1:
            raise ValueError(
                f"a {layer.kernel}x{layer.kernel} kernel with padding {pad} does not fit {size[0]}x{size[1]} maps"
            )
        return (layer.conv, *out)
    if isinstance(layer, PoolLayer):
        c, h, w = _maps(shape, "a pool layer")
        if min(h, w) < layer.size:
            raise ValueError(f"a pool window of {layer.size} does not fit {h}x{w} maps")
        return (c, h // layer.size, w // layer.size)
    if isinstance(layer, LinearLayer):
        if len(shape) != 1:
            raise ValueError(f"a linear layer needs flat features, got maps {list(shape)}; add 'flatten' before it")
        return (layer.linear,)
    if isinstance(layer, FlattenLayer):
        return (math.prod(shape),)
    if isinstance(layer, DropoutLayer):
        return shape
    out = layer_shapes(layer.residual, shape, f"{where}.residual")[-1]
    if out != shape and (len(out) != len(shape) or (len(out) == 3 and _shortcut_stride(shape, out) is None)):
        raise ValueError(f"the block maps {list(shape)} to {list(out)}, which no 1x1 conv or linear shortcut can match")
    return out


def layer_shapes(layers: Sequence[LayerSpec], shape: Shape, where: str = "model.layers") -> list[Shape]:
    """Output shape of every layer, from the input ``shape``; :class:`RecipeError` names the first misfit."""
    shapes = []
    for i, layer in enumerate(layers):
        try:
            shape = output_shape(layer, shape, f"{where}[{i}]")
        except ValueError as e:
            if isinstance(e, RecipeError):
                raise
            raise RecipeError(f"{where}[{i}] ({describe(layer)}) takes input {list(shape)}: {e}") from None
        shapes.append(shape)
    return shapes


def describe(layer: LayerSpec) -> str:
    """A short name of the layer for messages: ``conv 64, kernel 3, stride 2``."""
    if isinstance(layer, ConvLayer):
        return f"conv {layer.conv}, kernel {layer.kernel}, stride {layer.stride}"
    if isinstance(layer, PoolLayer):
        return f"{layer.pool} pool {layer.size}"
    if isinstance(layer, LinearLayer):
        return f"linear {layer.linear}"
    if isinstance(layer, DropoutLayer):
        return f"dropout {layer.dropout:g}"
    return "flatten" if isinstance(layer, FlattenLayer) else f"residual block of {len(layer.residual)} layers"


class Residual(nn.Module):
    """``lif(body(x) + shortcut(x))`` over ``[T, B, ...]``."""

    def __init__(self, body: nn.Module, shortcut: nn.Module, lif_layer: nn.Module):
        super().__init__()
        self.body, self.shortcut, self.lif = body, shortcut, lif_layer

    def forward(self, x: Tensor) -> Tensor:
        return self.lif(self.body(x) + self.shortcut(x))


def _shortcut(shape: Shape, out: Shape, make_norm: NormFactory) -> nn.Module:
    if shape == out:
        return nn.Identity()
    if len(out) == 1:
        return nn.Sequential(TimeFold(nn.Linear(shape[0], out[0], bias=False)), make_norm(out[0], 1))
    conv = nn.Conv2d(shape[0], out[0], 1, stride=_shortcut_stride(shape, out), bias=False)
    return nn.Sequential(TimeFold(conv), make_norm(out[0], 2))


def _module(layer: LayerSpec, shape: Shape, out: Shape, make_norm: NormFactory, make_lif: NeuronFactory) -> nn.Module:
    """The module of one layer taking ``[T, B, *shape]`` to ``[T, B, *out]``."""
    if isinstance(layer, (ConvLayer, LinearLayer)):
        if isinstance(layer, ConvLayer):
            pad = layer.kernel // 2 if layer.padding is None else layer.padding
            op = nn.Conv2d(shape[0], out[0], layer.kernel, layer.stride, pad, bias=not layer.norm)
        else:
            op = nn.Linear(shape[0], out[0], bias=not layer.norm)
        parts = [TimeFold(op)]
        parts += [make_norm(out[0], 2 if len(out) == 3 else 1)] if layer.norm else []
        parts += [make_lif(out)] if layer.lif else []
        return nn.Sequential(*parts)
    if isinstance(layer, PoolLayer):
        return TimeFold((nn.AvgPool2d if layer.pool == "avg" else nn.MaxPool2d)(layer.size))
    if isinstance(layer, FlattenLayer):
        return TimeFold(nn.Flatten())
    if isinstance(layer, DropoutLayer):
        return TimeFold(nn.Dropout(layer.dropout))
    body = build_layers(layer.residual, shape, make_norm, make_lif)
    return Residual(body, _shortcut(shape, out, make_norm), make_lif(out) if layer.lif else nn.Identity())


def build_layers(
    layers: Sequence[LayerSpec], shape: Shape, make_norm: NormFactory, make_lif: NeuronFactory
) -> nn.Sequential:
    """The layers as one module over ``[T, B, *shape]`` (shapes checked first, see :func:`layer_shapes`)."""
    shapes = layer_shapes(layers, shape)
    ins = [shape, *shapes[:-1]]
    return nn.Sequential(*(_module(layer, s, o, make_norm, make_lif) for layer, s, o in zip(layers, ins, shapes)))


class SequentialSNN(nn.Module):
    """Recipe layers + linear classifier: input ``[B, C, H, W]``, ``[B, T, C, H, W]`` or ``[B, T, F]`` ->
    per-step logits ``[T, B, K]``."""

    def __init__(
        self,
        layers: Sequence[LayerSpec],
        in_shape: Shape,
        num_classes: int,
        time_steps: int,
        factories: LayerFactories,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.time_steps = time_steps
        self.features = build_layers(layers, in_shape, factories.norm, factories.neuron)
        features = math.prod(layer_shapes(layers, in_shape)[-1])
        self.head = TimeFold(nn.Flatten(), nn.Dropout(dropout), nn.Linear(features, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(to_time_major(x, self.time_steps)))
