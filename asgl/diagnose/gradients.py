"""Gradient diagnosis (docs/method.md#gradient-diagnosis): how close are the training gradients to the pure SNN's?

The function under study is the loss of the *pure SNN* (every LIF layer binary, Θ; norms and dropout in
eval mode) on K fixed minibatches. It is piecewise constant in the weights, so its "true" gradient is
estimated by central finite differences

    r_j = (L(w + ε d_j) − L(w − ε d_j)) / (2 ε)

along R random unit directions d_j (directional derivatives) or S sampled coordinates (partial
derivatives) of each diagnosed layer. A training gradient g is compared through the same probes,
p_j = d_j · g: cosine(p, r) and the norm ratio |p| / |r|, per layer. Overall numbers concatenate the
layers' probes scaled by sqrt(numel): for a unit direction drawn uniformly on the sphere of a
D-dimensional layer, E[(d·a)(d·b)] = a·b / D, so the scaled probes estimate full-space inner products.

Training gradients are taken on the same function shape (norms and dropout in eval mode, same batches),
with the LIF layers in training behaviour:

- ``sg``: forward Θ, backward h_α at the recipe's fixed width ``surrogate.width``;
- ``asgl``: the hybrid spike at the current p and the current (learned) width, averaged over
  ``mask_draws`` seeded mask draws;
- ``analog``: p = 1, the network with activation H_α at the current width.

Nothing here touches the global RNG or the model passed in: the work happens on a copy.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from asgl.neuron import lif_layers
from asgl.spike import Spike
from asgl.surrogates import SurrogateWidth

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

METHODS: tuple[str, ...] = ("sg", "asgl", "analog")


@dataclass(frozen=True)
class GradientSettings:
    """How the reference gradient is estimated and the training gradients drawn."""

    batches: int = 4  # K fixed minibatches
    directions: int = 32  # R random unit directions per layer (ignored when coords is set)
    coords: int | None = None  # S sampled coordinates per layer instead of directions
    eps: float = 0.1  # finite-difference step: L2 norm of the weight perturbation
    layers: tuple[str, ...] | None = None  # module names of conv/linear layers; None = all of them
    mask_draws: int = 1  # ASGL masks averaged over this many seeded draws
    seed: int = 0  # seeds the probes and the masks
    float64: bool = False  # run the diagnosis in double precision (CPU)


@dataclass
class Comparison:
    """One training gradient against the reference, on one layer (or ``overall``)."""

    layer: str
    method: str
    cosine: float
    norm_ratio: float


@dataclass
class GradientReport:
    comparisons: list[Comparison]
    zero_fraction: dict[str, float]  # per layer and "overall": share of finite differences exactly 0
    layer_sizes: dict[str, int]
    settings: GradientSettings
    noise_prob: float

    def overall(self, method: str) -> Comparison:
        return next(c for c in self.comparisons if c.layer == "overall" and c.method == method)


# ---------------------------------------------------------------- layers and probes


def weight_layers(model: nn.Module, names: Sequence[str] | None = None) -> dict[str, nn.Parameter]:
    """Weights of the conv / linear layers by module name (all of them, or ``names`` in model order)."""
    found = {n: m.weight for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))}
    if names is None:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"unknown layer(s) {', '.join(unknown)}; conv/linear layers of this model: {', '.join(found)}")
    return {n: w for n, w in found.items() if n in names}


def probe_directions(numel: int, count: int, coords: bool, generator: torch.Generator) -> Tensor:
    """Unit probes [count, numel]: Gaussian directions normalised, or one-hot rows of sampled coordinates."""
    if coords:
        index = torch.randperm(numel, generator=generator)[: min(count, numel)]
        return torch.zeros(len(index), numel).scatter_(1, index[:, None], 1.0)
    d = torch.randn(count, numel, generator=generator, dtype=torch.float64)
    return (d / d.norm(dim=1, keepdim=True)).float()


@torch.no_grad()
def central_differences(loss: Callable[[], float], param: Tensor, probes: Tensor, eps: float) -> Tensor:
    """(L(w + ε d) − L(w − ε d)) / (2 ε) for each probe row d of ``probes`` [R, numel] -> [R] (float64).

    ``param`` is perturbed in place and restored exactly after each probe.
    """
    saved = param.detach().clone()
    out = torch.empty(len(probes), dtype=torch.float64)
    for j, d in enumerate(probes):
        step = (eps * d).reshape(param.shape).to(param.device, param.dtype)
        param.copy_(saved + step)
        plus = loss()
        param.copy_(saved - step)
        minus = loss()
        out[j] = (plus - minus) / (2 * eps)
    param.copy_(saved)
    return out


def cosine_and_ratio(estimate: Tensor, reference: Tensor) -> tuple[float, float]:
    """Cosine similarity and |estimate| / |reference| of two probe vectors (nan when the reference is 0)."""
    ref_norm = float(reference.norm())
    if ref_norm == 0:
        return math.nan, math.nan
    est_norm = float(estimate.norm())
    cos = float(estimate @ reference) / (est_norm * ref_norm) if est_norm > 0 else 0.0
    return cos, est_norm / ref_norm


# ---------------------------------------------------------------- spike regimes


@contextmanager
def spike_regime(
    model: nn.Module,
    spike: Spike,
    noise_prob: float | None = None,
    fixed_width: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[nn.Module]:
    """Norms and dropout in eval mode, LIF layers in training behaviour with ``spike``.

    ``noise_prob`` sets p (``asgl`` spike); ``fixed_width`` replaces every layer's width by that fixed width α;
    masks are drawn from ``generator``. Everything is restored on exit.
    """
    was_training = {m: m.training for m in model.modules()}
    layers = [layer for _, layer in lif_layers(model)]
    saved = [(layer.spike, layer.noise_prob, layer.generator, layer.width) for layer in layers]
    model.eval()
    try:
        for layer in layers:
            layer.train()
            layer.spike = spike
            layer.generator = generator
            if noise_prob is not None:
                layer.noise_prob = noise_prob
            if fixed_width is not None:
                ref = layer.width.param
                fixed = SurrogateWidth((), layer.surrogate.name, fixed_width, learnable=False)
                layer.width = fixed.to(ref.device, ref.dtype)
        yield model
    finally:
        for layer, (spike_, p, gen, width) in zip(layers, saved):
            layer.spike, layer.noise_prob, layer.generator, layer.width = spike_, p, gen, width
        for m, flag in was_training.items():
            m.training = flag


def snn_loss(model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn) -> float:
    """Mean loss of the pure SNN (whole model in eval mode) over ``batches``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return sum(float(loss_fn(model(x), y)) for x, y in batches) / len(batches)
    finally:
        model.train(was_training)


def mean_gradient(
    model: nn.Module, params: Sequence[Tensor], batches: Sequence[Batch], loss_fn: LossFn
) -> list[Tensor]:
    """Gradient of the mean loss over ``batches`` w.r.t. ``params`` in the model's current behaviour."""
    total = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        grads = torch.autograd.grad(loss_fn(model(x), y), params, allow_unused=True)
        for acc, g in zip(total, grads):
            if g is not None:
                acc.add_(g, alpha=1.0 / len(batches))
    return total


def method_gradient(
    model: nn.Module,
    method: str,
    params: Sequence[Tensor],
    batches: Sequence[Batch],
    loss_fn: LossFn,
    sg_width: float,
    noise_prob: float,
    mask_draws: int = 1,
    seed: int = 0,
) -> list[Tensor]:
    """The training gradient of ``method`` (sg, asgl or analog, see the module docstring)."""
    if method == "sg":
        with spike_regime(model, "sg", fixed_width=sg_width):
            return mean_gradient(model, params, batches, loss_fn)
    if method == "analog":
        with spike_regime(model, "analog"):
            return mean_gradient(model, params, batches, loss_fn)
    if method != "asgl":
        raise ValueError(f"unknown gradient method {method!r}; known: {', '.join(METHODS)}")
    device = params[0].device
    total = [torch.zeros_like(p) for p in params]
    for draw in range(mask_draws):
        generator = torch.Generator(device=device).manual_seed(seed + draw)
        with spike_regime(model, "asgl", noise_prob=noise_prob, generator=generator):
            for acc, g in zip(total, mean_gradient(model, params, batches, loss_fn)):
                acc.add_(g, alpha=1.0 / mask_draws)
    return total


# ---------------------------------------------------------------- the diagnosis


def prepare(model: nn.Module, batches: Iterable[Batch], settings: GradientSettings) -> tuple[nn.Module, list[Batch]]:
    """A private copy of the model and the first K batches on the model's device (float64 if asked)."""
    work = copy.deepcopy(model)
    device = next(work.parameters()).device
    dtype = torch.float64 if settings.float64 else None
    if dtype is not None:
        work = work.to(dtype)
    fixed: list[Batch] = []
    for x, y in batches:
        if len(fixed) == settings.batches:
            break
        x = x.to(device)
        fixed.append((x.to(dtype) if dtype is not None and x.is_floating_point() else x, y.to(device)))
    if not fixed:
        raise ValueError("no batches to diagnose on (empty split?)")
    return work, fixed


def diagnose_gradients(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: LossFn,
    sg_width: float,
    noise_prob: float,
    settings: GradientSettings = GradientSettings(),
    methods: Sequence[str] = METHODS,
) -> GradientReport:
    """Compare the training gradients of ``methods`` with the finite-difference gradient of the pure SNN.

    ``batches`` yields (input, target); the first ``settings.batches`` are used. ``sg_width`` is the fixed width α
    of the SG gradient (the recipe's ``surrogate.width``); ``noise_prob`` the current p.
    """
    work, fixed = prepare(model, batches, settings)
    weights = weight_layers(work, settings.layers)
    params = list(weights.values())
    grads = {
        m: method_gradient(work, m, params, fixed, loss_fn, sg_width, noise_prob, settings.mask_draws, settings.seed)
        for m in methods
    }
    generator = torch.Generator().manual_seed(settings.seed)
    coords = settings.coords is not None
    count = settings.coords if coords else settings.directions
    references: dict[str, Tensor] = {}
    projected: dict[str, dict[str, Tensor]] = {m: {} for m in methods}
    for i, (n, w) in enumerate(weights.items()):
        probes = probe_directions(w.numel(), count, coords, generator)  # one layer at a time: [R, numel]
        references[n] = central_differences(lambda: snn_loss(work, fixed, loss_fn), w, probes, settings.eps)
        probes = probes.to(w.device, torch.float64)
        for m in methods:
            projected[m][n] = (probes @ grads[m][i].flatten().double()).cpu()

    scale = {n: math.sqrt(w.numel()) for n, w in weights.items()}
    ref_all = torch.cat([references[n] * scale[n] for n in weights])
    zeros = {n: float((r == 0).double().mean()) for n, r in references.items()}
    zeros["overall"] = float((ref_all == 0).double().mean())
    comparisons: list[Comparison] = []
    for m in methods:
        for n in weights:
            comparisons.append(Comparison(n, m, *cosine_and_ratio(projected[m][n], references[n])))
        est_all = torch.cat([projected[m][n] * scale[n] for n in weights])
        comparisons.append(Comparison("overall", m, *cosine_and_ratio(est_all, ref_all)))
    sizes = {n: w.numel() for n, w in weights.items()}
    return GradientReport(comparisons, zeros, sizes, settings, noise_prob)
