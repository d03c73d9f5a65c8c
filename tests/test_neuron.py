"""The LIF neuron (docs/method.md#the-lif-neuron): recursion by hand, eval is binary, fused == stepwise, gradcheck."""

import itertools
import math

import pytest
import torch

from asgl.neuron import BACKENDS, LIF, lif_fused, lif_stepwise, neuron_from_config, set_mask_generator, set_noise_prob
from asgl.spike import SpikeSpec
from asgl.surrogates import SURROGATES, SurrogateWidth

SIG = SURROGATES["sigmoid"]


def run_lif(inputs, spike, theta=1.0, gamma=0.5, reset="hard", amplitude="threshold", k=1.0, backend=lif_stepwise):
    current = torch.tensor(inputs, dtype=torch.float64).reshape(-1, 1)
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    spec = SpikeSpec(SIG, spike, reset, amplitude)
    return backend(current, t(gamma), t(theta), t(k), None, spec).flatten().tolist()


@pytest.mark.parametrize("backend", [lif_stepwise, lif_fused])
def test_three_steps_by_hand(backend):
    # theta = 2, gamma = 0.5, hard reset, amplitude theta, pure spikes:
    # t0 u = 1.5 (< 2, no spike, state 1.5); t1 u = 0.75 + 1.5 = 2.25 (spike, out 2, state 0); t2 u = 0.2
    assert run_lif([1.5, 1.5, 0.2], "sg", theta=2.0, backend=backend) == [0.0, 2.0, 0.0]
    # u = theta exactly spikes (Θ(0) = 1): t1 u = 0.5*0.6 + 0.7 = 1.0
    assert run_lif([0.6, 0.7, 1.2], "sg", backend=backend) == pytest.approx([0.0, 1.0, 1.0])
    # soft reset subtracts theta: t0 u 1.5 -> state 0.5; t1 u 0.45; t2 u 0.225 + 1 = 1.225
    assert run_lif([1.5, 0.2, 1.0], "sg", reset="soft", backend=backend) == [1.0, 0.0, 1.0]
    # unit amplitude
    assert run_lif([1.5, 1.5, 0.2], "sg", theta=2.0, amplitude="unit", backend=backend) == [0.0, 1.0, 0.0]
    # analog elements are partly reset with the mixed s: t0 u = 1, s = σ(0) = ½, state ½;
    # t1 u = 0.25 + 0.75 = 1, s = ½, state ½; t2 u = 0.25 + 2 = 2.25, s = σ(1.25)
    sig = 1 / (1 + math.exp(-1.25))
    assert run_lif([1.0, 0.75, 2.0], "analog", backend=backend) == pytest.approx([0.5, 0.5, sig])


# θ = 1.5, γ = 0.5, unit amplitude; neuron 0 gets I = 2.5, 1.25, 1, neuron 1 gets I = 1, 1, 1.
# hard reset (ũ = 0 after a spike):
#   n0: t0 u = 2.5 spike, ũ 0;  t1 u = 1.25 none, ũ 1.25;  t2 u = 0.625 + 1 = 1.625 spike
#   n1: t0 u = 1 none, ũ 1;  t1 u = 0.5 + 1 = 1.5 = θ spike, ũ 0;  t2 u = 1 none
# soft reset (ũ = u − θ after a spike):
#   n0: t0 u = 2.5 spike, ũ 1;  t1 u = 0.5 + 1.25 = 1.75 spike, ũ 0.25;  t2 u = 0.125 + 1 = 1.125 none
#   n1: as with the hard reset (a spike at u = θ leaves ũ = 0 either way)
# Every value is a binary fraction, so each backend computes them exactly, in float32 too.
RESET_INPUT = [[2.5, 1.0], [1.25, 1.0], [1.0, 1.0]]
RESET_SPIKES = {"hard": [[1, 0], [0, 1], [1, 0]], "soft": [[1, 0], [1, 1], [0, 0]]}


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_reset_by_hand_on_every_backend(backend, reset):
    device = "cuda" if backend == "triton" else "cpu"
    width = SurrogateWidth((2,), width=1.0, learnable=False)
    settings = dict(spike="sg", decay=0.5, learn_decay=False, threshold=1.5, amplitude="unit")
    layer = LIF(width, **settings, reset=reset, backend=backend)
    current = torch.tensor(RESET_INPUT, device=device).reshape(3, 1, 2)
    out = layer.to(device)(current)
    assert out.reshape(3, 2).tolist() == RESET_SPIKES[reset]


SURROGATE_KEYS = {"family", "width", "learnable", "granularity", "storage"}


def make_lif(**overrides):
    """A LIF layer over features (4, 3, 3); surrogate keys go to its width, the others to the layer."""
    settings = dict(spike="asgl", decay=0.6, threshold=0.8, learn_threshold=True, family="sigmoid", width=2.0)
    settings |= overrides
    width = SurrogateWidth((4, 3, 3), **{k: settings.pop(k) for k in SURROGATE_KEYS & settings.keys()})
    return LIF(width, **settings, noise_prob=0.3)


def test_eval_output_is_binary():
    layer = make_lif(amplitude="unit").eval()
    out = layer(torch.randn(6, 2, 4, 3, 3) * 2)
    assert set(out.unique().tolist()) <= {0.0, 1.0} and out.sum() > 0


def _grads(layer, current):
    current = current.clone().requires_grad_()
    out = layer(current)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    if out.requires_grad:  # heaviside with unit amplitude has no differentiable path at all
        (out * weights).sum().backward()
    named = {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in layer.named_parameters()}
    for p in layer.parameters():
        p.grad = None
    grad_in = torch.zeros_like(current) if current.grad is None else current.grad
    return out.detach(), grad_in, named


CASES = list(
    itertools.product(
        ["asgl", "sg", "analog", "heaviside"],
        ["hard", "soft"],
        ["threshold", "unit"],
        ["layer", "channel", "neuron"],
        ["sigmoid", "rectangle", "triangle"],
    )
)


@pytest.mark.parametrize("spike,reset,amplitude,granularity,family", CASES)
def test_fused_matches_stepwise(spike, reset, amplitude, granularity, family):
    layer = make_lif(reset=reset, amplitude=amplitude, granularity=granularity, family=family).double()
    layer.spike = spike
    current = torch.randn(5, 3, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 1.5
    results = {}
    for backend in ("stepwise", "fused"):
        layer.backend = backend
        set_mask_generator(layer, torch.Generator().manual_seed(11))
        results[backend] = _grads(layer, current)
    (o1, gi1, p1), (o2, gi2, p2) = results["stepwise"], results["fused"]
    assert torch.equal(o1, o2)  # identical spikes
    torch.testing.assert_close(gi2, gi1)
    assert p1.keys() == p2.keys() == {"width.param", "decay_logit", "threshold"}
    for name in p1:
        torch.testing.assert_close(p2[name], p1[name], msg=name)
    if spike != "heaviside":
        assert p1["width.param"].abs().sum() > 0


def test_fused_width_grad_analog_only_matches_stepwise():
    layer = make_lif(width_grad="analog").double()
    current = torch.randn(4, 2, 4, 3, 3, dtype=torch.float64)
    grads = {}
    for backend in ("stepwise", "fused"):
        layer.backend = backend
        set_mask_generator(layer, torch.Generator().manual_seed(5))
        grads[backend] = _grads(layer, current)[2]["width.param"]
    torch.testing.assert_close(grads["fused"], grads["stepwise"])


@pytest.mark.parametrize("family", ["sigmoid", "tanh", "arctan", "rectangle", "triangle"])
@pytest.mark.parametrize("reset,amplitude", [("hard", "threshold"), ("soft", "unit")])
def test_fused_gradcheck_analog(family, reset, amplitude):
    """At p = 1 the forward is smooth, so finite differences check the whole fused backward."""
    g = torch.Generator().manual_seed(0)
    current = (torch.randn(4, 2, 3, dtype=torch.float64, generator=g) * 1.5).requires_grad_()
    gamma = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    k = torch.full((3,), 0.9, dtype=torch.float64, requires_grad=True)
    spec = SpikeSpec(SURROGATES[family], "analog", reset, amplitude)
    fn = lambda c, gm, th, kk: lif_fused(c, gm, th, kk, None, spec)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (current, gamma, theta, k), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", ["fused", "cpu_kernel"])
def test_fast_backends_save_only_u(backend):
    """The mask is regenerated from its draw in the backward pass: no mask tensor is saved."""
    pytest.importorskip("numba") if backend == "cpu_kernel" else None
    layer = make_lif()
    layer.backend = backend
    current = torch.randn(8, 2, 4, 3, 3, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(current)
    big = [t for t in saved if t.numel() == current.numel()]
    assert [t.dtype for t in big] == [torch.float32]
    assert all(t.numel() <= 1 for t in saved if t.numel() != current.numel())


def test_seeded_masks_reproduce_and_p_changes_them():
    layer = make_lif(spike="asgl")
    x = torch.randn(3, 2, 4, 3, 3)
    set_mask_generator(layer, torch.Generator().manual_seed(1))
    a = layer(x)
    set_mask_generator(layer, torch.Generator().manual_seed(1))
    b = layer(x)
    assert torch.equal(a, b)
    set_noise_prob(layer, 1.0)
    analog = layer(x)
    assert not torch.equal(a, analog) and ((analog > 0) & (analog < layer.theta())).any()


def test_granularity_shapes_and_parameters():
    assert make_lif(granularity="channel").width.param.shape == (4, 1, 1)
    assert make_lif(granularity="neuron").width.param.shape == (4, 3, 3)
    fixed = LIF(SurrogateWidth((4,), learnable=False), learn_decay=False)
    assert list(fixed.parameters()) == []
    assert fixed.decay().item() == pytest.approx(0.5)
    assert set(dict(fixed.named_buffers())) == {"width.param", "decay_logit", "threshold"}


def test_half_precision_input_keeps_fp32_state():
    layer = make_lif(amplitude="unit")
    x = torch.randn(3, 2, 4, 3, 3)
    out16 = layer.eval()(x.bfloat16())
    assert out16.dtype == torch.bfloat16
    assert torch.equal(out16.float(), layer(x.bfloat16().float()))


def test_learnable_threshold_is_clamped_non_negative():
    layer = make_lif()
    with torch.no_grad():
        layer.threshold.fill_(-1.0)
    assert layer.theta().item() == 0.0


@pytest.mark.parametrize(
    ("settings", "key"),
    [({"reset": "hardd"}, "reset"), ({"spike": "asgll"}, "spike"), ({"width_grad": "some"}, "width_grad")],
)
def test_unknown_settings_are_refused_with_their_name(settings, key):
    with pytest.raises(ValueError, match=f"{key} = "):
        make_lif(**settings)


def test_from_config_gives_the_same_layer_as_the_plain_arguments():
    """The recipe keys and the constructor arguments are one set of names with the same defaults."""
    from asgl.config import LIFConfig, SurrogateConfig

    neuron = LIFConfig(spike="sg", decay=0.7, reset="soft", amplitude="unit", width_grad="analog")
    surrogate = SurrogateConfig(family="triangle", width=3.0, granularity="channel")
    built = neuron_from_config(neuron, surrogate, (4, 3, 3), noise_prob=0.1)
    plain = LIF(
        SurrogateWidth((4, 3, 3), "triangle", 3.0, granularity="channel"),
        spike="sg", decay=0.7, reset="soft", amplitude="unit", width_grad="analog", noise_prob=0.1,
    )  # fmt: skip
    assert built.spec() == plain.spec() and (built.backend, built.noise_prob) == (plain.backend, plain.noise_prob)
    assert built.state_dict().keys() == plain.state_dict().keys()
    for key, value in built.state_dict().items():
        assert torch.equal(value, plain.state_dict()[key]), key
    defaults = neuron_from_config(LIFConfig(), SurrogateConfig(), (4,)), LIF(SurrogateWidth((4,)))
    assert defaults[0].spec() == defaults[1].spec() and defaults[0].backend == defaults[1].backend
    assert {k: v.item() for k, v in defaults[0].state_dict().items()} == {
        k: v.item() for k, v in defaults[1].state_dict().items()
    }
