"""The multi-step LIF compiled with torch.compile: one generated kernel for the forward and one for the backward.

Same contract and maths as :func:`asgl.neuron.lif_fused` (see :class:`asgl.neuron._FusedLIF`): the forward
saves u [T, B, ...] and the bool mask it materialises from the mask draw; the backward runs the reverse recurrence over T, regenerating the
spike and surrogate terms from u, and reduces the decay, threshold and width gradients to their shapes with
``sum_to_size``. The maths are two pure functions whose loop over T is unrolled by Dynamo; Inductor fuses
each into one loop nest (C++ on CPU, Triton on CUDA), so the ~30 eager ops per step, their dispatch cost
and their memory passes disappear.

Compilation is lazy and costs seconds for every distinct (shape, dtype, mode, family, reset, amplitude,
width gradient) configuration, so the backend is opt-in (``neuron.backend = "compiled"``), never ``auto``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from asgl.spike import MaskDraw, SpikeSpec, materialize_mask

# Dynamo compiles one graph per (shape, dtype, configuration) of a function and, past its default limit of 8,
# silently runs the function eagerly; a network has a few LIF shapes times train/eval modes.
RECOMPILE_LIMIT = 64

Step = Callable[[Tensor], Tensor]


def _spike(x: Tensor, y: Tensor, mask: Tensor | None, step: Step, mode: str) -> Tensor:
    """Spike value for x = u − θ and y = k x; ``mask`` (True = binary) is used by the asgl mode."""
    if mode == "analog":
        return step(y)
    binary = (x >= 0).to(x.dtype)
    return torch.where(mask, binary, step(y)) if mode == "asgl" else binary


def lif_forward(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: Tensor | None,
    step: Step, mode: str, hard_reset: bool, amplitude_threshold: bool,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """current [T, B, ...] -> (output a·s [T, B, ...], membrane u [T, B, ...])."""
    state = torch.zeros_like(current[0])
    us, outs = [], []
    for t in range(current.shape[0]):
        u = current[t] + state * gamma
        s = _spike(u - theta, k * (u - theta), None if mask is None else mask[t], step, mode)
        state = u - u * s if hard_reset else u - s * theta
        us.append(u)
        outs.append(theta * s if amplitude_threshold else s)
    return torch.stack(outs), torch.stack(us)


def lif_backward(
    u_all: Tensor, grad_out: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: Tensor | None,
    step: Step, density: Step, mode: str, hard_reset: bool, amplitude_threshold: bool, width_analog: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """Gradients w.r.t. (current [T, B, ...], gamma, theta, k), the last three in their own shapes.

    Per step, with G = dL/dũ[t] and gd = grad_s · f(k x): grad_s = a·g_out − G·u (hard) or a·g_out − G·θ
    (soft); dL/du = k·gd + G·(1 − s) (hard) or k·gd + G; the width gets gd·x, the threshold −k·gd (+ g_out·s
    for amplitude θ, − G·s for soft reset), the decay dL/du[t+1]·ũ[t].
    """
    grad_state = torch.zeros_like(u_all[0])  # dL/dũ[t], from step t+1
    grad_next = torch.zeros_like(u_all[0])  # dL/du[t+1]
    acc_gamma, acc_theta, acc_k = (torch.zeros_like(u_all[0]) for _ in range(3))
    grads = []
    for t in range(u_all.shape[0] - 1, -1, -1):
        u, g_out, m = u_all[t], grad_out[t], None if mask is None else mask[t]
        x = u - theta
        y = k * x
        s = _spike(x, y, m, step, mode)
        grad_s = (g_out * theta if amplitude_threshold else g_out) - grad_state * (u if hard_reset else theta)
        gd = torch.zeros_like(u) if mode == "heaviside" else grad_s * density(y)
        g = (grad_state - grad_state * s if hard_reset else grad_state) + k * gd
        acc_theta = acc_theta - k * gd
        if amplitude_threshold:
            acc_theta = acc_theta + g_out * s
        if not hard_reset:
            acc_theta = acc_theta - grad_state * s
        if width_analog and mode == "asgl":
            acc_k = acc_k + torch.where(m, 0.0, gd * x)
        elif not (width_analog and mode == "sg"):
            acc_k = acc_k + gd * x
        acc_gamma = acc_gamma + grad_next * (u - u * s if hard_reset else u - s * theta)
        grads.append(g)
        grad_next = g
        grad_state = g * gamma
    grads.reverse()
    return (
        torch.stack(grads),
        acc_gamma.sum_to_size(gamma.shape),
        acc_theta.sum_to_size(theta.shape),
        acc_k.sum_to_size(k.shape),
    )


@functools.cache
def _compiled(fn: Callable) -> Callable:
    """``fn`` under torch.compile (created on first use; compiles on each new configuration's first call)."""
    return torch.compile(fn, fullgraph=True, dynamic=False)


def _run(fn: Callable, *args) -> tuple[Tensor, ...]:
    """Call the compiled ``fn``; a missing or failing compiler becomes an error that names the way out."""
    if torch.compiler.is_compiling():  # inside a compiled model (train.compile), which traces the maths itself
        return fn(*args)
    try:
        compiled = _compiled(fn)  # torch.compile itself refuses on platforms it does not support
    except RuntimeError as err:
        raise _unavailable(err) from err
    config, limit = torch._dynamo.config, torch._dynamo.config.recompile_limit
    config.recompile_limit = max(limit, RECOMPILE_LIMIT)  # set and restored by hand: config.patch costs ~20 µs
    try:
        return compiled(*args)
    except torch._dynamo.exc.TorchDynamoException as err:  # tracing or code generation failed
        raise _unavailable(err) from err
    finally:
        config.recompile_limit = limit


def _unavailable(err: Exception) -> RuntimeError:
    reason = (str(err).strip().splitlines() or [""])[0]
    return RuntimeError(
        f"the 'compiled' LIF backend could not compile its kernel ({type(err).__name__}: {reason}); torch.compile "
        "needs a working C++ compiler on CPU (Triton on CUDA). Use neuron.backend = 'fused' instead."
    )


class _CompiledLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, gamma, theta, k, draw: MaskDraw | None, spec: SpikeSpec):
        mask = None if draw is None else materialize_mask(draw, current.shape, current.device)
        args = (
            current,
            gamma,
            theta,
            k,
            mask,
            spec.surrogate.step,
            spec.spike,
            spec.reset == "hard",
            spec.amplitude == "threshold",
        )
        out, u_all = _run(lif_forward, *args)
        ctx.save_for_backward(u_all, gamma, theta, k, mask)
        ctx.spec = spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u_all, gamma, theta, k, mask = ctx.saved_tensors
        spec: SpikeSpec = ctx.spec
        grads = _run(
            lif_backward, u_all, grad_out.contiguous(), gamma, theta, k, mask, spec.surrogate.step,
            spec.surrogate.density, spec.spike, spec.reset == "hard", spec.amplitude == "threshold",
            spec.width_grad == "analog",
        )  # fmt: skip
        grads = [g if need else None for g, need in zip(grads, ctx.needs_input_grad)]
        return *grads, None, None


def lif_compiled(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """Compiled backend, same contract as :func:`asgl.neuron.lif_stepwise`."""
    return _CompiledLIF.apply(current, gamma, theta, k, mask, spec)
