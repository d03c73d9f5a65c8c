"""Checkpoints: written atomically, versioned, and loaded with ``torch.load(weights_only=True)`` only.

A checkpoint is one ``torch.save`` dict. Besides tensors it holds plain Python values only, so the
restricted unpickler accepts it and never runs code from the file. Keys:

    asgl_checkpoint   schema version (int); its presence marks an asgl checkpoint
    recipe            the resolved recipe as TOML text
    model             model state dict
    optimizer         main optimiser state dict
    neuron_optimizer  neuron-parameter optimiser state dict, or None
    lr_scheduler      LR scheduler state dict
    scaler            fp16 GradScaler state dict ({} when unused)
    epoch             epochs finished (the 1-based epoch a user reads, at an epoch boundary)
    step              batches of the next epoch already done (0 at an epoch boundary)
    running           partial sums of the epoch in progress (loss_sum, correct, seen, skipped)
    best              {"val_acc": float, "epoch": int}; epoch 1-based, 0 before the first validation
    rng               {"torch": ByteTensor, "cuda": [ByteTensor]} (masks draw from the global RNG)
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from asgl.errors import CheckpointError  # re-exported here

SCHEMA_VERSION = 2  # 2: best.epoch 1-based (version 1 stored it 0-based)
FORMAT_KEY = "asgl_checkpoint"
REQUIRED_KEYS = ("recipe", "model", "optimizer", "lr_scheduler", "epoch", "step", "best", "rng")


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file, or a run folder / its ``checkpoints`` folder (-> ``checkpoints/last.pt``)."""
    p = Path(path)
    if p.is_dir():
        for candidate in (p / "checkpoints" / "last.pt", p / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"checkpoint not found: {p} is a folder without checkpoints/last.pt")
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    On any OSError (disk full, permissions) the temp file is removed, a previous file at ``path``
    is left untouched and :class:`CheckpointError` is raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save({FORMAT_KEY: SCHEMA_VERSION, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint was written"
        raise CheckpointError(f"could not write checkpoint {path}: {e.strerror or e}; {kept}") from e
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_torch_file(p: Path, map_location: str | torch.device = "cpu", allowed: Sequence[type] = ()) -> Any:
    """The unpickled file: its zip records must pass their CRC checks, then a weights-only load.

    ``allowed``: classes rebuilt beyond tensors and plain values (each must be a bag of plain attributes,
    such as ``argparse.Namespace``); any other class in the file is refused, unexecuted.
    """
    try:
        with zipfile.ZipFile(p) as archive:
            damaged = archive.testzip()
    except zipfile.BadZipFile:
        raise CheckpointError(f"checkpoint {p} is truncated or corrupt (not a complete PyTorch file)") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}") from None
    if damaged is not None:
        raise CheckpointError(f"checkpoint {p} is corrupt: its record {damaged} fails the checksum") from None
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "GLOBAL" in str(e):
            raise CheckpointError(
                f"refused to load {p}: it references Python objects other than tensors and plain values "
                "(possibly code); asgl loads checkpoints with torch.load(weights_only=True) only"
            ) from None
        raise CheckpointError(f"checkpoint {p} is corrupt (unreadable pickle record)") from None
    except Exception as e:  # any other parse failure of a checksum-clean file: still a bad file
        raise CheckpointError(f"checkpoint {p} is corrupt ({type(e).__name__}: {e})") from None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check an asgl checkpoint; refuses foreign, newer, truncated, corrupt or code-carrying files."""
    p = resolve_checkpoint_path(path)
    obj = read_torch_file(p, map_location)
    if not isinstance(obj, dict) or FORMAT_KEY not in obj:
        raise CheckpointError(
            f"{p} is not an asgl checkpoint (a plain state dict or another project's file?); "
            "asgl checkpoints are written by `asgl train`"
        )
    version = obj[FORMAT_KEY]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise CheckpointError(
            f"checkpoint {p} has schema version {version!r}, newer than this asgl reads ({SCHEMA_VERSION}); "
            "upgrade asgl to load it"
        )
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {p} is incomplete: missing {', '.join(missing)}")
    if version < 2 and isinstance(obj["best"], dict) and "epoch" in obj["best"]:
        obj["best"] = {**obj["best"], "epoch": obj["best"]["epoch"] + 1}
    return obj
