"""Building a network never needs the data: dataset descriptions, bench, diagnose and eval on an empty root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import asgl.builders
import asgl.engine.restore
from asgl.builders import describe_data
from asgl.config import load_recipe, recipe_to_toml, validate_recipe
from asgl.data import DataInfo, DataMissingError
from asgl.engine.checkpoint import save_checkpoint
from asgl.engine.trainer import rng_state
from asgl.optim import build_optimizers
from asgl_cli.main import app

# what each dataset is, from its documentation: kind, channels, size, classes
KNOWN = {
    "digits": DataInfo("static", 1, (8, 8), 10, 3),
    "cifar10": DataInfo("static", 3, (32, 32), 10, 3),
    "cifar100": DataInfo("static", 3, (32, 32), 100, 3),
    "tiny_imagenet": DataInfo("static", 3, (64, 64), 200, 3),
    "dvs_cifar10": DataInfo("event", 2, (40, 40), 10, 3),
    "dvs_gesture": DataInfo("event", 2, (40, 40), 11, 3),
    "shd": DataInfo("sequence", 700, (700,), 20, 3),
    "audio_folder": DataInfo("sequence", 32, (32,), 5, 3),
}


def empty_recipe(root: Path, name: str, **sections):
    data = {"name": name} | ({} if name == "digits" else {"root": str(root)})  # each dataset takes its own keys
    data |= {"frame_size": 40} if name.startswith("dvs") else {"n_mels": 32} if name == "audio_folder" else {}
    raw = {"data": data, "train": {"time_steps": 3}}
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return validate_recipe(raw)


@pytest.mark.parametrize("name", list(KNOWN))
def test_every_dataset_describes_itself_from_the_recipe(tmp_path: Path, name: str) -> None:
    extra = {"model": {"num_classes": 5}} if name == "audio_folder" else {}
    assert describe_data(empty_recipe(tmp_path, name, **extra)) == KNOWN[name]
    assert not any(tmp_path.iterdir())


def test_audio_folder_without_data_needs_its_class_count(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="model.num_classes"):
        describe_data(empty_recipe(tmp_path, "audio_folder"))


def test_bench_runs_with_an_empty_data_root(tmp_path: Path) -> None:
    args = ["bench", "cifar100_resnet18", "-b", "1", "-r", "1", "--warmup", "0", "--variants", "fused", "--json", "-"]
    for item in (f"data.root={tmp_path}", "run.device=cpu", "train.time_steps=1"):
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [v["variant"] for v in json.loads(result.stdout)["variants"]] == ["fused"]
    assert not any(tmp_path.iterdir())


@pytest.fixture
def model_builds(monkeypatch) -> list[str]:
    """Records every model built, so a test can see that it happened before the data was asked for."""
    built: list[str] = []
    real = asgl.engine.restore.build_model

    def spy(recipe, info):
        built.append(recipe.model.name)
        return real(recipe, info)

    monkeypatch.setattr(asgl.engine.restore, "build_model", spy)  # where eval, diagnose and export build it
    return built


def test_diagnose_builds_the_model_before_it_needs_the_data(tmp_path: Path, model_builds: list[str]) -> None:
    from asgl.diagnose.report import load_subject

    recipe = empty_recipe(tmp_path, "cifar10", model={"name": "digits_convnet", "hidden": 8})
    with pytest.raises(DataMissingError, match="cifar-10-batches-py"):
        load_subject(recipe, batches=1)
    assert model_builds == ["digits_convnet"]


def small_checkpoint(folder: Path, root: Path) -> Path:
    recipe = empty_recipe(root, "cifar10", model={"name": "digits_convnet", "hidden": 8}, run={"device": "cpu"})
    model = asgl.builders.build_model(recipe, describe_data(recipe))
    payload = {
        "recipe": recipe_to_toml(recipe),
        "model": model.state_dict(),
        **build_optimizers(model, recipe.optim, recipe.train.epochs).state_dict(),
        "epoch": 0,
        "step": 0,
        "best": {"val_acc": -1.0, "epoch": -1},
        "rng": rng_state(),
    }
    return save_checkpoint(payload, folder / "ckpt.pt")


def test_eval_builds_the_model_before_it_needs_the_data(tmp_path: Path, model_builds: list[str]) -> None:
    from asgl.engine.evaluation import evaluate_checkpoint

    root = tmp_path / "empty"
    root.mkdir()
    ckpt = small_checkpoint(tmp_path, root)
    model_builds.clear()
    with pytest.raises(DataMissingError):
        evaluate_checkpoint(ckpt, "val", "cpu")
    assert model_builds == ["digits_convnet"]
    result = CliRunner().invoke(app, ["eval", "--ckpt", str(ckpt)])
    assert result.exit_code == 2 and "cifar-10-batches-py" in result.output


def test_parity_recipes_build_their_networks_without_data(tmp_path: Path) -> None:
    for name, params in (("cifar100_resnet18", 11_220_132), ("dvs_cifar10_vggsnn", 9_268_736)):
        recipe = load_recipe(name, [f"data.root={tmp_path}"])
        model = asgl.builders.build_model(recipe, describe_data(recipe))
        assert asgl.models.count_parameters(model) == params
        if name == "dvs_cifar10_vggsnn":  # no biases anywhere, as published
            assert all(m.bias is None for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert not any(tmp_path.iterdir())
