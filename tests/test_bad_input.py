"""Bad input through the CLI as a user types it: every case exits 2 with one clear message, no traceback.

Recipes that the schema rejects fail before any heavy import; recipes that only the data can refute
(batch size against the split size, model against the dataset) fail after the data is built and
before the run folder is made.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from asgl_cli.main import app

# a small, valid digits recipe the cases below break one key at a time
BASE = {
    "data": {"name": "digits", "subset": 40},
    "model": {"name": "digits_convnet", "hidden": 8},
    "train": {"epochs": 1, "batch_size": 8, "time_steps": 2},
}


def toml_text(sections: dict[str, dict]) -> str:
    import tomli_w

    return tomli_w.dumps(sections)


def merged(**changes: dict) -> dict[str, dict]:
    out = {k: dict(v) for k, v in BASE.items()}
    for section, values in changes.items():
        out.setdefault(section, {}).update(values)
    return out


def assert_user_error(result, *expected: str) -> str:
    """Exit 2, exactly one ``error:`` message containing every ``expected`` text, no traceback."""
    output = result.output
    assert result.exit_code == 2, f"exit {result.exit_code}, output:\n{output}\nexception: {result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    assert output.count("error:") == 1, output
    for text in expected:
        assert text in output, f"{text!r} not in:\n{output}"
    return output


def train(tmp_path: Path, recipe: str | Path, *args: str):
    return CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "runs"), *args])


def no_run_folder(tmp_path: Path) -> bool:
    """Refused before training: not even a run folder was made."""
    return not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ---------------------------------------------------------------- the recipe file itself


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text("[train]\nepochs = \n")
    assert_user_error(train(tmp_path, path), "TOML syntax error", "line 2")


def test_recipe_directory(tmp_path: Path) -> None:
    (tmp_path / "recipe.toml").mkdir()
    assert_user_error(train(tmp_path, tmp_path / "recipe.toml"), "is a directory")


@pytest.mark.parametrize(
    "payload", [b"\x80\x81\xfe\xff binary", b"PK\x03\x04\x00\x00\x08\x00"], ids=["not-utf8", "zip-bytes"]
)
def test_binary_recipe(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "r.toml"
    path.write_bytes(payload)
    out = assert_user_error(train(tmp_path, path), str(path))
    assert "not a text TOML file" in out or "TOML syntax error" in out


def test_missing_recipe(tmp_path: Path) -> None:
    assert_user_error(train(tmp_path, tmp_path / "nowhere.toml"), "recipe not found")


def test_empty_recipe_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text("# nothing but a comment\n")
    assert_user_error(train(tmp_path, path), str(path), "is empty")
    assert no_run_folder(tmp_path)


# ---------------------------------------------------------------- schema: types, keys, ranges


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"train": {"epochs": "ten"}}, ("train.epochs", "'ten'")),
        ({"train": {"time_steps": 1.5}}, ("train.time_steps",)),
        ({"surrogate": {"learnable": "maybe"}}, ("surrogate.learnable",)),
        ({"surrogate": {"widht": 5.0}}, ("surrogate.widht", "unknown key")),
        ({"optimiser": {"lr": 0.1}}, ("unknown section optimiser", "did you mean optim?")),
        ({"surrogate": {"width": -1.0}}, ("surrogate.width", "-1.0", "greater than 0")),
        ({"surrogate": {"width": 0.0}}, ("surrogate.width", "greater than 0")),
        ({"noise": {"prob": 1.5}}, ("noise.prob", "1.5", "less than or equal to 1")),
        ({"noise": {"prob": -0.1}}, ("noise.prob", "greater than or equal to 0")),
        ({"train": {"time_steps": 0}}, ("train.time_steps", "greater than or equal to 1")),
        ({"noise": {"factor": 0.5, "milestones": []}}, ("noise.factor", "no milestones")),
        ({"noise": {"factor": 0.5, "milestone_epochs": []}}, ("noise.factor", "no milestones")),
        ({"train": {"batch_size": 0}}, ("train.batch_size", "greater than or equal to 1")),
        ({"train": {"batch_size": -4}}, ("train.batch_size",)),
        ({"model": {"hidden": 0}}, ("model.hidden",)),
    ],
    ids=lambda v: ",".join(f"{s}.{k}" for s, d in v.items() for k in d) if isinstance(v, dict) else None,
)
def test_schema_errors(tmp_path: Path, changes: dict, expected: tuple[str, ...]) -> None:
    path = tmp_path / "r.toml"
    path.write_text(toml_text(merged(**changes)))
    assert_user_error(train(tmp_path, path), str(path), *expected)
    assert no_run_folder(tmp_path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epoch=3", ("--set train.epoch=3: unknown key train.epoch (did you mean train.epochs?)",)),
        ("neuron.spike=asgll", ("--set neuron.spike=asgll", "(did you mean 'asgl'?)")),
        ("nosuch.key=1", ("--set nosuch.key=1", "unknown section nosuch")),
        ("surrogate.width=0", ("surrogate.width", "greater than 0")),
        ("noise.prob=2", ("noise.prob",)),
        ("train.epochs=abc", ("train.epochs", "'abc'")),
        ("train.epochs", ("must look like section.key=value",)),
        ("epochs=3", ("must be dotted",)),
    ],
)
def test_bad_overrides(tmp_path: Path, override: str, expected: tuple[str, ...]) -> None:
    path = tmp_path / "r.toml"
    path.write_text(toml_text(BASE))
    assert_user_error(train(tmp_path, path, "--set", override), *expected)


# ---------------------------------------------------------------- refuted by the data, before training


def test_batch_larger_than_training_split(tmp_path: Path) -> None:
    """Rule: batch_size may not exceed the training split (after data.subset)."""
    path = tmp_path / "r.toml"
    path.write_text(toml_text(merged(train={"batch_size": 64})))
    assert_user_error(train(tmp_path, path), "train.batch_size = 64", "40 samples")
    assert no_run_folder(tmp_path)


def test_last_batch_of_one_sample_with_one_time_step(tmp_path: Path) -> None:
    """Rule: with T = 1 a final training batch of 1 sample cannot be batch-normalised (41 = 5 * 8 + 1)."""
    path = tmp_path / "r.toml"
    path.write_text(toml_text(merged(data={"subset": 41}, train={"time_steps": 1})))
    assert_user_error(train(tmp_path, path), "train.batch_size")
    assert no_run_folder(tmp_path)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"hidden": 8, "num_classes": 5}, ("model.num_classes = 5", "10 classes")),
        ({"hidden": 8, "in_channels": 3}, ("model.in_channels = 3", "1 channels")),
        ({"name": "vgg13"}, ("vgg13", "too small")),  # five 2x2 pools do not fit a digits image
        ({"name": "recurrent_snn", "hidden": 8}, ("recurrent_snn", "static")),  # sequences model on images
    ],
    ids=["classes", "channels", "input-size", "input-kind"],
)
def test_model_dataset_mismatch(tmp_path: Path, model: dict, expected: tuple[str, ...]) -> None:
    path = tmp_path / "r.toml"
    path.write_text(toml_text({**BASE, "model": model}))  # the whole [model] table: keys depend on the model
    assert_user_error(train(tmp_path, path), *expected)
    assert no_run_folder(tmp_path)


# ---------------------------------------------------------------- values that escape: run names, infinities


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../escape", "a run name is a plain folder name"),
        ("sub/run", "a run name is a plain folder name"),
        ("..", "a run name is a plain folder name"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
    ],
    ids=["parent-escape", "separator", "dot-dot", "empty", "blank"],
)
def test_run_name_is_a_plain_folder_name(tmp_path: Path, name: str, expected: str) -> None:
    """Rule: the run folder is <out>/<name>-<timestamp>, one level inside --out, never elsewhere."""
    path = tmp_path / "r.toml"
    path.write_text(toml_text(BASE))
    out = tmp_path / "deep" / "runs"
    result = CliRunner().invoke(app, ["train", str(path), "--out", str(out), "--set", f"run.name={name!r}"])
    assert_user_error(result, "run.name", expected)
    assert [p.name for p in tmp_path.rglob("*") if p.is_dir()] == []  # no run folder, here or above --out
    path.write_text(toml_text(merged(run={"name": name})))  # the same name written in the file
    assert_user_error(CliRunner().invoke(app, ["train", str(path), "--out", str(out)]), str(path), expected)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"optim": {"lr": float("inf")}}, "optim.lr = inf"),
        ({"surrogate": {"width": float("inf")}}, "surrogate.width = inf"),
        ({"optim": {"lr": float("nan")}}, "optim.lr = nan"),
        ({"noise": {"milestones": [0.0, float("-inf")]}}, "noise.milestones.1 = -inf"),
    ],
    ids=["lr-inf", "width-inf", "lr-nan", "milestone-minus-inf"],
)
def test_numbers_are_finite(tmp_path: Path, changes: dict, expected: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(toml_text(merged(**changes)))
    assert_user_error(train(tmp_path, path), expected, "finite number")
    assert no_run_folder(tmp_path)


def test_infinite_override_names_its_flag(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(toml_text(BASE))
    assert_user_error(train(tmp_path, path, "--set", "optim.lr=inf"), "--set optim.lr=inf", "finite number")
    assert no_run_folder(tmp_path)


# ---------------------------------------------------------------- a run without a validation split


def test_eval_of_the_missing_validation_split(tmp_path: Path) -> None:
    """Rule: a run trained on its whole training set (val_fraction = 0) has no validation split to evaluate."""
    path = tmp_path / "r.toml"
    path.write_text(toml_text(merged(train={"val_fraction": 0.0, "select": "last"})))
    trained = train(tmp_path, path)
    assert trained.exit_code == 0, trained.output
    (run,) = (tmp_path / "runs").iterdir()
    evaluated = CliRunner().invoke(app, ["eval", "--ckpt", str(run), "--split", "val"])
    assert_user_error(evaluated, "without a validation split", "use --split test")
    tested = CliRunner().invoke(app, ["eval", "--ckpt", str(run), "--split", "test", "--json"])
    assert tested.exit_code == 0 and '"samples": ' in tested.output, tested.output
