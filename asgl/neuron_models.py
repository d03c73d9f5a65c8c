"""Neuron models, each written once, and the torch paths every model gets from its definition.

A model is a :class:`NeuronDef`: the names of its state variables (each [B, ...], zero before the first step,
the membrane first) and of its step parameters, and two scalar functions in the vocabulary of asgl.scalar:

    charge(i, *states, *params) -> the charged states (one per state; the first is the membrane u)
    fire(*charged, *params)     -> (output, *new states)

``fire`` calls ``spike(x)`` (the spike of the call: ASGL, SG, analog or Θ, with its mask and surrogate),
``reset(u, s, threshold)`` (hard: u − u s; soft: u − threshold · s) and ``amplitude(s, theta)`` (θ s or s),
so one text serves every spike, reset and amplitude. The charge must be affine in the input i.

From the definition come every backend's maths. asgl.adjoint traces the two functions once, when the
definition is made: :func:`neuron_stepwise` runs the traced operations on tensors under autograd (the
reference), and asgl.adjoint writes their forward and adjoint as source text (:func:`step_texts`), which :func:`neuron_fused` runs on tensors (a loop that saves the charged states
only, and a reverse loop of vector-Jacobian products on [B, ...] slices), and which the numba and Triton
kernels compile (asgl.kernels). The spike's value and derivatives are scalar texts too (:data:`SPIKES`), bound
per family.

The models:

    lif    u = γ v + I;  s = spike(u − θ);  v = reset(u, s, θ);  out = amplitude(s, θ)
    if     lif with γ = 1 (no leak)
    alif   lif with the threshold θ + β a, where a ← ρ a + s after each step (a = 0 at first): each spike
           raises the threshold by β and the rise decays back by ρ = sigmoid(r) per step (r learnable), the
           adaptive LIF of Bellec et al. (LSNN, e-prop); the soft reset subtracts that threshold, the output
           amplitude a is the base θ

:func:`register_neuron` adds a model.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from asgl.adjoint import GIVEN_SPIKE, Emitted, Graph, define, emit_adjoint, emit_forward, evaluate, trace
from asgl.scalar import TORCH, check_scalar, rebind, where
from asgl.spike import MaskDraw, SpikeSpec, heaviside, hybrid_spike, materialize_mask, sg_spike, step_mask_of

SpikeFn = Callable[[Tensor], Tensor]
State = tuple[Tensor, ...]
MAX_STATES, MAX_PARAMS = 2, 4  # the kernels' fixed width (asgl.kernels)


# The models, each written once (every backend compiles these texts).
def lif_charge(i, v, gamma, theta):
    return gamma * v + i


def lif_fire(u, gamma, theta):
    s = spike(u - theta)  # noqa: F821 - bound per call
    return amplitude(s, theta), reset(u, s, theta)  # noqa: F821


def alif_charge(i, v, a, gamma, theta, beta, rho):
    return lif_charge(i, v, gamma, theta), a


def alif_fire(u, a, gamma, theta, beta, rho):
    threshold = theta + beta * a
    s = spike(u - threshold)  # noqa: F821
    return amplitude(s, theta), reset(u, s, threshold), rho * a + s  # noqa: F821


# reset and amplitude (``neuron.reset``, ``neuron.amplitude``)
def hard_reset(u, s, threshold):
    return u - u * s


def soft_reset(u, s, threshold):
    return u - threshold * s


def threshold_amplitude(s, theta):
    return theta * s


def unit_amplitude(s, theta):
    return s


RESETS = {"hard": hard_reset, "soft": soft_reset}
AMPLITUDES = {"threshold": threshold_amplitude, "unit": unit_amplitude}


# The spike of x = u − θ at slope k with mask bit m (True = binary): value and derivatives by x and by k,
# with the family's F and f bound as family_step and family_density.
def binary_value(x, k, m):
    return where(x >= 0.0, 1.0, 0.0)


def analog_value(x, k, m):
    return family_step(k * x)  # noqa: F821


def asgl_value(x, k, m):
    return where(m, where(x >= 0.0, 1.0, 0.0), family_step(k * x))  # noqa: F821


def surrogate_dx(x, k):
    return k * family_density(k * x)  # noqa: F821


def no_dx(x, k):
    return 0.0


def all_dk(x, k, m):
    return x * family_density(k * x)  # noqa: F821


def analog_dk(x, k, m):
    return where(m, 0.0, x * family_density(k * x))  # noqa: F821


def no_dk(x, k, m):
    return 0.0


SPIKES = {"asgl": (asgl_value, surrogate_dx), "sg": (binary_value, surrogate_dx), "analog": (analog_value, surrogate_dx),
          "heaviside": (binary_value, no_dx)}  # fmt: skip


def spike_terms(x, k, m):
    return spike_value(x, k, m), spike_dx(x, k), spike_dk(x, k, m)  # noqa: F821 - bound per call


def spike_texts(spec: SpikeSpec) -> dict[str, Callable]:
    """``spike_value``, ``spike_dx`` and ``spike_dk`` of ``spec`` as scalar texts (family_step and
    family_density still to bind). The width gradient: everywhere, only on analog elements (asgl with
    ``width_grad = "analog"``), or none (heaviside; sg with ``width_grad = "analog"``)."""
    value, dx = SPIKES[spec.spike]
    analog_only = spec.width_grad == "analog"
    if spec.spike == "heaviside" or (analog_only and spec.spike == "sg"):
        dk = no_dk
    else:
        dk = analog_dk if analog_only and spec.spike == "asgl" else all_dk
    return {"spike_value": value, "spike_dx": dx, "spike_dk": dk}


@dataclass(frozen=True)
class Traced:
    """A model's charge and fire as traced graphs (asgl.adjoint) with their outputs, for one reset and amplitude."""

    charge: tuple[Graph, list]
    fire: tuple[Graph, list]


def _trace(model: NeuronDef, reset: str, amplitude: str) -> Traced:
    """``model``'s charge and fire traced (asgl.adjoint), with this reset and amplitude."""
    charge = trace(model.charge, ("i", *model.states, *model.params))
    helpers = {"reset": RESETS[reset], "amplitude": AMPLITUDES[amplitude]}
    return Traced(charge, trace(model.fire, (*model.states, *model.params), helpers))


def traced(model: NeuronDef, reset: str, amplitude: str) -> Traced:
    """``model``'s charge and fire as traced graphs with this reset and amplitude (traced when it was made)."""
    return model.graphs[(reset, amplitude)]


@dataclass(frozen=True)
class NeuronDef:
    """A neuron model (see the module docstring): ``states`` and ``params`` name its state variables (the
    membrane first) and its step parameters; ``charge`` and ``fire`` are scalar functions.

    The layer (asgl.neuron.LIF) owns the params named ``gamma`` (the leak, from ``neuron.decay``), ``theta``
    (the threshold), ``beta`` and ``rho`` (alif's adaptation); ``init`` gives any other param as (name,
    initial value) pairs, each a learnable parameter of the layer under its name. ``graphs``: the two
    functions traced for every reset and amplitude when the definition is made (so that no trace runs
    inside a model that torch.compile captures)."""

    states: tuple[str, ...]
    params: tuple[str, ...]
    charge: Callable
    fire: Callable
    init: tuple[tuple[str, float], ...] = ()
    graphs: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        graphs = {(r, a): _trace(self, r, a) for r in RESETS for a in AMPLITUDES}
        object.__setattr__(self, "graphs", graphs)


NEURONS: dict[str, NeuronDef] = {
    "lif": NeuronDef(("v",), ("gamma", "theta"), lif_charge, lif_fire),
    "if": NeuronDef(("v",), ("gamma", "theta"), lif_charge, lif_fire),
    "alif": NeuronDef(("v", "a"), ("gamma", "theta", "beta", "rho"), alif_charge, alif_fire),
}
RESERVED = re.compile(r"[tdg]\d+|[ikm]|pad_\w+")  # the names asgl.adjoint and the kernels use


def register_neuron(name: str, definition: NeuronDef) -> None:
    """Add (or replace) the neuron model ``name``, after checking that its definition can be traced."""
    names = (*definition.states, *definition.params)
    clash = [n for n in names if RESERVED.fullmatch(n)]
    own = {"gamma", "theta", "beta", "rho"}
    unknown = set(definition.params) - own - {n for n, _ in definition.init}
    if unknown or own & {n for n, _ in definition.init}:
        raise ValueError(
            f"neuron {name!r}: a param other than {', '.join(sorted(own))} needs an initial value in init; "
            f"got params {definition.params}, init {definition.init}"
        )
    if clash or not 1 <= len(definition.states) <= MAX_STATES or len(definition.params) > MAX_PARAMS:
        raise ValueError(
            f"neuron {name!r}: 1 to {MAX_STATES} states and at most {MAX_PARAMS} params, none named i, k, m, "
            f"t0, d0, g0 or pad_...; got states {definition.states}, params {definition.params}"
        )
    for fn in (definition.charge, definition.fire):
        called = {name for name in fn.__code__.co_names if isinstance(fn.__globals__.get(name), types.FunctionType)}
        check_scalar(fn, extra={"spike", "reset", "amplitude"} | called)
    step_texts(definition, "hard", "threshold")  # raises where the charge is not affine in i
    NEURONS[name] = definition


@dataclass(frozen=True)
class StepTexts:
    """The emitted functions of one model, reset and amplitude (asgl.adjoint), each a tuple in and out:

    charge(i, *states, *params) -> charged states
    fire(*charged, *params, k, m) -> (output, *new states)
    charge_adjoint(*states, *params, *charged adjoints) -> (input, *states, *params adjoints)
    fire_adjoint(*charged, *params, k, m, output adjoint, *state adjoints) -> (*charged, *params, k adjoints)

    ``padded``: states and params padded to MAX_STATES and MAX_PARAMS (pad states pass through, pad
    adjoints are 0), the fixed width of the kernels."""

    charge: Emitted
    fire: Emitted
    charge_adjoint: Emitted
    fire_adjoint: Emitted
    spike_argument: Emitted  # (*charged, *params) -> (x,): the argument of the fire's one spike
    fire_given: Emitted  # fire and fire_adjoint with the spike's value and derivatives as arguments sv, sdx, sdk
    fire_adjoint_given: Emitted


def summed_gradients(model: NeuronDef, spec: SpikeSpec, needs: tuple[bool, ...]) -> tuple[tuple[bool, ...], ...]:
    """What a kernel sums, from ``needs`` (autograd's flags: the width's, then each param's): (the charge
    adjoint's four padded params), (the fire adjoint's four padded params, then the width), each where
    autograd needs it and the adjoint is not zero whatever the inputs."""
    texts = step_texts(model, spec.reset, spec.amplitude, padded=True)
    fire, charge = texts.fire_adjoint.zero[MAX_STATES:], texts.charge_adjoint.zero[1 + MAX_STATES :]
    wanted = [*needs[1:], *[False] * (MAX_PARAMS + 1 - len(needs)), needs[0]]
    return tuple(w and not z for w, z in zip(wanted, charge)), tuple(w and not z for w, z in zip(wanted, fire))


def _pads(names: tuple[str, ...], width: int, prefix: str) -> tuple[str, ...]:
    return tuple(f"pad_{prefix}{j}" for j in range(len(names), width))


@functools.cache
def step_texts(model: NeuronDef, reset: str, amplitude: str, padded: bool = False) -> StepTexts:
    """The forward and adjoint texts of ``model`` with this reset and amplitude (see :class:`StepTexts`)."""
    states = model.states + (_pads(model.states, MAX_STATES, "s") if padded else ())
    params = model.params + (_pads(model.params, MAX_PARAMS, "p") if padded else ())
    pad_states = list(states[len(model.states) :])
    graphs = traced(model, reset, amplitude)
    graph, outputs = graphs.charge[0], [*graphs.charge[1], *pad_states]
    charge = emit_forward("charge", graph, outputs, ("i", *states, *params))
    charge_adjoint = emit_adjoint("charge_adjoint", graph, outputs, (*states, *params), ("i", *states, *params))
    graph, outputs = graphs.fire[0], [*graphs.fire[1], *pad_states]
    fire = emit_forward("fire", graph, outputs, (*states, *params, "k", "m"))
    fire_adjoint = emit_adjoint("fire_adjoint", graph, outputs, (*states, *params, "k", "m"), (*states, *params, "k"))
    spikes = [args[0] for op, args in graph.nodes if op == "spike"]
    if len(spikes) != 1:
        raise ValueError(f"a neuron's fire step calls spike once; {model.fire.__name__} calls it {len(spikes)} times")
    argument = emit_forward("spike_argument", graph, spikes, (*states, *params))
    fire_given = emit_forward("fire_given", graph, outputs, (*states, *params, *GIVEN_SPIKE), given_spike=True)
    wrt = (*states, *params, "k")
    adjoint_given = emit_adjoint("fire_adjoint_given", graph, outputs, (*states, *params, *GIVEN_SPIKE), wrt, True)
    return StepTexts(charge, fire, charge_adjoint, fire_adjoint, argument, fire_given, adjoint_given)


def _typed(fn: Callable) -> Callable:
    """``fn`` whose tensor results (one, or a tuple) take the dtype of its first argument (a where of two
    numbers is float32)."""

    def typed(x: Tensor, *rest):
        result = fn(x, *rest)
        cast = [
            r.to(x.dtype) if isinstance(r, Tensor) else r for r in (result if isinstance(result, tuple) else (result,))
        ]
        return tuple(cast) if isinstance(result, tuple) else cast[0]

    return typed


def torch_spike(spec: SpikeSpec) -> dict[str, Callable]:
    """:func:`spike_texts` of ``spec`` on tensors."""
    family = TORCH | {"family_step": spec.surrogate.step, "family_density": spec.surrogate.density}
    return {name: _typed(rebind(fn, family)) for name, fn in spike_texts(spec).items()}


class TorchStep(NamedTuple):
    """:func:`step_texts` and the spike of one call as functions on tensors; ``spike_terms(x, k, m)``: the
    spike's value and its derivatives by x and k together (:func:`spike_terms_text`)."""

    charge: Callable
    fire: Callable
    charge_adjoint: Callable
    spike_argument: Callable
    fire_given: Callable
    fire_adjoint_given: Callable
    spike_terms: Callable


@functools.cache
def spike_terms_text(spec: SpikeSpec) -> Emitted:
    """:func:`spike_terms` for ``spec`` traced with the family's F and f: one text in which what the value and
    the two derivatives share (k x, the density) is computed once (eager torch would compute it each time)."""
    family = {"family_step": spec.surrogate.F, "family_density": spec.surrogate.f}
    graph, outputs = trace(spike_terms, ("x", "k", "m"), family | spike_texts(spec))
    return emit_forward("spike_terms", graph, outputs, ("x", "k", "m"))


@functools.cache
def torch_step(model: NeuronDef, spec: SpikeSpec) -> TorchStep:
    """The generated texts of ``model`` (unpadded) and the spike of ``spec``, on tensors."""
    spike = torch_spike(spec)
    t = step_texts(model, spec.reset, spec.amplitude)
    texts = (t.charge, t.fire, t.charge_adjoint, t.spike_argument, t.fire_given, t.fire_adjoint_given)
    terms = _typed(define(spike_terms_text(spec), TORCH))
    return TorchStep(*(define(e, TORCH | spike) for e in texts), terms)


def make_spike(spec: SpikeSpec, k: Tensor, mask: Tensor | None) -> SpikeFn:
    """The spike function x -> s of ``spec.spike`` under autograd; ``mask`` [B, ...] bool is used by ``asgl``
    only."""
    surrogate, width_grad = spec.surrogate, spec.width_grad
    if spec.spike == "heaviside":
        return heaviside
    if spec.spike == "sg":  # no analog elements, so width_grad = "analog" means no width gradient
        return lambda x: sg_spike(x, k.detach() if width_grad == "analog" else k, surrogate)
    if spec.spike == "analog":
        return lambda x: surrogate.H(x, k)
    return lambda x: hybrid_spike(x, k, surrogate, mask, width_grad)


def reference_step(
    model: NeuronDef, current: Tensor, state: State, params: tuple[Tensor, ...], spike: SpikeFn, spec: SpikeSpec
) -> tuple[Tensor, State]:
    """One step of ``model`` on tensors under autograd, the operations of its definition one by one (its traced
    graphs, evaluated): current, states [B, ...] -> (output [B, ...], new states)."""
    graphs = traced(model, spec.reset, spec.amplitude)
    values = dict(zip(("i", *model.states, *model.params), (current, *state, *params)))
    charged = evaluate(*graphs.charge, values, TORCH)
    values = dict(zip((*model.states, *model.params), (*charged, *params)))
    out, *new_state = evaluate(*graphs.fire, values, TORCH | {"spike": spike})
    return out, tuple(new_state)


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
    state = tuple(torch.zeros_like(current[0]) for _ in model.states)
    outs = []
    for t in range(current.shape[0]):
        spike = make_spike(spec, k, None if mask is None else mask[t])
        out, state = reference_step(model, current[t], state, params, spike, spec)
        outs.append(out)
    return torch.stack(outs)


MaskOf = Callable[[int], "Tensor | None"]


def fused_forward(
    fns: TorchStep, n_states: int, current: Tensor, params: tuple[Tensor, ...], k: Tensor, mask_of: MaskOf
) -> tuple[Tensor, list[Tensor]]:
    """The forward of :func:`torch_step`'s functions ``fns``: current [T, B, ...] -> (output [T, B, ...], the
    charged states [T, B, ...] of every step, what the backward needs)."""
    charge, fire = fns.charge, fns.fire
    state = tuple(torch.zeros_like(current[0]) for _ in range(n_states))
    outs, saved = torch.empty_like(current), [torch.empty_like(current) for _ in range(n_states)]
    for t in range(current.shape[0]):  # written step by step: torch.stack of the steps costs a slow cat
        charged = charge(current[t], *state, *params)
        for store, value in zip(saved, charged):
            store[t] = value
        outs[t], *state = fire(*charged, *params, k, mask_of(t))
    return outs, saved


def _add(total: Tensor | None, grad: Tensor | float, shape: torch.Size) -> Tensor | None:
    """``total`` + ``grad`` reduced to ``shape`` (a 0 adjoint, a number, adds nothing)."""
    if not isinstance(grad, Tensor):
        return total
    grad = grad.sum_to_size(shape) if grad.shape != shape else grad
    return grad if total is None else total + grad


def fused_backward(
    fns: TorchStep, saved: list[Tensor], grad_out: Tensor, params: tuple[Tensor, ...], k: Tensor, mask_of: MaskOf
) -> tuple[Tensor, list[Tensor | None], Tensor | None]:
    """The reverse pass over T: (input gradient [T, B, ...], the params' and k's gradients in their shapes, None
    where zero). Step t computes its spike's value and derivatives from its charged states, then its new
    states; the adjoint of step t+1's charge (which needs those states) gives the input gradient of step t+1
    and the state adjoints of step t, and the adjoint of step t's fire the adjoints of its charged states."""
    n = len(saved)
    grad_in = torch.empty_like(grad_out)  # every step written by through_charge
    sums: list[Tensor | None] = [None] * (len(params) + 1)
    shapes = [p.shape for p in params] + [k.shape]

    def through_charge(t: int, state, d_charged) -> list:
        """The adjoint of step t's charge from its states before: stores the input gradient of step t, adds up
        the params' gradients, returns the adjoints of those states."""
        d_in, *rest = fns.charge_adjoint(*state, *params, *d_charged)
        grad_in[t] = d_in  # a tensor, or the number 0 where the input current passes no gradient
        sums[:-1] = [_add(total, g, shape) for total, g, shape in zip(sums[:-1], rest[n:], shapes)]
        return rest[:n]

    d_charged = None  # the adjoints of step t+1's charged states
    for t in range(grad_out.shape[0] - 1, -1, -1):
        charged, m = [s[t] for s in saved], mask_of(t)
        (x,) = fns.spike_argument(*charged, *params)
        spike = fns.spike_terms(x, k, m)
        d_state = [0.0] * n
        if d_charged is not None:
            d_state = through_charge(t + 1, fns.fire_given(*charged, *params, *spike)[1:], d_charged)
        grads = fns.fire_adjoint_given(*charged, *params, *spike, grad_out[t], *d_state)
        d_charged = grads[:n]
        sums = [_add(total, g, shape) for total, g, shape in zip(sums, grads[n:], shapes)]
    if d_charged is not None:
        through_charge(0, [torch.zeros_like(grad_out[0])] * n, d_charged)
    return grad_in, sums[:-1], sums[-1]


class _FusedNeuron(torch.autograd.Function):
    """:func:`fused_forward` without a graph, saving the charged states; :func:`fused_backward`. The contract
    of every backend's autograd function (asgl.kernels.lif_op relies on it): forward(ctx, model, draw, spec,
    current, k, *params) saves (k, *params, *saved) and sets ctx.model, ctx.draw and ctx.spec, which is all
    the backward reads besides ``needs_input_grad``."""

    @staticmethod
    def forward(ctx, model: NeuronDef, draw: MaskDraw | None, spec: SpikeSpec, current, k, *params):
        fns = torch_step(model, spec)
        out, saved = fused_forward(fns, len(model.states), current, params, k, _mask_of(draw, current))
        ctx.save_for_backward(k, *params, *saved)
        ctx.model, ctx.draw, ctx.spec = model, draw, spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        k, *rest = ctx.saved_tensors
        n = len(ctx.model.params)
        params, saved, mask_of = tuple(rest[:n]), rest[n:], _mask_of(ctx.draw, grad_out)
        fns = torch_step(ctx.model, ctx.spec)
        grad_in, grad_params, grad_k = fused_backward(fns, saved, grad_out.contiguous(), params, k, mask_of)
        grad_params = [_zero_for(g, p, need) for g, p, need in zip(grad_params, params, ctx.needs_input_grad[5:])]
        return None, None, None, grad_in, _zero_for(grad_k, k, ctx.needs_input_grad[4]), *grad_params


def _zero_for(grad: Tensor | None, like: Tensor, needed: bool) -> Tensor | None:
    if not needed:
        return None
    return torch.zeros_like(like) if grad is None else grad.reshape(like.shape)


def _mask_of(draw: MaskDraw | None, like: Tensor) -> MaskOf:
    """t -> the bool mask [B, ...] of step t of ``like`` [T, B, ...] under ``draw`` (None without one)."""
    return lambda t: None if draw is None else step_mask_of(draw, t, like.shape[1:], like.device)


def neuron_fused(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, draw: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """The fused path of any model, same contract as :func:`neuron_stepwise` (the mask as a draw only)."""
    return _FusedNeuron.apply(model, draw, spec, current, k, *params)
