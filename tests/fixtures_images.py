"""Tiny image datasets written in the real on-disk formats, for tests (always into a tmp dir).

CIFAR: python pickle batches as in cifar-10-python.tar.gz / cifar-100-python.tar.gz (dicts with byte-string
keys b'data' [N, 3072] uint8 row-major RGB planes, b'labels' or b'fine_labels', meta files with the class
names). Tiny-ImageNet: the tiny-imagenet-200/ folder tree with small JPEGs and val_annotations.txt.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _batch(rng: np.random.Generator, n: int, classes: int, label_key: bytes) -> tuple[dict, np.ndarray, list[int]]:
    hwc = _images(rng, n, 32)
    labels = [int(y) for y in rng.integers(0, classes, size=n)]
    data = hwc.transpose(0, 3, 1, 2).reshape(n, 3072)  # the CIFAR layout: R plane, G plane, B plane
    return {b"batch_label": b"fixture", label_key: labels, b"data": data}, hwc, labels


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, tuple]:
    """Write ``root/cifar-10-batches-py``; returns {"train"/"test": (images [N,32,32,3], labels)}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        entry, x, y = _batch(rng, per_batch, 10, b"labels")
        _dump(folder / f"data_batch_{i}", entry)
        train_x.append(x)
        train_y += y
    entry, test_x, test_y = _batch(rng, n_test, 10, b"labels")
    _dump(folder / "test_batch", entry)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072})
    return {"train": (np.concatenate(train_x), train_y), "test": (test_x, test_y)}


def write_cifar100(root: Path, n_train: int = 20, n_test: int = 6, seed: int = 0) -> dict[str, tuple]:
    """Write ``root/cifar-100-python``; returns {"train"/"test": (images [N,32,32,3], fine labels)}."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        entry, x, y = _batch(rng, n, 100, b"fine_labels")
        entry[b"coarse_labels"] = [label // 5 for label in y]
        _dump(folder / split, entry)
        out[split] = (x, y)
    _dump(
        folder / "meta",
        {b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": [b"s"] * 20},
    )
    return out


def write_tiny_imagenet(root: Path, classes: int = 200, per_class: int = 1, n_val: int = 6, seed: int = 0) -> list[str]:
    """Write ``root/tiny-imagenet-200`` with 64x64 JPEGs; returns the wnids in file order (not sorted)."""
    rng = np.random.default_rng(seed)
    folder = root / "tiny-imagenet-200"
    wnids = [f"n{9_000_000 - 7 * i:08d}" for i in range(classes)]  # descending: file order != sorted order
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    for w in wnids:
        images = folder / "train" / w / "images"
        images.mkdir(parents=True)
        boxes = []
        for j, img in enumerate(_images(rng, per_class, 64)):
            Image.fromarray(img).save(images / f"{w}_{j}.JPEG")
            boxes.append(f"{w}_{j}.JPEG\t0\t0\t63\t63\n")
        (folder / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    lines = []
    for j, img in enumerate(_images(rng, n_val, 64)):
        name = f"val_{j}.JPEG"
        picture = Image.fromarray(img)
        # one greyscale JPEG, as in the real set
        (picture.convert("L") if j == 0 else picture).save(folder / "val" / "images" / name)
        lines.append(f"{name}\t{wnids[j % classes]}\t0\t0\t63\t63\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return wnids
