"""Evaluation of the pure SNN: eval mode, binary spikes, no noise."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tomllib
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from asgl.config import validate_recipe
from asgl.engine.checkpoint import load_checkpoint, resolve_checkpoint_path
from asgl.engine.device import autocast, resolve_device, to_device
from asgl.losses import build_loss, predict


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


def evaluate_checkpoint(
    checkpoint: str | Path, split: Literal["val", "test"] = "test", device: str = "auto"
) -> EvalResult:
    """Pure-SNN accuracy of a checkpoint on ``split``; model and data are rebuilt from its stored recipe."""
    from asgl.data import build_data, describe_data
    from asgl.models import build_model

    path = resolve_checkpoint_path(checkpoint)
    ckpt = load_checkpoint(path)
    recipe = validate_recipe(tomllib.loads(ckpt["recipe"]), f"stored in {path}")
    dev = resolve_device(device)
    model = build_model(recipe, describe_data(recipe))  # the model needs no data: a wrong checkpoint fails first
    model.load_state_dict(ckpt["model"])
    model.to(dev)
    data = build_data(recipe)
    tcfg = recipe.train
    loader = DataLoader(
        {"val": data.val, "test": data.test}[split],
        batch_size=tcfg.eval_batch_size or tcfg.batch_size,
        num_workers=recipe.data.num_workers,
    )
    amp = tcfg.amp if dev.type == "cuda" else "off"
    readout = recipe.model.readout
    return evaluate(model, loader, build_loss(tcfg, readout), dev, amp, recipe.model.channels_last, readout)
