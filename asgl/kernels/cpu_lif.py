"""The multi-step LIF as a CPU kernel (numba): one pass over [T, N] forward, one reverse pass backward.

Same contract and maths as :func:`asgl.neuron.lif_fused` (see :class:`asgl.neuron._FusedLIF`), with the
sequence viewed as [T, N] (N = every element of one step). Threads take blocks of ``BLOCK`` neurons; a block
walks T with its state in a small array that stays in L1, so each value of [T, N] is read or written once:
the forward reads the current and writes the output and u; the backward reads u and the output gradient and
writes the input gradient. The ASGL mask is regenerated from its :class:`asgl.spike.MaskDraw` in both passes
(the same splitmix64 as :func:`asgl.spike.mask_bits`), so no mask tensor exists.

The decay, threshold and (layer) width gradients are summed per block in float64 and the block partials are
added in block order afterwards; a channel or neuron width gets per-neuron sums reduced by torch. Blocks
depend on N only, so gradients are bit-identical whatever the thread count.

Compiled by numba on first use and cached on disk (``cache=True``): the first call of a dtype costs seconds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from asgl.spike import MaskDraw, SpikeSpec

BLOCK = 1024
MODES = {"asgl": 0, "sg": 1, "heaviside": 2, "analog": 3}
FAMILIES = {"sigmoid": 0, "rectangle": 1, "tanh": 2, "arctan": 3, "triangle": 4}
WIDTH_ALL, WIDTH_ANALOG, WIDTH_NONE = 0, 1, 2
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_HALF_PI = math.pi / 2


@njit(inline="always", cache=True, error_model="numpy")
def _bits(seed, counter):
    """splitmix64 of (seed, counter), top 32 bits; uint64 throughout (see asgl.spike.mask_bits)."""
    z = seed + (np.uint64(counter) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return (z ^ (z >> np.uint64(31))) >> np.uint64(32)


@njit(inline="always", cache=True, error_model="numpy")
def _exp_neg(a):
    """exp(−a) for a >= 0 in plain arithmetic, so that the loops calling it vectorise (a libm call does not):
    the degree-12 Taylor polynomial of exp(−r), r = min(a, 80)/64 <= 1.25, raised to the 64th power by six
    squarings. Relative error below 1e-13 for a <= 20 and 2e-7 at a = 80, where exp(−a) < 2e-35."""
    r = min(a, 80.0) * (1.0 / 64.0)
    p = 1.0 - r * (1 / 12)
    p = 1.0 - r * (1 / 11) * p
    p = 1.0 - r * (1 / 10) * p
    p = 1.0 - r * (1 / 9) * p
    p = 1.0 - r * (1 / 8) * p
    p = 1.0 - r * (1 / 7) * p
    p = 1.0 - r * (1 / 6) * p
    p = 1.0 - r * (1 / 5) * p
    p = 1.0 - r * (1 / 4) * p
    p = 1.0 - r * (1 / 3) * p
    p = 1.0 - r * (1 / 2) * p
    p = 1.0 - r * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


@njit(inline="always", cache=True, error_model="numpy")
def _sigmoid(y):
    e = _exp_neg(abs(y))
    return (e if y < 0 else 1.0) / (1.0 + e)


@njit(inline="always", cache=True, error_model="numpy")
def _sigmoid_density(y):
    e = _exp_neg(abs(y))
    return e / ((1.0 + e) * (1.0 + e))


@njit(inline="always", cache=True, error_model="numpy")
def _step(family, y):
    """F(y), the unit-slope smooth step of ``family`` (asgl.surrogates); tanh's is σ(2y)."""
    if family == 0:
        return _sigmoid(y)
    if family == 1:
        return min(max(y + 0.5, 0.0), 1.0)
    if family == 2:
        return _sigmoid(2.0 * y)
    if family == 3:
        return math.atan(_HALF_PI * y) / math.pi + 0.5
    c = min(max(y, -1.0), 1.0)
    return 0.5 * (1.0 + c) * (1.0 + c) if c < 0 else 1.0 - 0.5 * (1.0 - c) * (1.0 - c)


@njit(inline="always", cache=True, error_model="numpy")
def _density(family, y):
    """f(y) = F'(y)."""
    if family == 0:
        return _sigmoid_density(y)
    if family == 1:
        return 1.0 if abs(y) <= 0.5 else 0.0
    if family == 2:
        return 2.0 * _sigmoid_density(2.0 * y)
    if family == 3:
        return 0.5 / (1.0 + (_HALF_PI * y) * (_HALF_PI * y))
    return max(1.0 - abs(y), 0.0)


@njit(inline="always", cache=True, error_model="numpy")
def _spike(mode, family, x, y, binary):
    """Spike value: Θ(x) for binary elements (sg, heaviside, asgl where the mask is True), else F(y).
    Both are computed and one selected, so that the asgl loop has no data-dependent branch."""
    theta_x = 1.0 if x >= 0 else 0.0
    if mode == 1 or mode == 2:
        return theta_x
    smooth = _step(family, y)
    return theta_x if mode == 0 and binary else smooth


@functools.cache
def kernels(
    mode: int, family: int, hard: bool, amp: bool, width_rule: int, per_neuron: bool
) -> tuple[Callable, Callable]:
    """(forward, backward) compiled for one configuration: the flags are constants of the closures, so every
    branch on them folds away. ``k`` is [1] (one width) or [N] (``per_neuron``).

    Each step of a block runs in short loops over the block's neurons, each touching few arrays so that
    LLVM vectorises it: spike values and mask from u, surrogate densities from u (backward), then the state
    and gradient updates. The block's [BLOCK] rows stay in L1, so [T, N] is still read once."""

    spikes, densities = _row_kernels(mode, family, per_neuron)
    return _forward_kernel(spikes, hard, amp), _backward_kernel(
        spikes, densities, mode, hard, amp, width_rule, per_neuron
    )


@functools.cache
def _row_kernels(mode: int, family: int, per_neuron: bool) -> tuple[Callable, Callable]:
    """The per-step loops over a block's neurons: spike values and mask, and surrogate densities."""

    @njit(inline="always", cache=True, error_model="numpy")
    def spikes(u_row, lo, hi, theta, k, seed, base, thr, spk, analog):  # pragma: no cover
        """spk[j] = s and analog[j] = 1 − mask (j = i − lo) for the neurons lo..hi of one step."""
        k0 = k[0]
        for i in range(lo, hi):
            x = u_row[i] - theta
            binary = mode != 0 or _bits(seed, base + i) >= thr
            spk[i - lo] = _spike(mode, family, x, (k[i] if per_neuron else k0) * x, binary)
            analog[i - lo] = 0.0 if binary else 1.0

    @njit(inline="always", cache=True, error_model="numpy")
    def densities(u_row, lo, hi, theta, k, dens):  # pragma: no cover
        """dens[j] = f(k x) for the neurons lo..hi of one step."""
        k0 = k[0]
        for i in range(lo, hi):
            x = u_row[i] - theta
            dens[i - lo] = _density(family, (k[i] if per_neuron else k0) * x)

    return spikes, densities


def _forward_kernel(spikes: Callable, hard: bool, amp: bool) -> Callable:
    """The forward pass for one configuration (the flags are constants of the closure)."""

    @njit(parallel=True, cache=True, error_model="numpy")
    def forward(cur, gamma, theta, k, seed, offset, thr, out, u_all):  # pragma: no cover
        """cur [T, N] -> out (a·s) and u_all (u) [T, N]."""
        steps, n = cur.shape
        for b in prange((n + BLOCK - 1) // BLOCK):
            lo = b * BLOCK
            hi = min(lo + BLOCK, n)
            state = np.zeros(hi - lo, cur.dtype)
            spk = np.empty(hi - lo, cur.dtype)
            analog = np.empty(hi - lo, cur.dtype)
            for t in range(steps):
                for i in range(lo, hi):
                    u_all[t, i] = cur[t, i] + state[i - lo] * gamma
                spikes(u_all[t], lo, hi, theta, k, seed, offset + t * n, thr, spk, analog)
                for i in range(lo, hi):
                    u, s = u_all[t, i], spk[i - lo]
                    out[t, i] = s * theta if amp else s
                    state[i - lo] = u - u * s if hard else u - theta * s

    return forward


def _backward_kernel(
    spikes: Callable, densities: Callable, mode: int, hard: bool, amp: bool, width_rule: int, per_neuron: bool
) -> Callable:
    """The reverse pass for one configuration (the flags are constants of the closure)."""

    @njit(parallel=True, cache=True, error_model="numpy")
    def backward(u_all, g_out, gamma, theta, k, seed, offset, thr, grad_in, parts, k_acc):  # pragma: no cover
        """Reverse pass: grad_in [T, N]; parts [blocks, 3] (decay, threshold, one width); k_acc [N] per neuron.

        The parameter gradients are per-neuron float64 sums over T, reduced per block at the end."""
        steps, n = u_all.shape
        k0 = k[0]
        for b in prange((n + BLOCK - 1) // BLOCK):
            lo = b * BLOCK
            hi = min(lo + BLOCK, n)
            g_next = np.zeros(hi - lo, u_all.dtype)  # dL/du[t+1]; dL/dũ[t] = γ·dL/du[t+1]
            sum_gamma = np.zeros(hi - lo)
            sum_theta = np.zeros(hi - lo)
            sum_k = np.zeros(hi - lo)
            spk = np.empty(hi - lo, u_all.dtype)
            dens = np.zeros(hi - lo, u_all.dtype)
            analog = np.zeros(hi - lo, u_all.dtype)
            for t in range(steps - 1, -1, -1):
                spikes(u_all[t], lo, hi, theta, k, seed, offset + t * n, thr, spk, analog)
                if mode != 2:
                    densities(u_all[t], lo, hi, theta, k, dens)
                for i in range(lo, hi):
                    j = i - lo
                    u, s, go, after = u_all[t, i], spk[j], g_out[t, i], g_next[j]
                    kk = k[i] if per_neuron else k0
                    big_g = after * gamma
                    g = big_g - big_g * s if hard else big_g
                    d_theta = go * s if amp else 0.0
                    if not hard:
                        d_theta -= big_g * s
                    if mode != 2:
                        gd = ((go * theta if amp else go) - big_g * (u if hard else theta)) * dens[j]
                        g = g + gd * kk
                        d_theta -= kk * gd
                        if width_rule == 0:
                            sum_k[j] += gd * (u - theta)
                        elif width_rule == 1:
                            sum_k[j] += gd * (u - theta) * analog[j]
                    sum_theta[j] += d_theta
                    sum_gamma[j] += after * (u - u * s if hard else u - theta * s)
                    grad_in[t, i] = g
                    g_next[j] = g
            parts[b, 0] = sum_gamma.sum()
            parts[b, 1] = sum_theta.sum()
            if per_neuron:
                k_acc[lo:hi] = sum_k
            else:
                parts[b, 2] = sum_k.sum()

    return backward


def _kernels(spec: SpikeSpec, per_neuron: bool) -> tuple[Callable, Callable]:
    flags = (spec.reset == "hard", spec.amplitude == "threshold", _width_rule(spec), per_neuron)
    return kernels(MODES[spec.spike], FAMILIES[spec.surrogate.name], *flags)


def _width_rule(spec: SpikeSpec) -> int:
    if spec.width_grad == "all" or spec.spike in ("analog", "heaviside"):
        return WIDTH_ALL
    return WIDTH_ANALOG if spec.spike == "asgl" else WIDTH_NONE


def _mask_args(mask: MaskDraw | None) -> tuple[np.uint64, int, np.uint64]:
    draw = mask or MaskDraw(0.0, 0)
    return np.uint64(draw.seed % 2**64), draw.offset, np.uint64(draw.threshold)


def _per_neuron_k(k: Tensor, step_shape: torch.Size) -> np.ndarray:
    """k as [1] (one width) or expanded to one value per neuron [N]."""
    flat = k.detach().reshape(1) if k.numel() == 1 else k.detach().expand(step_shape).reshape(-1)
    return flat.contiguous().numpy()


def _threads() -> None:
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


class _CpuLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, gamma, theta, k, mask: MaskDraw | None, spec: SpikeSpec):
        cur = current.detach().contiguous()
        out, u_all = torch.empty_like(cur), torch.empty_like(cur)
        steps = cur.shape[0]
        dtype = cur.numpy().dtype.type
        _threads()
        _kernels(spec, k.numel() > 1)[0](
            cur.view(steps, -1).numpy(), dtype(gamma.item()), dtype(theta.item()), _per_neuron_k(k, cur.shape[1:]),
            *_mask_args(mask), out.view(steps, -1).numpy(), u_all.view(steps, -1).numpy(),
        )  # fmt: skip
        ctx.save_for_backward(u_all, gamma, theta, k)
        ctx.mask, ctx.spec = mask, spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u_all, gamma, theta, k = ctx.saved_tensors
        spec: SpikeSpec = ctx.spec
        steps, n = u_all.shape[0], u_all[0].numel()
        grad_in = torch.empty_like(u_all)
        parts = np.zeros(((n + BLOCK - 1) // BLOCK, 3))
        k_acc = np.zeros(n if k.numel() > 1 else 0)
        dtype = u_all.numpy().dtype.type
        _threads()
        _kernels(spec, k.numel() > 1)[1](
            u_all.view(steps, -1).numpy(), grad_out.contiguous().view(steps, -1).numpy(), dtype(gamma.item()),
            dtype(theta.item()), _per_neuron_k(k, u_all.shape[1:]), *_mask_args(ctx.mask),
            grad_in.view(steps, -1).numpy(), parts, k_acc,
        )  # fmt: skip
        sums = [torch.tensor(float(parts[:, c].sum()), dtype=u_all.dtype) for c in range(3)]
        grad_k = sums[2] if k.numel() == 1 else torch.from_numpy(k_acc).view(u_all.shape[1:]).sum_to_size(k.shape)
        need = ctx.needs_input_grad
        return (
            grad_in if need[0] else None,
            sums[0].reshape(gamma.shape) if need[1] else None,
            sums[1].reshape(theta.shape) if need[2] else None,
            grad_k.to(k.dtype).reshape(k.shape) if need[3] else None,
            None,
            None,
        )


def supports(current: Tensor, spec: SpikeSpec) -> bool:
    """Whether the kernel runs this call: a CPU float32/float64 tensor and a family it knows."""
    return (
        current.device.type == "cpu"
        and current.dtype in (torch.float32, torch.float64)
        and (spec.surrogate.name in FAMILIES)
    )


def lif_cpu_kernel(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """CPU kernel backend, same contract as :func:`asgl.neuron.lif_stepwise`."""
    return _CpuLIF.apply(current, gamma, theta, k, mask, spec)
