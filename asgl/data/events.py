"""Event-camera datasets: DVS-CIFAR10 and DVS128 Gesture, framed into ``[T, 2, S, S]`` tensors.

Files are laid out as tonic (1.7) lays them out under ``data.root``; nothing is ever downloaded:

- DVS-CIFAR10 (original AEDAT 2.0 recordings, read with tonic's AEDAT reader)::

      <root>/CIFAR10DVS/<class>/cifar10_<class>_<i>.aedat      class = airplane ... truck, i = 0..999

- DVS128 Gesture (tonic's preprocessed release: one ``<label>.npy`` per gesture, columns x, y, p, t[ms])::

      <root>/DVSGesture/ibmGestureTrain/user01_fluorescent/0.npy ...
      <root>/DVSGesture/ibmGestureTest/user24_led/10.npy ...

- DVS-CIFAR10 as ready-made frames (``data.format = "frame_folder"``), the layout the authors' loader reads::

      <root>/train/0.pt ... <root>/train/<n-1>.pt      each torch.save((frames [T, 2, 128, 128] float, target))
      <root>/test/0.pt ...

  Frames are used as stored (no framing, no cache): resized per ``data.frame_resize`` on every read (the
  published runs: ``authors_la_quirk``), then flipped and rolled in training like the recordings below.

asgl's own framing of recordings (both datasets; the authors' code builds no frames, it reads the files
above): events are accumulated into ``T`` frames of 2 polarity channels at 128x128, each frame is divided
by its own maximum (empty frames stay 0) and resized per channel to ``data.frame_size`` with antialiased
bilinear interpolation on float tensors (``data.frame_resize = "float"``). ``"authors_la_quirk"``
reproduces how the published runs resized instead: each frame as an 8-bit two-channel Pillow image, mode
"LA" (grey + alpha). Pillow resizes "LA" images premultiplied by alpha, so the first polarity is
multiplied by the second before the resize and divided after it: where the second polarity saw no event,
the first is erased (see :func:`authors_la_resize`). DVS-CIFAR10 splits by event count (frame ``t`` holds
events ``[t*n//T, (t+1)*n//T)`` with ``n//T`` per frame; the last frame also takes the remainder); DVS
Gesture splits the recording's duration into ``T`` equal time bins. Binning is done here rather than
with tonic's slicers, which drop the remainder events and fail on empty recordings.

Frames are cached on disk once per recording (``data.cache_dir`` or ``<root>/cache``), under a hash of
every parameter that shapes them and of the recording's path, size and modification time, so a change
of ``T``, size or data never reuses a stale cache. Augmentation (training only) runs after the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from asgl.data import (
    GET_HINT,
    DataBundle,
    DataInfo,
    DataMissingError,
    DataProblem,
    DataRun,
    carve_validation,
    human_size,
    take_subset,
)

if TYPE_CHECKING:
    from asgl.config import EventData

SENSOR_SIZE = 128
CACHE_VERSION = 1  # bump when the framing code changes meaning

CIFAR10DVS_DIR = "CIFAR10DVS"
CIFAR10DVS_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10DVS_URL = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (one <class>.zip per class)"
REFERENCE_TRAIN_FILES = 700  # reference split: recordings 0-699 train, 700-999 test, per class
TRAIN_RATIO = (7, 10)  # ratio split: the first 70 % of each class's recordings train, the rest test

FRAME_FOLDER_SPLITS = ("train", "test")
FRAME_FOLDER_HOWTO = (
    "expected <i>.pt files (i = 0..n-1), each a (frames [T, 2, 128, 128] float, target) pair saved with torch.save"
)

GESTURE_DIR = "DVSGesture"
GESTURE_SPLITS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
GESTURE_URLS = {
    "train": "https://figshare.com/ndownloader/files/38022171 (ibmGestureTrain.tar.gz)",
    "test": "https://figshare.com/ndownloader/files/38020584 (ibmGestureTest.tar.gz)",
}
GESTURE_CLASSES = 11


# ---------------------------------------------------------------- framing (pure functions)


def event_count_bins(num_events: int, time_steps: int) -> np.ndarray:
    """Frame index of each of ``num_events`` events split by count: ``n // T`` events per frame, the
    remainder in the last frame (all events in the last frame when ``n < T``). Returns int64 ``[n]``."""
    per_frame = num_events // time_steps
    if per_frame == 0:
        return np.full(num_events, time_steps - 1, dtype=np.int64)
    return np.minimum(np.arange(num_events, dtype=np.int64) // per_frame, time_steps - 1)


def time_bins(t: np.ndarray, time_steps: int) -> np.ndarray:
    """Frame index of each event for ``T`` equal bins over ``[t.min(), t.max()]`` (the last event in the
    last bin). Returns int64 ``[n]``."""
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    t = t.astype(np.float64)
    span = t.max() - t.min()
    if span == 0:
        return np.zeros(len(t), dtype=np.int64)
    return np.minimum(((t - t.min()) * time_steps / span).astype(np.int64), time_steps - 1)


def accumulate_frames(
    x: np.ndarray, y: np.ndarray, p: np.ndarray, bins: np.ndarray, time_steps: int, size: int = SENSOR_SIZE
) -> torch.Tensor:
    """Event counts ``[T, 2, size, size]`` (float32): frame ``bins``, channel ``p``, row ``y``, column ``x``."""
    flat = ((bins * 2 + p.astype(np.int64)) * size + y.astype(np.int64)) * size + x.astype(np.int64)
    counts = np.bincount(flat, minlength=time_steps * 2 * size * size)
    return torch.from_numpy(counts.astype(np.float32)).view(time_steps, 2, size, size)


def authors_la_resize(frames: torch.Tensor, frame_size: int) -> torch.Tensor:
    """The published runs' resize of ``[T, 2, H, W]`` frames in [0, 1]: each frame becomes an 8-bit Pillow
    "LA" image (values * 255, truncated), is resized bilinearly by Pillow (which premultiplies the first
    channel by the second, alpha, around the resize) and comes back divided by 255. Returns ``[T, 2, S, S]``."""
    from PIL import Image

    pixels = (frames * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # [T, H, W, 2]
    out = [
        np.asarray(Image.fromarray(frame).resize((frame_size, frame_size), Image.BILINEAR))  # [H, W, 2] -> "LA"
        for frame in pixels
    ]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def resize_frames(frames: torch.Tensor, frame_size: int, resize: str = "float") -> torch.Tensor:
    """Resize every channel of ``[T, C, H, W]`` frames to ``frame_size``: ``float`` = antialiased bilinear on
    floats, ``authors_la_quirk`` = :func:`authors_la_resize`. Returns ``[T, C, S, S]``."""
    if resize == "authors_la_quirk":
        return authors_la_resize(frames, frame_size)
    if frames.shape[-1] == frame_size and frames.shape[-2] == frame_size:
        return frames
    return F.interpolate(frames, size=(frame_size, frame_size), mode="bilinear", align_corners=False, antialias=True)


def normalise_and_resize(frames: torch.Tensor, frame_size: int, resize: str = "float") -> torch.Tensor:
    """Divide each frame of ``[T, C, H, W]`` by its maximum (empty frames stay 0), then :func:`resize_frames`.
    Returns ``[T, C, S, S]``."""
    peak = frames.amax(dim=(1, 2, 3), keepdim=True)
    return resize_frames(frames / peak.clamp_min(1e-12), frame_size, resize)


# ---------------------------------------------------------------- readers


def read_cifar10dvs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events (x, y, p, t) of one original CIFAR10-DVS recording (AEDAT 2.0, DVS128 addresses).

    Uses tonic's AEDAT header/event readers and tonic's DVS128 address layout
    (x = bits 8-14, y = bits 1-7, polarity = bit 0).
    """
    io = _tonic_io()
    try:
        version, start, _ = io.read_aedat_header_from_file(str(path))
        events = io.get_aer_events_from_file(str(path), version, start)
    except Exception as e:  # tonic raises bare Exceptions / asserts on bad files
        raise DataMissingError(f"cannot read DVS-CIFAR10 recording {path}: {e}") from e
    if version is None or not 2 <= version < 3:
        raise DataMissingError(f"{path} is not an AEDAT 2.0 recording (version {version})")
    if path.stat().st_size - start != 8 * len(events):
        raise DataMissingError(f"DVS-CIFAR10 recording {path} is truncated (a partial event at the end)")
    addr = events["address"]
    x = (addr >> 8) & 0x7F
    y = (addr >> 1) & 0x7F
    p = addr & 0x1
    return x, y, p, events["timeStamp"]


def read_gesture(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Events (x, y, p, t[us]) of one tonic DVS Gesture sample (``[N, 4]`` array x, y, p, t[ms])."""
    try:
        events = np.load(path)
    except (OSError, ValueError, EOFError) as e:
        raise DataMissingError(f"cannot read DVS Gesture sample {path}: {e}") from e
    if events.ndim != 2 or events.shape[1] != 4:
        raise DataMissingError(f"DVS Gesture sample {path} has shape {events.shape}, expected [N, 4]")
    return events[:, 0], events[:, 1], events[:, 2], (events[:, 3] * 1000).astype(np.int64)


def _tonic_io():
    try:
        import tonic.io
    except ImportError:
        raise DataMissingError('DVS-CIFAR10 needs tonic, an optional extra: pip install "asgl[events]"') from None
    return tonic.io


def cifar10dvs_frames(path: Path, time_steps: int, frame_size: int, resize: str = "float") -> torch.Tensor:
    """``[T, 2, S, S]`` frames of one DVS-CIFAR10 recording, split by event count."""
    x, y, p, _ = read_cifar10dvs(path)
    counts = accumulate_frames(x, y, p, event_count_bins(len(x), time_steps), time_steps)
    return normalise_and_resize(counts, frame_size, resize)


def gesture_frames(path: Path, time_steps: int, frame_size: int, resize: str = "float") -> torch.Tensor:
    """``[T, 2, S, S]`` frames of one DVS Gesture sample, split into equal time bins."""
    x, y, p, t = read_gesture(path)
    counts = accumulate_frames(x, y, p, time_bins(t, time_steps), time_steps)
    return normalise_and_resize(counts, frame_size, resize)


# ---------------------------------------------------------------- cache


@dataclass(frozen=True)
class FrameCache:
    """Frames on disk, one ``.pt`` per recording under ``folder``; the file name hashes ``params``
    (everything that shapes the frames) with the recording's resolved path, size and mtime."""

    folder: Path
    params: tuple[tuple[str, object], ...]

    def key(self, source: Path) -> str:
        stat = source.stat()
        ident = dict(self.params, source=str(source.resolve()), size=stat.st_size, mtime_ns=stat.st_mtime_ns)
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]

    def get(self, source: Path, make: Callable[[Path], torch.Tensor]) -> torch.Tensor:
        path = self.folder / f"{self.key(source)}.pt"
        if path.exists():
            return torch.load(path, weights_only=True)
        frames = make(source)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(frames, tmp)
        os.replace(tmp, path)  # atomic: concurrent workers never see a partial file
        return frames


# ---------------------------------------------------------------- dataset


def item_seed(seed: int, index: int, draw: int) -> int:
    """Seed of the ``draw``-th augmentation of sample ``index``: reproducible, different per epoch,
    and independent of which DataLoader worker draws it."""
    return (seed * 1_000_003 + index) * 1_000_033 + draw


def flip_and_roll(frames: torch.Tensor, flip: bool, shifts: tuple[int, int]) -> torch.Tensor:
    """``[T, C, H, W]`` frames mirrored left-right (if ``flip``), then rolled by ``shifts`` = (rows, columns)."""
    if flip:
        frames = frames.flip(-1)
    return frames.roll(shifts=shifts, dims=(-2, -1))


class CachedRecordings:
    """Recording ``i`` -> (its frames from ``cache``, made by ``make_frames`` on a miss, label ``i``)."""

    def __init__(
        self, files: list[Path], labels: list[int], make_frames: Callable[[Path], torch.Tensor], cache: FrameCache
    ) -> None:
        self.files, self.labels, self.make_frames, self.cache = files, labels, make_frames, cache

    def __len__(self) -> int:
        return len(self.files)

    def __call__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.cache.get(self.files[index], self.make_frames), self.labels[index]


class EventFrames(Dataset):
    """Samples ``source(i)`` = (frames ``[T, 2, S, S]``, int label), augmented in training.

    With ``augment``, each draw applies a horizontal flip with probability ½ (if ``hflip``) and rolls
    both spatial axes by independent integers in ``[-roll, roll]`` (:func:`flip_and_roll`); draws are
    seeded by (seed, index, how many times this index was drawn), so they differ per epoch and are reproducible.
    """

    def __init__(
        self,
        source: Callable[[int], tuple[torch.Tensor, int]],
        augment: bool = False,
        hflip: bool = True,
        roll: int = 0,
        seed: int = 0,
    ):
        self.source = source
        self.augment, self.hflip, self.roll, self.seed = augment, hflip, roll, seed
        self._draws: Counter[int] = Counter()

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.source(index)
        if self.augment:
            gen = torch.Generator().manual_seed(item_seed(self.seed, index, self._draws[index]))
            self._draws[index] += 1
            flip = self.hflip and bool(torch.rand((), generator=gen) < 0.5)
            rows, cols = torch.randint(-self.roll, self.roll + 1, (2,), generator=gen).tolist()
            frames = flip_and_roll(frames, flip, (rows, cols))
        return frames, label


# ---------------------------------------------------------------- ready-made frame files (data.format = "frame_folder")


def frame_folder_files(root: Path, split: str) -> list[Path]:
    """``<root>/<split>/0.pt`` ... ``<n-1>.pt`` in index order: sample ``i`` is file ``i``, as the authors'
    loader numbers them. Raises :class:`DataMissingError` unless the folder holds exactly these files."""
    folder = root / split
    if not folder.is_dir():
        raise DataMissingError(f"missing {folder}: {FRAME_FOLDER_HOWTO}")
    names = set(os.listdir(folder))
    expected = {f"{i}.pt" for i in range(len(names))}
    if not names or names != expected:
        strays = sorted(names - expected)
        found = f"; unexpected: {strays[0]}" if strays else ""
        raise DataMissingError(f"{folder} must hold files 0.pt ... <n-1>.pt and nothing else{found}")
    return [folder / f"{i}.pt" for i in range(len(names))]


def read_frame_file(path: Path, time_steps: int) -> tuple[torch.Tensor, int]:
    """One ``(frames, target)`` file: float frames ``[T, 2, H, W]`` (``T`` = ``time_steps``) and a
    one-element label in 0..9. Read as tensors only (``weights_only``): a file can never run code."""
    try:
        item = torch.load(path, weights_only=True)
    except Exception as e:  # damaged files raise anything: EOFError, RuntimeError, UnpicklingError, ...
        raise DataMissingError(f"cannot read frame file {path} ({type(e).__name__}: {e})") from None
    frames, target = item if isinstance(item, (tuple, list)) and len(item) == 2 else (None, None)
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 2:
        raise DataMissingError(f"{path} is not a (frames [T, 2, H, W], target) pair")
    if not frames.is_floating_point():
        raise DataMissingError(f"{path} holds {frames.dtype} frames; expected floats in [0, 1]")
    if frames.shape[0] != time_steps:
        raise DataMissingError(f"{path} holds {frames.shape[0]} frames, but train.time_steps = {time_steps}")
    target = torch.as_tensor(target)
    label = int(target.reshape(-1)[0].long()) if target.numel() == 1 else -1
    if not 0 <= label < len(CIFAR10DVS_CLASSES):
        raise DataMissingError(f"{path} has target {target.tolist()}; expected one class index in 0..9")
    return frames, label


class FrameFiles:
    """File ``i`` of a frame folder -> (its frames resized to ``frame_size`` by ``resize``, its label).

    Frames are not divided by their maximum: they are used as stored (``authors_la_quirk`` multiplies
    them by 255 and casts them to 8 bits, as the authors' loader does)."""

    def __init__(self, files: list[Path], time_steps: int, frame_size: int, resize: str) -> None:
        self.files, self.time_steps, self.frame_size, self.resize = files, time_steps, frame_size, resize

    def __len__(self) -> int:
        return len(self.files)

    def __call__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = read_frame_file(self.files[index], self.time_steps)
        return resize_frames(frames, self.frame_size, self.resize).float(), label


def check_frame_folder(data: EventData, run: DataRun) -> list[DataProblem]:
    """One row per split folder: its file count, and the first file read in full."""
    root, rows = Path(data.root), []
    for split in FRAME_FOLDER_SPLITS:
        folder = root / split
        try:
            files = frame_folder_files(root, split)
            frames, label = read_frame_file(files[0], run.time_steps)
        except DataMissingError as e:
            rows.append(DataProblem(str(folder), False, str(e)))
            continue
        size = human_size(sum(p.stat().st_size for p in files))
        shape = "x".join(str(n) for n in frames.shape)
        rows.append(DataProblem(str(folder), True, f"{len(files)} frame files; 0.pt: [{shape}], label {label}", size))
    return rows


# ---------------------------------------------------------------- files and splits


def recording_index(path: Path) -> int:
    """The recording number at the end of a file stem (``cifar10_cat_12`` -> 12)."""
    match = re.search(r"(\d+)$", path.stem)
    if match is None:
        raise DataMissingError(f"cannot read a recording index from {path.name} (expected a name ending in a number)")
    return int(match.group(1))


def cifar10dvs_files(root: Path) -> dict[str, list[Path]]:
    """Recordings of each class, sorted by recording index."""
    return {c: sorted((root / CIFAR10DVS_DIR / c).glob("*.aedat"), key=recording_index) for c in CIFAR10DVS_CLASSES}


def split_cifar10dvs(files: dict[str, list[Path]], mode: str) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(train, test) lists of (file, label), split per class.

    ``ratio``: the first 70 % of the recordings present (by index) train, the rest test.
    ``reference``: recordings numbered 0-699 train, 700-999 test, as the reference does. With the full
    dataset (1,000 per class) both give the same 7,000 / 3,000 split; with partial data ``reference``
    keeps the numbering rule (possibly an empty or lopsided test set) while ``ratio`` keeps 70/30.
    """
    train, test = [], []
    for label, cls in enumerate(CIFAR10DVS_CLASSES):
        paths = files[cls]
        if mode == "reference":
            is_train = [recording_index(p) < REFERENCE_TRAIN_FILES for p in paths]
        else:
            n_train = len(paths) * TRAIN_RATIO[0] // TRAIN_RATIO[1]
            is_train = [i < n_train for i in range(len(paths))]
        for path, keep in zip(paths, is_train):
            (train if keep else test).append((path, label))
    return train, test


def gesture_files(root: Path, split: str) -> list[tuple[Path, int]]:
    """(file, label) of a DVS Gesture split, folders and files in sorted order; label = file stem."""
    folder = root / GESTURE_DIR / GESTURE_SPLITS[split]
    return [(p, int(p.stem)) for p in sorted(folder.glob("*/*.npy"))]


# ---------------------------------------------------------------- build / check


def cache_folder(data: EventData) -> Path:
    base = Path(data.cache_dir) if data.cache_dir else Path(data.root) / "cache"
    return base / data.name


def info(data: EventData, run: DataRun) -> DataInfo:
    """``T`` frames of 2 polarity channels at ``data.frame_size``."""
    classes = len(CIFAR10DVS_CLASSES) if data.name == "dvs_cifar10" else GESTURE_CLASSES
    size = data.frame_size
    return DataInfo("event", 2, (size, size), classes, run.time_steps)


def _reads_frame_folder(data: EventData) -> bool:
    return data.name == "dvs_cifar10" and data.format == "frame_folder"


def check(data: EventData, run: DataRun) -> list[DataProblem]:
    if _reads_frame_folder(data):
        return check_frame_folder(data, run)
    root = Path(data.root)
    if data.name == "dvs_cifar10":
        problems = []
        for cls, paths in cifar10dvs_files(root).items():
            folder = root / CIFAR10DVS_DIR / cls
            if paths:
                size = human_size(sum(p.stat().st_size for p in paths))
                problems.append(DataProblem(str(folder), True, f"{len(paths)} recordings (full data: 1000)", size))
            else:
                problems.append(DataProblem(
                    str(folder), False,
                    f"no .aedat recordings: put the original CIFAR10-DVS '{cls}' recordings "
                    f"(cifar10_{cls}_<i>.aedat) here; get them from {CIFAR10DVS_URL}",
                ))  # fmt: skip
        if all(p.ok for p in problems):
            train, test = split_cifar10dvs(cifar10dvs_files(root), data.split)
            message = f"split '{data.split}': {len(train)} train / {len(test)} test recordings"
            if not train or not test:
                message += (
                    ' (the reference split needs recordings numbered below and from 700; try data.split = "ratio")'
                )
            problems.append(DataProblem(str(root / CIFAR10DVS_DIR), bool(train and test), message))
        return problems
    problems = []
    for split, folder_name in GESTURE_SPLITS.items():
        folder = root / GESTURE_DIR / folder_name
        items = gesture_files(root, split)
        if items:
            size = human_size(sum(p.stat().st_size for p, _ in items))
            problems.append(
                DataProblem(str(folder), True, f"{len(items)} samples (full data: 1077 train / 264 test)", size)
            )
        else:
            problems.append(DataProblem(
                str(folder), False,
                f"no <user>_<lighting>/<label>.npy samples: extract {GESTURE_URLS[split]} into {root / GESTURE_DIR}",
            ))  # fmt: skip
    return problems


def _raise_if_missing(problems: list[DataProblem], hint: str = "") -> None:
    missing = [f"  {p.path}: {p.message}" for p in problems if not p.ok]
    if missing:
        tail = f"\n{hint}" if hint else ""
        raise DataMissingError("dataset files are missing:\n" + "\n".join(missing) + tail)


def _recording_sources(data: EventData, run: DataRun) -> tuple[CachedRecordings, CachedRecordings]:
    """(train, test) recordings of DVS-CIFAR10 (.aedat) or DVS Gesture, framed by asgl and cached."""
    _raise_if_missing(check(data, run), GET_HINT if data.name == "dvs_gesture" else "")
    time_steps = run.time_steps
    root = Path(data.root)
    if data.name == "dvs_cifar10":
        train_items, test_items = split_cifar10dvs(cifar10dvs_files(root), data.split)
        make, framing = cifar10dvs_frames, "event_count"
    else:
        train_items, test_items = gesture_files(root, "train"), gesture_files(root, "test")
        make, framing = gesture_frames, "time_bins"
    if not train_items or not test_items:
        raise DataMissingError(f"{data.name} leaves {len(train_items)} train / {len(test_items)} test recordings")
    params = (
        ("dataset", data.name), ("framing", framing), ("time_steps", time_steps),
        ("frame_size", data.frame_size), ("frame_resize", data.frame_resize), ("version", CACHE_VERSION),
    )  # fmt: skip
    cache = FrameCache(cache_folder(data), params)
    make_frames = partial(make, time_steps=time_steps, frame_size=data.frame_size, resize=data.frame_resize)

    def source(items: list[tuple[Path, int]]) -> CachedRecordings:
        return CachedRecordings([p for p, _ in items], [y for _, y in items], make_frames, cache)

    return source(train_items), source(test_items)


def _frame_folder_sources(data: EventData, run: DataRun) -> tuple[FrameFiles, FrameFiles]:
    """(train, test) ready-made frame files under ``<root>/train`` and ``<root>/test``."""
    _raise_if_missing(check_frame_folder(data, run))
    root = Path(data.root)
    train, test = (
        FrameFiles(frame_folder_files(root, split), run.time_steps, data.frame_size, data.frame_resize)
        for split in FRAME_FOLDER_SPLITS
    )
    return train, test


def build(data: EventData, run: DataRun) -> DataBundle:
    seed = run.seed
    sources = _frame_folder_sources(data, run) if _reads_frame_folder(data) else _recording_sources(data, run)
    hflip = data.name == "dvs_cifar10"  # DVS Gesture: left- and right-hand gestures are different classes

    def frames(source: Callable[[int], tuple[torch.Tensor, int]], augment: bool) -> EventFrames:
        return EventFrames(source, augment, hflip, data.roll_pixels, seed)

    train, val = carve_validation(frames(sources[0], True), frames(sources[0], False), run.val_fraction, seed)
    test = frames(sources[1], False)
    limit = data.subset
    return DataBundle(take_subset(train, limit), take_subset(val, limit), take_subset(test, limit), info(data, run))
