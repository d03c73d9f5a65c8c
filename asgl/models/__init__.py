"""Model registry: recipe ``model.name`` -> builder ``(recipe, info) -> nn.Module``.

``model.name`` may also name a user builder, ``"package.module:function"`` (see :mod:`asgl.models.custom`),
and ``"sequential"`` builds the network written in ``model.layers`` (see :mod:`asgl.models.sequential`).

Every model takes the data loader's input (see asgl.layers.to_time_major) and returns per-step logits
[T, B, K]. Its LIF layers are built from the recipe's ``neuron`` and ``surrogate`` sections; its own
options (``model.hidden``, ``model.init``, ...) are the keys of its section in asgl.config.MODEL_SECTIONS.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from asgl.config import Recipe, RecipeError
from asgl.data import DataInfo
from asgl.errors import ModelDataMismatch  # re-exported here
from asgl.models import digits, recurrent, resnet, sequential, vgg
from asgl.models.custom import build_user_model, import_builder, is_import_path
from asgl.neuron import lif_layers, set_noise_prob

Builder = Callable[[Recipe, DataInfo], nn.Module]

MODELS: dict[str, Builder] = {
    "digits_convnet": digits.digits_convnet,
    "resnet18": partial(resnet.build_resnet, "resnet18"),
    "resnet19": partial(resnet.build_resnet, "resnet19"),
    "resnet34": partial(resnet.build_resnet, "resnet34"),
    "vggsnn2": partial(vgg.build_vgg, "vggsnn2"),
    "vgg11": partial(vgg.build_vgg, "vgg11"),
    "vgg13": partial(vgg.build_vgg, "vgg13"),
    "recurrent_snn": recurrent.recurrent_snn,
    "sequential": sequential.build_sequential,
}


# models that take sequences [B, T, F]; "sequential" and user builders take what their layers take
SEQUENCE_MODELS = {"recurrent_snn"}
CONV_MODELS = set(MODELS) - SEQUENCE_MODELS - {"sequential"}


def check_model_data(recipe: Recipe, info: DataInfo) -> None:
    """Raise :class:`ModelDataMismatch` when explicit model sizes contradict the dataset."""
    m = recipe.model
    if m.name in CONV_MODELS and info.kind == "sequence":
        raise ModelDataMismatch(
            f"model.name = {m.name!r} is convolutional but dataset {recipe.data.name!r} gives sequences [B, T, F]; "
            f"use one of {', '.join(sorted(SEQUENCE_MODELS))}"
        )
    if m.num_classes is not None and m.num_classes != info.num_classes:
        raise ModelDataMismatch(
            f"model.num_classes = {m.num_classes} but dataset {recipe.data.name!r} has {info.num_classes} classes"
        )
    if m.in_channels is not None and m.in_channels != info.in_channels:
        raise ModelDataMismatch(
            f"model.in_channels = {m.in_channels} but dataset {recipe.data.name!r} has {info.in_channels} channels"
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
    """Everything about the recipe's model that can be checked without building it: the name, explicit
    sizes, the shapes of ``model.layers``."""
    check_model_name(recipe)
    check_model_data(recipe, info)
    if recipe.model.name == "sequential":
        sequential.check_layers(recipe, info)


def build_model(recipe: Recipe, info: DataInfo) -> nn.Module:
    """The recipe's model for data described by ``info``, with p set to ``noise.prob``."""
    check_model(recipe, info)
    name = recipe.model.name
    try:
        model = build_user_model(name, recipe, info) if is_import_path(name) else MODELS[name](recipe, info)
    except (ModelDataMismatch, RecipeError):
        raise
    except ValueError as e:  # builders reject inputs they cannot take (input size, input kind)
        raise ModelDataMismatch(f"model {recipe.model.name!r} cannot take dataset {recipe.data.name!r}: {e}") from None
    set_noise_prob(model, recipe.noise.prob)
    return model


def count_parameters(model: nn.Module) -> int:
    """Weights + norm affine parameters (trainable), excluding the LIF layers' neuron parameters."""
    neuron = {id(p) for _, layer in lif_layers(model) for p in layer.parameters()}
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in neuron)
