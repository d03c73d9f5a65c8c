"""Any neuron model compiled with torch.compile: one generated kernel for the forward and one for the backward.

The loops of the fused path (:func:`asgl.neuron_models.fused_forward` and ``fused_backward``: the definition's
generated forward and adjoint on tensors), with the mask materialised from its draw up front: Dynamo unrolls
the loop over T and Inductor fuses each pass into one loop nest (C++ on CPU, Triton on CUDA), so the per-step
eager ops, their dispatch cost and their memory passes disappear.

Compilation is lazy and costs seconds for every distinct (model, shape, dtype, mode, family, reset, amplitude,
width gradient) configuration, so the backend is opt-in (``neuron.backend = "compiled"``), never ``auto``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from asgl.neuron_models import NeuronDef, fused_backward, fused_forward, torch_step
from asgl.spike import MaskDraw, SpikeSpec, materialize_mask

# Dynamo compiles one graph per (shape, dtype, configuration) of a function and, past its default limit of 8,
# silently runs the function eagerly; a network has a few LIF shapes times train/eval modes.
RECOMPILE_LIMIT = 64


def _forward(fns: tuple, n_states: int, current: Tensor, params: tuple, k: Tensor, mask: Tensor | None):
    return fused_forward(fns, n_states, current, params, k, lambda t: None if mask is None else mask[t])


def _backward(fns: tuple, saved: list, grad_out: Tensor, params: tuple, k: Tensor, mask: Tensor | None):
    return fused_backward(fns, saved, grad_out, params, k, lambda t: None if mask is None else mask[t])


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


class _CompiledNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, model: NeuronDef, draw: MaskDraw | None, spec: SpikeSpec, current, k, *params):
        mask = None if draw is None else materialize_mask(draw, current.shape, current.device)
        fns = torch_step(model, spec)
        out, saved = _run(_forward, fns, len(model.states), current, params, k, mask)
        ctx.save_for_backward(k, *params, *saved, *([] if mask is None else [mask]))
        ctx.fns, ctx.n, ctx.states = fns, len(params), len(model.states)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        k, *rest = ctx.saved_tensors
        params, saved, mask = tuple(rest[: ctx.n]), rest[ctx.n : ctx.n + ctx.states], rest[ctx.n + ctx.states :]
        grad_in, grads, grad_k = _run(_backward, ctx.fns, saved, grad_out.contiguous(), params, k, (mask or [None])[0])
        need = ctx.needs_input_grad
        grads = [None if not n else torch.zeros_like(p) if g is None else g for g, p, n in zip(grads, params, need[5:])]
        grad_k = None if not need[4] else torch.zeros_like(k) if grad_k is None else grad_k.reshape(k.shape)
        return None, None, None, grad_in, grad_k, *grads


def neuron_compiled(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, draw: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """Compiled backend, same contract as :func:`asgl.neuron_models.neuron_stepwise` (the mask as a draw)."""
    return _CompiledNeuron.apply(model, draw, spec, current, k, *params)
