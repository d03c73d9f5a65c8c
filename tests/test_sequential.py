"""Networks written in the recipe (model.layers) and user builders named by import path."""

from __future__ import annotations

import json

import pytest
import torch
from cli_fixture_helpers import USER_NET_SOURCE
from torch import nn
from typer.testing import CliRunner

from asgl.builders import build_model
from asgl.config import RecipeError, validate_recipe
from asgl.data import DataInfo
from asgl.errors import UserError
from asgl.models.sequential import layer_shapes
from asgl.neuron import lif_layers
from asgl_cli.main import app

DIGITS = DataInfo("static", 1, (8, 8), 10, 2)


def sequential(layers: list, granularity: str = "layer") -> object:
    model = {"name": "sequential", "layers": layers}
    return validate_recipe({"model": model, "surrogate": {"granularity": granularity}, "train": {"time_steps": 2}})


def test_shape_arithmetic_matches_the_built_modules():
    layers = [
        {"conv": 6, "kernel": 5, "stride": 2, "padding": 0},  # 13 -> 5
        {"residual": ["conv6", {"conv": 6, "lif": False}]},  # identity shortcut
        {"residual": [{"conv": 4, "stride": 2}], "lif": False},  # 1x1 stride-2 conv shortcut: 5 -> 3
        {"pool": "max", "size": 3},  # 3 -> 1
        "flatten",
        "dropout0.5",
        {"residual": ["linear7"]},  # linear shortcut 4 -> 7
        {"linear": 5, "norm": False},
    ]
    recipe = sequential(layers, granularity="neuron")  # a width per neuron: a LIF of the wrong shape fails
    info = DataInfo("static", 3, (13, 13), 4, 2)
    model = build_model(recipe, info)
    seen = []
    for block in model.features:
        block.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape[2:])))
    logits = model(torch.randn(3, 3, 13, 13))
    assert logits.shape == (2, 3, 4)  # [T, B, K]
    assert seen == layer_shapes(recipe.model.layers, (3, 13, 13)) == [
        (6, 5, 5), (6, 5, 5), (4, 3, 3), (4, 1, 1), (4,), (4,), (7,), (5,)
    ]  # fmt: skip
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_each_conv_and_linear_gets_norm_and_lif_unless_it_says_otherwise():
    layers = ["conv8", {"conv": 8, "lif": False}, {"conv": 8, "norm": False, "lif": False}, "flatten", "linear4"]
    model = build_model(sequential(layers), DIGITS)
    assert len(lif_layers(model)) == 2  # conv8 and linear4
    assert sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in model.modules()) == 3
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.bias is not None for c in convs] == [False, False, True]  # a bias only where no norm follows


@pytest.mark.parametrize(
    "layers, expected",
    [
        (["conv4", "maxpool", "maxpool", "maxpool", "maxpool"], ["model.layers[4]", "max pool 2", "[4, 1, 1]"]),
        (["conv4", "linear10"], ["model.layers[1]", "add 'flatten'"]),
        (["flatten", "conv4"], ["model.layers[1]", "needs feature maps"]),
        ([{"conv": 4, "kernel": 11, "padding": 0}], ["model.layers[0]", "kernel 11", "does not fit 8x8"]),
        ([{"residual": ["conv4", "flatten"]}], ["model.layers[0]", "no 1x1 conv or linear shortcut"]),
        ([{"residual": ["flatten", "conv4"]}], ["model.layers[0].residual[1]", "needs feature maps"]),
    ],
)
def test_a_layer_that_does_not_fit_is_named(layers, expected):
    with pytest.raises(RecipeError) as err:
        build_model(sequential(layers), DIGITS)
    assert all(text in str(err.value) for text in expected), str(err.value)


def test_layer_list_schema_errors():
    with pytest.raises(RecipeError, match=r"model.layers.1 = 'conv'.*conv<channels>"):
        sequential(["conv4", "conv"])
    with pytest.raises(RecipeError, match=r"model.layers.0: .*exactly one of the keys"):
        sequential([{"conv": 4, "pool": "max"}])
    with pytest.raises(RecipeError, match="model.layers: Field required"):
        validate_recipe({"model": {"name": "sequential"}})
    with pytest.raises(RecipeError, match="model.layers: not a key of model 'digits_convnet'"):
        validate_recipe({"model": {"name": "digits_convnet", "layers": ["conv4"]}})


def test_validate_rejects_a_bad_layer_list_naming_the_layer(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "sequential"\nlayers = ["conv8", "maxpool", "maxpool", "maxpool", "maxpool"]\n')
    result = CliRunner().invoke(app, ["recipes", "validate", "digits_deep", str(bad)])
    assert result.exit_code == 2
    assert "ok digits_deep" in result.output and "model.layers[4] (max pool 2)" in result.output


def test_train_digits_deep(tmp_path):
    sets = ["data.subset=32", "train.epochs=1", "train.batch_size=16", "train.time_steps=2", "run.device=cpu"]
    args = ["train", "digits_deep", "--out", str(tmp_path)] + [a for s in sets for a in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["neurons"]["widths"]) == 9  # 8 conv layers + the hidden linear layer, each with a LIF
    assert 0 <= summary["test_acc"] <= 1


USER_MODULE = (
    USER_NET_SOURCE
    + """
def not_a_module(recipe, info):
    return "a string"

NOT_CALLABLE = 3
"""
)


def test_user_builder_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "user_nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = validate_recipe({"model": {"name": "user_nets:build"}})
    model = build_model(recipe, DIGITS)
    assert type(model).__name__ == "Net" and model(torch.randn(5, 1, 8, 8)).shape == (2, 5, 10)

    cases = {
        "user_nets:not_a_module": "returned a str, expected a torch.nn.Module",
        "user_nets:NOT_CALLABLE": "has no function 'NOT_CALLABLE' (found int)",
        "user_nets:missing": "has no function 'missing' (found nothing)",
        "no_such_package.nets:build": "cannot import 'no_such_package.nets'",
        ":build": "'package.module:function'",
    }
    for name, expected in cases.items():
        with pytest.raises(UserError) as err:
            build_model(validate_recipe({"model": {"name": name}}), DIGITS)
        assert expected in str(err.value) and name in str(err.value)


def test_validate_imports_a_user_builder(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "no_such_package.nets:build"\n')
    result = CliRunner().invoke(app, ["recipes", "validate", str(bad)])
    assert result.exit_code == 2 and "cannot import 'no_such_package.nets'" in result.output


def test_layers_survive_the_resolved_recipe_of_a_run_folder():
    import tomllib

    from asgl.config import recipe_to_toml

    recipe = sequential(["conv8", {"residual": ["conv8", {"conv": 8, "lif": False}]}, "avgpool", "dropout0.1"])
    assert validate_recipe(tomllib.loads(recipe_to_toml(recipe))) == recipe
