"""What each bundled recipe follows: its first line says so, the SG baselines differ from their ASGL twins in the
spike alone, and the CIFAR recipes differ from the authors' run exactly where their headers say."""

from __future__ import annotations

import re
from typing import Any

import pytest

from asgl.config import bundled_recipes, load_recipe, recipe_to_dict, recipes_folder

FOLLOWS = re.compile(r"# Follows: (the authors' run|the paper's table|asgl's own choice)\b")
# what a plain-SG twin may change in its ASGL recipe: its name, the spike, a fixed width, and the noise keys
SG_TWIN_KEYS = {"run.name", "neuron.spike", "surrogate.learnable"}


def flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(a: str, b: str) -> dict[str, tuple[Any, Any]]:
    """Every resolved key (defaults included) whose value differs between recipes ``a`` and ``b``."""
    fa, fb = (flat(recipe_to_dict(load_recipe(name))) for name in (a, b))
    return {k: (fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)}


@pytest.mark.parametrize("name", bundled_recipes())
def test_first_line_says_what_the_recipe_follows(name: str) -> None:
    first = (recipes_folder() / f"{name}.toml").read_text().splitlines()[0]
    match = FOLLOWS.match(first)
    assert match, f"{name}: the first line must start with '# Follows: <the authors' run|...>', not {first!r}"
    assert len(first) <= 125, f"{name}: the Follows line is one line that reads in a terminal"
    if match[1] != "asgl's own choice":
        assert "Differs" in first, f"{name}: a run of the authors or of the paper names what differs"


SG_TWINS = [name for name in bundled_recipes() if name.endswith("_sg")]


def test_there_is_an_sg_twin() -> None:
    assert "cifar100_resnet18_sg" in SG_TWINS


@pytest.mark.parametrize("twin", SG_TWINS)
def test_sg_twin_differs_from_its_asgl_recipe_in_the_spike_only(twin: str) -> None:
    asgl = twin.removesuffix("_sg")
    diff = differences(asgl, twin)
    other = {k: v for k, v in diff.items() if k not in SG_TWIN_KEYS and not k.startswith("noise.")}
    assert other == {}, f"{twin} differs from {asgl} beyond the spike: {other}"
    assert diff["neuron.spike"] == ("asgl", "sg") and diff["run.name"] == (asgl, twin)
    sg = load_recipe(twin)
    assert sg.surrogate.learnable is False and sg.noise.prob == 0, "plain SG: a fixed width and no analog mode"


# keys in which a CIFAR recipe differs from the authors' run (cifar100_resnet18), as its header names them
AUTHORS_RUN = "cifar100_resnet18"
NAMED_DIFFERENCES = {
    "init": {"model.init"},
    "width storage": {"surrogate.storage"},
    "AutoAugment": {"data.autoaugment"},
    "fill": {"data.autoaugment_fill"},
    "seed": {"run.seed"},
    "val split": {"train.val_fraction", "train.select"},
}
CIFAR_RECIPES = {  # recipe -> what it changes on purpose (its subject), beside the differences its header names
    "cifar10_resnet18": {"run.name", "data.name"},
    "cifar100_resnet19": {"run.name", "model.name"},
}


@pytest.mark.parametrize("name", sorted(CIFAR_RECIPES))
def test_cifar_recipes_differ_from_the_authors_run_where_their_header_says(name: str) -> None:
    first = (recipes_folder() / f"{name}.toml").read_text().splitlines()[0]
    named = [what for what in NAMED_DIFFERENCES if what in first.split("Differs", 1)[1]]
    expected = CIFAR_RECIPES[name].union(*(NAMED_DIFFERENCES[what] for what in named))
    assert set(differences(AUTHORS_RUN, name)) == expected, first
