"""Surrogate families: the smooth step H_α and its density h_α = dH_α/dx.

Width convention (one for every family): α is the width, k = 1/α the slope, and every family is a
unit-slope profile F scaled in x:

    H_α(x) = F(k x),    h_α(x) = k f(k x),    f = F'

so H_α(0) = ½, ∫ h_α = 1, and H_α → Θ as α → 0. Because H depends on k only through k x,
∂H/∂k = x h_α(x) / k, which the fused LIF uses for the width gradient.

``window`` is the half-width, in units of k x, of the central 90 % of the surrogate's mass: a membrane
value is "inside the surrogate window" when |k x| <= window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, get_args

import torch
from torch import Tensor, nn

from asgl.choices import Granularity, Storage

if TYPE_CHECKING:
    from asgl.config import SurrogateConfig


def _sigmoid_step(y: Tensor) -> Tensor:
    return torch.sigmoid(y)


def _sigmoid_density(y: Tensor) -> Tensor:
    s = torch.sigmoid(y)
    return s * (1 - s)


def _rectangle_step(y: Tensor) -> Tensor:
    return torch.clamp(y + 0.5, 0.0, 1.0)


def _rectangle_density(y: Tensor) -> Tensor:
    return (y.abs() <= 0.5).to(y.dtype)


def _tanh_step(y: Tensor) -> Tensor:
    return 0.5 * torch.tanh(y) + 0.5


def _tanh_density(y: Tensor) -> Tensor:
    return 0.5 * (1 - torch.tanh(y) ** 2)


def _arctan_step(y: Tensor) -> Tensor:
    return torch.atan((math.pi / 2) * y) / math.pi + 0.5


def _arctan_density(y: Tensor) -> Tensor:
    return 0.5 / (1 + ((math.pi / 2) * y) ** 2)


def _triangle_step(y: Tensor) -> Tensor:
    c = torch.clamp(y, -1.0, 1.0)
    return torch.where(c < 0, 0.5 * (1 + c) ** 2, 1 - 0.5 * (1 - c) ** 2)


def _triangle_density(y: Tensor) -> Tensor:
    return torch.clamp(1 - y.abs(), min=0.0)


@dataclass(frozen=True)
class Surrogate:
    """One family: unit-slope step F and density f, and the 90 %-mass half-window (in k x units)."""

    name: str
    step: Callable[[Tensor], Tensor]
    density: Callable[[Tensor], Tensor]
    window: float

    def H(self, x: Tensor, k: Tensor | float) -> Tensor:
        """Smooth step H_α(x) = F(k x); x [...], k broadcastable to x."""
        return self.step(k * x)

    def h(self, x: Tensor, k: Tensor | float) -> Tensor:
        """Density h_α(x) = k f(k x) = dH_α/dx."""
        return k * self.density(k * x)


SURROGATES: dict[str, Surrogate] = {
    "sigmoid": Surrogate("sigmoid", _sigmoid_step, _sigmoid_density, math.log(19.0)),
    "rectangle": Surrogate("rectangle", _rectangle_step, _rectangle_density, 0.45),
    "tanh": Surrogate("tanh", _tanh_step, _tanh_density, math.atanh(0.9)),
    "arctan": Surrogate("arctan", _arctan_step, _arctan_density, 2 / math.pi * math.tan(0.45 * math.pi)),
    "triangle": Surrogate("triangle", _triangle_step, _triangle_density, 1 - math.sqrt(0.1)),
}


def check_choice(key: str, value: str, choices: tuple[str, ...] | dict) -> None:
    """Raise ValueError unless ``value`` is one of ``choices`` (a tuple or a registry's names)."""
    if value not in choices:
        raise ValueError(f"{key} = {value!r}: expected one of {', '.join(choices)}")


def width_shape(granularity: Granularity, feature_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the width parameter for per-sample features ``feature_shape`` ((C,), (C, H, W), ...).

    layer -> () ; channel -> (C, 1, ..., 1) for conv features, () for linear features ; neuron -> feature_shape.
    The result broadcasts against a batch [B, *feature_shape].
    """
    if granularity == "layer":
        return ()
    if granularity == "channel":
        return (feature_shape[0],) + (1,) * (len(feature_shape) - 1) if len(feature_shape) > 1 else ()
    return tuple(feature_shape)


class SurrogateWidth(nn.Module):
    """Owns one LIF layer's surrogate: its family and its width α, returning the slope k = 1/α.

    Arguments are the recipe's ``surrogate`` keys. ``granularity`` sets the width's shape for per-sample
    features ``feature_shape`` (see :func:`width_shape`). ``storage = "log_slope"`` keeps log k (k > 0
    always); ``raw_slope`` keeps k itself (reference sigmoid parity, may cross zero). A fixed width
    (``learnable = False``, the SG baseline) is a buffer.
    """

    def __init__(
        self,
        feature_shape: tuple[int, ...],
        family: str = "sigmoid",
        width: float = 5.0,
        learnable: bool = True,
        granularity: Granularity = "layer",
        storage: Storage = "log_slope",
    ):
        super().__init__()
        check_choice("family", family, SURROGATES)
        check_choice("granularity", granularity, get_args(Granularity))
        check_choice("storage", storage, get_args(Storage))
        if storage == "raw_slope" and family != "sigmoid":
            raise ValueError(f"storage = 'raw_slope' is only defined for the sigmoid family, not {family!r}")
        if width <= 0:
            raise ValueError(f"width = {width}: must be > 0")
        self.surrogate = SURROGATES[family]
        self.storage = storage
        init = 1.0 / width if storage == "raw_slope" else math.log(1.0 / width)
        value = torch.full(width_shape(granularity, feature_shape), init)
        if learnable:
            self.param = nn.Parameter(value)
        else:
            self.register_buffer("param", value)

    @classmethod
    def from_config(cls, cfg: SurrogateConfig, feature_shape: tuple[int, ...]) -> SurrogateWidth:
        """The width of a recipe's ``surrogate`` section."""
        return cls(feature_shape, **cfg.model_dump())  # same key names

    def slope(self) -> Tensor:
        """k, shape of the width parameter."""
        return self.param if self.storage == "raw_slope" else self.param.exp()

    def width(self) -> Tensor:
        """α = 1/k (detached), shape of the width parameter."""
        return 1.0 / self.slope().detach()
