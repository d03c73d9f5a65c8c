"""Time-major plumbing: fold stateless layers over [T·B], norms over time, input encoding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from asgl.choices import NormKind


class TimeFold(nn.Sequential):
    """Run stateless modules on the [T·B, ...] fold of a time-major input [T, B, ...]."""

    def forward(self, x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        y = super().forward(x.flatten(0, 1))
        return y.unflatten(0, (steps, batch))


class PerStepNorm(nn.Module):
    """Apply norms step by step: one per step (``bntt``) or one shared by every step (``step``)."""

    def __init__(self, norms: list[nn.Module]):
        super().__init__()
        self.norms = nn.ModuleList(norms)

    def forward(self, x: Tensor) -> Tensor:
        """x [T, B, C, ...] -> [T, B, C, ...]."""
        if len(self.norms) > 1 and len(self.norms) != x.shape[0]:
            raise ValueError(f"bntt norm built for T={len(self.norms)} got an input with T={x.shape[0]}")
        return torch.stack([self.norms[t if len(self.norms) > 1 else 0](x[t]) for t in range(x.shape[0])])


def _batch_norm(channels: int, dims: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if dims == 2 else nn.BatchNorm1d(channels)


def make_norm(kind: NormKind, channels: int, time_steps: int, dims: int = 2, threshold: float = 1.0) -> nn.Module:
    """Norm over time-major features [T, B, C, (H, W)].

    tdbn: BatchNorm over the [T·B] fold; bntt: one BN per step; step: one BN shared, applied per step;
    threshold_bn: tdbn with the affine weight initialised to θ (normalise to α·θ, α = 1); none: identity.
    ``dims`` = 2 for conv features, 1 for linear features.
    """
    if kind == "none":
        return nn.Identity()
    if kind in ("tdbn", "threshold_bn"):
        norm = _batch_norm(channels, dims)
        if kind == "threshold_bn":
            nn.init.constant_(norm.weight, threshold)
        return TimeFold(norm)
    if kind == "bntt":
        return PerStepNorm([_batch_norm(channels, dims) for _ in range(time_steps)])
    if kind == "step":
        return PerStepNorm([_batch_norm(channels, dims)])
    raise ValueError(f"unknown norm {kind!r}")


def to_time_major(x: Tensor, time_steps: int) -> Tensor:
    """Model input -> [T, B, ...].

    Static images [B, C, H, W] are repeated T times (direct encoding); event frames [B, T, C, H, W] and
    sequences [B, T, F] are transposed to time-major.
    """
    if x.dim() == 4:
        return x.unsqueeze(0).expand(time_steps, *x.shape)
    if x.dim() in (3, 5):
        if x.shape[1] != time_steps:
            raise ValueError(f"input has {x.shape[1]} time steps, the model expects T={time_steps}")
        return x.transpose(0, 1)
    raise ValueError(f"expected input [B, C, H, W], [B, T, C, H, W] or [B, T, F], got shape {list(x.shape)}")
