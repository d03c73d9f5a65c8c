"""The model zoo: parameter counts (docs/method.md#models), LIF layers, tiny forward/backward, init, channels_last."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from asgl.builders import MODELS, build_model
from asgl.config import RecipeError, validate_recipe
from asgl.data import DataInfo
from asgl.models import ModelDataMismatch, count_parameters
from asgl.neuron import LIF, lif_layers, set_noise_prob


def recipe(name: str, **model):
    return validate_recipe({"model": {"name": name, **model}, "train": {"time_steps": 2}})


def cifar(classes: int, size: int = 32) -> DataInfo:
    return DataInfo("static", 3, (size, size), classes, 2)


DVS = DataInfo("event", 2, (48, 48), 10, 2)


@pytest.mark.parametrize(
    "name, info, expected",
    [
        ("resnet18", cifar(10), 11_173_962),
        ("resnet18", cifar(100), 11_220_132),
        ("resnet19", cifar(10), 12_697_728),
        ("resnet19", cifar(100), 12_720_768),
        ("vggsnn2", DVS, 9_268_736),
    ],
)
def test_parameter_counts_match_spec(name, info, expected):
    assert count_parameters(build_model(recipe(name), info)) == expected


@pytest.mark.parametrize(
    "name, info, layers", [("resnet18", cifar(10), 17), ("resnet19", cifar(10), 18), ("vggsnn2", DVS, 8)]
)
def test_every_lif_layer_owns_its_neuron_parameters(name, info, layers):
    model = build_model(recipe(name), info)
    lifs = [layer for _, layer in lif_layers(model)]
    assert len(lifs) == layers
    owned = [{id(p) for p in layer.parameters()} for layer in lifs]
    assert all(owned) and len(set().union(*owned)) == sum(len(o) for o in owned)


@pytest.mark.parametrize(
    "name, info",
    [
        ("resnet18", cifar(10, 16)),
        ("resnet19", cifar(100, 16)),
        ("resnet34", cifar(10, 8)),
        ("vggsnn2", DataInfo("event", 2, (16, 16), 10, 2)),
        ("vgg11", cifar(10)),
        ("vgg13", cifar(200)),
    ],
)
def test_forward_backward_tiny_batch(name, info):
    torch.manual_seed(0)
    model = build_model(recipe(name), info)
    model.train()
    shape = (
        (2, info.time_steps, info.in_channels, *info.input_size) if info.kind == "event" else (2, 3, *info.input_size)
    )
    logits = model(torch.randn(shape))
    assert logits.shape == (2, 2, info.num_classes)
    logits.mean(0).logsumexp(-1).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None
    ]
    neuron = [p.grad for _, layer in lif_layers(model) for p in layer.parameters() if p.requires_grad]
    assert neuron and any(g.abs().sum() > 0 for g in neuron)  # decay and width learn
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == (2, 2, info.num_classes)


def test_registry_names():
    assert {"resnet18", "resnet19", "resnet34", "vggsnn2", "vgg11", "vgg13"} <= set(MODELS)


def test_reference_init_is_normal_half_for_vgg_and_kaiming_by_default():
    torch.manual_seed(0)
    ref = build_model(recipe("vgg11", init="reference"), cifar(10))
    weights = torch.cat([m.weight.flatten() for m in ref.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert abs(weights.mean()) < 0.01 and abs(weights.std() - 0.5) < 0.01
    default = build_model(recipe("vgg11"), cifar(10))
    conv = next(m for m in default.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 512)
    assert abs(conv.weight.std() - math.sqrt(2 / (512 * 9))) < 0.002
    with pytest.raises(RecipeError, match="model.init"):
        build_model(recipe("resnet18", init="reference"), cifar(10))


def test_vgg13_tiny_imagenet_variant_pools_globally():
    convs = [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]
    expected = sum(9 * c_in * c_out + 2 * c_out for c_in, c_out in zip([3] + convs[:-1], convs)) + 512 * 200 + 200
    assert count_parameters(build_model(recipe("vgg13"), cifar(200, 64))) == expected


def test_vgg_rejects_an_input_too_small_for_its_pools():
    with pytest.raises(ModelDataMismatch, match="too small"):
        build_model(recipe("vgg13"), cifar(10, 16))


def test_channels_last_model_matches_the_default_layout():
    torch.manual_seed(0)
    plain = build_model(recipe("resnet18"), cifar(10, 8))
    cl = build_model(recipe("resnet18", channels_last=True), cifar(10, 8))
    cl.load_state_dict(plain.state_dict())
    conv = next(m for m in cl.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for m in (plain, cl):
        set_noise_prob(m, 1.0)  # analog network: continuous outputs, comparable to rounding
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), plain(x), atol=1e-4, rtol=1e-4)


def test_lif_layers_follow_the_recipe():
    model = build_model(
        validate_recipe({"model": {"name": "vggsnn2"}, "neuron": {"spike": "sg"}, "surrogate": {"learnable": False}}),
        DVS,
    )
    layer = next(m for m in model.modules() if isinstance(m, LIF))
    assert layer.spike == "sg"
    assert "param" in dict(layer.width.named_buffers()) and not list(layer.width.parameters())


def test_models_run_under_bf16_autocast_with_fp32_neuron_parameters():
    model = build_model(recipe("resnet18"), cifar(10, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randn(2, 3, 8, 8))
    logits.float().mean(0).logsumexp(-1).sum().backward()
    assert logits.shape == (2, 2, 10)
    for _, layer in lif_layers(model):
        assert all(p.dtype == torch.float32 and torch.isfinite(p.grad).all() for p in layer.parameters())


@pytest.mark.parametrize("name", ["resnet18", "vggsnn2", "digits_convnet"])
def test_convolutional_models_refuse_sequence_data(name):
    from asgl.config import Recipe
    from asgl.models import ModelDataMismatch

    with pytest.raises(ModelDataMismatch, match="sequences"):
        build_model(Recipe(model={"name": name}), DataInfo("sequence", 1, (700,), 20, 4))


@pytest.mark.parametrize(
    ("name", "info", "shape"),
    [
        ("digits_convnet", DataInfo("static", 1, (8, 8), 10, 2), (6, 1, 8, 8)),
        ("recurrent_snn", DataInfo("sequence", 5, (5,), 4, 2), (6, 2, 5)),
    ],
)
def test_dropout_acts_in_training_and_is_identity_in_eval(name, info, shape):
    """The classifier's input is the twin's (same weights, no dropout) with each entry dropped or scaled by 2."""
    spec = {"model": {"name": name, "hidden": 32, "dropout": 0.5}, "noise": {"prob": 0.0}, "train": {"time_steps": 2}}
    torch.manual_seed(0)
    model = build_model(validate_recipe(spec), info)
    spec["model"]["dropout"] = 0.0
    twin = build_model(validate_recipe(spec), info)
    twin.load_state_dict(model.state_dict())
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 3

    def head_input(net: nn.Module) -> torch.Tensor:
        seen = []
        last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
        handle = last.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
        net(x)
        handle.remove()
        return seen[0]

    model.eval(), twin.eval()
    assert torch.equal(head_input(model), head_input(twin))
    model.train(), twin.train()
    dropped, plain = head_input(model), head_input(twin)
    active = plain != 0
    assert active.sum() > 20
    assert ((dropped[active] == 0) | torch.isclose(dropped[active], 2 * plain[active])).all()
    kept = (dropped[active] != 0).float().mean().item()
    assert 0.2 < kept < 0.8  # about half of the entries survive p = 0.5
