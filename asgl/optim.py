"""Optimisers in three parameter groups (docs/method.md#optimisation).

- neuron parameters: every parameter under a module tagged as a neuron (class attribute ``asgl_neuron =
  True``: the LIF layer with its decay, threshold and surrogate width, the surrogate width alone, or any
  neuron a user writes) -> Adam(``optim.neuron_lr``), no weight decay, no LR schedule;
- conv / linear weights (``ndim > 1``) -> the main optimiser with ``optim.weight_decay``;
- norm affine parameters and biases (``ndim <= 1``) -> the main optimiser without weight decay.

The main optimiser's LR follows ``asgl.schedules.build_lr_scheduler``, stepped once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from asgl.schedules import build_lr_scheduler

if TYPE_CHECKING:
    from asgl.config import OptimConfig

# optim.name -> the main optimiser over parameter groups
OPTIMIZERS: dict[str, Callable[[list[dict], OptimConfig], torch.optim.Optimizer]] = {
    "sgd": lambda groups, cfg: torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov),
    "adam": lambda groups, cfg: torch.optim.Adam(groups, lr=cfg.lr),
    "adamw": lambda groups, cfg: torch.optim.AdamW(groups, lr=cfg.lr),
}


def is_neuron(module: nn.Module) -> bool:
    """Whether ``module`` carries the neuron tag (a class attribute, so it survives copies and pickling)."""
    return getattr(type(module), "asgl_neuron", False) is True


@dataclass
class ParameterGroups:
    neuron: list[nn.Parameter]
    weights: list[nn.Parameter]
    no_decay: list[nn.Parameter]


@dataclass
class Optimizers:
    main: torch.optim.Optimizer
    neuron: torch.optim.Optimizer | None
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def zero_grad(self) -> None:
        self.main.zero_grad(set_to_none=True)
        if self.neuron is not None:
            self.neuron.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {
            "optimizer": self.main.state_dict(),
            "neuron_optimizer": None if self.neuron is None else self.neuron.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.main.load_state_dict(state["optimizer"])
        if self.neuron is not None:
            self.neuron.load_state_dict(state["neuron_optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])


def split_parameters(model: nn.Module) -> ParameterGroups:
    """The trainable parameters of ``model`` in the three groups, each parameter exactly once."""
    neuron_ids = {id(p) for m in model.modules() if is_neuron(m) for p in m.parameters()}
    groups = ParameterGroups([], [], [])
    for p in model.parameters():  # shared parameters are yielded once
        if not p.requires_grad:
            continue
        if id(p) in neuron_ids:
            groups.neuron.append(p)
        elif p.ndim > 1:
            groups.weights.append(p)
        else:
            groups.no_decay.append(p)
    return groups


def build_optimizers(model: nn.Module, cfg: OptimConfig, epochs: int) -> Optimizers:
    """Main optimiser (weights with decay, norms/biases without), neuron Adam, and the LR schedule."""
    groups = split_parameters(model)
    main_groups = [
        {"params": groups.weights, "weight_decay": cfg.weight_decay},
        {"params": groups.no_decay, "weight_decay": 0.0},
    ]
    main_groups = [g for g in main_groups if g["params"]]
    if not main_groups:
        raise ValueError("the model has no trainable weights outside its neurons")
    main = OPTIMIZERS[cfg.name](main_groups, cfg)
    neuron = torch.optim.Adam(groups.neuron, lr=cfg.neuron_lr, weight_decay=0.0) if groups.neuron else None
    return Optimizers(main, neuron, build_lr_scheduler(main, cfg, epochs))
