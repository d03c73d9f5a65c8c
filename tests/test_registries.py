"""Every registry holds exactly the names the recipe schema accepts for it, every fixed choice of the schema
builds a working component, and components take the recipe's key names."""

from __future__ import annotations

import importlib
import inspect
from typing import get_args

import pytest
import torch

from asgl.builders import MODELS
from asgl.config import (
    CUSTOM_MODEL,
    DATASET_SECTIONS,
    MODEL_NAME_SECTIONS,
    NEURON_SECTIONS,
    LIFConfig,
    ModelSection,
    NeuronSection,
    OptimConfig,
    SurrogateConfig,
    TrainConfig,
)
from asgl.data import DATASETS
from asgl.layers import make_norm
from asgl.losses import LOSSES, READOUTS
from asgl.neuron import BACKENDS, LIF, neuron_from_config
from asgl.optim import OPTIMIZERS
from asgl.schedules import LR_SCHEDULES
from asgl.surrogates import SURROGATES, SurrogateWidth


def choices(section, key: str) -> set[str]:
    """The names the schema accepts for ``key`` of ``section`` (a Literal)."""
    return set(get_args(section.model_fields[key].annotation))


# each registry beside the names the schema accepts for it; the lists are read from both, never written here
@pytest.mark.parametrize(
    ("registry", "schema"),
    [
        (DATASETS, set(DATASET_SECTIONS)),
        (MODELS, set(MODEL_NAME_SECTIONS) - {CUSTOM_MODEL}),  # user builders are not registered
        (SURROGATES, choices(SurrogateConfig, "family")),
        (LOSSES, choices(TrainConfig, "loss")),
        (READOUTS, choices(ModelSection, "readout")),
        (OPTIMIZERS, choices(OptimConfig, "name")),
        (LR_SCHEDULES, choices(OptimConfig, "schedule")),
    ],
    ids=["datasets", "models", "surrogates", "losses", "readouts", "optimisers", "schedules"],
)
def test_registry_holds_what_the_schema_accepts(registry, schema):
    assert set(registry) - schema == set(), "registered, but no recipe can choose it"
    assert schema - set(registry) == set(), "a recipe can choose it, but nothing implements it"


def test_backends_match_the_schema():
    # triton is registered only where CUDA and Triton are present; "auto" picks one
    assert set(BACKENDS) - {"triton"} == choices(NeuronSection, "backend") - {"auto", "triton"}
    assert set(BACKENDS) <= choices(NeuronSection, "backend")


# the fixed choices (asgl.choices) have one definition, shared by the schema and the components: each one the
# schema offers must build a component that runs
@pytest.mark.parametrize(
    ("key", "value"),
    [
        (key, value)
        for key in ("model", "spike", "reset", "amplitude", "width_grad")
        for value in sorted(choices(NeuronSection, key))
    ]
    + [
        (f"surrogate.{key}", value)
        for key in ("granularity", "storage")
        for value in sorted(choices(SurrogateConfig, key))
    ],
)
def test_every_neuron_and_surrogate_choice_builds_a_running_layer(key, value):
    # the fused backend: one choice at a time here (each backend meets every choice in its own tests, and a
    # compiled kernel would spend seconds compiling each configuration)
    neuron, surrogate = LIFConfig(backend="fused"), SurrogateConfig()
    if key.startswith("surrogate."):
        surrogate = SurrogateConfig(**{key.removeprefix("surrogate."): value})
    elif key == "model":
        neuron = NEURON_SECTIONS[value](backend="fused")
    else:
        neuron = LIFConfig(backend="fused", **{key: value})
    layer = neuron_from_config(neuron, surrogate, (3,), noise_prob=0.5)
    current = torch.randn(4, 2, 3, requires_grad=True)
    out = layer(current)
    out.sum().backward()
    assert out.shape == (4, 2, 3) and torch.isfinite(current.grad).all()


@pytest.mark.parametrize("kind", sorted(choices(NeuronSection, "norm")))
def test_every_norm_choice_builds_a_running_norm(kind):
    norm = make_norm(kind, channels=3, time_steps=4, dims=1)
    assert norm(torch.randn(4, 2, 3)).shape == (4, 2, 3)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_module_builds_and_checks(name):
    module = importlib.import_module(DATASETS[name])
    assert callable(module.build) and callable(module.check)


def test_components_take_the_recipe_key_names():
    lif = set(inspect.signature(LIF).parameters) - {"width", "noise_prob"}
    # the norm sits before the LIF layer; the layer takes the keys of every neuron model
    assert lif == set().union(*(section.model_fields for section in NEURON_SECTIONS.values())) - {"norm"}
    width = set(inspect.signature(SurrogateWidth).parameters) - {"feature_shape"}
    assert width == set(SurrogateConfig.model_fields)
