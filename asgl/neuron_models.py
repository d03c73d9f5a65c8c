"""Neuron models, each written once as a step, and the two backends every model gets from its step.

A model is a :class:`NeuronDef`: its state variables (each [B, ...], zero before the first step) and one step

    (current I[t] [B, ...], state, params, spike, spec) -> (output [B, ...], new state)

written with torch operations. ``params`` is the tuple of tensors that the layer passes (see
:meth:`asgl.neuron.LIF.params`), ``spike`` the spike function x -> s of the step (:func:`make_spike`: the ASGL
mask of the step is already in it). From the step alone come:

- :func:`neuron_stepwise`: the loop under autograd (the reference);
- :func:`neuron_fused`: the loop without a graph that saves only the states, and a backward that walks back
  over T taking the vector-Jacobian product of one step at a time ([B, ...] slices), so its memory is the
  fused backend's.

The models:

    lif    u = γ ũ + I;  s = spike(u − θ);  ũ = u (1 − s) (hard) or u − θ s (soft);  out = a s
    if     lif with γ = 1 (no leak)
    alif   lif with the threshold θ + β a[t], where a[t] = ρ a[t−1] + s[t−1] (a[−1] = 0): each spike raises
           the threshold by β and the rise decays back by ρ = sigmoid(r) per step (r learnable), the adaptive
           LIF of Bellec et al. (LSNN, e-prop); the soft reset subtracts that threshold, the output amplitude
           a is the base θ

LIF and IF also run on the hand-written kernels (``kernels = True``; asgl.neuron and asgl.kernels; the fused
one calls :func:`charge` and :func:`reset_state` from here and adds its hand-written adjoint); a model
without kernels runs on the stepwise reference or on :func:`neuron_fused`, which every other backend falls
back to (:func:`asgl.neuron.runs_on`). :func:`register_neuron` adds a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from asgl.spike import MaskDraw, Reset, SpikeSpec, heaviside, hybrid_spike, materialize_mask, sg_spike, step_mask_of

SpikeFn = Callable[[Tensor], Tensor]
State = tuple[Tensor, ...]
Step = Callable[[Tensor, State, tuple[Tensor, ...], SpikeFn, SpikeSpec], tuple[Tensor, State]]


@dataclass(frozen=True)
class NeuronDef:
    """A neuron model: ``states`` state variables and its ``step`` (see the module docstring); ``kernels``:
    whether the LIF kernels run it (with params (γ, θ))."""

    states: int
    step: Step
    kernels: bool = False


def reset_state(u: Tensor, s: Tensor, theta: Tensor, reset: Reset) -> Tensor:
    """ũ = u − u·s (hard) or u − θ·s (soft); one op, shared by every backend so their values agree exactly."""
    return torch.addcmul(u, u, s, value=-1) if reset == "hard" else torch.addcmul(u, s, theta, value=-1)


def charge(current: Tensor, state: Tensor, gamma: Tensor, out: Tensor | None = None) -> Tensor:
    """u = γ ũ + I ([B, ...]; into ``out`` when given): the LIF charge, shared by the stepwise reference and the
    fused backend so their values agree exactly."""
    return torch.addcmul(current, state, gamma, out=out)


def make_spike(spec: SpikeSpec, k: Tensor, mask: Tensor | None) -> SpikeFn:
    """The spike function x -> s of ``spec.spike``; ``mask`` [B, ...] bool is used by ``asgl`` only."""
    surrogate, width_grad = spec.surrogate, spec.width_grad
    if spec.spike == "heaviside":
        return heaviside
    if spec.spike == "sg":  # no analog elements, so width_grad = "analog" means no width gradient
        return lambda x: sg_spike(x, k.detach() if width_grad == "analog" else k, surrogate)
    if spec.spike == "analog":
        return lambda x: surrogate.H(x, k)
    return lambda x: hybrid_spike(x, k, surrogate, mask, width_grad)


def lif_step(
    current: Tensor,
    state: Tensor,
    gamma: Tensor,
    theta: Tensor,
    spike: SpikeFn,
    reset: Reset = "hard",
    amplitude: Tensor | float = 1.0,
) -> tuple[Tensor, Tensor]:
    """One LIF step. current, state [B, ...]; returns (output a·s [B, ...], new state ũ [B, ...])."""
    u = charge(current, state, gamma)
    s = spike(u - theta)
    return amplitude * s, reset_state(u, s, theta, reset)


def _amplitude(theta: Tensor, spec: SpikeSpec) -> Tensor | float:
    return theta if spec.amplitude == "threshold" else 1.0


def _lif(current: Tensor, state: State, params: tuple[Tensor, ...], spike: SpikeFn, spec: SpikeSpec):
    """LIF and IF: params (γ, θ), state (ũ,)."""
    gamma, theta = params
    out, v = lif_step(current, state[0], gamma, theta, spike, spec.reset, _amplitude(theta, spec))
    return out, (v,)


def _alif(current: Tensor, state: State, params: tuple[Tensor, ...], spike: SpikeFn, spec: SpikeSpec):
    """Adaptive LIF: params (γ, θ, β, ρ), state (ũ, a)."""
    gamma, theta, beta, rho = params
    v, a = state
    s, v = lif_step(current, v, gamma, torch.addcmul(theta, a, beta), spike, spec.reset)
    return _amplitude(theta, spec) * s, (v, torch.addcmul(s, a, rho))


NEURONS: dict[str, NeuronDef] = {
    "lif": NeuronDef(1, _lif, kernels=True),
    "if": NeuronDef(1, _lif, kernels=True),
    "alif": NeuronDef(2, _alif),
}


def register_neuron(name: str, definition: NeuronDef) -> None:
    """Add (or replace) the neuron model ``name``."""
    NEURONS[name] = definition


def _step_spike(spec: SpikeSpec, k: Tensor, draw: MaskDraw | None, shape: torch.Size, t: int, device) -> SpikeFn:
    """The spike function of step t of a [T, *shape] sequence under the mask draw ``draw``."""
    return make_spike(spec, k, None if draw is None else step_mask_of(draw, t, shape, device))


def neuron_stepwise(
    model: NeuronDef,
    current: Tensor,
    params: tuple[Tensor, ...],
    k: Tensor,
    mask: MaskDraw | Tensor | None,
    spec: SpikeSpec,
) -> Tensor:
    """The reference: ``model``'s step in a loop under autograd. current [T, B, ...] -> output [T, B, ...];
    ``mask`` a draw, or its bool mask [T, B, ...]."""
    if isinstance(mask, MaskDraw):
        mask = materialize_mask(mask, current.shape, current.device)
    state = tuple(torch.zeros_like(current[0]) for _ in range(model.states))
    outs = []
    for t in range(current.shape[0]):
        out, state = model.step(current[t], state, params, make_spike(spec, k, None if mask is None else mask[t]), spec)
        outs.append(out)
    return torch.stack(outs)


class _FusedNeuron(torch.autograd.Function):
    """Forward without a graph saving the states [T, B, ...] before each step; backward one step's
    vector-Jacobian product at a time, from the last step to the first."""

    @staticmethod
    def forward(ctx, model: NeuronDef, draw, spec: SpikeSpec, current, k, *params):
        state = tuple(torch.zeros_like(current[0]) for _ in range(model.states))
        saved = [torch.empty_like(current) for _ in range(model.states)]
        outs = torch.empty_like(current)
        for t in range(current.shape[0]):
            for store, value in zip(saved, state):
                store[t] = value
            spike = _step_spike(spec, k, draw, current.shape[1:], t, current.device)
            outs[t], state = model.step(current[t], state, params, spike, spec)
        ctx.save_for_backward(current, k, *params, *saved)
        ctx.model, ctx.draw, ctx.spec = model, draw, spec
        return outs

    @staticmethod
    def backward(ctx, grad_out):
        model, (current, k, *rest) = ctx.model, ctx.saved_tensors
        n = len(rest) - model.states  # the number of params
        params, saved = rest[:n], rest[n:]
        grad_current = torch.empty_like(current)
        sums = [torch.zeros_like(p) for p in (k, *params)]
        grad_state = [torch.zeros_like(current[0]) for _ in range(model.states)]
        for t in range(current.shape[0] - 1, -1, -1):
            with torch.enable_grad():
                leaves = [x.detach().requires_grad_() for x in (current[t], k, *params, *(s[t] for s in saved))]
                cur, kk, ps, state = leaves[0], leaves[1], tuple(leaves[2 : 2 + n]), tuple(leaves[2 + n :])
                spike = _step_spike(ctx.spec, kk, ctx.draw, current.shape[1:], t, current.device)
                out, new_state = model.step(cur, state, ps, spike, ctx.spec)
                grads = torch.autograd.grad((out, *new_state), leaves, (grad_out[t], *grad_state), allow_unused=True)
            grad_current[t] = grads[0]
            for total, g in zip(sums, grads[1 : 2 + n]):
                if g is not None:
                    total += g
            grad_state = [torch.zeros_like(current[0]) if g is None else g for g in grads[2 + n :]]
        return None, None, None, grad_current, *sums


def neuron_fused(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, draw: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """The fused path of any model, same contract as :func:`neuron_stepwise` (the mask as a draw only)."""
    return _FusedNeuron.apply(model, draw, spec, current, k, *params)
