"""The spiking models: plain modules that take a :class:`asgl.data.DataInfo`, their sizes and
:class:`asgl.models.blocks.LayerFactories` (how to make a neuron layer and a norm).

Every model takes the data loader's input (see asgl.layers.to_time_major) and returns per-step logits
[T, B, K]. :mod:`asgl.builders` makes them from a recipe (``model.name``: a registered model,
``"sequential"`` or a user builder ``"package.module:function"``).
"""

from __future__ import annotations

from torch import nn

from asgl.errors import ModelDataMismatch  # re-exported here
from asgl.neuron import lif_layers

__all__ = ["ModelDataMismatch", "count_parameters"]


def count_parameters(model: nn.Module) -> int:
    """Weights + norm affine parameters (trainable), excluding the LIF layers' neuron parameters."""
    neuron = {id(p) for _, layer in lif_layers(model) for p in layer.parameters()}
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in neuron)
