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
    recipe_to_dict,
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
    raw = {"data": {"name": "audio_folder", "audio_augment": {"prob": 0.5}}}
    out = apply_overrides(raw, ["data.audio_augment.prob=0.25", "train.epochs=3"])
    assert raw == {"data": {"name": "audio_folder", "audio_augment": {"prob": 0.5}}}
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
        ({"extra": {}}, "unknown section extra"),
        ({"optim": {"name": "adam", "nesterov": True}}, "optim.nesterov: not a key of optimiser 'adam'"),
        ({"optim": {"nesterov": True, "momentum": 0.0}}, "optim: nesterov = true needs momentum > 0"),
        ({"data": {"name": "cifar100", "n_mels": 40}}, "data.n_mels: not a key of dataset 'cifar100'"),
        ({"data": {"name": "dvs_gesture", "split": "ratio"}}, "data.split: not a key of dataset 'dvs_gesture'"),
        ({"data": {"root": "x"}}, "data.root: not a key of dataset 'digits'"),
        ({"model": {"name": "resnet18", "hidden": 64}}, "model.hidden: not a key of model 'resnet18'"),
        ({"model": {"recurrent": False}}, "model.recurrent: not a key of model 'digits_convnet'"),
        ({"model": {"name": "recurrent_snn", "channels_last": True}}, "model.channels_last: not a key of model"),
        ({"model": {"name": "resnet19", "init": "reference"}}, "model.init = 'reference'"),
        ({"train": {"tet_lambda": 0.1}}, "train.tet_lambda: not a key of loss 'ce'"),
        ({"optim": {"step_gamma": 0.5}}, "optim.step_gamma: not a key of schedule 'cosine'"),
    ],
)
def test_schema_errors_name_key_and_value(raw, expected):
    with pytest.raises(RecipeError, match="invalid recipe") as info:
        validate_recipe(raw, "x.toml")
    assert expected in str(info.value)


def test_the_default_sections_are_the_digits_data_and_model():
    """A recipe without [data] or [model], or with tables that do not name one, uses digits_convnet on digits."""
    bare = validate_recipe({"train": {"epochs": 1}})
    assert (bare.data.name, bare.model.name, bare.model.hidden) == ("digits", "digits_convnet", 240)
    unnamed = validate_recipe({"data": {"subset": 5}, "model": {"hidden": 7}})
    assert (unnamed.data.name, unnamed.data.subset, unnamed.model.name, unnamed.model.hidden) == (
        "digits", 5, "digits_convnet", 7
    )  # fmt: skip
    assert not hasattr(bare.data, "root") and Recipe().model.name == "digits_convnet"


@pytest.mark.parametrize("text", ["", "# only a comment\n\n"])
def test_an_empty_recipe_is_refused(tmp_path, text):
    path = tmp_path / "empty.toml"
    path.write_text(text)
    with pytest.raises(RecipeError, match="is empty"):
        load_recipe(str(path))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["neuron.spik=sg"], "--set neuron.spik=sg: unknown key neuron.spik (did you mean neuron.spike?)"),
        (["nueron.spike=sg"], "--set nueron.spike=sg: unknown section nueron (did you mean neuron?)"),
        (["neuron.spike=asgll"], "--set neuron.spike=asgll: neuron.spike = 'asgll': "),
        (["data.name=cifar1000"], "unknown dataset (did you mean 'cifar100'?)"),
        (["model.name=resnt18"], "unknown model (did you mean 'resnet18'?)"),
        (["surrogate.family=sigmod"], "(did you mean 'sigmoid'?)"),
        (["train.epochs=2", "data.n_mels=4"], "--set data.n_mels=4: data.n_mels: not a key of dataset 'digits'"),
        (
            ["surrogate.storage=raw_slope", "surrogate.family=tanh"],
            "--set surrogate.family=tanh: surrogate: storage='raw_slope' is only defined for family='sigmoid'",
        ),
    ],
)
def test_a_failing_override_names_its_flag_not_the_file(overrides, expected):
    with pytest.raises(RecipeError) as info:
        load_recipe("digits_quick", overrides)
    message = str(info.value)
    assert expected in message
    assert "invalid recipe" not in message and "digits_quick.toml" not in message
    assert len(message.splitlines()) == 1


def test_file_and_override_problems_each_get_their_line(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[surrogate]\nwidht = 2.0\n[optim]\nname = "adam"\nmomentum = 0.9\n')
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path), ["train.epoch=3"])
    assert str(info.value).splitlines() == [
        f"invalid recipe {path}:",
        "  unknown key surrogate.widht (did you mean surrogate.width?)",
        "  optim.momentum: not a key of optimiser 'adam' (only of 'sgd')",
        "--set train.epoch=3: unknown key train.epoch (did you mean train.epochs?)",
    ]


def test_unknown_recipe_name_gets_a_did_you_mean():
    with pytest.raises(RecipeError, match=r"'digits_quik' is neither .*\(did you mean digits_quick\?\)"):
        resolve_recipe_path("digits_quik")


def test_keys_a_component_does_not_use_are_left_out_of_the_dump():
    recipe = load_recipe("digits_quick")  # adam, cosine schedule, ce loss
    dumped = recipe_to_dict(recipe)
    assert {"momentum", "nesterov", "restart_epochs", "step_epochs", "step_gamma"}.isdisjoint(dumped["optim"])
    assert {"tet_lambda", "tet_phi"}.isdisjoint(dumped["train"])
    sgd = recipe_to_dict(load_recipe("digits_quick", ["optim.name=sgd", "optim.schedule=step"]))["optim"]
    assert {"momentum", "nesterov", "step_epochs", "step_gamma"} <= sgd.keys() and "restart_epochs" not in sgd


def test_overriding_a_name_switches_the_component():
    """digits_quick sets model.hidden: switching to a ResNet drops it, keys both take are kept."""
    recipe = load_recipe("digits_quick", ["model.readout=max", "model.name=resnet18"])
    assert (recipe.model.name, recipe.model.readout, recipe.model.init) == ("resnet18", "max", "kaiming")
    assert not hasattr(recipe.model, "hidden")
    with pytest.raises(RecipeError, match="--set model.hidden=8: model.hidden: not a key of model 'resnet18'"):
        load_recipe("digits_quick", ["model.name=resnet18", "model.hidden=8"])
    images = load_recipe("cifar10_resnet18", ["data.name=cifar100"]).data
    assert (images.name, images.cutout, images.root) == ("cifar100", 16, "data")
    adam = load_recipe("cifar10_resnet18", ["optim.name=adam"]).optim  # the recipe sets SGD's momentum
    assert (adam.name, adam.lr, adam.weight_decay) == ("adam", 0.1, 0.0005) and "momentum" not in adam.model_fields_set
    with pytest.raises(RecipeError, match="--set optim.momentum=0.5: optim.momentum: not a key of optimiser 'adam'"):
        load_recipe("cifar10_resnet18", ["optim.name=adam", "optim.momentum=0.5"])


def test_a_local_file_wins_over_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits_quick.toml").write_text("[train]\nepochs = 1\n")
    assert load_recipe("digits_quick.toml").train.epochs == 1
    assert resolve_recipe_path("digits_quick").parent == recipes_folder()  # no such file here: the bundled recipe


def test_recipes_stored_with_every_key_still_load():
    """Runs saved before per-component sections stored every key; the unused ones are dropped on reading."""
    import tomli_w

    from asgl.config import read_stored_recipe

    current = recipe_to_dict(load_recipe("digits_quick"))
    old = {section: dict(table) for section, table in current.items()}
    old["data"] |= {"root": "data", "n_mels": 64, "cutout": 0, "split": "ratio"}
    old["model"] |= {"recurrent": True, "init": "kaiming"}
    old["optim"] |= {"momentum": 0.9, "nesterov": False, "step_gamma": 0.1, "restart_epochs": 10}
    old["train"] |= {"tet_lambda": 0.001, "tet_phi": 1.0}
    text = tomli_w.dumps(old)
    with pytest.raises(RecipeError, match="data.root: not a key of dataset 'digits'"):
        validate_recipe(tomllib.loads(text))  # a user recipe with these keys is refused
    assert validate_recipe(read_stored_recipe(text)) == load_recipe("digits_quick")
