"""Device, mixed precision and memory-format helpers shared by training and evaluation."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from asgl.config import RecipeError


def resolve_device(spec: str) -> torch.device:
    """``run.device`` -> a torch device; ``auto`` = CUDA when available."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RecipeError(f"run.device = {spec!r} but CUDA is not available here; use 'auto' or 'cpu'")
    return torch.device(spec)


def check_amp(amp: str, device: torch.device) -> None:
    """fp16 needs CUDA (GradScaler); bf16 autocast runs on CPU too."""
    if amp == "fp16" and device.type != "cuda":
        raise RecipeError(f"train.amp = 'fp16' needs CUDA (device is {device}); use 'bf16' or 'off' on CPU")


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
