"""Every registry and the recipe schema name the same things, and components take the recipe's key names."""

from __future__ import annotations

import importlib
import inspect
from typing import get_args

import pytest

from asgl.config import (
    CUSTOM_MODEL,
    DATASET_SECTIONS,
    MODEL_NAME_SECTIONS,
    ModelSection,
    NeuronConfig,
    OptimConfig,
    SurrogateConfig,
    TrainConfig,
)
from asgl.data import DATASETS
from asgl.layers import NormKind
from asgl.losses import LOSSES, READOUTS
from asgl.models import MODELS
from asgl.neuron import BACKENDS, LIF, NeuronModel
from asgl.optim import OPTIMIZERS
from asgl.schedules import LR_SCHEDULES
from asgl.spike import Amplitude, Reset, Spike, WidthGrad
from asgl.surrogates import SURROGATES, Granularity, Storage, SurrogateWidth


def choices(section, key: str) -> set[str]:
    return set(get_args(section.model_fields[key].annotation))


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
        (get_args(NormKind), choices(NeuronConfig, "norm")),
        (get_args(NeuronModel), choices(NeuronConfig, "model")),
        (get_args(Reset), choices(NeuronConfig, "reset")),
        (get_args(Amplitude), choices(NeuronConfig, "amplitude")),
        (get_args(WidthGrad), choices(NeuronConfig, "width_grad")),
        (get_args(Granularity), choices(SurrogateConfig, "granularity")),
        (get_args(Storage), choices(SurrogateConfig, "storage")),
    ],
    ids=[
        "datasets", "models", "surrogates", "losses", "readouts", "optimisers", "schedules",
        "norms", "neuron_models", "reset", "amplitude", "width_grad", "granularity", "storage",
    ],
)  # fmt: skip
def test_registry_and_schema_accept_the_same_names(registry, schema):
    assert set(registry) == schema


def test_backends_and_spikes_match_the_schema():
    # triton is registered only where CUDA and Triton are present; "auto" picks one
    assert set(BACKENDS) - {"triton"} == choices(NeuronConfig, "backend") - {"auto", "triton"}
    assert set(BACKENDS) <= choices(NeuronConfig, "backend")
    # "analog" (p = 1) is a spike of the diagnosis, not a training setting
    assert set(get_args(Spike)) - {"analog"} == choices(NeuronConfig, "spike")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_module_builds_and_checks(name):
    module = importlib.import_module(DATASETS[name])
    assert callable(module.build) and callable(module.check)


def test_components_take_the_recipe_key_names():
    lif = set(inspect.signature(LIF).parameters) - {"width", "noise_prob"}
    # the norm sits before the LIF layer; a shared decay ties the layers of a model together (asgl.neuron.share_decay)
    assert lif == set(NeuronConfig.model_fields) - {"norm", "shared_decay"}
    width = set(inspect.signature(SurrogateWidth).parameters) - {"feature_shape"}
    assert width == set(SurrogateConfig.model_fields)
