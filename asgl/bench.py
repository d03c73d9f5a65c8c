"""Training-step benchmark: one step (forward + loss + backward + optimiser) of a recipe's network in variants.

- ``fused``: LIF layers on the PyTorch fused backend; ``cpu_kernel``: on the numba CPU kernel (CPU only);
  ``triton``: on the Triton kernel (CUDA only);
- ``stepwise``: LIF layers on the step-by-step autograd reference;
- ``compiled`` (opt-in, ``--variants``): LIF layers on the torch.compile CPU/GPU backend (warm-up compiles);
- ``relu``: the same network with every LIF layer replaced by ReLU, run on the same [T·B] fold: the cost
  of the network without spiking neurons, a lower bound for any LIF implementation.

Inputs are synthetic (random, in the shape ``asgl.data.describe_data`` gives), so no dataset is needed. Variants run round-robin
(one step of each per repeat) so that load on a shared machine hits them alike; the times are the median,
quartiles and minimum over the repeats after warm-up, and ratios are of medians of the same run; the process
CPU time (all threads) is recorded too, as it varies less than wall time when other jobs share the cores.
Memory: on CUDA the peak allocated during one step (``torch.cuda.max_memory_allocated``); on CPU the bytes
autograd saves for the backward pass (saved-tensor hooks, unique storages, parameters and input excluded),
which is what grows with batch size and T.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from asgl.builders import build_model, describe_data
from asgl.config import Recipe, RecipeError
from asgl.data import DataInfo
from asgl.engine.device import autocast, check_amp, resolve_device
from asgl.losses import build_loss
from asgl.neuron import BACKENDS, cpu_kernel, lif_layers
from asgl.optim import build_optimizers

DEFAULT_VARIANTS = ("fused", "cpu_kernel", "triton", "stepwise", "relu")
VARIANTS = (*DEFAULT_VARIANTS, "compiled")  # compiled is opt-in: its first steps compile for seconds


def synthetic_batch(info: DataInfo, batch_size: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """A random batch in the loader's layout ([B, C, H, W], [B, T, C, H, W] or [B, T, F]) and labels [B]."""
    g = torch.Generator().manual_seed(0)
    per_sample = {
        "static": (info.in_channels, *info.input_size),
        "event": (info.time_steps, info.in_channels, *info.input_size),
        "sequence": (info.time_steps, *info.input_size),
    }[info.kind]
    x = torch.rand(batch_size, *per_sample, generator=g)
    y = torch.randint(0, info.num_classes, (batch_size,), generator=g)
    return x.to(device), y.to(device)


def relu_network(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LIF layer replaced by ReLU (same weights, same [T, B, ...] layout)."""
    relu = copy.deepcopy(model)
    for name, _ in lif_layers(relu):
        parent_name, _, child = name.rpartition(".")
        setattr(relu.get_submodule(parent_name) if parent_name else relu, child, nn.ReLU())
    return relu


def calls_every_lif(model: nn.Module, x: Tensor) -> bool:
    """Whether a forward pass calls every LIF layer as a module (so that :func:`relu_network` replaces it)."""
    called: set[int] = set()
    hooks = [layer.register_forward_hook(lambda m, i, o: called.add(id(m))) for _, layer in lif_layers(model)]
    try:
        with torch.no_grad():
            model.to(x.device)(x)
    finally:
        for h in hooks:
            h.remove()
    return all(id(layer) in called for _, layer in lif_layers(model))


def with_backend(model: nn.Module, backend: str) -> nn.Module:
    """A copy of ``model`` whose LIF layers all use ``backend``."""
    out = copy.deepcopy(model)
    for _, layer in lif_layers(out):
        layer.backend = backend
    return out


def saved_bytes(model: nn.Module, x: Tensor, forward: Callable[[], Tensor]) -> int:
    """Bytes of the unique storages autograd saves during ``forward()``, except parameters and the input."""
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {x.untyped_storage().data_ptr()}
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            storages[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(storages.values())


@dataclass
class VariantTiming:
    variant: str
    median_ms: float
    q25_ms: float
    q75_ms: float
    min_ms: float
    cpu_median_ms: float  # process CPU time (all threads): steadier than wall time on a shared machine
    memory_bytes: int
    times_ms: list[float] = field(repr=False)


@dataclass
class BenchResult:
    recipe: str
    model: str
    device: str
    batch_size: int
    time_steps: int
    input_shape: list[int]
    repeats: int
    warmup: int
    amp: str
    memory_kind: str
    torch: str
    variants: list[VariantTiming]
    ratios: dict[str, float]
    skipped: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Step:
    """One variant's network, optimisers and loss; ``__call__`` runs one training step."""

    def __init__(self, model: nn.Module, recipe: Recipe, device: torch.device):
        self.model = model.to(device).train()
        if recipe.model.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if recipe.train.compile else self.model
        self.opt = build_optimizers(self.model, recipe.optim, recipe.train.epochs)
        self.loss_fn = build_loss(recipe.train, recipe.model.readout)
        self.device, self.amp = device, recipe.train.amp

    def forward_loss(self, x: Tensor, y: Tensor) -> Tensor:
        with autocast(self.device, self.amp):
            logits = self.net(x)
        return self.loss_fn(logits.float(), y)

    def __call__(self, x: Tensor, y: Tensor) -> None:
        self.opt.zero_grad()
        self.forward_loss(x, y).backward()
        self.opt.main.step()
        if self.opt.neuron is not None:
            self.opt.neuron.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _memory(step: _Step, x: Tensor, y: Tensor) -> int:
    if step.device.type == "cuda":
        _sync(step.device)
        torch.cuda.reset_peak_memory_stats(step.device)
        step(x, y)
        _sync(step.device)
        return torch.cuda.max_memory_allocated(step.device)
    return saved_bytes(step.model, x, lambda: step.forward_loss(x, y))


def _ratio(a: VariantTiming | None, b: VariantTiming | None, cpu: bool = False) -> float | None:
    if a is None or b is None:
        return None
    return a.cpu_median_ms / b.cpu_median_ms if cpu else a.median_ms / b.median_ms


def _steps(
    base: nn.Module, variants: tuple[str, ...], recipe: Recipe, dev: torch.device, x: Tensor
) -> tuple[dict[str, _Step], dict[str, str]]:
    """One training step per variant that can run here, and why the others cannot."""
    skipped: dict[str, str] = {}
    steps: dict[str, _Step] = {}
    for name in variants:
        if name == "triton" and ("triton" not in BACKENDS or dev.type != "cuda"):
            skipped[name] = "needs CUDA and triton"
        elif name == "cpu_kernel" and (dev.type != "cpu" or cpu_kernel() is None):
            skipped[name] = "needs a CPU device and numba"
        elif name == "relu" and not calls_every_lif(base, x):
            skipped[name] = (
                "some LIF layer is not called as a module (e.g. a recurrent loop), so ReLU cannot replace it"
            )
        else:
            model = relu_network(base) if name == "relu" else with_backend(base, name)
            steps[name] = _Step(model, recipe, dev)
    return steps, skipped


def _timings(
    steps: dict[str, _Step], x: Tensor, y: Tensor, dev: torch.device, warmup: int, repeats: int
) -> list[VariantTiming]:
    """The variants' steps in turn, ``warmup`` untimed rounds then ``repeats`` timed ones (wall and CPU time)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu_times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + repeats):
        for name, step in steps.items():
            _sync(dev)
            start, cpu_start = time.perf_counter(), time.process_time()
            step(x, y)
            _sync(dev)
            if r >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
                cpu_times[name].append((time.process_time() - cpu_start) * 1e3)
    rows = []
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) > 1 else [ts[0]] * 3
        cpu = statistics.median(cpu_times[name])
        rows.append(
            VariantTiming(name, statistics.median(ts), q[0], q[2], min(ts), cpu, _memory(steps[name], x, y), ts)
        )
    return rows


# ratio name -> (numerator, denominator, CPU time instead of wall time)
RATIOS = {
    "stepwise_over_fused": ("stepwise", "fused", False),
    "fused_over_relu": ("fused", "relu", False),
    "triton_over_relu": ("triton", "relu", False),
    "fused_over_triton": ("fused", "triton", False),
    "cpu_kernel_over_relu": ("cpu_kernel", "relu", False),
    "fused_over_cpu_kernel": ("fused", "cpu_kernel", False),
    "cpu_time_cpu_kernel_over_relu": ("cpu_kernel", "relu", True),
    "stepwise_over_relu": ("stepwise", "relu", False),
    "stepwise_over_compiled": ("stepwise", "compiled", False),
    "compiled_over_relu": ("compiled", "relu", False),
    "cpu_time_stepwise_over_fused": ("stepwise", "fused", True),
    "cpu_time_fused_over_relu": ("fused", "relu", True),
}


def _ratios(by: dict[str, VariantTiming]) -> dict[str, float]:
    """Every ratio of :data:`RATIOS` whose two variants ran, and the saved memory of stepwise over the fastest."""
    ratios = {k: _ratio(by.get(a), by.get(b), cpu) for k, (a, b, cpu) in RATIOS.items()}
    fast = by.get("triton") or by.get("cpu_kernel") or by.get("fused")
    if fast is not None and "stepwise" in by:
        ratios["memory_stepwise_over_fast"] = by["stepwise"].memory_bytes / max(fast.memory_bytes, 1)
    return {k: v for k, v in ratios.items() if v is not None}


def run_bench(
    recipe: Recipe,
    batch_size: int,
    repeats: int = 10,
    warmup: int = 2,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
    device: str | None = None,
) -> BenchResult:
    """Time one training step of ``recipe``'s network in each of ``variants`` (see the module docstring).

    ``device`` overrides ``run.device``; ``triton`` is skipped (with the reason) where it is not available.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise RecipeError(f"unknown bench variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise RecipeError(f"need repeats >= 1, warmup >= 0, batch size >= 1 (got {repeats}, {warmup}, {batch_size})")
    dev = resolve_device(device or recipe.run.device)
    check_amp(recipe.train.amp, dev)
    info = describe_data(recipe)
    torch.manual_seed(recipe.run.seed)
    base = build_model(recipe, info)
    if not lif_layers(base):
        raise RecipeError(f"model {recipe.model.name!r} has no LIF layers to benchmark")
    x, y = synthetic_batch(info, batch_size, dev)
    if recipe.model.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)

    steps, skipped = _steps(base, variants, recipe, dev, x)
    rows = _timings(steps, x, y, dev, warmup, repeats)
    ratios = _ratios({r.variant: r for r in rows})
    return BenchResult(
        recipe=recipe.run.name,
        model=recipe.model.name,
        device=str(dev),
        batch_size=batch_size,
        time_steps=info.time_steps,
        input_shape=list(x.shape),
        repeats=repeats,
        warmup=warmup,
        amp=recipe.train.amp,
        memory_kind="cuda_peak_allocated" if dev.type == "cuda" else "cpu_saved_for_backward",
        torch=torch.__version__,
        variants=rows,
        ratios=ratios,
        skipped=skipped,
    )
