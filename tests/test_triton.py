"""The Triton LIF kernels against the stepwise reference: on CUDA, or on CPU with Triton's interpreter."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    # must be set before triton is imported: kernels then run on CPU tensors (slowly, in NumPy)
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="triton is not installed")

from asgl import neuron  # noqa: E402
from asgl.kernels import triton_lif  # noqa: E402
from asgl.kernels.triton_lif import block_config  # noqa: E402
from asgl.neuron import BACKENDS, LIF, in_float32, lif_stepwise, lif_triton, set_mask_generator  # noqa: E402
from asgl.neuron_models import NEURONS, neuron_stepwise  # noqa: E402
from asgl.spike import MaskDraw, SpikeSpec, materialize_mask  # noqa: E402
from asgl.surrogates import SURROGATES, SurrogateWidth  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NAMES = ("current", "decay", "threshold", "width")
LIF_MODEL = NEURONS["lif"]


def stepwise_in_float32(current, gamma, theta, k, draw, spec):
    """The LIF reference on a half-precision input cast to float32, as the fused path runs it."""
    return in_float32(neuron_stepwise, LIF_MODEL, current, (gamma, theta), k, draw, spec)


def operands(current, k_shape, needs=(True, True, True), threshold=0.8):
    """(current, gamma, theta, k) as leaves: current in its own dtype, the parameters float32."""
    gamma = torch.tensor(0.6, device=DEVICE, requires_grad=needs[0])
    theta = torch.tensor(threshold, device=DEVICE, requires_grad=needs[1])
    k = torch.linspace(0.5, 1.5, max(1, torch.Size(k_shape).numel()), device=DEVICE).reshape(k_shape)
    return current.clone().requires_grad_(), gamma, theta, k.requires_grad_(needs[2])


def spec_of(family, mode, reset="hard", amplitude=True, width_grad="all"):
    return SpikeSpec(SURROGATES[family], mode, reset, "threshold" if amplitude else "unit", width_grad)


def run(backend, current, family, mode, reset, amplitude, k_shape, width_grad="all", threshold=0.8):
    """Output and gradients (current, gamma, theta, k) of a weighted sum of the output."""
    inputs = operands(current, k_shape, threshold=threshold)
    draw = MaskDraw(0.3, seed=1)
    out = backend(*inputs, draw if mode == "asgl" else None, spec_of(family, mode, reset, amplitude, width_grad))
    weights = torch.linspace(-1, 1, out.numel(), device=DEVICE).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), inputs, allow_unused=True) if out.requires_grad else (None,) * 4
    return out.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def assert_matches_stepwise(current, family, mode, reset, amplitude, k_shape, width_grad="all"):
    ref_out, ref_grads = run(lif_stepwise, current, family, mode, reset, amplitude, k_shape, width_grad)
    out, grads = run(lif_triton, current, family, mode, reset, amplitude, k_shape, width_grad)
    binary = (ref_out == 0) | (ref_out == (0.8 if amplitude else 1.0))
    assert torch.equal(out[binary], ref_out[binary])  # identical spikes
    assert mode == "analog" or binary.float().mean() > 0.5
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)  # analog values: fp32 rounding only
    for name, g, ref in zip(NAMES, grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4, msg=name)
    return ref_grads


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
    ref_grads = assert_matches_stepwise(current, family, mode, reset, amplitude, k_shape)
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


# N = 9·7·5·5 = 1575 neurons: 13 programs of 128 lanes (block_config), the last one partial, and the width
# index n mod F (F = 175) wrapping inside programs, so the cross-program sums of the parameter gradients count
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
    assert current[0].numel() > 3 * block_config(current[0].numel())[0]
    ref_grads = assert_matches_stepwise(current, family, mode, reset, amplitude, k_shape, width_grad)
    assert all(ref.abs().sum() > 0 for ref in ref_grads)


def channels_last(x):
    """x [T, B, C, H, W], same values, stored as channels_last convolutions leave it: NHWC within each step."""
    steps, batch, *features = x.shape
    return x.reshape(steps * batch, *features).contiguous(memory_format=torch.channels_last).view(x.shape)


def swapped_hw(x):
    """x [T, B, C, H, W], same values, stored with W before H: neither row-major nor channels-last."""
    return x.transpose(3, 4).contiguous().transpose(3, 4)


class LaunchSpy:
    """Stands in for a kernel: records the positional and keyword arguments of each launch, then launches the
    real one."""

    def __init__(self, kernel):
        self.kernel, self.launches, self.keywords = kernel, [], []

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(args)
            self.keywords.append(kwargs)
            return self.kernel[grid](*args, **kwargs)

        return launch


# N = 9·7·5·5 = 1575 over 13 programs: the lanes of a program span several channels, rows and samples
CHANNELS_LAST_CASES = [
    # family, mode, reset, amplitude threshold, width shape (per layer, per channel, per neuron)
    ("sigmoid", "asgl", "hard", True, ()),
    ("tanh", "asgl", "soft", False, (7, 1, 1)),
    ("triangle", "asgl", "hard", True, (7, 5, 5)),
    ("sigmoid", "sg", "soft", True, (7, 1, 1)),
    ("rectangle", "sg", "hard", False, (7, 5, 5)),
]


@pytest.mark.parametrize("family,mode,reset,amplitude,k_shape", CHANNELS_LAST_CASES)
def test_channels_last_input_matches_stepwise(family, mode, reset, amplitude, k_shape):
    """Lanes walk NHWC memory, but mask bits and width index by the row-major element index, as on stepwise."""
    x = torch.randn(3, 9, 7, 5, 5, generator=torch.Generator().manual_seed(11)).to(DEVICE) * 1.5
    current = channels_last(x)
    assert current.stride() == (9 * 5 * 5 * 7, 5 * 5 * 7, 1, 5 * 7, 7) and torch.equal(current, x)
    ref_grads = assert_matches_stepwise(current, family, mode, reset, amplitude, k_shape)
    assert all(ref.abs().sum() > 0 for ref in ref_grads)


@pytest.mark.parametrize("layout", [channels_last, swapped_hw])
def test_channels_last_is_read_in_place_and_kept(layout, monkeypatch):
    """A channels-last input reaches the kernel as it is (no copy) and the output and the input gradient keep its
    strides; so does an output gradient in that layout. Another layout is copied row-major, as before."""
    spies = {name: LaunchSpy(getattr(triton_lif, name)) for name in ("_forward_kernel", "_backward_kernel")}
    for name, spy in spies.items():
        monkeypatch.setattr(triton_lif, name, spy)
    current, gamma, theta, k = operands(layout(torch.randn(3, 2, 4, 3, 3, device=DEVICE)), (4, 1, 1))
    out = lif_triton(current, gamma, theta, k, MaskDraw(0.3, seed=6), spec_of("sigmoid", "asgl"))
    grad_out = layout(torch.randn(out.shape, device=DEVICE))
    (grad_in,) = torch.autograd.grad(out, current, grad_out)
    read, grad_read = spies["_forward_kernel"].launches[0][0], spies["_backward_kernel"].launches[0][2]
    if layout is channels_last:
        assert read.data_ptr() == current.data_ptr() and grad_read.data_ptr() == grad_out.data_ptr()
        assert out.stride() == grad_in.stride() == current.stride()
    else:
        assert read.data_ptr() != current.data_ptr() and read.is_contiguous()
        assert out.is_contiguous() and grad_in.is_contiguous()


def test_output_gradient_in_another_layout_is_copied_to_the_outputs_layout(monkeypatch):
    """Channels-last output, row-major output gradient: the backward copies it into u's layout once, so the
    kernel reads every element at its position (gradients as on stepwise with the same output gradient)."""
    spy = LaunchSpy(triton_lif._backward_kernel)
    monkeypatch.setattr(triton_lif, "_backward_kernel", spy)
    current = channels_last(torch.randn(3, 2, 4, 3, 3, generator=torch.Generator().manual_seed(12)).to(DEVICE))
    grads = []
    for backend in (lif_stepwise, lif_triton):
        inputs = operands(current, (4, 3, 3))
        out = backend(*inputs, MaskDraw(0.3, seed=7), spec_of("sigmoid", "asgl", "soft"))
        grad_out = torch.linspace(-1, 1, out.numel(), device=DEVICE).reshape(out.shape)
        grads.append(torch.autograd.grad(out, inputs, grad_out))
    assert spy.launches[0][2].stride() == current.stride() and not grads[1][0].is_contiguous()
    for name, g, ref in zip(NAMES, *grads[::-1]):
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("dtype,ulp", [(torch.float16, 2**-10), (torch.bfloat16, 2**-7)])
@pytest.mark.parametrize("mode,reset,k_shape", [("asgl", "hard", ()), ("sg", "soft", (4, 1, 1))])
def test_half_precision_input_matches_stepwise_on_the_float32_cast(dtype, ulp, mode, reset, k_shape):
    """Read in place, state in float32: the reference runs on the input cast to float32 (the same numbers) and
    rounds its output and input gradient to ``dtype`` once, as the kernel does; a rounding apart at most (the
    interpreter rounds bfloat16 stores toward zero, torch and GPUs to nearest). θ = 0.75 is exact in both."""
    current = (torch.randn(5, 3, 4, 3, 3, generator=torch.Generator().manual_seed(6)) * 1.5).to(DEVICE, dtype)
    ref_out, ref_grads = run(stepwise_in_float32, current, "sigmoid", mode, reset, True, k_shape, threshold=0.75)
    out, grads = run(lif_triton, current, "sigmoid", mode, reset, True, k_shape, threshold=0.75)
    assert out.dtype == grads[0].dtype == ref_out.dtype == dtype
    assert all(g.dtype == torch.float32 for g in grads[1:])
    binary = (ref_out == 0) | (ref_out == 0.75)
    assert torch.equal(out[binary], ref_out[binary]) and binary.float().mean() > 0.5
    torch.testing.assert_close(out, ref_out, atol=0, rtol=ulp)
    torch.testing.assert_close(grads[0], ref_grads[0], atol=1e-5, rtol=ulp, msg="current")
    for name, g, ref in zip(NAMES[1:], grads[1:], ref_grads[1:]):
        assert ref.abs().sum() > 0, name
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4, msg=name)


def test_gradients_are_bit_identical_across_runs():
    """Block sums per program added up by torch in a fixed order (no atomics; the AOT test checks the PTX)."""
    current = torch.randn(3, 9, 7, 5, 5, generator=torch.Generator().manual_seed(7)).to(DEVICE)
    first, second = (run(lif_triton, current, "tanh", "asgl", "soft", True, (7, 1, 1))[1] for _ in range(2))
    for name, a, b in zip(NAMES, first, second):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("needs", [(False, True, True), (True, False, False), (False, False, True), (False,) * 3])
def test_gradients_only_for_parameters_that_need_them(needs):
    """The backward returns None for a parameter without grad; the other gradients match the reference."""
    current = torch.randn(4, 2, 4, 3, 3, generator=torch.Generator().manual_seed(8)).to(DEVICE)
    draw, spec = MaskDraw(0.3, seed=4), spec_of("sigmoid", "asgl", "soft", True)
    inputs = operands(current, (4, 1, 1), needs)
    out = lif_triton(*inputs, draw, spec)
    weights = torch.linspace(-1, 1, out.numel(), device=DEVICE).reshape(out.shape)
    returned = out.grad_fn.apply(weights)  # what the backward hands autograd, one entry per forward argument:
    returned = [returned[i] for i in (3, 5, 6, 4)]  # (model, draw, spec, current, k, gamma, theta)
    ref_inputs = operands(current, (4, 1, 1))
    ref_grads = torch.autograd.grad((lif_stepwise(*ref_inputs, draw, spec) * weights).sum(), ref_inputs)
    for name, need, got, ref in zip(NAMES, (True, *needs), returned, ref_grads):
        if need:
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4, msg=name)
        else:
            assert got is None, name


@pytest.mark.parametrize("prob", [0.0, 0.4, 1.0])
def test_kernel_mask_is_the_draws_mask(prob):
    """Unit amplitude and sigmoid smooth values strictly inside (0, 1): outputs 0 or 1 mark the binary elements.
    N = 210 spans two programs; p = 1 is the threshold 2³², where no element is binary."""
    current = torch.randn(4, 3, 10, 7, generator=torch.Generator().manual_seed(9)).to(DEVICE)
    draw = MaskDraw(prob, seed=2**62 + 99, offset=1000)
    gamma, theta, k = (torch.tensor(v, device=DEVICE) for v in (0.6, 0.8, 1.0))
    out = triton_lif.neuron_triton(
        LIF_MODEL, current, (gamma, theta), k, draw, spec_of("sigmoid", "asgl", amplitude=False)
    )
    binary = (out == 0) | (out == 1)
    assert torch.equal(binary, materialize_mask(draw, current.shape, DEVICE))
    assert binary.float().mean().item() == pytest.approx(1 - prob, abs=0.1)


def test_the_backend_never_builds_a_mask_tensor(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a mask tensor was built")

    for name in ("materialize_mask", "step_mask_of"):
        monkeypatch.setattr(f"asgl.neuron_models.{name}", refuse)
    monkeypatch.setattr("asgl.spike.element_bits", refuse)
    current = torch.randn(3, 2, 4, 3, 3, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    inputs = operands(current, ())
    out = lif_triton(*inputs, MaskDraw(0.3, seed=5), spec_of("sigmoid", "asgl"))
    grads = torch.autograd.grad(out.sum(), inputs)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("config", triton_lif.BLOCK_CONFIGS)
def test_every_block_config_matches_stepwise(config, monkeypatch):
    """Each (BLOCK_N, num_warps) the rule can pick, forced on N = 1575 (a partial last block in each)."""
    monkeypatch.setattr(triton_lif, "block_config", lambda n, dtype: config)
    current = torch.randn(3, 9, 7, 5, 5, generator=torch.Generator().manual_seed(10)).to(DEVICE) * 1.5
    assert current[0].numel() % config[0] != 0
    assert_matches_stepwise(current, "sigmoid", "asgl", "soft", True, (7, 1, 1))


def test_block_config_by_neurons_per_step():
    assert block_config(700 * 32) == (128, 1)  # an audio layer with a small batch: many small programs
    assert block_config(2**17) == (512, 4)
    assert block_config(128 * 64 * 32 * 32) == (1024, 4)  # a convolutional layer with a big batch
    assert {block_config(n) for n in (1, 2**17, 2**22)} == set(triton_lif.BLOCK_CONFIGS)  # what the AOT test compiles
    # half precision never takes 1024 lanes on 4 warps (a shared-memory relayout of u each step: tests/triton_aot.py)
    for dtype in (torch.float16, torch.bfloat16):
        assert block_config(128 * 64 * 32 * 32, dtype) == (512, 4) and block_config(700 * 32, dtype) == (128, 1)
    assert block_config(2**22, torch.float32) == (1024, 4)


def test_unsupported_inputs_take_another_path_with_the_reference_result():
    """float64 and the arctan family are refused by the kernels; the backend's other path matches stepwise
    (in float32 for a float16 input, output in float16)."""
    current = torch.randn(3, 2, 4, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    for family, x in (("sigmoid", current), ("arctan", current.float()), ("arctan", current.half())):
        dtype = torch.float32 if x.dtype == torch.float16 else x.dtype
        params = [torch.tensor(v, dtype=dtype, device=DEVICE, requires_grad=True) for v in (0.5, 1.0, 1.0)]
        spec = SpikeSpec(SURROGATES[family], "sg")
        with pytest.raises(ValueError, match="the Triton kernels take"):
            triton_lif.neuron_triton(LIF_MODEL, x, tuple(params[:2]), params[2], None, spec)
        results = []
        for backend in (lif_triton, stepwise_in_float32):
            out = backend(x, *params, None, spec)
            results.append((out, torch.autograd.grad((out * out).sum(), params)))
        (out, grads), (ref, ref_grads) = results
        assert out.dtype == x.dtype
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(grads, ref_grads)


def test_supports_checks_every_operand():
    current = torch.randn(2, 3, 4, device=DEVICE)
    gamma, theta, k = (torch.tensor(v, device=DEVICE) for v in (0.5, 1.0, 1.0))
    args = {"current": current, "params": (gamma, theta), "k": k, "draw": MaskDraw(0.3, seed=0)}
    spec = SpikeSpec(SURROGATES["sigmoid"], "asgl")
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        assert triton_lif.supports(**(args | {"current": current.to(dtype)}), spec=spec)
    assert triton_lif.supports(**(args | {"draw": None}), spec=SpikeSpec(SURROGATES["sigmoid"], "sg"))
    refused = {"current": current.double(), "params": (gamma.double(), theta), "k": k.to("meta")}
    refused = [(name, value) for name, value in refused.items()] + [("params", (gamma, theta.half()))]
    for name, value in refused:
        assert not triton_lif.supports(**(args | {name: value}), spec=spec), name
    assert not triton_lif.supports(**args, spec=SpikeSpec(SURROGATES["arctan"], "asgl"))
    # a mask step holds fewer than 2³² elements (element indices are 32-bit words); sizes only, on "meta"
    meta = {"params": (gamma.to("meta"), theta.to("meta")), "k": k.to("meta")}
    huge = {"current": torch.empty(1, 2**16, 2**16, device="meta")} | meta
    assert triton_lif.supports(**(args | huge | {"draw": None}), spec=SpikeSpec(SURROGATES["sigmoid"], "sg"))
    assert not triton_lif.supports(**(args | huge), spec=spec)


def test_asgl_without_mask_is_refused():
    current = torch.randn(2, 3, 4, device=DEVICE)
    gamma, theta, k = (torch.tensor(v, device=DEVICE) for v in (0.5, 1.0, 1.0))
    with pytest.raises(ValueError, match="asgl spike needs its mask draw"):
        lif_triton(current, gamma, theta, k, None, SpikeSpec(SURROGATES["sigmoid"], "asgl"))


def test_lif_layer_hands_half_precision_to_the_kernel_in_place(monkeypatch):
    """The layer gives the kernel bfloat16 as it is (the other backends get float32) and returns bfloat16."""
    seen, kernel = [], triton_lif.neuron_triton
    monkeypatch.setattr(
        triton_lif, "neuron_triton", lambda model, x, *rest: (seen.append(x.dtype), kernel(model, x, *rest))[1]
    )
    monkeypatch.setitem(
        BACKENDS, "triton", neuron.run_triton
    )  # registered on CUDA machines; the interpreter runs it here
    layer = LIF(SurrogateWidth((4, 3, 3), width=2.0), spike="asgl", noise_prob=0.3).to(DEVICE)
    x = (torch.randn(5, 2, 4, 3, 3, generator=torch.Generator().manual_seed(3)) * 2).to(DEVICE, torch.bfloat16)
    outs = {}
    for backend in ("triton", "stepwise"):
        layer.backend = backend
        set_mask_generator(layer, torch.Generator(DEVICE).manual_seed(3))
        outs[backend] = layer(x)
    assert seen == [torch.bfloat16] and outs["triton"].dtype == outs["stepwise"].dtype == torch.bfloat16
    torch.testing.assert_close(outs["triton"], outs["stepwise"], atol=0, rtol=2**-7)


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


class FakeKernel:
    """Stands in for a kernel without running it: records each launch's arguments (positional, keyword)."""

    def __init__(self):
        self.launches = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((args, kwargs))


def test_forward_and_backward_make_no_synchronising_call(monkeypatch):
    """What waits for the GPU (an explicit synchronize, reading a value back, a copy from pageable memory to the
    device) refused in the wrapper's forward and backward; the kernels are stand-ins, as the interpreter itself
    reads tensors back."""
    neuron.triton_kernel(DEVICE)  # the probe waits for its one-element result, once, before the first call
    for name in ("_forward_kernel", "_backward_kernel"):
        monkeypatch.setattr(triton_lif, name, FakeKernel())
    inputs = operands(torch.randn(3, 2, 4, 3, 3, device=DEVICE), (4, 1, 1))

    def refuse(*args, **kwargs):
        raise AssertionError("a synchronising call")

    make_tensor = torch.tensor

    def host_tensor(*args, **kwargs):
        assert kwargs.get("device") is None, "a tensor built from a list straight onto a device"
        return make_tensor(*args, **kwargs)

    with monkeypatch.context() as m:
        for name in ("item", "cpu", "tolist", "numpy"):
            m.setattr(torch.Tensor, name, refuse)
        m.setattr(torch.cuda, "synchronize", refuse)
        m.setattr(torch, "tensor", host_tensor)
        out = lif_triton(*inputs, MaskDraw(0.3, seed=5), spec_of("sigmoid", "asgl"))
        out.backward(torch.ones_like(out))
    assert len(triton_lif._forward_kernel.launches) == len(triton_lif._backward_kernel.launches) == 1


def test_mask_keys_reach_a_gpu_through_pinned_memory_without_waiting(monkeypatch):
    """On CUDA the keys go host -> pinned -> device with non_blocking=True (what does not wait); checked on the
    construction path, with pin_memory and the copy recorded (no GPU here)."""
    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append("pin") or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, device, non_blocking=False: calls.append(non_blocking) or self)
    draw = MaskDraw(0.3, seed=2**63 - 1, offset=5)
    keys = triton_lif.mask_keys(draw, 2, torch.device("cuda"))
    assert calls == ["pin", True]
    expected = [draw.threshold] + [key - 2**64 if key >= 2**63 else key for key in draw.keys(2)]
    assert keys.dtype == torch.int64 and keys.device.type == "cpu" and keys.tolist() == expected


def test_no_grad_forward_writes_no_membrane(monkeypatch):
    """Eval or no-grad: one forward launch that stores no state (SAVE off, no float32 [T, ...] buffer), the same
    output as a training forward."""
    spy = LaunchSpy(triton_lif._forward_kernel)
    monkeypatch.setattr(triton_lif, "_forward_kernel", spy)
    current = torch.randn(3, 2, 4, 3, 3, generator=torch.Generator().manual_seed(13)).to(DEVICE).half()
    inputs = operands(current, ())
    draw, spec = MaskDraw(0.3, seed=3), spec_of("sigmoid", "asgl")
    with torch.no_grad():
        quiet = lif_triton(*inputs, draw, spec)
    trained = lif_triton(*inputs, draw, spec)
    assert [kw["SAVE"] for kw in spy.keywords] == [False, True]
    unsaved, saved = (args[1] for args in spy.launches)
    assert unsaved.dtype == torch.float16 and unsaved.data_ptr() == spy.launches[0][3].data_ptr()  # saved = out
    assert saved.dtype == torch.float32 and saved.shape == current.shape
    assert not quiet.requires_grad and torch.equal(quiet, trained.detach())


def test_a_failing_first_launch_falls_back_to_fused_with_one_line(monkeypatch, caplog):
    """Triton installed but unable to launch (here: a probe kernel that raises as a missing C compiler does):
    one warning, then the fused backend's result, and the Triton kernels never launched."""

    class FailingLaunch:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("Failed to find C compiler. Please specify via CC environment variable.")

            return launch

    monkeypatch.setattr(triton_lif, "_probe_kernel", FailingLaunch())
    monkeypatch.setattr(triton_lif, "_forward_kernel", FakeKernel())
    neuron.triton_kernel.cache_clear()
    try:
        current = torch.randn(3, 2, 4, 3, 3, generator=torch.Generator().manual_seed(14)).to(DEVICE)
        draw, spec = MaskDraw(0.3, seed=8), spec_of("tanh", "asgl", "soft")
        with caplog.at_level("WARNING", logger="asgl"):
            outs = [backend(*operands(current, ()), draw, spec) for backend in (lif_triton, lif_triton)]
        ref = neuron.lif_fused(*operands(current, ()), draw, spec)
    finally:
        neuron.triton_kernel.cache_clear()  # the next test probes the real kernel again
    assert triton_lif._forward_kernel.launches == []
    assert all(torch.equal(out, ref) for out in outs)
    lines = [r.getMessage() for r in caplog.records if r.name == "asgl"]
    assert len(lines) == 1 and "Failed to find C compiler" in lines[0] and "fused" in lines[0]


def test_behind_the_compile_operator_the_kernel_gives_its_own_results():
    """asgl::neuron_forward / neuron_backward (what a compiled model calls) with the triton backend: the kernel's
    own output and gradients, for a float16 input (the operator keeps its dtype) and with a mask draw."""
    from asgl.kernels.lif_op import neuron_op

    def lif_op(current, gamma, theta, k, words, spec, backend):
        return neuron_op("lif", current, (gamma, theta), k, words, spec, backend)

    current = (torch.randn(3, 2, 4, 3, 3, generator=torch.Generator().manual_seed(15)) * 1.5).to(DEVICE).half()
    draw, spec = MaskDraw(0.3, seed=11, offset=2), spec_of("sigmoid", "asgl", "soft")
    words = torch.tensor([draw.threshold, draw.seed, draw.offset])
    results = []
    for call in (lambda *a: lif_op(*a, words, spec, "triton"), lambda *a: lif_triton(*a, draw, spec)):
        inputs = operands(current, (4, 1, 1))
        out = call(*inputs)
        weights = torch.linspace(-1, 1, out.numel(), device=DEVICE).reshape(out.shape).half()
        results.append((out, torch.autograd.grad((out * weights).sum(), inputs)))
    (out, grads), (ref, ref_grads) = results
    assert out.dtype == grads[0].dtype == torch.float16 and torch.equal(out, ref)
    for name, g, r in zip(NAMES, grads, ref_grads):
        assert torch.equal(g, r), name


def test_the_interpreter_runs_exactly_where_cuda_does_not():
    """tests/conftest.py decides by torch.cuda.is_available(), so on a GPU machine these tests run the compiled
    kernels (whether or not a driver tool is on PATH) and elsewhere the interpreter."""
    assert (os.environ.get("TRITON_INTERPRET") == "1") == (not torch.cuda.is_available())
