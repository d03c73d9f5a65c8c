"""Shared fixtures: a tiny, fast digits recipe (seconds on CPU) for engine and CLI tests."""

from __future__ import annotations

import os

import pytest
import torch

# Without CUDA the Triton kernels run in Triton's CPU interpreter (tests/test_triton.py); with it they compile
# for the device (a driver tool on PATH says nothing about whether torch can use it). The switch is read when
# triton is first imported, which another test module may trigger, so it is set here, first.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# pytest-xdist runs one worker per core: each worker, and every process its tests start, computes on one thread,
# so the workers do not fight over the cores with their thread pools (a test that wants more threads says so)
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)

# overrides that shrink digits_quick to a few seconds: 48 train samples in batches of 16 (3 steps/epoch)
TINY = [
    "run.device=cpu",
    "data.subset=48",
    "model.hidden=16",
    "train.batch_size=16",
    "train.time_steps=2",
    "train.epochs=2",
]


def set_args(overrides: list[str]) -> list[str]:
    """``["a=1", "b=2"]`` -> ``["--set", "a=1", "--set", "b=2"]``."""
    return [arg for item in overrides for arg in ("--set", item)]


@pytest.fixture
def tiny_recipe():
    """A factory: the tiny digits recipe with extra overrides."""
    from asgl.config import load_recipe

    return lambda *extra: load_recipe("digits_quick", TINY + list(extra))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: the test workers start on them, so none of them is left running alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: the rest keep their order
