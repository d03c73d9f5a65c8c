"""Surrogate families: the smooth step H_α and its density h_α = dH_α/dx.

Width convention (one for every family): α is the width, k = 1/α the slope, and every family is a
unit-slope profile F scaled in x:

    H_α(x) = F(k x),    h_α(x) = k f(k x),    f = F'

so H_α(0) = ½, ∫ h_α = 1, and H_α → Θ as α → 0. Because H depends on k only through k x,
∂H/∂k = x h_α(x) / k, which the fused LIF uses for the width gradient.

``window`` is the half-width, in units of k x, of the central 90 % of the surrogate's mass: a membrane
value is "inside the surrogate window" when |k x| <= window.

A family is one entry: F and f written once, as scalar functions in the vocabulary of asgl.scalar, and
:func:`register_family`. Every backend compiles those two texts (torch evaluates them on tensors, the numba
and Triton kernels compile them), so no backend keeps a copy or a numbering of the families.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, get_args

import torch
from torch import Tensor, nn

from asgl.choices import Granularity, Storage
from asgl.scalar import TORCH, atan, check_scalar, fabs, maximum, minimum, rebind, sigmoid, where

if TYPE_CHECKING:
    from asgl.config import SurrogateConfig


# The families, each written once in the scalar vocabulary of asgl.scalar (every backend compiles these texts).
def sigmoid_step(y):
    return sigmoid(y)


def sigmoid_density(y):
    s = sigmoid(y)
    return s * (1.0 - s)


def rectangle_step(y):
    return minimum(maximum(y + 0.5, 0.0), 1.0)


def rectangle_density(y):
    return where(fabs(y) <= 0.5, 1.0, 0.0)


def tanh_step(y):
    return sigmoid(2.0 * y)  # ½ tanh(y) + ½


def tanh_density(y):
    s = sigmoid(2.0 * y)
    return 2.0 * s * (1.0 - s)  # ½ (1 − tanh² y)


def arctan_step(y):
    return atan(1.5707963267948966 * y) * 0.3183098861837907 + 0.5  # atan(π y / 2) / π + ½


def arctan_density(y):
    return 0.5 / (1.0 + (1.5707963267948966 * y) * (1.5707963267948966 * y))


def triangle_step(y):
    c = minimum(maximum(y, -1.0), 1.0)
    return where(c < 0.0, 0.5 * (1.0 + c) * (1.0 + c), 1.0 - 0.5 * (1.0 - c) * (1.0 - c))


def triangle_density(y):
    return maximum(1.0 - fabs(y), 0.0)


@dataclass(frozen=True)
class Surrogate:
    """One family: its unit-slope step ``F`` and density ``f`` = F' (scalar functions in the vocabulary of
    asgl.scalar, compiled by each backend) and the 90 %-mass half-window (in k x units). :meth:`step` and
    :meth:`density` evaluate F and f on tensors."""

    name: str
    F: Callable
    f: Callable
    window: float
    _on_tensors: tuple[Callable, Callable] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_on_tensors", (rebind(self.F, TORCH), rebind(self.f, TORCH)))

    def step(self, y: Tensor) -> Tensor:
        """F(y) [...] in y's dtype."""
        return self._on_tensors[0](y).to(y.dtype)

    def density(self, y: Tensor) -> Tensor:
        """f(y) [...] in y's dtype."""
        return self._on_tensors[1](y).to(y.dtype)

    def H(self, x: Tensor, k: Tensor | float) -> Tensor:
        """Smooth step H_α(x) = F(k x); x [...], k broadcastable to x."""
        return self.step(k * x)

    def h(self, x: Tensor, k: Tensor | float) -> Tensor:
        """Density h_α(x) = k f(k x) = dH_α/dx."""
        return k * self.density(k * x)


SURROGATES: dict[str, Surrogate] = {}


def register_family(name: str, step: Callable, density: Callable, window: float) -> Surrogate:
    """Add the family ``name`` to :data:`SURROGATES` (and so to every backend, the recipe schema and the tests):
    its unit-slope step F(y) and density f(y) = F'(y), scalar functions in the vocabulary of asgl.scalar
    (F(0) = ½, ∫ f = 1), and the half-width of the central 90 % of f's mass."""
    if name in SURROGATES:
        raise ValueError(f"the surrogate family {name!r} is registered already")
    for fn in (step, density):
        check_scalar(fn)
    SURROGATES[name] = Surrogate(name, step, density, window)
    return SURROGATES[name]


register_family("sigmoid", sigmoid_step, sigmoid_density, math.log(19.0))
register_family("rectangle", rectangle_step, rectangle_density, 0.45)
register_family("tanh", tanh_step, tanh_density, math.atanh(0.9))
register_family("arctan", arctan_step, arctan_density, 2 / math.pi * math.tan(0.45 * math.pi))
register_family("triangle", triangle_step, triangle_density, 1 - math.sqrt(0.1))


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

    asgl_neuron = True  # tag: the width is a neuron parameter for asgl.optim, wherever the module sits

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
