"""The Triton LIF kernels against the stepwise reference: on CUDA, or on CPU with Triton's interpreter."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    # must be set before triton is imported: kernels then run on CPU tensors (slowly, in NumPy)
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed")

from asgl.kernels import triton_lif  # noqa: E402
from asgl.kernels.triton_lif import BLOCK  # noqa: E402
from asgl.neuron import BACKENDS, LIF, lif_stepwise, lif_triton, set_mask_generator  # noqa: E402
from asgl.spike import MaskDraw, SpikeSpec, materialize_mask  # noqa: E402
from asgl.surrogates import SURROGATES, SurrogateWidth  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def run(backend, current, family, mode, reset, amplitude, k_shape, width_grad="all"):
    """Output and gradients (current, gamma, theta, k) of a weighted sum of the output."""
    current = current.clone().requires_grad_()
    gamma = torch.tensor(0.6, device=DEVICE, requires_grad=True)
    theta = torch.tensor(0.8, device=DEVICE, requires_grad=True)
    k = torch.linspace(0.5, 1.5, max(1, torch.Size(k_shape).numel()), device=DEVICE).reshape(k_shape).requires_grad_()
    draw = MaskDraw(0.3, seed=1) if mode == "asgl" else None
    direct = backend is triton_lif.lif_triton and draw is not None  # the kernel itself takes the bool mask
    mask = materialize_mask(draw, current.shape, current.device) if direct else draw
    spec = SpikeSpec(SURROGATES[family], mode, reset, "threshold" if amplitude else "unit", width_grad)
    out = backend(current, gamma, theta, k, mask, spec)
    weights = torch.linspace(-1, 1, out.numel(), device=DEVICE).reshape(out.shape)
    inputs = (current, gamma, theta, k)
    grads = torch.autograd.grad((out * weights).sum(), inputs, allow_unused=True) if out.requires_grad else (None,) * 4
    return out.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


CASES = [
    # family, mode, reset, amplitude threshold, width shape
    ("sigmoid", "asgl", "hard", True, ()),
    ("sigmoid", "asgl", "soft", False, (4, 1, 1)),
    ("sigmoid", "sg", "hard", True, (4, 3, 3)),
    ("sigmoid", "analog", "soft", True, ()),
    ("sigmoid", "heaviside", "hard", True, ()),
    ("rectangle", "asgl", "hard", False, (4, 3, 3)),
    ("tanh", "asgl", "soft", True, (4, 1, 1)),
    ("tanh", "analog", "hard", False, ()),
    ("triangle", "asgl", "hard", True, ()),
    ("triangle", "sg", "soft", False, (4, 1, 1)),
]


@pytest.mark.parametrize("family,mode,reset,amplitude,k_shape", CASES)
def test_kernel_matches_stepwise(family, mode, reset, amplitude, k_shape):
    current = torch.randn(6, 3, 4, 3, 3, generator=torch.Generator().manual_seed(0)).to(DEVICE) * 1.5
    ref_out, ref_grads = run(lif_stepwise, current, family, mode, reset, amplitude, k_shape)
    out, grads = run(lif_triton, current, family, mode, reset, amplitude, k_shape)
    binary = (ref_out == 0) | (ref_out == (0.8 if amplitude else 1.0))
    assert torch.equal(out[binary], ref_out[binary])  # identical spikes
    assert mode == "analog" or binary.float().mean() > 0.5
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)  # analog values: fp32 rounding only
    for name, g, ref in zip(("current", "gamma", "theta", "k"), grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4, msg=name)
    if mode != "heaviside":
        assert ref_grads[3].abs().sum() > 0 and ref_grads[0].abs().sum() > 0


@pytest.mark.parametrize("mode", ["asgl", "sg"])
def test_width_gradient_from_analog_elements_only(mode):
    current = torch.randn(4, 2, 4, 3, 3, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    _, ref = run(lif_stepwise, current, "sigmoid", mode, "hard", True, (), "analog")
    _, got = run(lif_triton, current, "sigmoid", mode, "hard", True, (), "analog")
    _, full = run(lif_triton, current, "sigmoid", mode, "hard", True, (), "all")
    torch.testing.assert_close(got[3], ref[3], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got[3], full[3])


# N = 9·7·5·5 = 1575 neurons: four programs of BLOCK = 512, the last one partial, and the width index n mod F
# (F = 175) wrapping inside programs, so the cross-program sums (atomic adds) of the parameter gradients count
MANY_PROGRAM_CASES = [
    # family, mode, reset, amplitude threshold, width shape, width gradient
    ("sigmoid", "asgl", "hard", True, (), "all"),
    ("triangle", "asgl", "soft", False, (7, 1, 1), "all"),
    ("sigmoid", "asgl", "soft", True, (7, 5, 5), "analog"),
    ("tanh", "sg", "hard", True, (7, 5, 5), "all"),
    ("rectangle", "analog", "soft", True, (7, 1, 1), "all"),
]


@pytest.mark.parametrize("family,mode,reset,amplitude,k_shape,width_grad", MANY_PROGRAM_CASES)
def test_many_programs_match_stepwise(family, mode, reset, amplitude, k_shape, width_grad):
    current = torch.randn(3, 9, 7, 5, 5, generator=torch.Generator().manual_seed(5)).to(DEVICE) * 1.5
    assert current[0].numel() > 3 * BLOCK
    ref_out, ref_grads = run(lif_stepwise, current, family, mode, reset, amplitude, k_shape, width_grad)
    out, grads = run(lif_triton, current, family, mode, reset, amplitude, k_shape, width_grad)
    binary = (ref_out == 0) | (ref_out == (0.8 if amplitude else 1.0))
    assert torch.equal(out[binary], ref_out[binary])
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    for name, g, ref in zip(("current", "decay", "threshold", "width"), grads, ref_grads):
        assert ref.abs().sum() > 0, name
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4, msg=name)


def test_unsupported_inputs_take_another_path_with_the_reference_result():
    """float64 and the arctan family are refused by the kernels; the backend's other path matches stepwise."""
    current = torch.randn(3, 2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    for family, x in (("sigmoid", current), ("arctan", current.float())):
        params = [torch.tensor(v, dtype=x.dtype, device=DEVICE, requires_grad=True) for v in (0.5, 1.0, 1.0)]
        spec = SpikeSpec(SURROGATES[family], "sg")
        with pytest.raises(ValueError, match="the Triton LIF takes"):
            triton_lif.lif_triton(x, *params, None, spec)
        results = []
        for backend in (lif_triton, lif_stepwise):
            out = backend(x, *params, None, spec)
            results.append((out, torch.autograd.grad((out * out).sum(), params)))
        (out, grads), (ref, ref_grads) = results
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(grads, ref_grads)


def test_supports_checks_every_operand():
    current = torch.randn(2, 3, 4, device=DEVICE)
    gamma, theta, k = (torch.tensor(v, device=DEVICE) for v in (0.5, 1.0, 1.0))
    mask = torch.ones(2, 3, 4, dtype=torch.bool, device=DEVICE)
    args = {"current": current, "gamma": gamma, "theta": theta, "k": k, "mask": mask}
    spec = SpikeSpec(SURROGATES["sigmoid"], "asgl")
    assert triton_lif.supports(**args, spec=spec)
    assert triton_lif.supports(**(args | {"mask": None}), spec=SpikeSpec(SURROGATES["sigmoid"], "sg"))
    refused = {
        "current": current.double(),
        "gamma": gamma.double(),
        "theta": theta.half(),
        "k": k.to("meta"),  # another device
        "mask": mask.to(torch.uint8),
    }
    for name, value in refused.items():
        assert not triton_lif.supports(**(args | {name: value}), spec=spec), name
    assert not triton_lif.supports(**(args | {"mask": mask[:1]}), spec=spec)
    assert not triton_lif.supports(**args, spec=SpikeSpec(SURROGATES["arctan"], "asgl"))


def test_asgl_without_mask_is_refused():
    current = torch.randn(2, 3, 4, device=DEVICE)
    gamma, theta, k = (torch.tensor(v, device=DEVICE) for v in (0.5, 1.0, 1.0))
    with pytest.raises(ValueError, match="asgl spike needs its bool mask"):
        lif_triton(current, gamma, theta, k, None, SpikeSpec(SURROGATES["sigmoid"], "asgl"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: 'auto' picks Triton only on CUDA tensors")
def test_auto_backend_picks_triton_on_cuda():
    assert "triton" in BACKENDS
    layer = LIF(SurrogateWidth((4, 3, 3), width=2.0), spike="asgl", noise_prob=0.3).cuda()
    x = torch.randn(5, 2, 4, 3, 3, device="cuda") * 2
    assert layer.resolve_backend(x) is BACKENDS["triton"]
    outs = {}
    for backend in ("auto", "stepwise"):
        layer.backend = backend
        set_mask_generator(layer, torch.Generator("cuda").manual_seed(3))
        outs[backend] = layer(x)
    torch.testing.assert_close(outs["auto"], outs["stepwise"], atol=1e-6, rtol=1e-5)
