"""Data-parallel training across processes (``torchrun --nproc-per-node N -m asgl_cli train RECIPE``).

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; :func:`init` reads them and joins
the process group (NCCL on CUDA, gloo on CPU). Without them everything here is a no-op for one process.

Batches: ``train.batch_size`` is the global batch. Every process iterates the same seeded batch order
(:class:`asgl.engine.batches.EpochBatches`, resumable at any step) and keeps the slice ``batch[rank::world]``
(:class:`ShardedBatches`), which is what torch's ``DistributedSampler`` does per epoch, but also from the
middle of an epoch. Only rank 0 writes (run folder, metrics, checkpoints, progress); the others compute.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; world_size = 1 means not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistInfo:
    """The job layout torchrun put in the environment (one process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def init(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group of a torchrun job; returns the layout and this process's device.

    On CUDA each process uses ``cuda:LOCAL_RANK`` and NCCL; on CPU gloo. One process: no group, ``device``.
    """
    info = from_env()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def teardown(info: DistInfo) -> None:
    """Leave the process group (after the last collective)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed (weights are broadcast from rank 0), else as is."""
    if not info.enabled:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(value: object, info: DistInfo) -> object:
    """Rank 0's ``value`` on every process (e.g. the run folder path)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64, so counts stay exact)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


class ShardedBatches(Sampler[list[int]]):
    """This rank's share ``batch[rank::world]`` of every batch of ``batches``.

    A final batch smaller than the world is repeated up to one sample per rank, so that every process runs
    the same number of steps (a collective per step needs every rank).
    """

    def __init__(self, batches: Sampler[list[int]], info: DistInfo):
        self.batches, self.info = batches, info

    def __iter__(self) -> Iterator[list[int]]:
        world = self.info.world_size
        for batch in self.batches:
            if len(batch) < world:
                batch = (batch * world)[:world]
            yield batch[self.info.rank :: world]

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def agreed_signal(signum: int | None, info: DistInfo, device: torch.device) -> int | None:
    """The stop signal if any process received one, so that every rank stops after the same step."""
    if not info.enabled:
        return signum
    t = torch.tensor([signum or 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item()) or None


def all_finite(loss: torch.Tensor, info: DistInfo) -> bool:
    """Whether the loss is finite on every process, so that all ranks skip or stop at the same step."""
    finite = torch.isfinite(loss.detach()).to(torch.int32).reshape(1)
    if info.enabled:
        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


def sum_fields(record: dict[str, Any], keys: Sequence[str], info: DistInfo, device: torch.device) -> dict[str, Any]:
    """A copy of ``record`` with the numbers under ``keys`` summed over all processes (types kept)."""
    totals = all_reduce_sum([float(record[k]) for k in keys], info, device)
    return {**record, **{k: type(record[k])(total) for k, total in zip(keys, totals)}}
