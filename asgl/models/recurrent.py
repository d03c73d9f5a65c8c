"""The SHD network: F inputs -> ``model.hidden`` (recurrent) LIF units -> K classes, no biases.

With 700 inputs, 240 hidden units and 20 classes it has 700·240 + 240·240 + 240·20 = 230,400 weights.
Input sequences ``[B, T, F]`` (SHD spike counts, log-mel features) -> per-step logits ``[T, B, K]``;
how they become a prediction (``model.readout``: mean, last or max over time) is the loss's business
(asgl.losses). The hidden current is ``W_in x[t] (+ W_rec o[t−1])``, normalised by ``neuron.norm``
(``none`` keeps the weight count above). Without recurrence the hidden LIF runs on its sequence
backend (fused by default); the recurrence needs the previous step's output, so it runs step by step
with the step of the layer's neuron model (asgl.neuron_models: lif, if or alif) on the same layer's
parameters and masks.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asgl.data import DataInfo
from asgl.layers import TimeFold, to_time_major
from asgl.models.blocks import LayerFactories
from asgl.neuron import LIF
from asgl.neuron_models import NEURONS, make_spike, reference_step


def lif_recurrent(layer: LIF, current: Tensor, recurrent: nn.Linear) -> Tensor:
    """Run ``layer`` step by step on ``current[t] + recurrent(out[t−1])``. current [T, B, H] -> out [T, B, H]."""
    mask = layer.draw_mask(current.shape, current.device)
    spec, model = layer.spec(), NEURONS[layer.model]
    params, k = layer.params(), layer.width.slope()
    state = tuple(torch.zeros_like(current[0]) for _ in model.states)
    out = torch.zeros_like(current[0])
    outs = []
    for t in range(current.shape[0]):
        spike = make_spike(spec, k, None if mask is None else mask[t])
        out, state = reference_step(model, current[t] + recurrent(out), state, params, spike, spec)
        outs.append(out)
    return torch.stack(outs)


class RecurrentSNN(nn.Module):
    """One hidden layer of (recurrent) LIF neurons and a linear per-step readout."""

    def __init__(
        self, info: DataInfo, layers: LayerFactories, hidden: int = 240, recurrent: bool = True, dropout: float = 0.0
    ):
        """``info`` describes sequences [B, T, F] (``input_size`` = (F,))."""
        super().__init__()
        self.time_steps = info.time_steps
        self.input = TimeFold(nn.Linear(info.input_size[0], hidden, bias=False))
        self.norm = layers.norm(hidden, 1)
        self.lif = layers.neuron((hidden,))
        self.recurrent = nn.Linear(hidden, hidden, bias=False) if recurrent else None
        self.head = TimeFold(nn.Dropout(dropout), nn.Linear(hidden, info.num_classes, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, F] -> per-step logits [T, B, K]."""
        current = self.norm(self.input(to_time_major(x, self.time_steps)))
        spikes = self.lif(current) if self.recurrent is None else lif_recurrent(self.lif, current, self.recurrent)
        return self.head(spikes)
