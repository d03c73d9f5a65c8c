"""``asgl import-reference``: synthetic reference state dicts (the reference's key names, shapes and value
storage, written from an asgl model by the inverse mapping) round-trip to the same logits and eval.

The networks run on a tiny CIFAR-10 written in the real file format (3 x 32 x 32, as published)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from fixtures_images import write_cifar10
from torch import Tensor
from typer.testing import CliRunner

from asgl.config import load_recipe
from asgl.data import build_data
from asgl.engine.checkpoint import load_checkpoint
from asgl.engine.evaluation import evaluate
from asgl.engine.reference_import import check_importable, key_rules, reference_units
from asgl.losses import build_loss
from asgl.models import build_model
from asgl_cli.main import app

RECIPE = """\
[data]
name = "cifar10"
root = "{root}"
subset = 4

[model]
name = "{model}"

[surrogate]
family = "{family}"
storage = "{storage}"

[train]
batch_size = 4
time_steps = 2
"""


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, per_batch=4, n_test=6)
    return root


def write_recipe(folder: Path, root: Path, model: str, family: str = "sigmoid", storage: str = "log_slope") -> Path:
    path = folder / "recipe.toml"
    path.write_text(RECIPE.format(root=root, model=model, family=family, storage=storage))
    return path


def trained_looking_model(recipe_path: Path):
    """The recipe's asgl model with every parameter and BN statistic moved away from its initial value."""
    recipe = load_recipe(str(recipe_path))
    data = build_data(recipe)
    torch.manual_seed(7)
    model = build_model(recipe, data.info)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(("running_mean", "bias")) or name.endswith("1.0.weight"):
                t.add_(0.3 * torch.randn(t.shape, generator=g))
            elif name.endswith("decay_logit"):
                t.copy_(torch.randn(t.shape, generator=g))
            elif name.endswith("width.param"):
                k = torch.rand(t.shape, generator=g) * 2 + 0.2  # slopes in [0.2, 2.2]
                t.copy_(k if recipe.surrogate.storage == "raw_slope" else k.log())
    return recipe, data, model.eval()


def to_reference(recipe, model, decay_stored: str = "logit") -> dict[str, Tensor]:
    """The inverse mapping: the state dict the reference would have saved for these weights."""
    state = model.state_dict()
    out = {}
    for ref_key, rule in key_rules(reference_units(recipe, model), set(state)).items():
        value = state[rule.asgl].clone()
        if rule.transform == "decay" and decay_stored == "gamma":
            value = torch.sigmoid(value)
        elif rule.transform == "slope" and recipe.surrogate.family == "sigmoid":
            value = value if recipe.surrogate.storage == "raw_slope" else value.exp()  # sigmoid: k raw
        out[ref_key] = value  # rectangle: log k, as asgl's log_slope
    return out


def logits(model, data) -> Tensor:
    x = torch.stack([data.test[i][0] for i in range(len(data.test))])
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize(
    ("model_name", "family", "storage", "decay_stored"),
    [
        ("resnet18", "sigmoid", "log_slope", "gamma"),
        ("vggsnn2", "rectangle", "log_slope", "gamma"),
        ("vggsnn2", "sigmoid", "raw_slope", "logit"),
    ],
)
def test_round_trip_same_logits_and_eval(
    tmp_path: Path, cifar_root: Path, model_name: str, family: str, storage: str, decay_stored: str
) -> None:
    recipe_path = write_recipe(tmp_path, cifar_root, model_name, family, storage)
    recipe, data, model = trained_looking_model(recipe_path)
    source = tmp_path / "best_net.pth"
    torch.save(to_reference(recipe, model, decay_stored), source)

    out = tmp_path / "imported.pt"
    result = cli("import-reference", source, "--recipe", recipe_path, "--out", out, "--decay-stored", decay_stored)
    assert result.exit_code == 0, result.output
    assert f"asgl eval --ckpt {out}" in " ".join(result.output.split())

    ckpt = load_checkpoint(out)
    torch.manual_seed(0)
    fresh = build_model(recipe, data.info)
    fresh.load_state_dict(ckpt["model"])
    expected_logits = logits(model, data)
    assert expected_logits.abs().sum() > 0
    torch.testing.assert_close(logits(fresh, data), expected_logits, rtol=1e-5, atol=1e-5)

    result = cli("eval", "--ckpt", out, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    loader = torch.utils.data.DataLoader(data.test, batch_size=recipe.train.batch_size)
    expected = evaluate(model, loader, build_loss(recipe.train, recipe.model.readout), torch.device("cpu"))
    assert record["samples"] == expected.samples == 4
    assert record["accuracy"] == expected.accuracy
    assert record["loss"] == pytest.approx(expected.loss, rel=1e-5)


def test_reference_key_names_from_the_issue(tmp_path: Path, cifar_root: Path) -> None:
    """The names known from the reference: stem conv / BN wrappers, LIF cell decay and inverse width."""
    recipe, _, model = trained_looking_model(write_recipe(tmp_path, cifar_root, "resnet18"))
    ref = to_reference(recipe, model)
    assert ref["conv0.0.layer.weight"].shape == (64, 3, 3, 3)
    assert ref["conv0.1.layer.weight"].shape == ref["conv0.1.layer.running_var"].shape == (64,)
    assert float(ref["conv0.2.cell.decay"]) == float(model.state_dict()["features.0.2.decay_logit"])  # logit d
    assert float(ref["conv0.2.cell.spike_fn.inv_sg.alpha"]) > 0
    # every asgl tensor is covered except the thresholds, which the reference does not store
    covered = {r.asgl for r in key_rules(reference_units(recipe, model), set(model.state_dict())).values()}
    assert {k for k in model.state_dict() if k not in covered} == {
        k for k in model.state_dict() if k.endswith(".threshold")
    }
    assert sum(k.endswith(".cell.decay") for k in ref) == 17  # the 17 LIF layers of ResNet-18


@pytest.mark.parametrize("name", ["cifar10_resnet18", "cifar100_resnet18", "dvs_cifar10_vggsnn"])
def test_published_recipes_are_importable(name: str) -> None:
    check_importable(load_recipe(name))


@pytest.fixture(scope="module")
def resnet_reference(tmp_path_factory: pytest.TempPathFactory, cifar_root: Path) -> tuple[Path, dict[str, Tensor]]:
    recipe_path = write_recipe(tmp_path_factory.mktemp("resnet"), cifar_root, "resnet18")
    recipe, _, model = trained_looking_model(recipe_path)
    return recipe_path, to_reference(recipe, model)


def import_state(tmp_path: Path, recipe_path: Path, state, *args: str):
    source = tmp_path / "ref.pth"
    torch.save(state, source)
    return cli("import-reference", source, "--recipe", recipe_path, "--out", tmp_path / "out.pt", *args)


def assert_refused(result, *expected: str) -> None:
    assert result.exit_code == 2, f"{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    for text in expected:
        assert text in result.output, f"{text!r} not in:\n{result.output}"


def test_nested_best_net_and_data_parallel_prefix_accepted(tmp_path: Path, resnet_reference) -> None:
    recipe_path, state = resnet_reference
    nested = {"best_net": {f"module.{k}": v for k, v in state.items()}, "best_acc": 76.8, "epoch": 299}
    result = import_state(tmp_path, recipe_path, nested)
    assert result.exit_code == 0, result.output


def test_every_problem_listed_at_once(tmp_path: Path, resnet_reference) -> None:
    recipe_path, state = resnet_reference
    state = dict(state)
    state["conv0.9.layer.weight"] = torch.zeros(1)  # unknown
    del state["fc.layer.weight"]  # missing
    state["conv0.0.layer.weight"] = torch.zeros(64, 2, 3, 3)  # a 2-channel (event) stem for RGB data
    result = import_state(tmp_path, recipe_path, state)
    assert_refused(result, "conv0.9.layer.weight", "fc.layer.weight", "[64, 2, 3, 3]", "features.0.0.0.weight")
    assert not (tmp_path / "out.pt").exists()


def test_gamma_outside_unit_interval_is_refused(tmp_path: Path, resnet_reference) -> None:
    recipe_path, state = resnet_reference
    state = {k: (torch.tensor(-1.5) if k.endswith("cell.decay") else v) for k, v in state.items()}
    assert import_state(tmp_path, recipe_path, state).exit_code == 0  # logits (the default) may be negative
    refused = import_state(tmp_path, recipe_path, state, "--decay-stored", "gamma", "--force")
    assert_refused(refused, "conv0.2.cell.decay", "drop --decay-stored gamma")


def test_negative_sigmoid_slope_needs_raw_storage(tmp_path: Path, resnet_reference) -> None:
    recipe_path, state = resnet_reference
    state = dict(state, **{"conv0.2.cell.spike_fn.inv_sg.alpha": torch.tensor(-0.2)})
    assert_refused(import_state(tmp_path, recipe_path, state), "inv_sg.alpha", "surrogate.storage=raw_slope")
    result = import_state(tmp_path, recipe_path, state, "--set", "surrogate.storage=raw_slope")
    assert result.exit_code == 0, result.output


def test_unsupported_model_refused(tmp_path: Path, cifar_root: Path, resnet_reference) -> None:
    _, state = resnet_reference
    recipe_path = write_recipe(tmp_path, cifar_root, "digits_convnet")
    assert_refused(import_state(tmp_path, recipe_path, state), "resnet18, vggsnn2")


class CodePayload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_reference_file_carrying_code_refused_unexecuted(tmp_path: Path, resnet_reference) -> None:
    recipe_path, state = resnet_reference
    marker = tmp_path / "code-ran"
    result = import_state(tmp_path, recipe_path, {**state, "hook": CodePayload(marker)})
    assert_refused(result, "refused")
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n"], ids=["empty", "text"])
def test_unreadable_reference_file(tmp_path: Path, resnet_reference, content: bytes) -> None:
    recipe_path, _ = resnet_reference
    source = tmp_path / "ref.pth"
    source.write_bytes(content)
    assert_refused(cli("import-reference", source, "--recipe", recipe_path, "--out", tmp_path / "o.pt"), str(source))


def test_existing_out_needs_force(tmp_path: Path, resnet_reference) -> None:
    recipe_path, state = resnet_reference
    (tmp_path / "out.pt").write_bytes(b"keep me")
    assert_refused(import_state(tmp_path, recipe_path, state), "--force")
    assert (tmp_path / "out.pt").read_bytes() == b"keep me"
