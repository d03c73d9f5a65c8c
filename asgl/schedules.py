"""Schedules: the noise probability p per epoch, and the main optimiser's LR schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
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


# optim.schedule -> (optimizer, optim section, epochs after the warm-up) -> per-epoch scheduler
LR_SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, OptimConfig, int], LRScheduler]] = {
    "cosine": lambda opt, cfg, span: CosineAnnealingLR(opt, T_max=span, eta_min=0.0),
    "cosine_restarts": lambda opt, cfg, span: CosineAnnealingWarmRestarts(opt, T_0=cfg.restart_epochs),
    "step": lambda opt, cfg, span: StepLR(opt, step_size=cfg.step_epochs, gamma=cfg.step_gamma),
    "none": lambda opt, cfg, span: ConstantLR(opt, factor=1.0, total_iters=0),
}


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, epochs: int) -> LRScheduler:
    """Per-epoch LR schedule of the main optimiser (optionally after a linear warm-up)."""
    warmup = min(optim.warmup_epochs, epochs - 1)
    main = LR_SCHEDULES[optim.schedule](optimizer, optim, max(1, epochs - warmup))
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
