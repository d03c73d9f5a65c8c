"""Device, precision and backend checks, and the helpers shared by training and evaluation.

The checks raise :class:`BackendUnavailable` and run before anything is written (see
:func:`check_runtime`), so a recipe that cannot run here fails in one line, without a run folder.
"""

from __future__ import annotations

import contextlib
import importlib.util

import torch
from torch import Tensor

from asgl.config import Recipe
from asgl.errors import BackendUnavailable


def resolve_device(spec: str) -> torch.device:
    """``run.device`` -> a torch device; ``auto`` = CUDA when available."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"run.device = {spec!r} but CUDA is not available here; use 'auto' or 'cpu'")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise BackendUnavailable(f"run.device = {spec!r} but this machine has {count} CUDA device(s)")
    return device


def check_amp(amp: str, device: torch.device) -> None:
    """fp16 needs CUDA (GradScaler); bf16 autocast runs on CPU, and on GPUs that support it."""
    if amp == "fp16" and device.type != "cuda":
        raise BackendUnavailable(f"train.amp = 'fp16' needs CUDA (device is {device}); use 'bf16' or 'off' on CPU")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise BackendUnavailable(f"train.amp = 'bf16' is not supported by {torch.cuda.get_device_name(device)}")


def check_backend(backend: str, device: torch.device) -> None:
    """The LIF backend ``backend`` can run on ``device`` (``auto`` always can)."""
    from asgl.neuron import BACKENDS

    if backend == "auto" or (backend in BACKENDS and backend != "triton"):
        return
    if backend == "triton":
        if importlib.util.find_spec("triton") is None:
            reason = "the triton package is not installed"
        elif device.type != "cuda":
            reason = f"it needs a CUDA device (device is {device})"
        else:
            reason = "" if "triton" in BACKENDS else "CUDA is not available"
        if not reason:
            return
    else:
        reason = f"available: {', '.join(BACKENDS)}"
    raise BackendUnavailable(f"neuron.backend = {backend!r} cannot run here: {reason}; use 'auto' or 'fused'")


def check_runtime(recipe: Recipe) -> torch.device:
    """The recipe's device, once its device, precision and LIF backend are known to work here."""
    device = resolve_device(recipe.run.device)
    check_amp(recipe.train.amp, device)
    check_backend(recipe.neuron.backend, device)
    return device


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Autocast context for ``train.amp`` (off / bf16 / fp16) on ``device``."""
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def to_device(x: Tensor, device: torch.device, channels_last: bool) -> Tensor:
    """Move a batch to ``device``; 4-D image batches optionally in channels-last layout."""
    x = x.to(device, non_blocking=True)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
