"""Writers of tiny event-camera datasets in the on-disk formats the loaders read (see asgl.data.events).

Nothing here is committed data: tests call these writers into temporary folders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asgl.data.events import CIFAR10DVS_CLASSES, CIFAR10DVS_DIR, GESTURE_DIR, GESTURE_SPLITS, SENSOR_SIZE


def write_aedat2(path: Path, x: np.ndarray, y: np.ndarray, p: np.ndarray, t: np.ndarray) -> None:
    """An AEDAT 2.0 file as jAER writes it for a DVS128: '#' header lines ending in CRLF, then big-endian
    (uint32 address, uint32 timestamp[us]) pairs, address = x << 8 | y << 1 | p (tonic's DVS128 layout)."""
    header = b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n# Data format is int32 address, int32 timestamp\r\n"
    address = (x.astype(np.uint32) << 8) | (y.astype(np.uint32) << 1) | p.astype(np.uint32)
    body = np.empty(len(x), dtype=[("address", ">u4"), ("timeStamp", ">u4")])
    body["address"], body["timeStamp"] = address, t
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + body.tobytes())


def random_events(rng: np.random.Generator, n: int, label: int) -> tuple[np.ndarray, ...]:
    """n events (x, y, p, t) sorted by time, concentrated in a class-dependent column band."""
    x = (rng.integers(0, 12, n) + label * 11) % 128
    y = rng.integers(0, 128, n)
    p = rng.integers(0, 2, n)
    t = np.sort(rng.integers(0, 1_000_000, n))
    return x, y, p, t


def write_cifar10dvs(
    root: Path, per_class: int = 0, events: int = 200, seed: int = 0, indices: list[int] | None = None
) -> list[Path]:
    """``<root>/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat`` for i in ``indices`` (default
    ``range(per_class)``); returns the files."""
    rng = np.random.default_rng(seed)
    files = []
    for label, cls in enumerate(CIFAR10DVS_CLASSES):
        for i in indices if indices is not None else range(per_class):
            path = root / CIFAR10DVS_DIR / cls / f"cifar10_{cls}_{i}.aedat"
            write_aedat2(path, *random_events(rng, events, label))
            files.append(path)
    return files


def write_gesture(root: Path, users: dict[str, list[int]], classes: int = 11, events: int = 300, seed: int = 0) -> None:
    """tonic's DVS Gesture layout: ``<root>/DVSGesture/<split folder>/user<NN>_<lighting>/<label>.npy`` holding
    ``[N, 4]`` int arrays (x, y, p, t[ms]); ``users`` maps split ('train'/'test') to user numbers."""
    rng = np.random.default_rng(seed)
    for split, numbers in users.items():
        for user in numbers:
            folder = root / GESTURE_DIR / GESTURE_SPLITS[split] / f"user{user:02d}_fluorescent"
            folder.mkdir(parents=True, exist_ok=True)
            for label in range(classes):
                x, y, p, t_us = random_events(rng, events, label)
                np.save(folder / f"{label}.npy", np.stack([x, y, p, t_us // 1000], axis=1).astype(np.int64))


def write_frame_folder(
    root: Path, counts: dict[str, int], time_steps: int = 2, seed: int = 0
) -> dict[str, list[tuple[torch.Tensor, int]]]:
    """The authors' frame layout: ``<root>/<split>/<i>.pt`` holding ``(frames [T, 2, 128, 128] float32 in
    [0, 1], target tensor([label]))``; ``counts`` maps split ('train'/'test') to the number of files.

    About half the pixels of each polarity are 0, so the second polarity masks the first in places.
    Returns what was written: per split, (frames, label) in file order."""
    gen = torch.Generator().manual_seed(seed)
    written = {}
    for split, n in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        written[split] = []
        for i in range(n):
            values = torch.rand(time_steps, 2, SENSOR_SIZE, SENSOR_SIZE, generator=gen)
            frames = values * (torch.rand(values.shape, generator=gen) < 0.5)
            label = i % len(CIFAR10DVS_CLASSES)
            torch.save((frames, torch.tensor([label])), root / split / f"{i}.pt")
            written[split].append((frames, label))
    return written
