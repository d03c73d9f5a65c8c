"""Losses on per-step logits [T, B, K] and the prediction rule; registries by recipe name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from asgl.config import TrainConfig

Readout = Literal["mean", "last", "max"]
LossFn = Callable[[Tensor, Tensor], Tensor]

# model.readout -> [T, B, K] -> [B, K]
READOUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda logits: logits.mean(0),
    "last": lambda logits: logits[-1],
    "max": lambda logits: logits.max(0).values,
}


def reduce_time(logits: Tensor, readout: Readout = "mean") -> Tensor:
    """[T, B, K] -> [B, K]: mean over time (default), last step, or max over time."""
    return READOUTS[readout](logits)


def mean_ce(logits: Tensor, target: Tensor, readout: Readout = "mean") -> Tensor:
    """Cross-entropy of the time-reduced logits. logits [T, B, K], target [B]."""
    return F.cross_entropy(reduce_time(logits, readout), target)


def tet_loss(logits: Tensor, target: Tensor, tet_lambda: float = 1e-3, tet_phi: float = 1.0) -> Tensor:
    """TET: (1 − λ)·mean_t CE(o[t], y) + λ·MSE(o, φ). logits [T, B, K], target [B]."""
    steps = logits.shape[0]
    ce = F.cross_entropy(logits.flatten(0, 1), target.repeat(steps))  # mean over T·B = mean_t of per-step CE
    mse = F.mse_loss(logits, torch.full_like(logits, tet_phi))
    return (1 - tet_lambda) * ce + tet_lambda * mse


# train.loss -> loss function (logits [T, B, K], target [B], **options) -> scalar
LOSSES: dict[str, Callable[..., Tensor]] = {"ce": mean_ce, "tet": tet_loss}


def build_loss(train: TrainConfig, readout: Readout = "mean") -> LossFn:
    """The recipe's loss (``train`` section, ``model.readout``) as ``(logits [T, B, K], target [B]) -> scalar``."""
    if train.loss == "tet":
        return partial(LOSSES["tet"], tet_lambda=train.tet_lambda, tet_phi=train.tet_phi)
    return partial(LOSSES[train.loss], readout=readout)


def predict(logits: Tensor, readout: Readout = "mean") -> Tensor:
    """Class prediction [B] from per-step logits [T, B, K]."""
    return reduce_time(logits, readout).argmax(-1)
