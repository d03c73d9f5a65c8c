"""The run folder: ``<out_dir>/<name>-<timestamp>/`` and the paths inside it.

config.resolved.toml   the recipe as run (reproduces the run on its own)
metrics.jsonl          one JSON object per epoch
events.*               TensorBoard
checkpoints/last.pt    latest state (epoch end, periodic or on interruption)
checkpoints/best.pt    best validation accuracy
summary.json           final numbers
.lock                  held (flock) by the process writing the run; see :class:`RunFolderLock`
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

from asgl.errors import RecipeError, RunFolderBusy


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
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            root = parent / (f"{name}-{stamp}" if n == 1 else f"{name}-{stamp}-{n}")
            try:
                root.mkdir()
            except FileExistsError:
                continue
            (root / "checkpoints").mkdir()
            return RunFolder(root)
    except OSError as e:
        raise RecipeError(f"cannot create a run folder in {parent}: {e.strerror or e}") from None
    raise RecipeError(f"could not create a fresh run folder for {name!r} in {parent}")


def run_folder_of(checkpoint: Path) -> RunFolder:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.pt`` -> ``<run>``)."""
    folder = checkpoint.resolve().parent
    return RunFolder(folder.parent if folder.name == "checkpoints" else folder)


class RunFolderLock:
    """An exclusive lock on ``<folder>/.lock`` while this process writes the folder.

    ``fcntl.flock``: the kernel releases it when the process ends, however it ends, so a lock file left
    by a killed process never blocks a later run. The file holds the owner's pid, for the message only.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / ".lock"
        self._file = None

    def acquire(self) -> RunFolderLock:
        """Take the lock, or raise :class:`RunFolderBusy` naming the live process that holds it."""
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            f.close()
            raise RunFolderBusy(
                f"{self.path.parent} is in use by process {owner}, which is still writing it; "
                "wait for it to finish or stop it first"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
