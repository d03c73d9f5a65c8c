"""Losses on per-step logits [T, B, K] and the prediction rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from asgl.config import TrainConfig

Readout = Literal["mean", "last", "max"]


def reduce_time(logits: Tensor, readout: Readout = "mean") -> Tensor:
    """[T, B, K] -> [B, K]: mean over time (default), last step, or max over time."""
    if readout == "mean":
        return logits.mean(0)
    if readout == "last":
        return logits[-1]
    return logits.max(0).values


def mean_ce(logits: Tensor, target: Tensor, readout: Readout = "mean") -> Tensor:
    """Cross-entropy of the time-reduced logits. logits [T, B, K], target [B]."""
    return F.cross_entropy(reduce_time(logits, readout), target)


def tet_loss(logits: Tensor, target: Tensor, lam: float = 1e-3, phi: float = 1.0) -> Tensor:
    """TET: (1 − λ)·mean_t CE(o[t], y) + λ·MSE(o, φ). logits [T, B, K], target [B]."""
    steps = logits.shape[0]
    ce = F.cross_entropy(logits.flatten(0, 1), target.repeat(steps))  # mean over T·B = mean_t of per-step CE
    mse = F.mse_loss(logits, torch.full_like(logits, phi))
    return (1 - lam) * ce + lam * mse


def build_loss(train: TrainConfig, readout: Readout = "mean") -> Callable[[Tensor, Tensor], Tensor]:
    """The recipe's loss as ``(logits [T, B, K], target [B]) -> scalar``."""
    if train.loss == "tet":
        return lambda logits, target: tet_loss(logits, target, train.tet_lambda, train.tet_phi)
    return lambda logits, target: mean_ce(logits, target, readout)


def predict(logits: Tensor, readout: Readout = "mean") -> Tensor:
    """Class prediction [B] from per-step logits [T, B, K]."""
    return reduce_time(logits, readout).argmax(-1)
