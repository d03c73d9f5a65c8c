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

import math

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from asgl.spike import MaskDraw, SpikeSpec

BLOCK = 4096
MODES = {"asgl": 0, "sg": 1, "heaviside": 2, "analog": 3}
FAMILIES = {"sigmoid": 0, "rectangle": 1, "tanh": 2, "arctan": 3, "triangle": 4}
WIDTH_ALL, WIDTH_ANALOG, WIDTH_NONE = 0, 1, 2
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_HALF_PI = math.pi / 2


@njit(inline="always", cache=True)
def _bits(seed, counter):
    """splitmix64 of (seed, counter), top 32 bits; uint64 throughout (see asgl.spike.mask_bits)."""
    z = seed + (np.uint64(counter) + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return (z ^ (z >> np.uint64(31))) >> np.uint64(32)


@njit(inline="always", cache=True)
def _step(family, y):
    """F(y), the unit-slope smooth step of ``family`` (asgl.surrogates)."""
    if family == 0:
        return 1.0 / (1.0 + math.exp(-y))
    if family == 1:
        return min(max(y + 0.5, 0.0), 1.0)
    if family == 2:
        return 0.5 * math.tanh(y) + 0.5
    if family == 3:
        return math.atan(_HALF_PI * y) / math.pi + 0.5
    c = min(max(y, -1.0), 1.0)
    return 0.5 * (1.0 + c) ** 2 if c < 0 else 1.0 - 0.5 * (1.0 - c) ** 2


@njit(inline="always", cache=True)
def _density(family, y):
    """f(y) = F'(y)."""
    if family == 0:
        s = 1.0 / (1.0 + math.exp(-y))
        return s * (1.0 - s)
    if family == 1:
        return 1.0 if abs(y) <= 0.5 else 0.0
    if family == 2:
        th = math.tanh(y)
        return 0.5 * (1.0 - th * th)
    if family == 3:
        return 0.5 / (1.0 + (_HALF_PI * y) ** 2)
    return max(1.0 - abs(y), 0.0)


@njit(inline="always", cache=True)
def _spike(mode, family, x, y, binary):
    """Spike value: Θ(x) for binary elements (sg, heaviside, asgl where the mask is True), else F(y)."""
    if mode == 3 or (mode == 0 and not binary):
        return _step(family, y)
    return 1.0 if x >= 0 else 0.0


@njit(parallel=True, cache=True)
def _forward(cur, gamma, theta, k, mode, family, hard, amp, seed, offset, thr, out, u_all):  # pragma: no cover
    """cur [T, N] -> out (a·s) and u_all (u) [T, N]; k [1] or [N] (per neuron)."""
    steps, n = cur.shape
    per_neuron = k.shape[0] > 1
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        state = np.zeros(hi - lo, cur.dtype)
        for t in range(steps):
            base = offset + t * n
            for i in range(lo, hi):
                u = cur[t, i] + state[i - lo] * gamma
                x = u - theta
                kk = k[i] if per_neuron else k[0]
                binary = mode != 0 or _bits(seed, base + i) >= thr
                s = _spike(mode, family, x, kk * x, binary)
                u_all[t, i] = u
                out[t, i] = s * theta if amp else s
                state[i - lo] = u - u * s if hard else u - theta * s


@njit(parallel=True, cache=True)
def _backward(
    u_all, g_out, gamma, theta, k, mode, family, hard, amp, width_rule, seed, offset, thr, grad_in, parts, k_acc
):  # pragma: no cover
    """Reverse pass: grad_in [T, N]; parts [blocks, 3] (decay, threshold, layer width); k_acc [N] per-neuron width."""
    steps, n = u_all.shape
    per_neuron = k.shape[0] > 1
    for b in prange((n + BLOCK - 1) // BLOCK):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        carry = np.zeros(hi - lo, u_all.dtype)  # G = dL/dũ[t], from step t+1
        g_next = np.zeros(hi - lo, u_all.dtype)  # dL/du[t+1]
        k_sum = np.zeros(hi - lo, np.float64)
        acc_gamma = 0.0
        acc_theta = 0.0
        for t in range(steps - 1, -1, -1):
            base = offset + t * n
            for i in range(lo, hi):
                j = i - lo
                u = u_all[t, i]
                x = u - theta
                kk = k[i] if per_neuron else k[0]
                y = kk * x
                binary = mode != 0 or _bits(seed, base + i) >= thr
                s = _spike(mode, family, x, y, binary)
                go = g_out[t, i]
                big_g = carry[j]
                g = big_g - big_g * s if hard else big_g
                if mode != 2:
                    gd = ((go * theta if amp else go) - big_g * (u if hard else theta)) * _density(family, y)
                    g = g + gd * kk
                    acc_theta -= kk * gd
                    if width_rule == 0 or (width_rule == 1 and not binary):
                        k_sum[j] += gd * x
                if amp:
                    acc_theta += go * s
                if not hard:
                    acc_theta -= big_g * s
                if t < steps - 1:
                    acc_gamma += g_next[j] * (u - u * s if hard else u - theta * s)
                grad_in[t, i] = g
                g_next[j] = g
                carry[j] = g * gamma
        parts[b, 0] = acc_gamma
        parts[b, 1] = acc_theta
        if per_neuron:
            k_acc[lo:hi] = k_sum
        else:
            parts[b, 2] = k_sum.sum()


def _width_rule(spec: SpikeSpec) -> int:
    if not spec.width_analog or spec.mode in ("analog", "heaviside"):
        return WIDTH_ALL
    return WIDTH_ANALOG if spec.mode == "asgl" else WIDTH_NONE


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
        _forward(
            cur.view(steps, -1).numpy(), dtype(gamma.item()), dtype(theta.item()), _per_neuron_k(k, cur.shape[1:]),
            MODES[spec.mode], FAMILIES[spec.surrogate.name], spec.hard_reset, spec.amplitude_threshold,
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
        _backward(
            u_all.view(steps, -1).numpy(), grad_out.contiguous().view(steps, -1).numpy(), dtype(gamma.item()),
            dtype(theta.item()), _per_neuron_k(k, u_all.shape[1:]), MODES[spec.mode], FAMILIES[spec.surrogate.name],
            spec.hard_reset, spec.amplitude_threshold, _width_rule(spec), *_mask_args(ctx.mask),
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
    return current.device.type == "cpu" and current.dtype in (torch.float32, torch.float64) and (
        spec.surrogate.name in FAMILIES
    )


def lif_cpu_kernel(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """CPU kernel backend, same contract as :func:`asgl.neuron.lif_stepwise`."""
    return _CpuLIF.apply(current, gamma, theta, k, mask, spec)
