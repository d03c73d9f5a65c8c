"""The numba CPU kernel backend against the stepwise reference, its determinism, and its fallback.

Each (mode, family, per-neuron width) configuration is one numba compile of a forward and a backward
(seconds, cached on disk afterwards), so the cases are few and each covers several options at once.
"""

import logging
import os
import subprocess
import sys

import pytest
import torch
from lif_cases import CASES, THETA, assert_matches_stepwise, inputs, output_and_grads

from asgl.config import LIFConfig, SurrogateConfig
from asgl.errors import BackendUnavailable
from asgl.neuron import (
    cpu_kernel,
    lif_cpu_kernel,
    lif_stepwise,
    neuron_from_config,
    neuron_fused,
    resolve_backend,
    run_cpu_kernel,
    set_mask_generator,
)
from asgl.spike import MaskDraw, SpikeSpec, materialize_mask
from asgl.surrogates import SURROGATES

pytest.importorskip("numba", reason="the CPU kernel needs numba")


def run(backend, args, mode, spec, draw):
    """Output and gradients (current, gamma, theta, k) of a weighted sum of the output."""
    out = backend(*args, draw if mode == "asgl" else None, spec)
    return output_and_grads(out, args)


@pytest.mark.parametrize("family,mode,reset,amplitude,k_shape,width_grad", CASES)
def test_kernel_matches_stepwise(family, mode, reset, amplitude, k_shape, width_grad):
    spec = SpikeSpec(SURROGATES[family], mode, reset, "threshold" if amplitude else "unit", width_grad)
    draw = MaskDraw(0.3, seed=1234)
    ref_out, ref_grads = run(lif_stepwise, inputs(k_shape), mode, spec, draw)
    out, grads = run(lif_cpu_kernel, inputs(k_shape), mode, spec, draw)
    binary = assert_matches_stepwise(out, grads, ref_out, ref_grads, mode, amplitude)
    if mode == "asgl":  # the analog elements are exactly where the same materialised mask is False
        mask = materialize_mask(draw, ref_out.shape, "cpu")
        assert (~mask).any() and binary[mask].all()


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_kernel_gradcheck_float64(reset):
    """Analog mode (smooth everywhere): the kernel's gradients against finite differences of its forward."""
    args = inputs((4, 1, 1), torch.float64, shape=(3, 2, 4, 1, 2))
    spec = SpikeSpec(SURROGATES["triangle"], "analog", reset, "threshold")
    assert torch.autograd.gradcheck(lambda *a: lif_cpu_kernel(*a, None, spec), args, eps=1e-6, atol=1e-6)


def test_gradients_are_bit_identical_across_runs_and_thread_counts():
    spec = SpikeSpec(SURROGATES["sigmoid"], "asgl", "hard", "threshold")
    args = inputs((), shape=(4, 3, 4, 16, 16))  # 3072 neurons: several blocks
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 1):
            torch.set_num_threads(n)
            results.append(run(lif_cpu_kernel, args, "asgl", spec, MaskDraw(0.3, seed=9)))
    finally:
        torch.set_num_threads(threads)
    for out, grads in results[1:]:
        assert torch.equal(out, results[0][0])
        assert all(torch.equal(g, ref) for g, ref in zip(grads, results[0][1]))


def test_auto_picks_the_kernel_on_cpu_and_the_layer_matches_stepwise():
    neuron = LIFConfig(spike="asgl", decay=0.6, threshold=THETA, learn_threshold=True)
    layer = neuron_from_config(neuron, SurrogateConfig(family="sigmoid", width=2.0), (4, 3, 3), noise_prob=0.3)
    x = inputs(())[0]
    assert layer.resolve_backend(x) is run_cpu_kernel
    outs = []
    for backend in ("auto", "stepwise"):
        layer.backend = backend
        set_mask_generator(layer, torch.Generator().manual_seed(3))  # same seed, so the same mask
        outs.append(layer(x))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-5)


def test_fallback_to_fused_when_numba_cannot_load(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "asgl.kernels.cpu_lif", None)  # any import of it now fails
    cpu_kernel.cache_clear()
    try:
        args = inputs(())
        with caplog.at_level(logging.WARNING, logger="asgl"):
            backend = resolve_backend("auto", args[0])
            assert resolve_backend("auto", args[0]) is backend is neuron_fused
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 1 and "numba CPU kernel cannot load" in lines[0] and "fused" in lines[0]
        with pytest.raises(BackendUnavailable, match="'fused'"):
            lif_cpu_kernel(*args, None, SpikeSpec(SURROGATES["sigmoid"], "sg"))
    finally:
        cpu_kernel.cache_clear()


CONCURRENT = """
import threading, torch
from asgl.neuron import lif_cpu_kernel
from asgl.spike import MaskDraw, SpikeSpec
from asgl.surrogates import SURROGATES
import numba

spec = SpikeSpec(SURROGATES["sigmoid"], "asgl")
x = torch.randn(4, 2, 64, 64, generator=torch.Generator().manual_seed(0))

def run():
    leaf = x.clone().requires_grad_()
    params = [torch.tensor(v, requires_grad=True) for v in (0.6, 0.8, 2.0)]
    out = lif_cpu_kernel(leaf, *params, MaskDraw(0.3, 7), spec)
    out.sum().backward()
    return out.detach(), leaf.grad

expected = run()
results = []
def worker():
    for _ in range(20):
        results.append(run())
threads = [threading.Thread(target=worker) for _ in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
assert len(results) == 60
assert all(torch.equal(o, expected[0]) and torch.equal(g, expected[1]) for o, g in results)
print(numba.threading_layer())
"""


def test_kernel_runs_from_several_python_threads_on_the_sleeping_thread_pool(tmp_path):
    """numba's workqueue pool (its OpenMP one spins and slows torch's ops) aborts the process on two launches
    at once: the kernel serialises them, so threads calling it get the single-thread results."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"} | {"NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", CONCURRENT], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["workqueue"]
