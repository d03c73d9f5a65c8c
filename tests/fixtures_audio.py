"""Writers of tiny SHD files and WAV class folders in the formats asgl.data.audio reads.

Nothing here is committed data: tests call these writers into temporary folders.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import soundfile as sf

from asgl.data.audio import SHD_DIR, SHD_FILES


def write_shd_file(path: Path, times: list[np.ndarray], units: list[np.ndarray], labels: list[int]) -> None:
    """An SHD HDF5 file as published: spikes/times (float16 seconds, ragged), spikes/units (uint16, ragged),
    labels (uint16), extra/keys and extra/speaker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for name, rows, dtype in (("spikes/times", times, np.float16), ("spikes/units", units, np.uint16)):
            ds = f.create_dataset(name, (len(rows),), dtype=h5py.vlen_dtype(dtype))
            for i, row in enumerate(rows):
                ds[i] = row
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/keys", data=np.array([f"digit-{i}".encode() for i in range(20)]))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), dtype=np.uint16))


def write_shd(root: Path, n_train: int, n_test: int, spikes: int = 400, seed: int = 0) -> None:
    """``<root>/SHD/shd_train.h5`` and ``shd_test.h5`` with random spikes in [0, 1.2) s; label i % 20."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = [i % 20 for i in range(n)]
        times = [np.sort(rng.uniform(0, 1.2, spikes)).astype(np.float16) for _ in labels]
        units = [((rng.integers(0, 35, spikes) + 35 * y) % 700).astype(np.uint16) for y in labels]
        write_shd_file(root / SHD_DIR / SHD_FILES[split], times, units, labels)


def write_wav_folder(
    root: Path, classes: list[str], per_class: int, sample_rate: int = 8000, seconds: float = 0.25, seed: int = 0
) -> list[Path]:
    """``<root>/<class>/clip<i>.wav``: a class-dependent tone plus noise, 16-bit PCM; returns the files."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(sample_rate * seconds)) / sample_rate
    files = []
    for label, cls in enumerate(classes):
        for i in range(per_class):
            wave = 0.5 * np.sin(2 * np.pi * 220 * (label + 1) * t) + 0.05 * rng.standard_normal(len(t))
            path = root / cls / f"clip{i:03d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave.astype(np.float32), sample_rate)
            files.append(path)
    return files
