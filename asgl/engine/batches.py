"""Data order and loaders of a run: seeded, so a checkpoint needs only (epoch, step) to resume at a batch."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from asgl.config import Recipe, RecipeError


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data order of ``epoch`` (0-based index): a pure function of (seed, epoch)."""
    return (seed * 1_000_003 + epoch) % (2**63)


class EpochBatches(Sampler[list[int]]):
    """Index batches of one epoch in a seeded random order, starting at batch ``start``."""

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch, self.start = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch)))
        for b in range(self.start, self.batches_per_epoch):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start


def check_batches(train_size: int, recipe: Recipe) -> None:
    """Refuse batch sizes the training split cannot serve (raises :class:`RecipeError`)."""
    bs = recipe.train.batch_size
    if bs > train_size:
        raise RecipeError(f"train.batch_size = {bs} is larger than the training split ({train_size} samples)")
    if train_size % bs == 1 and recipe.train.time_steps == 1 and recipe.neuron.norm != "none":
        raise RecipeError(
            f"train.batch_size = {bs} leaves a last training batch of 1 sample ({train_size} samples), which "
            "batch norm cannot normalise with train.time_steps = 1; choose another batch size"
        )


def make_loader(ds: Dataset, recipe: Recipe, device: torch.device, **kw: Any) -> DataLoader:
    """A DataLoader with the recipe's worker settings; its own generator keeps it off the global RNG."""
    workers = recipe.data.num_workers
    pin = recipe.data.pin_memory if recipe.data.pin_memory is not None else device.type == "cuda"
    return DataLoader(
        ds,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=recipe.data.persistent_workers and workers > 0,
        generator=torch.Generator().manual_seed(recipe.run.seed),
        **kw,
    )
