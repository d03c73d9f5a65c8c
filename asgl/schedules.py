"""Schedules: the noise probability p per epoch, and the main optimiser's LR schedule."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    LinearLR,
    LRScheduler,
    SequentialLR,
    StepLR,
)

from asgl.config import NoiseConfig, OptimConfig


def noise_milestones(noise: NoiseConfig, epochs: int) -> list[int]:
    """0-based epochs after which p is multiplied by the factor (at most once per epoch), sorted."""
    if noise.milestone_epochs is not None:
        return sorted(set(noise.milestone_epochs))
    return sorted({int(f * epochs) for f in noise.milestones})


def noise_prob_at(epoch: int, noise: NoiseConfig, epochs: int) -> float:
    """p during 0-based ``epoch``: prob × factor^(milestones passed before it), clipped to [0, 1].

    The multiplication at a milestone epoch m is applied after epoch m, so it first acts in epoch m + 1.
    An unset factor keeps p constant.
    """
    if noise.factor is None:
        return noise.prob
    passed = sum(1 for m in noise_milestones(noise, epochs) if m < epoch)
    return min(1.0, max(0.0, noise.prob * noise.factor**passed))


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, epochs: int) -> LRScheduler:
    """Per-epoch LR schedule of the main optimiser (optionally after a linear warm-up)."""
    warmup = min(optim.warmup_epochs, epochs - 1)
    span = max(1, epochs - warmup)
    if optim.schedule == "cosine":
        main: LRScheduler = CosineAnnealingLR(optimizer, T_max=span, eta_min=0.0)
    elif optim.schedule == "cosine_restarts":
        main = CosineAnnealingWarmRestarts(optimizer, T_0=optim.restart_epochs)
    elif optim.schedule == "step":
        main = StepLR(optimizer, step_size=optim.step_epochs, gamma=optim.step_gamma)
    else:
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
