"""The parity recipes are the published runs, and the options they need behave as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image
from typer.testing import CliRunner

from asgl.config import RecipeError, load_recipe, validate_recipe
from asgl.data import split_indices
from asgl.data.events import normalise_and_resize
from asgl.data.images import IMAGE_SETS, train_transform
from asgl_cli.main import app

# The authors' commands and configuration defaults, as the issue lists them (key -> value).
CIFAR100_RESNET18 = {
    "run.seed": 60,
    "model.name": "resnet18",
    "train.time_steps": 2,
    "data.autoaugment": "reference",
    "data.autoaugment_fill": 128,
    "data.cutout": 16,
    "optim.weight_decay": 5e-4,
    "optim.name": "sgd",
    "optim.lr": 0.1,
    "optim.momentum": 0.9,
    "optim.schedule": "cosine",
    "train.epochs": 300,
    "neuron.norm": "tdbn",
    "surrogate.family": "sigmoid",
    "surrogate.width": 5.0,
    "surrogate.storage": "raw_slope",
    "surrogate.learnable": True,
    "optim.neuron_lr": 3e-4,
    "neuron.learn_decay": True,
    "neuron.decay": 0.5,
    "neuron.threshold": 1.0,
    "noise.prob": 0.2,
    "noise.factor": 1.0,
    "train.batch_size": 128,
    "model.init": "torch_default",
    "train.val_fraction": 0.0,
    "train.select": "last",
    "train.loss": "ce",
}
DVS_CIFAR10_VGGSNN = {
    "run.seed": 200,
    "model.name": "vggsnn2",
    "train.time_steps": 10,
    "neuron.norm": "tdbn",
    "surrogate.family": "rectangle",
    "surrogate.width": 1.0,
    "surrogate.learnable": True,
    "surrogate.granularity": "layer",
    "noise.prob": 0.1,
    "noise.factor": 1.0,
    "neuron.decay": 0.5,
    "neuron.learn_decay": False,
    "neuron.threshold": 0.5,
    "optim.weight_decay": 1e-3,
    "train.epochs": 100,
    "train.batch_size": 32,
    "model.init": "reference",
    "train.loss": "tet",
    "train.tet_lambda": 1e-3,
    "train.tet_phi": 1.0,
    "data.split": "reference",
    "train.val_fraction": 0.0,
    "train.select": "last",
}


@pytest.mark.parametrize(
    ("name", "expected"), [("cifar100_resnet18", CIFAR100_RESNET18), ("dvs_cifar10_vggsnn", DVS_CIFAR10_VGGSNN)]
)
def test_recipes_show_prints_the_published_values(name: str, expected: dict) -> None:
    result = CliRunner().invoke(app, ["recipes", "show", name])
    assert result.exit_code == 0, result.output
    shown = tomllib.loads(result.stdout)
    for key, value in expected.items():
        section, field = key.split(".")
        assert shown[section][field] == value, key
    assert "SPEC" not in result.stdout


def test_val_fraction_zero_needs_select_last() -> None:
    with pytest.raises(RecipeError, match="select = 'last'"):
        validate_recipe({"train": {"val_fraction": 0.0}})
    assert validate_recipe({"train": {"val_fraction": 0.0, "select": "last"}}).train.select == "last"
    assert split_indices(7, 0.0, seed=3) == (list(range(7)), [])


def test_select_last_trains_on_everything_and_tests_the_final_epoch(tmp_path) -> None:
    from conftest import TINY

    from asgl.engine.checkpoint import load_checkpoint
    from asgl.engine.trainer import train

    recipe = load_recipe("digits_quick", TINY + ["train.val_fraction=0", "train.select=last"])
    result = train(recipe, out_dir=tmp_path)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["best_epoch"] == recipe.train.epochs  # the last epoch (1-based), whatever it scored
    best, last = (load_checkpoint(result.run_dir / "checkpoints" / f) for f in ("best.pt", "last.pt"))
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["val_acc"] != r["val_acc"] for r in records)  # nan: there is no validation split


def test_every_lif_layer_learns_its_own_decay() -> None:
    """The authors' cell deep-copies the decay it is given: ResNet-18 has 17 decay parameters, trained apart."""
    from asgl.builders import build_model
    from asgl.data import DataInfo
    from asgl.neuron import lif_layers

    recipe = load_recipe("cifar100_resnet18", ["noise.prob=0"])
    model = build_model(recipe, DataInfo("static", 3, (8, 8), 100, 2))
    decays = [layer.decay_logit for _, layer in lif_layers(model)]
    params = {id(p) for p in model.parameters()}
    assert len(decays) == 17 and len({id(d) for d in decays}) == 17 and all(id(d) in params for d in decays)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    model.train()(x).square().sum().backward()
    grads = [float(d.grad) for d in decays]
    assert all(g != 0 for g in grads) and len(set(grads)) == len(grads)  # one gradient per layer


def test_a_recipe_with_shared_decay_is_refused_naming_the_key() -> None:
    with pytest.raises(RecipeError, match="unknown key neuron.shared_decay"):
        validate_recipe({"neuron": {"shared_decay": True}}, "stored in old.pt")


def test_resnets_take_pytorch_default_init() -> None:
    from asgl.builders import build_model
    from asgl.data import DataInfo

    info = DataInfo("static", 3, (8, 8), 10, 1)
    conv = {}
    for init in ("torch_default", "kaiming"):
        torch.manual_seed(0)
        model = build_model(validate_recipe({"model": {"name": "resnet18", "init": init}}), info)
        conv[init] = model.features[0][0][0].weight
    # PyTorch's conv default is kaiming_uniform(a=sqrt(5)): bound 1/sqrt(fan_in) = 1/sqrt(27)
    assert conv["torch_default"].abs().max() <= 1 / 27**0.5
    assert conv["kaiming"].abs().max() > 1 / 27**0.5
    with pytest.raises(RecipeError, match="torch_default"):
        build_model(validate_recipe({"model": {"name": "resnet18", "init": "reference"}}), info)


@pytest.mark.parametrize("fill", [0, 128])
def test_autoaugment_fills_uncovered_pixels_with_the_recipe_grey(tmp_path, fill: int) -> None:
    recipe = validate_recipe({"data": {"name": "cifar10", "autoaugment": True, "autoaugment_fill": fill}})
    steps = train_transform(recipe.data, IMAGE_SETS["cifar10"]).transforms
    autoaugment = next(s for s in steps if type(s).__name__ == "AutoAugment")
    black = Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8))
    torch.manual_seed(0)
    values = set()
    for _ in range(60):  # geometric ops (shear, translate, rotate) uncover pixels; colour ops keep black at 0 or 255
        values |= set(np.unique(np.asarray(autoaugment(black))).tolist())
    assert (128 in values) == (fill == 128)


def test_authors_la_quirk_masks_the_first_polarity_by_the_second() -> None:
    """A hand-made 16x16 frame: polarity 0 at 0.7 everywhere, polarity 1 present on the right half only.

    Pillow resizes the two-channel "LA" image premultiplied by its second channel, so on the left half the
    first polarity is erased; the float resize keeps it. Values go through 8 bits: 0.7 * 255 = 178.5 -> 178."""
    frames = torch.zeros(1, 2, 16, 16)
    frames[0, 0] = 0.7
    frames[0, 1, :, 8:] = 1.0
    quirk = normalise_and_resize(frames, 4, "authors_la_quirk")
    clean = normalise_and_resize(frames, 4, "float")
    assert quirk.shape == clean.shape == (1, 2, 4, 4)
    # output columns 0 and 3 see only input columns 0-5 and 10-15 (bilinear support at scale 4)
    torch.testing.assert_close(quirk[0, :, :, 0], torch.zeros(2, 4), rtol=0, atol=0)
    torch.testing.assert_close(quirk[0, 0, :, 3], torch.full((4,), 178.0) / 255, rtol=0, atol=0)
    torch.testing.assert_close(quirk[0, 1, :, 3], torch.ones(4), rtol=0, atol=0)
    torch.testing.assert_close(clean[0, 0], torch.full((4, 4), 0.7))


def test_diagnose_carves_validation_batches_when_the_run_had_none() -> None:
    from conftest import TINY

    from asgl.diagnose.report import load_subject

    recipe = load_recipe("digits_quick", TINY + ["train.val_fraction=0", "train.select=last"])
    subject = load_subject(recipe, batches=2)
    assert len(subject.batches) == 2 and subject.recipe.train.val_fraction == 0
    with pytest.raises(RecipeError, match="diagnose_every"):
        load_recipe("digits_quick", ["train.val_fraction=0", "train.select=last", "train.diagnose_every=1"])
