"""Spike functions on x = u − θ (functional, any shape).

- ``heaviside``: Θ(x) = 1 where x >= 0; no gradient.
- ``sg_spike``: forward Θ(x), backward h_α(x) (plain surrogate gradient).
- ``hybrid_spike``: the ASGL training spike

      out = H_α(x) + stop_grad(m · (Θ(x) − H_α(x))),    m ~ Bernoulli(1 − p)

  computed as value + (H − stop_grad(H)) so that spike values are exactly 0 or 1.

  value Θ where m = 1 and H_α where m = 0; gradient w.r.t. x is h_α everywhere; gradient w.r.t. the slope
  is ∂H_α/∂k everywhere (straight-through), or only on analog elements with ``width_grad = "analog"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from asgl.choices import Amplitude, Reset, Spike, WidthGrad
from asgl.scalar import mul32, shr, xor
from asgl.surrogates import Surrogate


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


# splitmix64 (Steele, Lea & Flood 2014) makes one 64-bit key per step from (seed, step counter); the element
# bits come from two rounds of Wellons' 32-bit "lowbias32" mixer keyed by the two halves of that key, so the
# per-element work is 32-bit arithmetic that CPUs vectorise and GPUs run natively.
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_M32 = 0xFFFFFFFF
MAX_STEP = 2**32  # elements per step: the element index is a 32-bit word


@dataclass(frozen=True)
class MaskDraw:
    """The ASGL mask of one LIF call as a counter-based draw, so no mask tensor needs to exist.

    Step t of the call gets the 64-bit key ``step_key(seed, offset + t)``; element i of that step
    (0 <= i < N < 2³²) is spiking (True) iff ``element_bits(key, i)``, a uniform 32-bit integer, is at least
    ``threshold`` = ⌈p·2³²⌉: probability 1 − p. The same (seed, offset) gives the same mask on every backend
    and device.
    """

    prob: float
    seed: int  # 0 <= seed < 2⁶³
    offset: int = 0  # the step counter of the first step

    @property
    def threshold(self) -> int:
        """⌈p·2³²⌉ in [0, 2³²]: 0 keeps every element spiking, 2³² none."""
        return min(max(math.ceil(self.prob * 2**32), 0), 2**32)

    def keys(self, steps: int) -> list[int]:
        """The 64-bit keys of steps 0..steps−1."""
        return [step_key(self.seed, self.offset + t) for t in range(steps)]


def step_key(seed: int, counter: int) -> int:
    """splitmix64 of (seed, counter) in plain integers: z = seed + (counter + 1)·γ mod 2⁶⁴, then
    z ^= z >> 30; z *= M1; z ^= z >> 27; z *= M2; z ^= z >> 31."""
    z = (seed + (counter + 1) * _GOLDEN) % (1 << 64)
    z = ((z ^ (z >> 30)) * _MIX1) % (1 << 64)
    z = ((z ^ (z >> 27)) * _MIX2) % (1 << 64)
    return z ^ (z >> 31)


def new_mask_draw(noise_prob: float, generator: torch.Generator | None, stream: int = 0) -> MaskDraw:
    """A fresh draw: the seed is one 62-bit integer taken from ``generator`` (None = the global torch RNG),
    so saving and restoring that generator's state replays the same masks.

    ``stream`` (a DDP rank) is mixed into the seed, so processes whose generators agree draw independent
    masks while consuming their generators alike (a resume restores one state for every process)."""
    return MaskDraw(noise_prob, int(draw_seed(generator, stream).item()))


def draw_seed(generator: torch.Generator | None, stream: int = 0) -> Tensor:
    """The seed of a fresh draw (see :func:`new_mask_draw`) as an int64 tensor [1] on the generator's device:
    what a compiled model draws, where a Python integer would be read back and compiled in as a constant."""
    device = generator.device if generator is not None else None
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=device)
    return seed ^ (step_key(0, stream) & ((1 << 62) - 1)) if stream else seed  # splitmix64 of the stream


def keyed_round(x, key):
    """lowbias32(x ^ key) on 32-bit words, in the integer vocabulary of asgl.scalar (every backend compiles
    this text): x ^= key; x ^= x >> 16; x *= R1; x ^= x >> 15; x *= R2; x ^= x >> 15 (products mod 2³²)."""
    x = xor(x, key)
    x = mul32(xor(x, shr(x, 16)), 0x21F0AAAD)
    x = mul32(xor(x, shr(x, 15)), 0x735A2D97)
    return xor(x, shr(x, 15))


def element_word(index, key_low, key_high):
    """The uniform 32-bit word of element ``index`` of a step whose 64-bit key has the halves (low, high):
    one keyed round with each half. Compiled by every backend with its ``keyed_round`` bound."""
    return keyed_round(keyed_round(index, key_low), key_high)


def element_bits(key: int, index: Tensor) -> Tensor:
    """Uniform 32-bit words (int64) [...] of the elements ``index`` (int64 in [0, 2³²)) [...] of the step
    with 64-bit ``key``: :func:`element_word` on torch integers."""
    return element_word(index, key & _M32, key >> 32)


def step_mask_of(
    draw: MaskDraw, t: int, step_shape: torch.Size | tuple[int, ...], device: torch.device | str
) -> Tensor:
    """The bool mask [*step_shape] of step t of ``draw`` (True = spiking), elements numbered row-major."""
    n = math.prod(step_shape)
    if n >= MAX_STEP:
        raise ValueError(f"an ASGL mask step holds at most 2³² − 1 elements; got {n}")
    index = torch.arange(n, device=device, dtype=torch.int64)
    return (element_bits(step_key(draw.seed, draw.offset + t), index) >= draw.threshold).view(step_shape)


def materialize_mask(draw: MaskDraw, shape: torch.Size | tuple[int, ...], device: torch.device | str) -> Tensor:
    """The bool mask [T, *step] = ``shape`` of ``draw`` (True = spiking): step t is ``step_mask_of(draw, t)``."""
    if len(shape) == 0:
        raise ValueError("a mask needs a step dimension first: shape [T, ...]")
    steps = [step_mask_of(draw, t, shape[1:], device) for t in range(shape[0])]
    return torch.stack(steps) if steps else torch.zeros(shape, dtype=torch.bool, device=device)


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
