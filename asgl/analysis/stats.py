"""Spike statistics, synaptic operations and an energy estimate of a spiking network.

Counted with forward hooks while the network runs in eval mode:

- per LIF layer, the firing rate: spikes per neuron per time step;
- per conv / linear layer, the synaptic operations driven by its actual non-zero inputs: each non-zero
  input element costs one operation per output element it reaches (a linear layer's ``out_features``; for a
  conv, the output positions and channels its kernel window touches, counted exactly at borders and
  strides). The first conv / linear layer to run reads the analog encoded input, so its operations are
  multiply-accumulates (MAC); every later layer reads spikes (or their pooled sums) and does accumulates (AC);
- the same network as an ANN: one pass per sample with every MAC counted (output elements x fan-in).

Batch norm (foldable into the weights), pooling, the LIF updates and biases are not counted, as usual in
SNN papers. Default energy constants: see :mod:`asgl.analysis`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asgl.analysis import ENERGY_AC_PJ, ENERGY_MAC_PJ
from asgl.neuron import LIF


def conv2d_synaptic_ops(x: Tensor, conv: nn.Conv2d) -> int:
    """Operations driven by the non-zero elements of x [N, C_in, H, W] through ``conv``.

    The conv of the non-zero indicator with a ones kernel counts, at every output position, the non-zero
    inputs in its window (per group); times the output channels of a group it is the number of
    (non-zero input, output element) pairs, i.e. exactly one operation per synapse used.
    """
    if conv.padding_mode != "zeros":
        raise ValueError(f"operation counts need zero padding, {conv} pads with {conv.padding_mode!r}")
    groups = conv.groups
    ones = torch.ones(groups, conv.in_channels // groups, *conv.kernel_size, device=x.device)
    reach = F.conv2d((x != 0).float(), ones, None, conv.stride, conv.padding, conv.dilation, groups)
    # each value is a small exact integer in float32 (whatever x's dtype); sum in int64 to stay exact
    return int(reach.long().sum().item()) * (conv.out_channels // groups)


def linear_synaptic_ops(x: Tensor, linear: nn.Linear) -> int:
    """Operations driven by the non-zero elements of x [..., in_features]: out_features each."""
    return int((x != 0).sum().item()) * linear.out_features


def dense_macs_per_row(output: Tensor, layer: nn.Conv2d | nn.Linear) -> int:
    """MACs of one row (one sample at one step) of ``layer`` with every weight used: output size x fan-in."""
    if isinstance(layer, nn.Conv2d):
        fan_in = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        return output[0].numel() * fan_in
    return layer.out_features * layer.in_features


@dataclass
class SynapseCount:
    """One conv / linear layer: operations over everything seen and its dense cost per row."""

    kind: str  # "conv" or "linear"
    op: str  # "mac" (analog input) or "ac" (spike input)
    ops: int = 0
    dense_macs_per_row: int = 0


@dataclass
class SpikeCount:
    """One LIF layer: spikes and neuron-steps over everything seen."""

    spikes: int = 0
    neuron_steps: int = 0


@dataclass
class Activity:
    """What the hooks saw, by qualified module name, in call order."""

    synapses: dict[str, SynapseCount] = field(default_factory=dict)
    neurons: dict[str, SpikeCount] = field(default_factory=dict)


def _synapse_hook(name: str, activity: Activity):
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if name not in activity.synapses:
            op = "ac" if activity.synapses else "mac"  # the first layer to run reads the encoded input
            kind = "conv" if isinstance(module, nn.Conv2d) else "linear"
            activity.synapses[name] = SynapseCount(kind, op, 0, dense_macs_per_row(output, module))
        x = inputs[0]
        count = conv2d_synaptic_ops if isinstance(module, nn.Conv2d) else linear_synaptic_ops
        activity.synapses[name].ops += count(x, module)

    return hook


def _neuron_hook(name: str, activity: Activity):
    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        record = activity.neurons.setdefault(name, SpikeCount())
        record.spikes += int((output != 0).sum().item())
        record.neuron_steps += output.numel()

    return hook


@contextmanager
def count_activity(model: nn.Module, activity: Activity | None = None) -> Iterator[Activity]:
    """Hooks that add the spikes and synaptic operations of ``model`` to ``activity`` while the block runs."""
    activity = Activity() if activity is None else activity
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(_synapse_hook(name, activity)))
        elif isinstance(module, LIF):
            handles.append(module.register_forward_hook(_neuron_hook(name, activity)))
    try:
        yield activity
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class LayerOps:
    """Per sample: ``ops`` operations of kind ``op`` as run, ``ann_macs`` as an ANN (one pass)."""

    name: str
    kind: str
    op: str
    ops: float
    ann_macs: int


@dataclass(frozen=True)
class NetworkStats:
    """Firing rates by LIF layer, operations by conv / linear layer, totals and energy per sample."""

    samples: int
    firing_rates: dict[str, float]
    layers: list[LayerOps]
    accumulates: float  # per sample (synaptic operations, SOPs)
    macs: float  # per sample, analog input layer
    ann_macs: int  # per sample
    energy_ac_pj: float
    energy_mac_pj: float
    snn_energy_pj: float  # per sample
    ann_energy_pj: float  # per sample

    @property
    def energy_ratio(self) -> float:
        """ANN energy / SNN energy (> 1: the SNN is cheaper)."""
        return self.ann_energy_pj / self.snn_energy_pj if self.snn_energy_pj else float("inf")


def summarize(
    activity: Activity, samples: int, energy_ac_pj: float = ENERGY_AC_PJ, energy_mac_pj: float = ENERGY_MAC_PJ
) -> NetworkStats:
    """Per-sample figures from the counts of ``samples`` samples."""
    if samples <= 0:
        raise ValueError("statistics need at least one sample")
    rates = {name: c.spikes / c.neuron_steps for name, c in activity.neurons.items()}
    layers = [
        LayerOps(name, c.kind, c.op, c.ops / samples, c.dense_macs_per_row) for name, c in activity.synapses.items()
    ]
    accumulates = sum(layer.ops for layer in layers if layer.op == "ac")
    macs = sum(layer.ops for layer in layers if layer.op == "mac")
    ann_macs = sum(layer.ann_macs for layer in layers)
    return NetworkStats(
        samples,
        rates,
        layers,
        accumulates,
        macs,
        ann_macs,
        energy_ac_pj,
        energy_mac_pj,
        accumulates * energy_ac_pj + macs * energy_mac_pj,
        ann_macs * energy_mac_pj,
    )
