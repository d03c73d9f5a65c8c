"""Neuron models (``neuron.model``): LIF, IF (LIF without leak) and ALIF (adaptive threshold) on every backend,
from the recipe to training."""

import json
import os
import re

import pytest
import torch
from lif_cases import inputs, on_lif

from asgl.config import ALIFConfig, IFConfig, RecipeError, SurrogateConfig
from asgl.engine.checkpoint import load_checkpoint
from asgl.engine.trainer import train
from asgl.neuron import LIF, lif_stepwise, neuron_from_config
from asgl.neuron_models import NEURONS, neuron_fused, neuron_stepwise
from asgl.optim import split_parameters
from asgl.spike import MaskDraw, SpikeSpec
from asgl.surrogates import SURROGATES, SurrogateWidth

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported


def backends() -> list[str]:
    from asgl import neuron

    names = [name for name in neuron.BACKENDS if name != "stepwise"]
    return [n for n in names if n != "cpu_kernel" or neuron.cpu_kernel() is not None] + ["triton"] * (
        "triton" not in names
    )


@pytest.mark.parametrize("backend", backends())
def test_if_integrates_without_leak_by_hand(backend, monkeypatch):
    """Constant input 0.4, θ = 1, hard reset, binary spikes: u = 0.4, 0.8, 1.2 -> spike, reset to 0, again.
    A leak of any γ < 1 gives u = 0.4 (1 + γ + γ²) < 1.2 at the third step, and a later spike."""
    from asgl import neuron

    if backend not in neuron.BACKENDS:  # Triton's interpreter on CPU
        monkeypatch.setitem(neuron.BACKENDS, backend, neuron.run_triton)
    layer = LIF(SurrogateWidth((2,)), model="if", backend=backend, amplitude="unit").eval()
    current = torch.full((6, 1, 2), 0.4)
    spikes = layer(current)[:, 0, 0].tolist()
    assert spikes == [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    assert "decay_logit" not in dict(layer.named_parameters()) and float(layer.decay()) == 1.0


@pytest.mark.parametrize("backend", backends())
def test_if_matches_stepwise_with_the_asgl_spike(backend):
    """IF's training spike and gradients (threshold, width, input) on every backend against the reference."""
    from asgl import neuron

    current, _, theta, k = inputs(())
    args = [current, torch.tensor(1.0), theta, k]  # γ = 1 without a gradient: the IF layer has no decay
    spec = SpikeSpec(SURROGATES["sigmoid"], "asgl", "soft", "threshold", "all")
    draw = MaskDraw(0.3, seed=2)
    run = on_lif(neuron.BACKENDS.get(backend, neuron.run_triton))
    results = []
    for fn in (lif_stepwise, run):
        out = fn(*args, draw, spec)
        weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        results.append((out.detach(), torch.autograd.grad((out * weights).sum(), [current, theta, k])))
    (ref_out, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    assert ((ref_out == 0) | (ref_out == theta)).float().mean() > 0.5  # mostly binary spikes
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4)
        assert ref.abs().sum() > 0


def test_model_keys_are_checked_and_a_model_switch_drops_the_leak_keys(tiny_recipe):
    with pytest.raises(ValueError, match="decay"):
        IFConfig(decay=0.3)
    recipe = tiny_recipe("neuron.model=if")  # digits_quick sets neuron.decay: dropped with the switch
    assert recipe.neuron.model == "if" and "decay" not in recipe.neuron.model_dump()
    with pytest.raises(RecipeError, match="decay"):
        tiny_recipe("neuron.model=if", "neuron.decay=0.4")
    layer = neuron_from_config(recipe.neuron, SurrogateConfig(), (4,))
    assert layer.model == "if" and split_parameters(torch.nn.Sequential(torch.nn.Linear(2, 2), layer)).neuron


@pytest.mark.parametrize("model", ["lif", "if", "alif"])
def test_digits_quick_trains_with_each_model(tiny_recipe, tmp_path, model):
    result = train(tiny_recipe(f"neuron.model={model}"), out_dir=tmp_path)
    state = load_checkpoint(result.run_dir)["model"]
    assert any(key.endswith("decay_logit") for key in state) == (model != "if")
    assert any(key.endswith("adapt_logit") for key in state) == (model == "alif")
    assert 0.0 <= result.best_val_acc <= 1.0 and torch.isfinite(torch.tensor(result.test.loss))
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert ("rho" in record and "beta" in record) == (model == "alif")  # the model's own parameters, per layer
    if model == "alif":  # sigmoid of the stored logit, as the step uses it
        logits = {k: v for k, v in state.items() if k.endswith("adapt_logit")}
        assert record["rho"] == {
            k.removesuffix(".adapt_logit"): pytest.approx(float(torch.sigmoid(v))) for k, v in logits.items()
        }


ALL_BACKENDS = ["stepwise", "fused", "cpu_kernel", "triton", "compiled"]


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_alif_threshold_adapts_by_hand(backend, monkeypatch):
    """I = 0.8, θ = 1, γ = ρ = ½, β = ½, hard reset, binary spikes; threshold θ + β a, a ← ρ a + s:
    t=0 u=0.8; t=1 u=1.2 spike (a=1); t=2 thr 1.5, u=0.8; t=3 thr 1.25, u=1.2 (no spike: LIF would fire);
    t=4 thr 1.125, u=1.4 spike (a=1.125); t=5 thr 1.5625, u=0.8. Every backend runs it, each from
    the one definition (the kernels compile its generated texts)."""
    backend = with_triton(monkeypatch, backend)
    layer = LIF(SurrogateWidth((2,)), model="alif", decay=0.5, rho=0.5, beta=0.5, amplitude="unit", backend=backend)
    spikes = layer.eval()(torch.full((6, 1, 2), 0.8))[:, 0, 0].tolist()
    assert spikes == [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    leaky = LIF(SurrogateWidth((2,)), model="lif", decay=0.5, amplitude="unit", backend="fused").eval()
    assert leaky(torch.full((6, 1, 2), 0.8))[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def alif_inputs(dtype=torch.float32):
    """current [T, B, N] and the params (γ, θ, β, ρ) and width k, all requiring gradients."""
    torch.manual_seed(3)
    current = (torch.rand(7, 3, 5, dtype=dtype) * 1.6).requires_grad_()
    params = [torch.tensor(v, dtype=dtype, requires_grad=True) for v in (0.7, 0.9, 0.4, 0.8)]
    return current, params, torch.tensor(2.5, dtype=dtype, requires_grad=True)


@pytest.mark.parametrize("backend", ALL_BACKENDS[1:])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("spike", ["asgl", "sg"])
def test_alif_matches_stepwise_on_every_backend(reset, spike, backend):
    """Spikes and the gradients of input, γ, θ, β, ρ and width: each backend against the reference."""
    from asgl import neuron

    current, params, k = alif_inputs()
    spec = SpikeSpec(SURROGATES["sigmoid"], spike, reset, "threshold", "all")
    draw = MaskDraw(0.3, seed=2) if spike == "asgl" else None
    results = []
    for run in (neuron_stepwise, neuron.BACKENDS.get(backend, neuron.run_triton)):
        out = run(NEURONS["alif"], current, tuple(params), k, draw, spec)
        weights = torch.linspace(-1, 1, out.numel()).reshape(out.shape)
        results.append((out.detach(), torch.autograd.grad((out * weights).sum(), [current, *params, k])))
    (ref_out, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref_out)
    assert (ref_out > 0).float().mean() > 0.1
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-5)
        assert ref.abs().sum() > 0


def test_alif_fused_gradient_matches_finite_differences():
    """The fused backward (step-by-step vector-Jacobian products) against finite differences, with the smooth
    analog spike so that the loss is differentiable."""
    current, params, k = alif_inputs(torch.float64)
    spec = SpikeSpec(SURROGATES["sigmoid"], "analog", "soft", "threshold", "all")

    def run(current, *params_and_k):
        return neuron_fused(NEURONS["alif"], current, params_and_k[:4], params_and_k[4], None, spec)

    assert torch.autograd.gradcheck(run, (current, *params, k))


def test_alif_keys_are_its_own(tiny_recipe):
    recipe = tiny_recipe("neuron.model=alif", "neuron.beta=0.3", "neuron.learn_rho=false")
    assert isinstance(recipe.neuron, ALIFConfig) and recipe.neuron.decay == 0.5
    layer = neuron_from_config(recipe.neuron, SurrogateConfig(), (4,))
    assert float(layer.beta) == pytest.approx(0.3) and "adapt_logit" not in dict(layer.named_parameters())
    with pytest.raises(RecipeError, match="neuron.beta: not a key of neuron model 'lif'"):
        tiny_recipe("neuron.beta=0.3")
    with pytest.raises(RecipeError, match="unknown neuron model"):
        tiny_recipe("neuron.model=adaptive")


# The toy neuron (self-inhibition): u = v + I − r;  s = spike(u − θ);  v = u (1 − s);  r ← λ r + s, with its own
# learnable λ ("inhibition", initially ½). Two states, a parameter the layer does not know: registered from here.
def toy_charge(i, v, r, theta, inhibition):
    return v + i - r, r


def toy_fire(u, r, theta, inhibition):
    s = spike(u - theta)  # noqa: F821 - bound per call
    return s, u * (1.0 - s), inhibition * r + s


@pytest.fixture
def toy_neuron():
    from asgl.neuron_models import NEURONS, NeuronDef, register_neuron

    register_neuron("toy", NeuronDef(("v", "r"), ("theta", "inhibition"), toy_charge, toy_fire, (("inhibition", 0.5),)))
    yield "toy"
    del NEURONS["toy"]


def with_triton(monkeypatch, backend: str) -> str:
    """``backend``, with the Triton backend registered where CUDA is missing (its interpreter runs it)."""
    from asgl import neuron

    if backend == "triton" and backend not in neuron.BACKENDS:
        monkeypatch.setitem(neuron.BACKENDS, backend, neuron.run_triton)
    return backend


def assert_trains_as_on_stepwise(model: str, backend: str, **settings) -> None:
    """One training step of a ``model`` layer (features (3,), its own parameter ``inhibition``) on ``backend``
    and on stepwise with the same masks: the output and the gradients of the input, the width and that
    parameter agree."""
    results = []
    for name in ("stepwise", backend):
        layer = LIF(SurrogateWidth((3,)), model=model, backend=name, noise_prob=0.3, **settings)
        layer.generator = torch.Generator().manual_seed(6)
        current = (torch.rand(6, 2, 3, generator=torch.Generator().manual_seed(2)) * 1.5).requires_grad_()
        out = layer(current)
        out.mul(torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), current.grad, layer.width.param.grad, layer.inhibition.grad))
    for got, ref in zip(results[1], results[0]):
        assert ref.abs().sum() > 0
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_a_toy_neuron_defined_here_runs_on_every_backend(toy_neuron, backend, monkeypatch):
    """Registered from this file only. I = 0.6, θ = 1, λ = ½, binary spikes: u = 0.6, 1.2 (spike, r = 1),
    0.6 − 1 = −0.4, −0.4 + 0.6 − 0.5 = −0.3, −0.3 + 0.6 − 0.25 = 0.05, 0.05 + 0.6 − 0.125 = 0.525.
    In training the asgl spike's gradients (input, width, λ) match the stepwise reference."""
    backend = with_triton(monkeypatch, backend)
    layer = LIF(SurrogateWidth((2,)), model=toy_neuron, backend=backend, amplitude="unit", noise_prob=0.3)
    assert layer.eval()(torch.full((6, 1, 2), 0.6))[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert_trains_as_on_stepwise(toy_neuron, backend, amplitude="unit")


@pytest.mark.parametrize("backend", ["fused", "cpu_kernel", "triton"])
def test_the_model_added_in_the_docs_runs_as_written(backend, monkeypatch):
    """docs/method.md's example, executed from the page: registered, it trains on the backend as on stepwise
    (same masks; gradients of the input, the width and its own parameter)."""
    from pathlib import Path

    from asgl.neuron_models import NEURONS

    page = (Path(__file__).resolve().parents[1] / "docs" / "method.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", page, re.S) if "register_neuron(" in b)
    exec(block, {})
    try:
        assert_trains_as_on_stepwise("inhibited", with_triton(monkeypatch, backend))
    finally:
        NEURONS.pop("inhibited", None)
