"""Export of an eval-mode asgl network as a NIR graph (Neuromorphic Intermediate Representation).

asgl's neuron, one step: u[t] = γ ũ[t−1] + I[t]; s[t] = Θ(u[t] − θ); ũ[t] = u[t] (1 − s[t]); out = a s[t].
NIR's LIF, τ dv/dt = (v_leak − v) + R I, integrated by forward Euler with step dt, is
v[t] = (1 − dt/τ) v[t−1] + (dt/τ) R I[t]. With τ = dt / (1 − γ), R = τ / dt = 1 / (1 − γ), v_leak = 0 the
two coincide: 1 − dt/τ = γ and (dt/τ) R = 1; v_threshold = θ and v_reset = 0 give the threshold and the
hard reset. NIR spikes are 1, asgl's are a (θ for the default amplitude): a is folded into the weights of
the layers that read the spikes (pools and flatten are linear, so it passes through them), or a Scale node
where spikes reach a neuron directly (identity shortcut). Batch norm over the time fold (tdbn) is an affine
map per channel in eval mode and is folded into the preceding conv / linear layer. docs/deploy.md has the
derivation and what cannot be exported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from asgl.errors import ExportUnsupported
from asgl.layers import PerStepNorm
from asgl.models.digits import DigitsConvNet
from asgl.models.resnet import BasicBlock, SpikingResNet
from asgl.models.vgg import SpikingVGG
from asgl.neuron import LIF
from asgl.trust import CodeTrust

# snnTorch's NIR importer integrates with a fixed dt of 1e-4; any dt gives the same recursion
DEFAULT_DT = 1e-4
EXPORTABLE = (DigitsConvNet, SpikingVGG, SpikingResNet)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class Port:
    """An emitted node's output: NIR node name, per-sample shape, value of a 1 on it in asgl's network."""

    node: str
    shape: tuple[int, ...]
    amplitude: float = 1.0


@dataclass
class GraphBuilder:
    """Nodes by name and edges (source, destination), filled in call order."""

    nodes: dict = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, node, sources: list[str]) -> str:
        self.nodes[name] = node
        self.edges.extend((source, name) for source in sources)
        return name


def _f32(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy().astype(np.float32)


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, value, np.float32)


def _leaves(module: nn.Module, prefix: str) -> list[tuple[str, nn.Module]]:
    """Sequential containers (TimeFold included) opened into their layers, in call order."""
    if isinstance(module, nn.Sequential):
        return [leaf for name, child in module.named_children() for leaf in _leaves(child, f"{prefix}.{name}")]
    return [(prefix, module)]


def _folded(layer: nn.Conv2d | nn.Linear, norm: nn.Module | None, amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of ``layer`` reading inputs of value ``amplitude``, followed by eval-mode ``norm``."""
    weight = layer.weight.detach().double() * amplitude
    bias = torch.zeros(weight.shape[0], dtype=torch.float64) if layer.bias is None else layer.bias.detach().double()
    if norm is not None:
        scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
        weight = weight * scale.view(-1, *[1] * (weight.dim() - 1))
        bias = (bias - norm.running_mean.double()) * scale + norm.bias.detach().double()
    return _f32(weight), _f32(bias)


def _out_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(module(torch.zeros(1, *shape)).shape[1:])


def _current(g: GraphBuilder, name: str, port: Port) -> str:
    """The node feeding ``port`` into neuron ``name`` as a current: through a Scale node unless a = 1."""
    if port.amplitude == 1.0:
        return port.node
    scale = nir.Scale(scale=np.full(port.shape, port.amplitude, np.float32))
    return g.add(f"{name}.amplitude", scale, [port.node])


def _emit_lif(g: GraphBuilder, name: str, lif: LIF, ports: list[Port], dt: float) -> Port:
    """A NIR LIF whose Euler step with ``dt`` is asgl's recursion; its input is the sum of ``ports``."""
    if lif.model != "lif":  # γ = 1 would be an infinite time constant
        raise ExportUnsupported(f"layer {name}: neuron.model = {lif.model!r} is not exported; export needs 'lif'")
    if lif.reset != "hard":
        raise ExportUnsupported(
            f"layer {name}: neuron.reset = {lif.reset!r} (reset by subtraction) has no NIR neuron, "
            "whose reset sets v to v_reset; export needs neuron.reset = 'hard'"
        )
    gamma, theta = float(lif.decay()), float(lif.theta())
    shape = ports[0].shape
    tau = dt / (1.0 - gamma)
    node = nir.LIF(
        tau=_full(shape, tau),
        r=_full(shape, tau / dt),
        v_leak=_full(shape, 0.0),
        v_threshold=_full(shape, theta),
        v_reset=_full(shape, 0.0),
    )
    sources = [_current(g, name, port) for port in ports]
    return Port(g.add(name, node, sources), shape, theta if lif.amplitude == "threshold" else 1.0)


def _emit_synapses(g: GraphBuilder, name: str, layer: nn.Module, norm: nn.Module | None, port: Port) -> Port:
    """Conv2d or Affine node with the input amplitude and the following norm folded in."""
    weight, bias = _folded(layer, norm, port.amplitude)
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise ExportUnsupported(f"layer {name}: padding {layer.padding!r} / {layer.padding_mode!r} is not exported")
        node = nir.Conv2d(
            input_shape=port.shape[1:],
            weight=weight,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            bias=bias,
        )
    else:
        node = nir.Affine(weight=weight, bias=bias)
    return Port(g.add(name, node, [port.node]), _out_shape(layer, port.shape))


def _emit_pool(g: GraphBuilder, name: str, layer: nn.Module, port: Port) -> Port:
    """AvgPool2d (or a global / even adaptive average pool) as NIR's AvgPool2d."""
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        out_h, out_w = _out_shape(layer, port.shape)[1:]
        (h, w) = port.shape[1:]
        if h % out_h or w % out_w:
            raise ExportUnsupported(f"layer {name}: adaptive pool {h}x{w} -> {out_h}x{out_w} has uneven windows")
        kernel, stride, padding = (h // out_h, w // out_w), (h // out_h, w // out_w), (0, 0)
    else:
        if layer.ceil_mode or layer.padding not in (0, (0, 0)):
            raise ExportUnsupported(f"layer {name}: average pool with padding or ceil_mode is not exported")
        kernel, stride, padding = layer.kernel_size, layer.stride, (0, 0)
    node = nir.AvgPool2d(
        kernel_size=np.broadcast_to(kernel, 2), stride=np.broadcast_to(stride, 2), padding=np.array(padding)
    )
    return Port(g.add(name, node, [port.node]), _out_shape(layer, port.shape), port.amplitude)


def _emit_layer(g: GraphBuilder, name: str, layer: nn.Module, port: Port, dt: float) -> Port:
    """One layer that is not a conv / linear (those go with their norm, see :func:`_emit_sequence`)."""
    if isinstance(layer, (nn.Dropout, nn.Identity)):
        return port
    if isinstance(layer, LIF):
        return _emit_lif(g, name, layer, [port], dt)
    if isinstance(layer, BasicBlock):
        residual = _emit_sequence(g, _leaves(layer.residual, f"{name}.residual"), port, dt)
        shortcut = _emit_sequence(g, _leaves(layer.shortcut, f"{name}.shortcut"), port, dt)
        return _emit_lif(g, f"{name}.lif", layer.lif, [residual, shortcut], dt)
    if isinstance(layer, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
        return _emit_pool(g, name, layer, port)
    if isinstance(layer, nn.Flatten):
        node = nir.Flatten(input_type={"input": np.array(port.shape)}, start_dim=0, end_dim=-1)
        return Port(g.add(name, node, [port.node]), (int(np.prod(port.shape)),), port.amplitude)
    if isinstance(layer, PerStepNorm):
        raise ExportUnsupported(
            f"layer {name}: neuron.norm = 'bntt' / 'step' (batch norm applied step by step) has no NIR node; "
            "export needs neuron.norm = 'tdbn', 'threshold_bn' or 'none'"
        )
    if isinstance(layer, NORMS):
        raise ExportUnsupported(f"layer {name}: a batch norm that does not follow a conv / linear cannot be folded")
    raise ExportUnsupported(f"layer {name}: {type(layer).__name__} has no NIR export")


def _emit_sequence(g: GraphBuilder, leaves: list[tuple[str, nn.Module]], port: Port, dt: float) -> Port:
    """Emit ``leaves`` in order from ``port``; a conv / linear takes the batch norm right after it along."""
    i = 0
    while i < len(leaves):
        name, layer = leaves[i]
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            follower = leaves[i + 1][1] if i + 1 < len(leaves) else None
            norm = follower if isinstance(follower, NORMS) else None
            port = _emit_synapses(g, name, layer, norm, port)
            i += 2 if norm is not None else 1
        else:
            port = _emit_layer(g, name, layer, port, dt)
            i += 1
    return port


def to_nir(
    model: nn.Module, input_shape: tuple[int, ...], dt: float = DEFAULT_DT, metadata: dict | None = None
) -> nir.NIRGraph:
    """The eval-mode ``model`` (on the CPU) for one time step's input ``input_shape`` ([C, H, W]) as a NIR graph.

    The graph maps the input at one step to the logits at that step; run it T steps from a zero state.
    """
    if not isinstance(model, EXPORTABLE):
        raise ExportUnsupported(
            f"{type(model).__name__}: NIR export covers the feed-forward conv nets "
            "(digits_convnet, resnet18/19/34, vggsnn2, vgg11/13)"
        )
    g = GraphBuilder()
    port = Port(g.add("input", nir.Input(input_type={"input": np.array(input_shape)}), []), tuple(input_shape))
    leaves = [leaf for name, child in model.named_children() for leaf in _leaves(child, name)]
    with torch.no_grad():
        port = _emit_sequence(g, leaves, port, dt)
    g.add("output", nir.Output(output_type={"output": np.array(port.shape)}), [_current(g, "output", port)])
    metadata = {"dt": dt, "discretisation": "forward Euler", **(metadata or {})}
    return nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=metadata)


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, dt: float = DEFAULT_DT, trust: CodeTrust = CodeTrust()
) -> nir.NIRGraph:
    """Write the NIR graph of a checkpoint's network (rebuilt from its stored recipe) to ``out``; ``trust``:
    the user builders the stored recipe may import (see :func:`asgl.engine.restore.open_checkpoint`)."""
    from asgl.builders import describe_data
    from asgl.engine.restore import build_model_for, open_checkpoint

    stored = open_checkpoint(checkpoint, trust=trust)
    recipe = stored.recipe
    info = describe_data(recipe)  # the network needs no data
    model = build_model_for(recipe, info, stored)
    metadata = {
        "time_steps": info.time_steps,  # run the graph T steps from a zero state
        "input": info.kind,  # static: the image at every step (direct encoding); event: frame t at step t
        "readout": recipe.model.readout,  # prediction = argmax of the logits reduced over the steps
        "model": recipe.model.name,
    }
    graph = to_nir(model.eval(), (info.in_channels, *info.input_size), dt, metadata)
    nir.write(str(out), graph)
    return graph
