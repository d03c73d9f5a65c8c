"""Recipe schema and loading: bundled recipes, typed overrides, round trip, error messages."""

from __future__ import annotations

import pytest
import tomllib

from asgl.config import (
    Recipe,
    RecipeError,
    apply_overrides,
    bundled_recipes,
    load_recipe,
    parse_override,
    recipe_to_toml,
    recipes_folder,
    resolve_recipe_path,
    validate_recipe,
)


def test_digits_quick_is_the_documented_setting():
    r = load_recipe("digits_quick")
    assert (r.data.name, r.model.name) == ("digits", "digits_convnet")
    assert (r.neuron.spike, r.surrogate.family, r.surrogate.width) == ("asgl", "sigmoid", 5.0)
    assert (r.noise.prob, r.train.time_steps) == (0.2, 4)


def test_every_key_of_digits_quick_has_a_comment():
    path = resolve_recipe_path("digits_quick")
    lines = [line for line in path.read_text().splitlines() if "=" in line and not line.startswith("#")]
    assert lines and all("#" in line for line in lines), [line for line in lines if "#" not in line]


@pytest.mark.parametrize("name", bundled_recipes())
def test_bundled_recipes_round_trip_through_toml(name):
    recipe = load_recipe(name)
    assert validate_recipe(tomllib.loads(recipe_to_toml(recipe))) == recipe


def test_overrides_are_typed_by_the_schema():
    r = load_recipe(
        "digits_quick",
        ["surrogate.width=10", "noise.prob=0", "train.amp=bf16", "noise.milestone_epochs=[30, 70]", "run.name=x y"],
    )
    assert r.surrogate.width == 10.0 and isinstance(r.surrogate.width, float)
    assert r.noise.prob == 0.0 and r.train.amp == "bf16"
    assert r.noise.milestone_epochs == [30, 70] and r.run.name == "x y"


def test_override_of_a_nested_section_leaves_the_input_untouched():
    raw = {"data": {"name": "digits", "audio_augment": {"prob": 0.5}}}
    out = apply_overrides(raw, ["data.audio_augment.prob=0.25", "train.epochs=3"])
    assert raw == {"data": {"name": "digits", "audio_augment": {"prob": 0.5}}}
    recipe = validate_recipe(out)
    assert recipe.data.audio_augment.prob == 0.25 and recipe.train.epochs == 3


@pytest.mark.parametrize(
    ("item", "parsed"),
    [
        ("a.b=1", (["a", "b"], 1)),
        ("a.b=true", (["a", "b"], True)),
        ("a.b=sgd", (["a", "b"], "sgd")),
        ("a.b = 'x=y'", (["a", "b"], "x=y")),
    ],
)
def test_parse_override(item, parsed):
    assert parse_override(item) == parsed


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"train": {"epochs": 0}}, "train.epochs = 0"),
        ({"surrogate": {"family": "gauss"}}, "surrogate.family = 'gauss'"),
        ({"surrogate": {"family": "rectangle", "storage": "raw_slope"}}, "only defined for family='sigmoid'"),
        ({"noise": {"milestones": [1.5]}}, "milestone fractions must be in [0, 1)"),
        ({"run": {"device": "tpu"}}, "run.device = 'tpu'"),
        ({"extra": {}}, "extra: unknown key"),
        ({"optim": {"name": "adam", "nesterov": True}}, "nesterov = true needs name = 'sgd'"),
    ],
)
def test_schema_errors_name_key_and_value(raw, expected):
    with pytest.raises(RecipeError, match="invalid recipe") as info:
        validate_recipe(raw, "x.toml")
    assert expected in str(info.value)


def test_defaults_form_a_valid_recipe():
    assert Recipe() == validate_recipe({})


def test_a_local_file_wins_over_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits_quick.toml").write_text("[train]\nepochs = 1\n")
    assert load_recipe("digits_quick.toml").train.epochs == 1
    assert resolve_recipe_path("digits_quick").parent == recipes_folder()  # no such file here: the bundled recipe
