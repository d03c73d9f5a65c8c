"""asgl.adjoint: a scalar function traced once, written back as its forward and its adjoint, against the
function itself and torch.autograd of it (float64 tensors), for every operation of the vocabulary."""

import pytest
import torch

from asgl.adjoint import define, emit_adjoint, emit_forward, evaluate, trace
from asgl.neuron_models import NeuronDef, register_neuron
from asgl.scalar import TORCH, atan, exp, fabs, maximum, minimum, sigmoid, where


def every_operation(a, b, c):
    """Each operation of the vocabulary once, and constants on either side (b > 0 below)."""
    d = sigmoid(a * b) + exp(0.3 * c) - atan(a / b) * 2.0
    e = minimum(d, c) * maximum(a, 0.5 * c) + fabs(a - c) / (1.0 + b)
    return where(a < c, e, 3.0 - d), 1.0 - e * e, b


def inputs(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a, c = (torch.randn(200, generator=g, dtype=torch.float64) for _ in range(2))
    b = torch.rand(200, generator=g, dtype=torch.float64) + 0.5
    return [x.requires_grad_() for x in (a, b, c)]


def test_forward_and_adjoint_text_match_the_function_and_autograd():
    graph, outputs = trace(every_operation, ("a", "b", "c"))
    forward = define(emit_forward("fwd", graph, outputs, ("a", "b", "c")), TORCH)
    adjoint = define(emit_adjoint("adj", graph, outputs, ("a", "b", "c"), ("a", "b", "c")), TORCH)
    args = inputs(0)
    expected = every_operation(*args)  # the function itself, with torch helpers (asgl.scalar's globals)
    for got, ref in zip(forward(*args), expected):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    for got, ref in zip(evaluate(graph, outputs, dict(zip("abc", args)), TORCH), expected):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
    seeds = [torch.linspace(-1, 1, 200, dtype=torch.float64) * (j + 1) for j in range(3)]
    ref_grads = torch.autograd.grad(expected, args, seeds)
    for got, ref in zip(adjoint(*[a.detach() for a in args], *seeds), ref_grads):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_the_spike_becomes_its_value_and_two_derivatives():
    graph, outputs = trace(lambda u, theta: spike(u - theta) * theta, ("u", "theta"))  # noqa: F821
    text = emit_adjoint("adj", graph, outputs, ("u", "theta", "k", "m"), ("u", "theta", "k")).text
    assert "spike_value(t2, k, m)" in text and "spike_dx(t2, k)" in text and "spike_dk(t2, k, m)" in text


def test_control_flow_on_a_traced_value_is_refused():
    def branches(x):
        return x if x > 0 else 0.0

    with pytest.raises(TypeError, match="where"):
        trace(branches, ("x",))


def test_a_charge_whose_derivative_needs_the_input_is_refused():
    """The kernels take the adjoint of a charge without its input current: a charge not affine in i."""

    def squared(i, v, theta):
        return v + i * i

    def fire(u, theta):
        s = spike(u - theta)  # noqa: F821
        return s, u - u * s

    with pytest.raises(ValueError, match="depends on i"):
        register_neuron("squared", NeuronDef(("v",), ("theta",), squared, fire))
