"""Static images: CIFAR-10, CIFAR-100 (python pickle batches) and Tiny-ImageNet (folder layout).

Samples are ``[3, H, W]`` float tensors, normalised; labels are ints. Training pipeline (docs/method.md#data-pipelines):
RandomCrop(size, pad 4), HFlip, optional AutoAugment (CIFAR-10 policy, torchvision's or the published
runs' own from :mod:`asgl.data.autoaugment`, uncovered pixels filled with ``data.autoaugment_fill``),
ToTensor, optional Cutout
(one hole, clipped at the borders, before Normalize), Normalize. Validation and test samples get
ToTensor + Normalize only. The validation split is carved from the official training set; the
official test set (Tiny-ImageNet: the official val set) is the test set.

CIFAR files are read from the pickle batches directly (the format documented on the CIFAR page, file
names and URLs from torchvision's dataset classes) rather than through ``torchvision.datasets.CIFAR10``,
whose md5 check rejects anything but the official bytes: this way ``asgl data check`` can say
which file is wrong, and small files in the same format work for tests.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader

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
from asgl.data.autoaugment import ReferenceAutoAugment

if TYPE_CHECKING:
    from asgl.config import ImageData

Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


@dataclass(frozen=True)
class ImageSet:
    """What differs between the image datasets."""

    num_classes: int
    image_size: int
    mean_std: Stats


IMAGE_SETS: dict[str, ImageSet] = {
    "cifar10": ImageSet(10, 32, ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))),
    "cifar100": ImageSet(100, 32, ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761))),
    # ImageNet statistics (Tiny-ImageNet is a subset of ImageNet)
    "tiny_imagenet": ImageSet(200, 64, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
}

CROP_PADDING = 4
TINY_IMAGENET_FOLDER = "tiny-imagenet-200"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


# ---------------------------------------------------------------- transforms


class Cutout:
    """Zero one ``size`` x ``size`` square of a ``[C, H, W]`` tensor, centred uniformly, clipped at the borders.

    The centre is drawn with torch's RNG (seeded per DataLoader worker by torch).
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cy = int(torch.randint(h, ()))
        cx = int(torch.randint(w, ()))
        y0, y1 = max(cy - self.size // 2, 0), min(cy + self.size - self.size // 2, h)
        x0, x1 = max(cx - self.size // 2, 0), min(cx + self.size - self.size // 2, w)
        out = img.clone()
        out[..., y0:y1, x0:x1] = 0.0
        return out

    def __repr__(self) -> str:
        return f"Cutout(size={self.size})"


def train_transform(data: ImageData, image_set: ImageSet) -> T.Compose:
    """PIL image -> augmented, normalised ``[3, H, W]`` tensor, per the ``data`` flags."""
    cfg = data
    steps: list[Callable] = []
    if cfg.random_crop:
        steps.append(T.RandomCrop(image_set.image_size, padding=CROP_PADDING))
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip())
    if cfg.autoaugment == "torchvision":
        steps.append(T.AutoAugment(T.AutoAugmentPolicy.CIFAR10, fill=cfg.autoaugment_fill))
    elif cfg.autoaugment == "reference":
        steps.append(ReferenceAutoAugment(fill=cfg.autoaugment_fill))
    steps.append(T.ToTensor())
    if cfg.cutout:
        steps.append(Cutout(cfg.cutout))
    steps.append(T.Normalize(*image_set.mean_std))
    return T.Compose(steps)


def eval_transform(image_set: ImageSet) -> T.Compose:
    return T.Compose([T.ToTensor(), T.Normalize(*image_set.mean_std)])


# ---------------------------------------------------------------- datasets


class ArrayImages(Dataset):
    """In-memory uint8 images ``[N, H, W, 3]`` and labels, seen through a PIL transform."""

    def __init__(self, images: np.ndarray, labels: list[int], transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


class FileImages(Dataset):
    """Image files ``(path, label)`` read as RGB, seen through a PIL transform."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[i]
        return self.transform(default_loader(path)), label


def _bundle(data: ImageData, run: DataRun, image_set: ImageSet, make: Callable[[str, Callable], Dataset]) -> DataBundle:
    """Train (augmented) / val (carved, plain) / test (plain) from ``make(split, transform)``."""
    plain = eval_transform(image_set)
    train, val = carve_validation(
        make("train", train_transform(data, image_set)),
        make("train", plain),
        run.val_fraction,
        run.seed,
    )
    test = make("test", plain)
    limit = data.subset
    return DataBundle(take_subset(train, limit), take_subset(val, limit), take_subset(test, limit), info(data, run))


# ---------------------------------------------------------------- CIFAR


CIFAR_CLASSES: dict[str, type[CIFAR10]] = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def _cifar_dir(data: ImageData) -> Path:
    return Path(data.root).expanduser().resolve() / CIFAR_CLASSES[data.name].base_folder


def _cifar_howto(data: ImageData) -> str:
    cls = CIFAR_CLASSES[data.name]
    root = Path(data.root).expanduser().resolve()
    return (
        f"put the python version of {data.name.upper()} in {root / cls.base_folder}: "
        f"download {cls.url} and run `tar -xzf {cls.filename} -C {root}`"
    )


class CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a data file can never run code."""

    _reconstruct = np.zeros(0).__reduce__()[0]  # numpy's array rebuilder, whatever module numpy keeps it in
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # files written with numpy 1.x
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy 2.x
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("codecs").encode,  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused: the file references {module}.{name}, not a numpy array")
        return self.ALLOWED[(module, name)]


def read_pickle(path: Path) -> dict[str, object]:
    """One CIFAR pickle file as a dict with str keys (the files are Python 2 pickles with byte-string keys)."""
    with open(path, "rb") as f:
        try:
            entry = CifarUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, OSError):
            raise
        except Exception as e:  # damaged bytes raise anything: OverflowError, MemoryError, KeyError, ...
            raise pickle.UnpicklingError(f"not a pickle file ({type(e).__name__}: {e})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path} holds a {type(entry).__name__}, expected the dict of a CIFAR pickle file")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """Images ``[N, 32, 32, 3]`` uint8 and labels of one batch file (``labels`` or ``fine_labels``)."""
    entry = read_pickle(path)
    labels = entry.get("labels", entry.get("fine_labels"))
    data = np.asarray(entry.get("data"))
    if labels is None or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(f"{path} is not a CIFAR batch (expected 'data' [N, 3072] and 'labels' or 'fine_labels')")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), [int(y) for y in labels]


def _cifar_files(data: ImageData) -> dict[str, list[str]]:
    cls = CIFAR_CLASSES[data.name]
    return {
        "train": [name for name, _ in cls.train_list],
        "test": [name for name, _ in cls.test_list],
        "meta": [cls.meta["filename"]],
    }


def _load_cifar(data: ImageData, split: str) -> tuple[np.ndarray, list[int]]:
    folder = _cifar_dir(data)
    images, labels = [], []
    for name in _cifar_files(data)[split]:
        path = folder / name
        if not path.is_file():
            raise DataMissingError(f"{data.name}: missing {path}; {_cifar_howto(data)}; {GET_HINT}")
        try:
            x, y = read_cifar_batch(path)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
            raise DataMissingError(f"{data.name}: cannot read {path} ({e}); {_cifar_howto(data)}; {GET_HINT}") from None
        images.append(x)
        labels.extend(y)
    return np.concatenate(images), labels


def _check_cifar(data: ImageData) -> list[DataProblem]:
    folder = _cifar_dir(data)
    if not folder.is_dir():
        return [DataProblem(str(folder), False, f"missing; {_cifar_howto(data)}")]
    classes = IMAGE_SETS[data.name].num_classes
    rows = []
    for split, names in _cifar_files(data).items():
        for name in names:
            path = folder / name
            if not path.is_file():
                rows.append(DataProblem(str(path), False, f"missing; {_cifar_howto(data)}"))
                continue
            size = human_size(path.stat().st_size)
            try:
                if split == "meta":
                    entry = read_pickle(path)
                    key = "label_names" if data.name == "cifar10" else "fine_label_names"
                    n = len(entry[key])
                    ok = n == classes
                    msg = f"{n} class names" + ("" if ok else f", expected {classes}")
                else:
                    _, labels = read_cifar_batch(path)
                    bad = [y for y in labels if not 0 <= y < classes]
                    ok = not bad
                    msg = f"{split}: {len(labels)} images"
                    if bad:
                        msg += f", {len(bad)} labels outside [0, {classes})"
            except (OSError, pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as e:
                ok, msg = False, f"unreadable ({type(e).__name__}: {e}); {_cifar_howto(data)}"
            rows.append(DataProblem(str(path), ok, msg, size))
    return rows


def _build_cifar(data: ImageData, run: DataRun) -> DataBundle:
    arrays = {split: _load_cifar(data, split) for split in ("train", "test")}
    return _bundle(data, run, IMAGE_SETS[data.name], lambda split, tf: ArrayImages(*arrays[split], tf))


# ---------------------------------------------------------------- Tiny-ImageNet


def _tiny_dir(data: ImageData) -> Path:
    return Path(data.root).expanduser().resolve() / TINY_IMAGENET_FOLDER


def _tiny_howto(data: ImageData) -> str:
    root = Path(data.root).expanduser().resolve()
    return (
        f"put Tiny-ImageNet in {root / TINY_IMAGENET_FOLDER}: download {TINY_IMAGENET_URL} "
        f"and run `unzip tiny-imagenet-200.zip -d {root}`"
    )


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _tiny_samples(data: ImageData) -> dict[str, list[tuple[str, int]]]:
    """``train``: train/<wnid>/images/*; ``test``: the official val set (val/images + val_annotations.txt).

    Class indices follow the sorted wnids of wnids.txt.
    """
    folder = _tiny_dir(data)
    wnids_file, ann_file = folder / "wnids.txt", folder / "val" / "val_annotations.txt"
    for path in (wnids_file, ann_file, folder / "train", folder / "val" / "images"):
        if not path.exists():
            raise DataMissingError(f"tiny_imagenet: missing {path}; {_tiny_howto(data)}; {GET_HINT}")
    wnids = sorted(wnids_file.read_text().split())
    index = {w: i for i, w in enumerate(wnids)}
    train = []
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise DataMissingError(f"tiny_imagenet: missing {images}; {_tiny_howto(data)}; {GET_HINT}")
        train += [(str(images / n), index[wnid]) for n in sorted(os.listdir(images)) if _is_image(n)]
    test = []
    for line_no, line in enumerate(ann_file.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise DataMissingError(f"tiny_imagenet: {ann_file} line {line_no} is not '<file>\\t<wnid>...': {line!r}")
        test.append((str(folder / "val" / "images" / fields[0]), index[fields[1]]))
    return {"train": train, "test": test}


def _check_tiny(data: ImageData) -> list[DataProblem]:
    folder = _tiny_dir(data)
    if not folder.is_dir():
        return [DataProblem(str(folder), False, f"missing; {_tiny_howto(data)}")]
    try:
        samples = _tiny_samples(data)
    except (DataMissingError, OSError) as e:
        return [DataProblem(str(folder), False, str(e))]
    classes = IMAGE_SETS["tiny_imagenet"].num_classes
    wnids_file = folder / "wnids.txt"
    n_wnids = len(wnids_file.read_text().split())
    size = human_size(wnids_file.stat().st_size)
    rows = [DataProblem(str(wnids_file), n_wnids == classes, f"{n_wnids} classes (expected {classes})", size)]
    for split, where in (("train", folder / "train"), ("test", folder / "val")):
        items = samples[split]
        present = [p for p, _ in items if os.path.isfile(p)]
        missing = [p for p, _ in items if not os.path.isfile(p)]
        size = human_size(sum(os.path.getsize(p) for p in present))
        msg = f"{split}: {len(items)} images in {len({y for _, y in items})} classes"
        if missing:
            msg += f", {len(missing)} listed files missing (first: {missing[0]})"
        elif items:
            try:
                default_loader(items[0][0])
            except OSError as e:
                missing = [items[0][0]]
                msg += f", cannot decode {items[0][0]} ({e})"
        rows.append(DataProblem(str(where), bool(items) and not missing, msg, size))
    return rows


def _build_tiny(data: ImageData, run: DataRun) -> DataBundle:
    samples = _tiny_samples(data)
    return _bundle(data, run, IMAGE_SETS["tiny_imagenet"], lambda split, tf: FileImages(samples[split], tf))


# ---------------------------------------------------------------- module contract


def info(data: ImageData, run: DataRun) -> DataInfo:
    """RGB images of the dataset's size and classes."""
    image_set = IMAGE_SETS[data.name]
    size = (image_set.image_size, image_set.image_size)
    return DataInfo("static", 3, size, image_set.num_classes, run.time_steps)


def build(data: ImageData, run: DataRun) -> DataBundle:
    """Datasets of ``data.name``; raises :class:`DataMissingError` saying where to put missing files."""
    return _build_tiny(data, run) if data.name == "tiny_imagenet" else _build_cifar(data, run)


def check(data: ImageData, run: DataRun) -> list[DataProblem]:
    """One row per expected file or folder: present, readable, how many images, size on disk."""
    return _check_tiny(data) if data.name == "tiny_imagenet" else _check_cifar(data)
