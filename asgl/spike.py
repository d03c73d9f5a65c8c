"""Spike functions on x = u − θ (functional, any shape).

- ``heaviside``: Θ(x) = 1 where x >= 0; no gradient.
- ``sg_spike``: forward Θ(x), backward h_α(x) (plain surrogate gradient).
- ``hybrid_spike`` / ``asgl_spike``: the ASGL training spike

      out = H_α(x) + stop_grad(m · (Θ(x) − H_α(x))),    m ~ Bernoulli(1 − p)

  computed as value + (H − stop_grad(H)) so that spike values are exactly 0 or 1.

  value Θ where m = 1 and H_α where m = 0; gradient w.r.t. x is h_α everywhere; gradient w.r.t. the slope
  is ∂H_α/∂k everywhere (straight-through), or only on analog elements with ``width_grad = "analog"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from asgl.surrogates import Surrogate

# the spike function: asgl (mixed by a mask), sg (Θ forward, h_α backward), analog (H_α, p = 1), heaviside (Θ)
Spike = Literal["asgl", "sg", "heaviside", "analog"]
Reset = Literal["hard", "soft"]  # ũ = u (1 − s), or ũ = u − θ s
Amplitude = Literal["threshold", "unit"]  # spike output θ s (reference) or s
WidthGrad = Literal["all", "analog"]  # width gradient from every element, or analog elements only


@dataclass(frozen=True)
class SpikeSpec:
    """The static part of a LIF backend call: which spike, and how reset, output and gradients use it.

    Field names and values are those of the recipe's ``neuron`` keys. ``width_grad = "analog"``: the width
    gradient comes from analog elements only (extension; none at all with the ``sg`` spike).
    """

    surrogate: Surrogate
    spike: Spike
    reset: Reset = "hard"
    amplitude: Amplitude = "threshold"
    width_grad: WidthGrad = "all"


def heaviside(x: Tensor) -> Tensor:
    """Θ(x) with Θ(0) = 1, same dtype as x."""
    return (x >= 0).to(x.dtype)


def draw_mask(
    shape: torch.Size | tuple[int, ...], noise_prob: float, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Bool mask, True = spiking element (probability 1 − p), False = analog element (probability p)."""
    if noise_prob <= 0:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if noise_prob >= 1:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    return torch.rand(shape, generator=generator, device=device) >= noise_prob


def _straight_through(value: Tensor, smooth: Tensor) -> Tensor:
    """``value`` exactly in the forward pass, the gradient of ``smooth`` in the backward pass."""
    return value.detach() + (smooth - smooth.detach())


def hybrid_spike(x: Tensor, k: Tensor, surrogate: Surrogate, mask: Tensor, width_grad: WidthGrad = "all") -> Tensor:
    """ASGL spike for a given mask (True = spike). x [...], k broadcastable, mask bool like x."""
    smooth = surrogate.H(x, k)
    value = torch.where(mask, heaviside(x), smooth)
    if width_grad == "analog":
        # Same x-gradient; the k-gradient is kept only where the mask is False.
        fixed = surrogate.H(x, k.detach())
        smooth = fixed + (~mask).to(x.dtype) * (smooth - fixed)
    return _straight_through(value, smooth)


def sg_spike(x: Tensor, k: Tensor, surrogate: Surrogate) -> Tensor:
    """Forward Θ(x), backward h_α(x) (and ∂H/∂k for a learnable width)."""
    return _straight_through(heaviside(x), surrogate.H(x, k))


def asgl_spike(
    x: Tensor,
    k: Tensor,
    surrogate: Surrogate,
    noise_prob: float,
    generator: torch.Generator | None = None,
    width_grad: WidthGrad = "all",
) -> Tensor:
    """ASGL spike with a fresh mask drawn per element from ``generator`` (p = analog probability)."""
    mask = draw_mask(x.shape, noise_prob, generator, x.device)
    return hybrid_spike(x, k, surrogate, mask, width_grad)
