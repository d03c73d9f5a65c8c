"""The recurrent SHD network: weight count, shapes, gradients, and the step loop against the LIF backends."""

from __future__ import annotations

import torch

from asgl.builders import build_model
from asgl.config import Recipe
from asgl.data import DataInfo
from asgl.models import count_parameters
from asgl.models.recurrent import lif_recurrent
from asgl.neuron import set_mask_generator


def recipe(**model) -> Recipe:
    return Recipe.model_validate(
        {
            "model": {"name": "recurrent_snn", **model},
            "neuron": {"norm": "none"},
            "noise": {"prob": 0.3},
            "train": {"time_steps": 6},
        }
    )


SHD = DataInfo("sequence", 700, (700,), 20, 6)


def test_shd_net_has_230400_weights():
    model = build_model(recipe(), SHD)
    assert count_parameters(model) == 700 * 240 + 240 * 240 + 240 * 20 == 230_400


def test_feedforward_variant_drops_the_recurrent_weights():
    model = build_model(recipe(recurrent=False), SHD)
    assert count_parameters(model) == 700 * 240 + 240 * 20


def test_forward_shapes_and_backward_reaches_every_parameter():
    torch.manual_seed(0)
    info = DataInfo("sequence", 16, (16,), 5, 6)
    model = build_model(recipe(hidden=12), info)
    x = torch.rand(3, 6, 16) * 4
    logits = model(x)
    assert logits.shape == (6, 3, 5)
    logits.square().mean().backward()
    names = [name for name, _ in model.named_parameters()]
    assert any(n.startswith("lif.width") for n in names) and "lif.decay_logit" in names
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.recurrent.weight.grad.abs().sum() > 0


def test_eval_spikes_are_binary():
    info = DataInfo("sequence", 16, (16,), 5, 6)
    model = build_model(recipe(hidden=12), info).eval()
    current = model.input(torch.rand(6, 3, 16) * 4)
    out = lif_recurrent(model.lif, current, model.recurrent)
    theta = model.lif.theta()
    assert set(out.unique().tolist()) <= {0.0, float(theta)}
    assert (out > 0).any()


def test_step_loop_equals_the_fused_lif_without_recurrence():
    """With W_rec = 0 the step loop must reproduce the LIF module's own (fused) path: same masks, outputs, grads."""
    info = DataInfo("sequence", 10, (10,), 4, 6)
    model = build_model(recipe(hidden=8), info).train()
    torch.nn.init.zeros_(model.recurrent.weight)
    model.lif.backend = "fused"  # same float operations as the step loop, so equal to the bit
    current = (torch.randn(6, 2, 8) * 2).requires_grad_()
    results = []
    for run in (lambda c: lif_recurrent(model.lif, c, model.recurrent), model.lif):
        set_mask_generator(model, torch.Generator().manual_seed(5))
        model.zero_grad()
        c = current.detach().clone().requires_grad_()
        out = run(c)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), c.grad, model.lif.decay_logit.grad.clone()))
    (out_a, gx_a, gd_a), (out_b, gx_b, gd_b) = results
    assert torch.equal(out_a, out_b)
    torch.testing.assert_close(gx_a, gx_b)
    torch.testing.assert_close(gd_a, gd_b)


def test_recurrent_alif_network_trains():
    """The SHD-style recurrent network with adaptive-threshold neurons learns a tiny two-class task (which half of
    the inputs fires), and its adaptation decay gets gradients: loss down by half on a fixed batch."""
    torch.manual_seed(0)
    info = DataInfo("sequence", 8, (8,), 2, 6)
    r = Recipe.model_validate(
        {
            "model": {"name": "recurrent_snn", "hidden": 16},
            "neuron": {"model": "alif", "norm": "none", "beta": 0.3},
            "train": {"time_steps": 6},
        }
    )
    model = build_model(r, info).train()
    assert model.lif.model == "alif" and model.lif.adapt_logit.requires_grad
    y = torch.arange(16) % 2
    x = torch.zeros(16, 6, 8)
    x[y == 0, :, :4], x[y == 1, :, 4:] = 2.0, 2.0
    x = x * (torch.rand_like(x) < 0.7)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(x).mean(0), y)
        optimizer.zero_grad()
        loss.backward()
        assert model.lif.adapt_logit.grad is not None and model.lif.adapt_logit.grad.abs() > 0
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
