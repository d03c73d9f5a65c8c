"""The run folder: ``<out_dir>/<name>-<timestamp>/`` and the paths inside it.

config.resolved.toml   the recipe as run (reproduces the run on its own)
metrics.jsonl          one JSON object per epoch
events.*               TensorBoard
checkpoints/last.pt    latest state (epoch end, periodic or on interruption)
checkpoints/best.pt    best validation accuracy
summary.json           final numbers
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.resolved.toml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best.pt"


def create_run_folder(out_dir: str | Path, name: str) -> RunFolder:
    """A new, empty ``<out_dir>/<name>-<YYYYmmdd-HHMMSS>[-n]`` folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent = Path(out_dir)
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        root = parent / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
        try:
            root.mkdir()
        except FileExistsError:
            continue
        (root / "checkpoints").mkdir()
        return RunFolder(root)
    raise FileExistsError(f"could not create a fresh run folder for {name!r} in {parent}")


def run_folder_of(checkpoint: Path) -> RunFolder:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.pt`` -> ``<run>``)."""
    folder = checkpoint.resolve().parent
    return RunFolder(folder.parent if folder.name == "checkpoints" else folder)
