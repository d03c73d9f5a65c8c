"""The compiled LIF backend (torch.compile of the fused maths) against the stepwise reference.

Each distinct configuration costs one compile of the forward and one of the backward (seconds), so the
cases are few and share one input shape; the saved-tensor and layer tests reuse the first case's kernels.
"""

import pytest
import torch
from lif_cases import CASES, THETA, assert_matches_stepwise, inputs, output_and_grads

from asgl.neuron import BACKENDS, LIF, lif_compiled, lif_stepwise, neuron_compiled, set_mask_generator
from asgl.spike import MaskDraw, SpikeSpec
from asgl.surrogates import SURROGATES, SurrogateWidth


def run(backend, family, mode, reset, amplitude, k_shape, width_grad="all"):
    """Output and gradients (current, gamma, theta, k) of a weighted sum of the output."""
    args = inputs(k_shape)
    mask = MaskDraw(0.3, seed=1) if mode == "asgl" else None
    out = backend(
        *args, mask, SpikeSpec(SURROGATES[family], mode, reset, "threshold" if amplitude else "unit", width_grad)
    )
    return output_and_grads(out, args)


@pytest.mark.parametrize("family,mode,reset,amplitude,k_shape,width_grad", CASES)
def test_compiled_matches_stepwise(family, mode, reset, amplitude, k_shape, width_grad):
    ref_out, ref_grads = run(lif_stepwise, family, mode, reset, amplitude, k_shape, width_grad)
    out, grads = run(lif_compiled, family, mode, reset, amplitude, k_shape, width_grad)
    assert_matches_stepwise(out, grads, ref_out, ref_grads, mode, amplitude)


def test_saves_one_float_tensor_and_the_bool_mask():
    args = inputs(())
    mask = MaskDraw(0.3, seed=1)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        lif_compiled(*args, mask, SpikeSpec(SURROGATES["sigmoid"], "asgl"))  # CASES[0]: no new compile
    assert sorted(str(t.dtype) for t in saved if t.numel() > 1) == ["torch.bool", "torch.float32"]


def test_layer_backend_is_opt_in():
    width = SurrogateWidth((4, 3, 3), "sigmoid", width=2.0)
    layer = LIF(width, spike="asgl", decay=0.6, threshold=THETA, learn_threshold=True, noise_prob=0.3)
    x = inputs(())[0]
    assert layer.resolve_backend(x) is not BACKENDS["compiled"]  # auto never compiles
    outs = []
    for backend in ("compiled", "stepwise"):
        layer.backend = backend
        set_mask_generator(layer, torch.Generator().manual_seed(3))
        outs.append(layer(x))
    assert layer.resolve_backend(x) is BACKENDS["stepwise"] and BACKENDS["compiled"] is neuron_compiled
    torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-5)


def test_missing_compiler_names_the_fused_backend(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # no cached kernel to fall back on
    current = torch.randn(2, 5, 7, requires_grad=True)  # a shape no other test compiles
    params = (torch.tensor(0.5), torch.tensor(1.0), torch.tensor(1.0))
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}):
        with pytest.raises(RuntimeError, match="backend = 'fused'"):
            lif_compiled(current, *params, None, SpikeSpec(SURROGATES["sigmoid"], "sg"))
