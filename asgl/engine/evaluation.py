"""Evaluation of the pure SNN: eval mode, binary spikes, no noise."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from asgl.engine.device import autocast, resolve_device, to_device
from asgl.engine.restore import Restored, Stored, restore
from asgl.errors import RecipeError
from asgl.losses import build_loss, predict
from asgl.trust import CodeTrust


@dataclass
class EvalResult:
    accuracy: float  # fraction in [0, 1]
    loss: float  # mean per sample
    samples: int


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device,
    amp: str = "off",
    channels_last: bool = False,
    readout: str = "mean",
) -> EvalResult:
    """Accuracy and mean loss of ``model`` in eval mode over ``batches`` of (input, target [B])."""
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        for x, y in batches:
            x, y = to_device(x, device, channels_last), y.to(device, non_blocking=True)
            with autocast(device, amp):
                logits = model(x)
            logits = logits.float()
            loss_sum += float(loss_fn(logits, y)) * len(y)
            correct += int((predict(logits, readout) == y).sum())
            seen += len(y)
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluation split is empty")
    return EvalResult(correct / seen, loss_sum / seen, seen)


def split_of(restored: Restored, split: Literal["val", "test"]) -> Dataset:
    """The dataset of ``split``; asking for the validation split of a run trained without one is refused."""
    if split == "val" and restored.stored.recipe.train.val_fraction == 0:
        raise RecipeError(
            f"{restored.stored.path} was trained without a validation split (train.val_fraction = 0): use --split test"
        )
    return restored.data.val if split == "val" else restored.data.test


def evaluate_checkpoint(
    checkpoint: str | Path,
    split: Literal["val", "test"] = "test",
    device: str = "auto",
    observe: Callable[[nn.Module], AbstractContextManager] = nullcontext,
    trust: CodeTrust = CodeTrust(),
) -> tuple[EvalResult, Stored]:
    """Pure-SNN accuracy of a checkpoint on ``split``, and the checkpoint read (its file, epoch and recipe);
    model and data are rebuilt from its stored recipe.

    The evaluation runs inside ``observe(model)`` (e.g. hooks that count spikes); ``trust``: the user
    builders the stored recipe may import (see :func:`asgl.engine.restore.open_checkpoint`).
    """
    dev = resolve_device(device)
    restored = restore(checkpoint, trust)
    recipe = restored.stored.recipe
    tcfg = recipe.train
    loader = DataLoader(
        split_of(restored, split),
        batch_size=tcfg.eval_batch_size or tcfg.batch_size,
        num_workers=recipe.data.num_workers,
    )
    amp = tcfg.amp if dev.type == "cuda" else "off"
    readout = recipe.model.readout
    model = restored.model.to(dev)
    with observe(model):
        result = evaluate(model, loader, build_loss(tcfg, readout), dev, amp, recipe.model.channels_last, readout)
    return result, restored.stored
