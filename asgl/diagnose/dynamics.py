"""Per-layer dynamics of the pure SNN (eval mode), and the accuracy gap between hybrid and pure SNN.

For every LIF layer, with x = u − θ the membrane potential relative to threshold over all steps, samples
and neurons of the fixed batches:

- ``width``: mean α = 1/k;
- ``firing_rate``: mean of Θ(x) (spikes per neuron per step);
- ``in_window``: fraction of |k x| <= ``surrogate.window`` (the central 90 % of the surrogate's mass);
- ``smoothing_error``: E|H_α(x) − Θ(x)|, what the analog mode changes in the forward pass.

x is recomputed from each layer's captured input current with the step of the layer's neuron model
(asgl.neuron_models), the same step the layer runs, so no hook inside the neuron is needed (for ``alif``, θ is
the adapted threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asgl.diagnose.gradients import Batch, spike_regime
from asgl.losses import Readout, predict
from asgl.neuron import LIF, lif_layers
from asgl.neuron_models import NEURONS, reference_step
from asgl.spike import SpikeSpec, heaviside


@dataclass
class LayerDynamics:
    layer: str
    width: float
    firing_rate: float
    in_window: float
    smoothing_error: float


def membrane(layer: LIF, current: Tensor) -> Tensor:
    """x = u − θ [T, B, ...] of an eval-mode (binary) LIF layer for its input current [T, B, ...]."""
    xs: list[Tensor] = []

    def spike(x: Tensor) -> Tensor:
        xs.append(x)
        return heaviside(x)

    model, params = NEURONS[layer.model], layer.params()
    spec = SpikeSpec(layer.surrogate, "heaviside", layer.reset, layer.amplitude)
    state = tuple(torch.zeros_like(current[0]) for _ in model.states)
    for t in range(current.shape[0]):
        _, state = reference_step(model, current[t], state, params, spike, spec)
    return torch.stack(xs)


class _Totals:
    def __init__(self) -> None:
        self.count = 0
        self.spikes = 0.0
        self.inside = 0.0
        self.error = 0.0

    def add(self, layer: LIF, x: Tensor) -> None:
        k = layer.width.slope().detach()
        theta = heaviside(x)
        self.count += x.numel()
        self.spikes += float(theta.sum())
        self.inside += float(((k * x).abs() <= layer.surrogate.window).sum())
        self.error += float((layer.surrogate.H(x, k) - theta).abs().sum())


@torch.no_grad()
def layer_dynamics(model: nn.Module, batches: Sequence[Batch]) -> list[LayerDynamics]:
    """Statistics of every LIF layer in the pure-SNN forward pass over ``batches``."""
    layers = lif_layers(model)
    totals = {name: _Totals() for name, _ in layers}
    hooks = [
        layer.register_forward_hook(lambda mod, inp, out, name=name: totals[name].add(mod, membrane(mod, inp[0])))
        for name, layer in layers
    ]
    was_training = model.training
    model.eval()
    try:
        for x, _ in batches:
            model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    rows = []
    for name, layer in layers:
        t = totals[name]
        rows.append(
            LayerDynamics(
                name,
                float(layer.width.width().mean()),
                t.spikes / t.count,
                t.inside / t.count,
                t.error / t.count,
            )
        )
    return rows


@torch.no_grad()
def accuracy_gap(
    model: nn.Module, batches: Sequence[Batch], noise_prob: float, seed: int = 0, readout: Readout = "mean"
) -> tuple[float, float]:
    """(hybrid accuracy, pure-SNN accuracy) on ``batches``; hybrid = ASGL spikes at p (seeded masks),
    norms in eval mode."""

    def accuracy() -> float:
        correct = sum(int((predict(model(x), readout) == y).sum()) for x, y in batches)
        return correct / sum(len(y) for _, y in batches)

    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with spike_regime(model, "asgl", noise_prob=noise_prob, generator=generator):
        hybrid = accuracy()
    was_training = model.training
    model.eval()
    try:
        snn = accuracy()
    finally:
        model.train(was_training)
    return hybrid, snn
