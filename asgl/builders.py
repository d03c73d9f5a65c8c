"""The one place where a :class:`asgl.config.Recipe` becomes components: model, data, loss, optimisers.

Below this module nothing sees the recipe: models take a :class:`asgl.data.DataInfo`, their sizes and
:class:`asgl.models.blocks.LayerFactories` (a neuron factory and a norm factory); dataset modules take
their own ``[data]`` section and a :class:`asgl.data.DataRun`. The trainer and the CLI call the
functions here. ``noise.prob`` enters the neurons here as their initial p; the trainer sets each epoch's
p with :func:`asgl.neuron.set_noise_prob`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from asgl import optim
from asgl.config import Recipe, RecipeError
from asgl.data import DATASETS, DataBundle, DataInfo, DataMissingError, DataProblem, DataRun
from asgl.errors import ModelDataMismatch
from asgl.layers import make_norm
from asgl.models.blocks import LayerFactories, NeuronFactory, NormFactory, Shape, init_weights
from asgl.models.custom import import_builder
from asgl.models.digits import DigitsConvNet
from asgl.models.recurrent import RecurrentSNN
from asgl.models.resnet import RESNETS, SpikingResNet
from asgl.models.sequential import SequentialSNN, input_shape, layer_shapes
from asgl.models.vgg import VGGS, SpikingVGG
from asgl.neuron import neuron_from_config
from asgl.trust import is_import_path

# ---------------------------------------------------------------- layers


def neuron_factory(recipe: Recipe) -> NeuronFactory:
    """Feature shape -> a neuron layer of the recipe's ``neuron`` and ``surrogate`` sections, p = ``noise.prob``."""

    def make(shape: Shape) -> nn.Module:
        return neuron_from_config(recipe.neuron, recipe.surrogate, shape, recipe.noise.prob)

    return make


def norm_factory(recipe: Recipe) -> NormFactory:
    """(channels, dims) -> the recipe's ``neuron.norm`` over ``train.time_steps`` steps."""
    neuron, steps = recipe.neuron, recipe.train.time_steps

    def make(channels: int, dims: int) -> nn.Module:
        return make_norm(neuron.norm, channels, steps, dims, neuron.threshold)

    return make


def layer_factories(recipe: Recipe) -> LayerFactories:
    return LayerFactories(neuron_factory(recipe), norm_factory(recipe))


# ---------------------------------------------------------------- models

ModelBuilder = Callable[[Any, DataInfo, LayerFactories], nn.Module]  # (model section, info, factories)

MODELS: dict[str, ModelBuilder] = {
    "digits_convnet": lambda m, info, f: DigitsConvNet(info, f, m.hidden, m.dropout),
    "resnet18": lambda m, info, f: SpikingResNet(info, RESNETS[m.name], f, m.dropout),
    "resnet19": lambda m, info, f: SpikingResNet(info, RESNETS[m.name], f, m.dropout),
    "resnet34": lambda m, info, f: SpikingResNet(info, RESNETS[m.name], f, m.dropout),
    "vggsnn2": lambda m, info, f: SpikingVGG(info, VGGS[m.name], f, m.dropout),
    "vgg11": lambda m, info, f: SpikingVGG(info, VGGS[m.name], f, m.dropout),
    "vgg13": lambda m, info, f: SpikingVGG(info, VGGS[m.name], f, m.dropout),
    "recurrent_snn": lambda m, info, f: RecurrentSNN(info, f, m.hidden, m.recurrent, m.dropout),
    "sequential": lambda m, info, f: SequentialSNN(
        m.layers, input_shape(info), info.num_classes, info.time_steps, f, m.dropout
    ),
}

# models that take sequences [B, T, F]; "sequential" and user builders take what their layers take
SEQUENCE_MODELS = {"recurrent_snn"}
CONV_MODELS = set(MODELS) - SEQUENCE_MODELS - {"sequential"}


def check_model_data(recipe: Recipe, info: DataInfo) -> None:
    """Raise :class:`ModelDataMismatch` when the model's kind or explicit sizes contradict the dataset."""
    m, data = recipe.model, recipe.data.name
    if m.name in CONV_MODELS and info.kind == "sequence":
        raise ModelDataMismatch(
            f"model.name = {m.name!r} is convolutional but dataset {data!r} gives sequences [B, T, F]; "
            f"use one of {', '.join(sorted(SEQUENCE_MODELS))}"
        )
    if m.name in SEQUENCE_MODELS and info.kind != "sequence":
        raise ModelDataMismatch(
            f"model.name = {m.name!r} takes sequences [B, T, F], dataset {data!r} gives {info.kind} data"
        )
    if m.num_classes is not None and m.num_classes != info.num_classes:
        raise ModelDataMismatch(
            f"model.num_classes = {m.num_classes} but dataset {data!r} has {info.num_classes} classes"
        )
    if m.in_channels is not None and m.in_channels != info.in_channels:
        raise ModelDataMismatch(
            f"model.in_channels = {m.in_channels} but dataset {data!r} has {info.in_channels} channels"
        )


def check_model_name(recipe: Recipe) -> None:
    """``model.name`` is a registered model, or a user builder that can be imported."""
    name = recipe.model.name
    if is_import_path(name):
        import_builder(name)
    elif name not in MODELS:
        raise ModelDataMismatch(
            f"model.name = {name!r}: unknown model; known: {', '.join(MODELS)}, or 'package.module:function'"
        )


def check_model(recipe: Recipe, info: DataInfo) -> None:
    """Everything about the recipe's model that can be checked without building it: the name, its kind and
    explicit sizes, the shapes of ``model.layers``."""
    check_model_name(recipe)
    check_model_data(recipe, info)
    if recipe.model.name == "sequential":
        layer_shapes(recipe.model.layers, input_shape(info))


def build_user_model(recipe: Recipe, info: DataInfo) -> nn.Module:
    """Call the user builder ``model.name`` with ``(recipe, info)`` and check that it returned a module."""
    path = recipe.model.name
    model = import_builder(path)(recipe, info)
    if not isinstance(model, nn.Module):
        raise RecipeError(f"model.name = {path!r} returned a {type(model).__name__}, expected a torch.nn.Module")
    return model


def build_model(recipe: Recipe, info: DataInfo) -> nn.Module:
    """The recipe's model for data described by ``info``: initialised per ``model.init``, channels-last
    if the recipe asks (weights drawn from the global RNG)."""
    check_model(recipe, info)
    m = recipe.model
    if is_import_path(m.name):
        model = build_user_model(recipe, info)
    else:
        model = MODELS[m.name](m, info, layer_factories(recipe))
    init = getattr(m, "init", None)
    if init is not None:
        init_weights(model, init)
    return model.to(memory_format=torch.channels_last) if m.channels_last else model


# ---------------------------------------------------------------- data


def data_run(recipe: Recipe) -> DataRun:
    """What the run decides about its data: T, the validation split, the seed, the model's class count."""
    return DataRun(recipe.train.time_steps, recipe.train.val_fraction, recipe.run.seed, recipe.model.num_classes)


def _data_module(name: str) -> Any:
    if name not in DATASETS:
        raise DataMissingError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return importlib.import_module(DATASETS[name])


def describe_data(recipe: Recipe) -> DataInfo:
    """What the recipe's data looks like to a model, without touching the data (see each module's ``info``)."""
    return _data_module(recipe.data.name).info(recipe.data, data_run(recipe))


def build_data(recipe: Recipe) -> DataBundle:
    """Train / validation / test datasets of the recipe (validation carved from the training set)."""
    return _data_module(recipe.data.name).build(recipe.data, data_run(recipe))


def check_data(recipe: Recipe) -> list[DataProblem]:
    """Whether the recipe's data is present and readable, without loading it all."""
    return _data_module(recipe.data.name).check(recipe.data, data_run(recipe))


# ---------------------------------------------------------------- training


def build_optimizers(recipe: Recipe, model: nn.Module) -> optim.Optimizers:
    """The main and neuron optimisers of ``model`` with their LR schedules over ``train.epochs``."""
    return optim.build_optimizers(model, recipe.optim, recipe.train.epochs)
