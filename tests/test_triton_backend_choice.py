"""Which backend ``auto`` runs: triton on CUDA, but fused when the run must be deterministic (no GPU needed)."""

import io
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from torch import nn

from asgl.config import NeuronConfig, SurrogateConfig
from asgl.engine import trainer
from asgl.neuron import BACKENDS, LIF, auto_backend, cpu_kernel, lif_fused, lif_layers, use_deterministic_backends

CUDA_INPUT = SimpleNamespace(is_cuda=True)  # LIF.resolve_backend reads only x.is_cuda


def fake_triton(*args):
    raise AssertionError("not run here")


@pytest.fixture
def with_triton(monkeypatch):
    """A machine where the triton backend is registered (CUDA + Triton)."""
    monkeypatch.setitem(BACKENDS, "triton", fake_triton)


def model(backend: str = "auto") -> nn.Module:
    layer = lambda: LIF.from_config(NeuronConfig(backend=backend), SurrogateConfig(), (4,))  # noqa: E731
    return nn.Sequential(nn.Linear(3, 4), layer(), nn.Linear(4, 4), layer())


def test_auto_picks_triton_on_cuda_unless_deterministic(with_triton):
    assert auto_backend(on_cuda=True, deterministic=False) == "triton"
    assert auto_backend(on_cuda=True, deterministic=True) == "fused"
    assert auto_backend(on_cuda=False, deterministic=False) == ("fused" if cpu_kernel() is None else "cpu_kernel")


def test_auto_without_triton_is_fused(monkeypatch):
    monkeypatch.delitem(BACKENDS, "triton", raising=False)
    assert auto_backend(on_cuda=True, deterministic=False) == "fused"


def test_deterministic_layers_resolve_auto_to_fused(with_triton):
    net = model()
    assert all(layer.resolve_backend(CUDA_INPUT) is fake_triton for _, layer in lif_layers(net))
    note = use_deterministic_backends(net, torch.device("cuda"))
    assert "'fused', not 'triton'" in note and "\n" not in note
    assert all(layer.resolve_backend(CUDA_INPUT) is lif_fused for _, layer in lif_layers(net))


def test_no_note_where_nothing_changes(with_triton):
    assert use_deterministic_backends(model(), torch.device("cpu")) is None
    assert use_deterministic_backends(model("stepwise"), torch.device("cuda")) is None


def test_deterministic_run_says_so_once(tiny_recipe, tmp_path, monkeypatch, with_triton):
    """The trainer applies it for run.deterministic and prints the note in one line, once for all layers."""
    on_cuda = lambda net, device: use_deterministic_backends(net, torch.device("cuda"))  # noqa: E731
    monkeypatch.setattr(trainer, "use_deterministic_backends", on_cuda)  # the run itself stays on CPU
    out = io.StringIO()
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer.train(tiny_recipe("run.deterministic=true", "train.epochs=1"), tmp_path, console=Console(file=out))
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
    lines = [line for line in out.getvalue().splitlines() if "run.deterministic" in line]
    assert lines == ["warning: run.deterministic: LIF backend 'auto' runs 'fused', not 'triton'"]
