"""Model registry: recipe ``model.name`` -> builder ``(recipe, info) -> nn.Module``.

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
from asgl.models import digits, recurrent, resnet, vgg
from asgl.neuron import lif_layers, set_noise_prob, share_decay

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
}


# models that take sequences [B, T, F]; every other model is convolutional and takes images or frames
SEQUENCE_MODELS = {"recurrent_snn"}


def check_model_data(recipe: Recipe, info: DataInfo) -> None:
    """Raise :class:`ModelDataMismatch` when explicit model sizes contradict the dataset."""
    m = recipe.model
    if m.name not in SEQUENCE_MODELS and info.kind == "sequence":
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


def build_model(recipe: Recipe, info: DataInfo) -> nn.Module:
    """The recipe's model for data described by ``info``, with p set to ``noise.prob`` (and one shared decay
    when ``neuron.shared_decay``)."""
    if recipe.model.name not in MODELS:
        raise ModelDataMismatch(f"model.name = {recipe.model.name!r}: unknown model; known: {', '.join(MODELS)}")
    check_model_data(recipe, info)
    try:
        model = MODELS[recipe.model.name](recipe, info)
    except (ModelDataMismatch, RecipeError):
        raise
    except ValueError as e:  # builders reject inputs they cannot take (input size, input kind)
        raise ModelDataMismatch(f"model {recipe.model.name!r} cannot take dataset {recipe.data.name!r}: {e}") from None
    set_noise_prob(model, recipe.noise.prob)
    if recipe.neuron.shared_decay:
        share_decay(model)
    return model


def count_parameters(model: nn.Module) -> int:
    """Weights + norm affine parameters (trainable), excluding the LIF layers' neuron parameters."""
    neuron = {id(p) for _, layer in lif_layers(model) for p in layer.parameters()}
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in neuron)
