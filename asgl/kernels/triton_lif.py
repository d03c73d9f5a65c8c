"""Triton kernels for the multi-step LIF with the ASGL spike: one program per block of neurons loops over T.

Same contract and maths as :func:`asgl.neuron.lif_fused` (see :class:`asgl.neuron._FusedLIF`): the forward
keeps the membrane state in registers, writes the output and u [T, N] and saves u plus the bool mask; the
backward runs the reverse recurrence over T in registers and reduces the decay, threshold and width
gradients inside the kernel (block sums + atomic adds). Tensors are viewed as [T, N], N = B·prod(features);
a per-neuron or per-channel width is expanded to the feature shape and indexed with n mod F (F = 1 for a
per-layer width). Offsets are int64, so T·N may pass 2³¹.

Runs on CUDA, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before importing
triton), which is how the tests check the maths without a GPU; tests/test_triton_compile.py compiles every
variant for real GPU targets. float32 only (the LIF layer casts half precision to float32);
:func:`asgl.neuron.lif_triton` sends other operands (see :func:`supports`) and the arctan surrogate (no
arctan in Triton's core) to the PyTorch fused path.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

from asgl.spike import SpikeSpec

FAMILIES = {"sigmoid": 0, "rectangle": 1, "tanh": 2, "triangle": 3}
MODES = {"asgl": 0, "sg": 1, "heaviside": 2, "analog": 3}
BLOCK = 512


@triton.jit
def _step(y, FAMILY: tl.constexpr):
    """Unit-slope smooth step F(y) of asgl.surrogates."""
    if FAMILY == 0:
        return tl.sigmoid(y)
    elif FAMILY == 1:
        return tl.minimum(tl.maximum(y + 0.5, 0.0), 1.0)
    elif FAMILY == 2:
        return tl.sigmoid(2.0 * y)  # 0.5 tanh(y) + 0.5
    else:
        c = tl.minimum(tl.maximum(y, -1.0), 1.0)
        return tl.where(c < 0, 0.5 * (1.0 + c) * (1.0 + c), 1.0 - 0.5 * (1.0 - c) * (1.0 - c))


@triton.jit
def _density(y, FAMILY: tl.constexpr):
    """f = F' of the family."""
    if FAMILY == 0:
        s = tl.sigmoid(y)
        return s * (1.0 - s)
    elif FAMILY == 1:
        return tl.where(tl.abs(y) <= 0.5, 1.0, 0.0)
    elif FAMILY == 2:
        s = tl.sigmoid(2.0 * y)
        return 2.0 * s * (1.0 - s)  # 0.5 (1 − tanh² y)
    else:
        return tl.maximum(1.0 - tl.abs(y), 0.0)


@triton.jit
def _spike(x, y, m, MODE: tl.constexpr, FAMILY: tl.constexpr):
    """Spike value for x = u − θ, y = k x; ``m`` = mask (True = binary), used by the asgl mode."""
    binary = tl.where(x >= 0, 1.0, 0.0)
    if MODE == 0:
        return tl.where(m, binary, _step(y, FAMILY))
    elif MODE == 3:
        return _step(y, FAMILY)
    else:
        return binary


@triton.jit
def _load_slope(k_ptr, offs, valid, F):
    """Slope per lane [BLOCK_N]: k[n mod F]; F = 1 for a per-layer width (one value in every lane).

    One return of one block type: the compiler rejects a scalar return beside a block return.
    """
    return tl.load(k_ptr + offs % F, mask=valid, other=1.0)


@triton.jit
def _lif_forward_kernel(
    cur_ptr, u_ptr, out_ptr, mask_ptr, gamma_ptr, theta_ptr, k_ptr, T, N, F,
    MODE: tl.constexpr, FAMILY: tl.constexpr, HARD: tl.constexpr, AMP_THETA: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # int64: T·N may pass 2³¹
    valid = offs < N
    gamma = tl.load(gamma_ptr)
    theta = tl.load(theta_ptr)
    k = _load_slope(k_ptr, offs, valid, F)
    state = tl.zeros([BLOCK_N], dtype=tl.float32)
    for t in range(T):
        idx = tl.cast(t, tl.int64) * N + offs
        u = gamma * state + tl.load(cur_ptr + idx, mask=valid, other=0.0)
        tl.store(u_ptr + idx, u, mask=valid)
        x = u - theta
        m = tl.load(mask_ptr + idx, mask=valid, other=0) != 0 if MODE == 0 else valid
        s = _spike(x, k * x, m, MODE, FAMILY)
        tl.store(out_ptr + idx, theta * s if AMP_THETA else s, mask=valid)
        state = u - u * s if HARD else u - theta * s


@triton.jit
def _lif_backward_kernel(
    u_ptr, gout_ptr, gu_ptr, mask_ptr, gamma_ptr, theta_ptr, k_ptr, ggamma_ptr, gtheta_ptr, gk_ptr, T, N, F,
    MODE: tl.constexpr, FAMILY: tl.constexpr, HARD: tl.constexpr, AMP_THETA: tl.constexpr,
    K_SCALAR: tl.constexpr, K_GRAD: tl.constexpr, ANALOG_K_ONLY: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # int64: T·N may pass 2³¹
    valid = offs < N
    gamma = tl.load(gamma_ptr)
    theta = tl.load(theta_ptr)
    k = _load_slope(k_ptr, offs, valid, F)
    grad_state = tl.zeros([BLOCK_N], dtype=tl.float32)  # dL/dũ[t] from step t+1
    grad_next = tl.zeros([BLOCK_N], dtype=tl.float32)  # dL/du[t+1]
    acc_gamma = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc_theta = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc_k = tl.zeros([BLOCK_N], dtype=tl.float32)
    for i in range(T):
        idx = tl.cast(T - 1 - i, tl.int64) * N + offs
        u = tl.load(u_ptr + idx, mask=valid, other=0.0)
        g_out = tl.load(gout_ptr + idx, mask=valid, other=0.0)
        x = u - theta
        y = k * x
        m = tl.load(mask_ptr + idx, mask=valid, other=0) != 0 if MODE == 0 else valid
        s = _spike(x, y, m, MODE, FAMILY)
        amp_g = theta * g_out if AMP_THETA else g_out
        grad_s = amp_g - grad_state * u if HARD else amp_g - grad_state * theta
        gd = grad_s * _density(y, FAMILY) if MODE != 2 else tl.zeros([BLOCK_N], dtype=tl.float32)
        g = grad_state * (1.0 - s) + k * gd if HARD else grad_state + k * gd
        tl.store(gu_ptr + idx, g, mask=valid)
        acc_theta += -k * gd
        if AMP_THETA:
            acc_theta += g_out * s
        if not HARD:
            acc_theta -= grad_state * s
        if K_GRAD:
            acc_k += tl.where(m, 0.0, gd * x) if ANALOG_K_ONLY else gd * x
        acc_gamma += grad_next * (u - u * s if HARD else u - theta * s)
        grad_next = g
        grad_state = g * gamma
    tl.atomic_add(ggamma_ptr, tl.sum(tl.where(valid, acc_gamma, 0.0), axis=0))
    tl.atomic_add(gtheta_ptr, tl.sum(tl.where(valid, acc_theta, 0.0), axis=0))
    if K_GRAD:
        if K_SCALAR:
            tl.atomic_add(gk_ptr, tl.sum(tl.where(valid, acc_k, 0.0), axis=0))
        else:
            tl.atomic_add(gk_ptr + offs % F, acc_k, mask=valid)


def _slope_per_feature(k: Tensor, feature_shape: torch.Size) -> tuple[Tensor, bool]:
    """k flattened for indexing by n mod F: a 1-element tensor (scalar k) or k expanded to the features."""
    if k.numel() == 1:
        return k.reshape(1).contiguous(), True
    return k.expand(feature_shape).contiguous().view(-1), False


def forward_flags(spec: SpikeSpec) -> dict[str, int | bool]:
    """The compile-time switches of :func:`_lif_forward_kernel` for this spike."""
    return {
        "MODE": MODES[spec.mode],
        "FAMILY": FAMILIES[spec.surrogate.name],
        "HARD": spec.hard_reset,
        "AMP_THETA": spec.amplitude_threshold,
        "BLOCK_N": BLOCK,
    }


def backward_flags(spec: SpikeSpec, k_scalar: bool) -> dict[str, int | bool]:
    """The compile-time switches of :func:`_lif_backward_kernel` for this spike and width granularity."""
    k_grad = spec.mode != "heaviside" and not (spec.width_analog and spec.mode == "sg")
    analog_k_only = spec.width_analog and spec.mode == "asgl"
    return forward_flags(spec) | {"K_SCALAR": k_scalar, "K_GRAD": k_grad, "ANALOG_K_ONLY": analog_k_only}


def _on_device(x: Tensor) -> contextlib.AbstractContextManager:
    """Launch on x's GPU, whatever the current CUDA device (nothing to do for CPU tensors under the interpreter)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


class _TritonLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, gamma, theta, k, mask, spec: SpikeSpec):
        current = current.contiguous()
        steps, n = current.shape[0], current[0].numel()
        k_flat, _ = _slope_per_feature(k, current.shape[2:])
        u_all = torch.empty_like(current)
        out = torch.empty_like(current)
        mask_u8 = mask.contiguous().view(torch.uint8) if mask is not None else u_all  # unread unless asgl
        with _on_device(current):
            _lif_forward_kernel[(triton.cdiv(n, BLOCK),)](
                current, u_all, out, mask_u8, gamma.reshape(1), theta.reshape(1), k_flat, steps, n, k_flat.numel(),
                **forward_flags(spec),
            )  # fmt: skip
        ctx.save_for_backward(u_all, gamma, theta, k, mask)
        ctx.spec = spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u_all, gamma, theta, k, mask = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        steps, n = u_all.shape[0], u_all[0].numel()
        k_flat, k_scalar = _slope_per_feature(k, u_all.shape[2:])
        grad_u = torch.empty_like(u_all)
        grad_gamma = torch.zeros(1, dtype=torch.float32, device=u_all.device)
        grad_theta = torch.zeros(1, dtype=torch.float32, device=u_all.device)
        grad_k = torch.zeros_like(k_flat)
        mask_u8 = mask.contiguous().view(torch.uint8) if mask is not None else u_all
        with _on_device(u_all):
            _lif_backward_kernel[(triton.cdiv(n, BLOCK),)](
                u_all, grad_out, grad_u, mask_u8, gamma.reshape(1), theta.reshape(1), k_flat,
                grad_gamma, grad_theta, grad_k, steps, n, k_flat.numel(), **backward_flags(ctx.spec, k_scalar),
            )  # fmt: skip
        grad_k = grad_k.reshape(k.shape) if k_scalar else grad_k.view(u_all.shape[2:]).sum_to_size(k.shape)
        return (
            grad_u,
            grad_gamma.reshape(gamma.shape) if ctx.needs_input_grad[1] else None,
            grad_theta.reshape(theta.shape) if ctx.needs_input_grad[2] else None,
            grad_k if ctx.needs_input_grad[3] else None,
            None, None,
        )  # fmt: skip


def supports(current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: Tensor | None, spec: SpikeSpec) -> bool:
    """Whether the kernels take these operands: all float32 on one device (the mask bool), a family in Triton."""
    params_ok = all(p.dtype == torch.float32 and p.device == current.device for p in (gamma, theta, k))
    mask_ok = mask is None or (
        mask.dtype == torch.bool and mask.device == current.device and mask.shape == current.shape
    )
    return current.dtype == torch.float32 and params_ok and mask_ok and spec.surrogate.name in FAMILIES


def lif_triton(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: Tensor | None, spec: SpikeSpec
) -> Tensor:
    """The kernels as an autograd function, same contract as :func:`asgl.neuron.lif_stepwise` (see :func:`supports`)."""
    if spec.mode == "asgl" and mask is None:
        raise ValueError("the asgl spike needs its bool mask [T, B, ...]; got None")
    if not supports(current, gamma, theta, k, mask, spec):
        operands = ", ".join(f"{x.dtype} on {x.device}" for x in (current, gamma, theta, k))
        raise ValueError(
            f"the Triton LIF takes float32 operands on one device, a bool mask like the input and the families "
            f"{', '.join(FAMILIES)}; got {operands}, mask {None if mask is None else mask.dtype}, {spec.surrogate.name}"
        )
    return _TritonLIF.apply(current, gamma, theta, k, mask, spec)
