"""Datasets: one module per family, a registry by recipe name, and the shared split helpers.

Each dataset module exposes ``info(data, run) -> DataInfo`` (the input a model must take, from the settings
alone: no file is read), ``build(data, run) -> DataBundle`` and ``check(data, run) -> list[DataProblem]``, where
``data`` is the module's own ``[data]`` section and ``run`` a :class:`DataRun`; asgl.builders calls them
for a recipe. Modules are imported lazily so that optional extras (tonic, torchaudio) load only when used.

Sample layouts produced by the datasets (see docs/architecture.md):
static images ``[C, H, W]``, event frames ``[T, C, H, W]``, sequences ``[T, F]``; labels are ints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.utils.data import Dataset, Subset

from asgl.errors import DataMissingError  # re-exported here

GET_HINT = "download it with `asgl data get RECIPE`"  # ends the missing-data errors of downloadable datasets

# recipe data.name -> module implementing info/build/check; its [data] keys: a section of asgl.config.DATA_SECTIONS
DATASETS: dict[str, str] = {
    "digits": "asgl.data.digits",
    "cifar10": "asgl.data.images",
    "cifar100": "asgl.data.images",
    "tiny_imagenet": "asgl.data.images",
    "dvs_cifar10": "asgl.data.events",
    "dvs_gesture": "asgl.data.events",
    "shd": "asgl.data.audio",
    "audio_folder": "asgl.data.audio",
}


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its input.

    kind: ``static`` (samples [C, H, W]), ``event`` ([T, C, H, W]) or ``sequence`` ([T, F]).
    input_size: (H, W) for static/event data, (F,) for sequences.
    """

    kind: Literal["static", "event", "sequence"]
    in_channels: int
    input_size: tuple[int, ...]
    num_classes: int
    time_steps: int


@dataclass(frozen=True)
class DataRun:
    """What a run decides about its data: ``time_steps`` T, the validation fraction carved from the training
    set and its ``seed``; ``num_classes``: the model's class count when the data cannot say it without files."""

    time_steps: int
    val_fraction: float = 0.1
    seed: int = 0
    num_classes: int | None = None


@dataclass
class DataBundle:
    train: Dataset
    val: Dataset
    test: Dataset
    info: DataInfo


@dataclass
class DataProblem:
    """One line of ``asgl data check``: a path, whether it is fine, and what to do otherwise."""

    path: str
    ok: bool
    message: str
    size: str = ""
    extra: dict = field(default_factory=dict)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded random (train, val) partition of ``range(n)``; val has round(n * val_fraction) >= 1 items,
    none when ``val_fraction`` is 0 (the whole training set trains)."""
    if val_fraction == 0:
        return list(range(n)), []
    n_val = max(1, round(n * val_fraction))
    if n_val >= n:
        raise DataMissingError(f"cannot carve a validation split of {val_fraction:.0%} from {n} samples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_val:]), sorted(perm[:n_val])


def carve_validation(
    train_augmented: Dataset, train_plain: Dataset, val_fraction: float, seed: int
) -> tuple[Dataset, Dataset]:
    """Split one training set, seen through two transforms, into (train with augmentation, val without)."""
    train_idx, val_idx = split_indices(len(train_augmented), val_fraction, seed)
    return Subset(train_augmented, train_idx), Subset(train_plain, val_idx)


def take_subset(ds: Dataset, limit: int | None) -> Dataset:
    """The first ``limit`` samples (smoke runs); the dataset itself when ``limit`` is None."""
    if limit is None or limit >= len(ds):
        return ds
    return Subset(ds, list(range(limit)))


def human_size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return ""
