"""Neuron models (``neuron.model``): LIF and IF (LIF without leak) on every backend, from the recipe to training."""

import os

import pytest
import torch
from lif_cases import inputs

from asgl.config import NeuronConfig, RecipeError, SurrogateConfig
from asgl.engine.checkpoint import load_checkpoint
from asgl.engine.trainer import train
from asgl.neuron import LIF, lif_stepwise, neuron_from_config
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
        monkeypatch.setitem(neuron.BACKENDS, backend, neuron.lif_triton)
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
    run = neuron.BACKENDS.get(backend, neuron.lif_triton)
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
    with pytest.raises(ValueError, match="not a key of neuron model 'if'"):
        NeuronConfig(model="if", decay=0.3)
    recipe = tiny_recipe("neuron.model=if")  # digits_quick sets neuron.decay: dropped with the switch
    assert recipe.neuron.model == "if" and "decay" not in recipe.neuron.model_dump()
    with pytest.raises(RecipeError, match="decay"):
        tiny_recipe("neuron.model=if", "neuron.decay=0.4")
    layer = neuron_from_config(recipe.neuron, SurrogateConfig(), (4,))
    assert layer.model == "if" and split_parameters(torch.nn.Sequential(torch.nn.Linear(2, 2), layer)).neuron


@pytest.mark.parametrize("model", ["lif", "if"])
def test_digits_quick_trains_with_each_model(tiny_recipe, tmp_path, model):
    result = train(tiny_recipe(f"neuron.model={model}"), out_dir=tmp_path)
    state = load_checkpoint(result.run_dir)["model"]
    assert any(key.endswith("decay_logit") for key in state) == (model == "lif")
    assert 0.0 <= result.best_val_acc <= 1.0 and torch.isfinite(torch.tensor(result.test.loss))
