"""Which backend ``auto`` runs: triton on CUDA where registered, also when the run must be deterministic (the
triton backward sums its parameter gradients in a fixed order: tests/test_triton.py). No GPU needed."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from asgl.config import LIFConfig, SurrogateConfig
from asgl.neuron import BACKENDS, auto_backend, cpu_kernel, lif_layers, neuron_from_config

CUDA_INPUT = SimpleNamespace(is_cuda=True)  # LIF.resolve_backend reads only x.is_cuda


def fake_triton(*args):
    raise AssertionError("not run here")


@pytest.fixture
def with_triton(monkeypatch):
    """A machine where the triton backend is registered (CUDA + Triton)."""
    monkeypatch.setitem(BACKENDS, "triton", fake_triton)


def model(backend: str = "auto") -> nn.Module:
    layer = lambda: neuron_from_config(LIFConfig(backend=backend), SurrogateConfig(), (4,))  # noqa: E731
    return nn.Sequential(nn.Linear(3, 4), layer(), nn.Linear(4, 4), layer())


def test_auto_picks_triton_on_cuda(with_triton):
    assert auto_backend(on_cuda=True) == "triton"
    assert auto_backend(on_cuda=False) == ("fused" if cpu_kernel() is None else "cpu_kernel")


def test_auto_without_triton_is_fused(monkeypatch):
    monkeypatch.delitem(BACKENDS, "triton", raising=False)
    assert auto_backend(on_cuda=True) == "fused"


def test_deterministic_algorithms_keep_triton(with_triton):
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # what run.deterministic = true sets for the run
    try:
        assert all(layer.resolve_backend(CUDA_INPUT) is fake_triton for _, layer in lif_layers(model()))
        assert all(
            layer.resolve_backend(CUDA_INPUT) is BACKENDS["stepwise"] for _, layer in lif_layers(model("stepwise"))
        )
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
