"""The neuron call under torch.compile: one opaque operator pair (asgl.kernels.lif_op), the mask seed a tensor.

The fused backend stands behind the operators here (CPU); on CUDA the Triton kernel does, the same way."""

import torch
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from asgl.kernels.lif_op import draw_words, neuron_op
from asgl.neuron import LIF, lif_fused
from asgl.spike import MaskDraw, SpikeSpec, new_mask_draw
from asgl.surrogates import SURROGATES, SurrogateWidth


class TimeFolded(nn.Module):
    """x [T, B, 6] -> Linear -> LIF -> Linear -> LIF -> mean over T [B, 4]."""

    def __init__(self, backend: str):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 8), nn.Linear(8, 4)
        width = lambda n: SurrogateWidth((n,), "sigmoid", width=2.0, learnable=True)  # noqa: E731
        kwargs = {"spike": "asgl", "noise_prob": 0.3, "learn_threshold": True, "backend": backend}
        self.lif1, self.lif2 = LIF(width(8), **kwargs), LIF(width(4), **kwargs)

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x)))).mean(0)


def train_steps(model, net, steps):
    """``steps`` SGD steps of ``net`` (``model``, maybe compiled) on fixed data; the gradients of the first."""
    x = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(1)) * 2
    y = torch.tensor([0, 1, 2, 3, 0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        first = first or {name: p.grad.clone() for name, p in model.named_parameters()}
        opt.step()
    return first


def test_a_compiled_training_step_compiles_once_and_matches_stepwise():
    """Five training steps of a compiled model with fused LIF layers (new mask seeds each step): one graph, no
    graph break, no recompile, the LIF calls as asgl::neuron_forward; the first step's gradients as on the stepwise
    reference with the same masks (the same seeds: one draw per layer from the same global RNG state)."""
    torch.manual_seed(0)
    model = TimeFolded("fused")
    reference = TimeFolded("stepwise")
    reference.load_state_dict(model.state_dict())
    counter = CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    torch.manual_seed(5)
    grads = train_steps(model, torch.compile(model, backend=counter), 5)
    torch.manual_seed(5)
    ref_grads = train_steps(reference, reference, 1)
    assert counter.frame_count == 1 and len(counter.graphs) == 1
    assert str(counter.graphs[0].code).count("asgl.neuron_forward") == 2
    for name, g in grads.items():
        assert ref_grads[name].abs().sum() > 0, name
        torch.testing.assert_close(g, ref_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def output_and_grads(call, current):
    """``call`` (current, gamma, theta, k) -> output; its output and the gradients of current, gamma and k."""
    args = [current.clone().requires_grad_(), torch.tensor(0.6, requires_grad=True), torch.tensor(0.8)]
    args.append(torch.linspace(0.5, 1.5, 5, requires_grad=True))
    out = call(*args)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    return out, torch.autograd.grad((out * weights).sum(), [args[0], args[1], args[3]])


def test_operator_matches_the_backend_with_and_without_a_mask():
    """Called eagerly, the operator gives the fused backend's output and gradients (a draw's words as
    threshold, seed, offset; no words without a mask), and no gradient for a parameter that needs none."""
    current = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(2)) * 1.5
    draw = MaskDraw(0.3, seed=2**62 + 7, offset=3)
    words = torch.tensor([draw.threshold, draw.seed, draw.offset])
    for spike, mask, w in (("asgl", draw, words), ("sg", None, torch.zeros(0, dtype=torch.int64))):
        spec = SpikeSpec(SURROGATES["tanh"], spike, "soft", "threshold", "analog" if mask else "all")
        out, grads = output_and_grads(lambda c, g, t, k: neuron_op("lif", c, (g, t), k, w, spec, "fused"), current)  # noqa: B023
        ref, ref_grads = output_and_grads(lambda *a: lif_fused(*a, mask, spec), current)  # noqa: B023
        assert torch.equal(out, ref)
        for g, r in zip(grads, ref_grads):
            assert r.abs().sum() > 0
            torch.testing.assert_close(g, r)


def test_draw_words_are_the_eager_draw():
    """From the same RNG state, the words hold the seed new_mask_draw would read back (stream mixed in) and the
    threshold of p."""
    torch.manual_seed(9)
    words = draw_words(0.3, None, 3)
    torch.manual_seed(9)
    draw = new_mask_draw(0.3, None, 3)
    assert words.tolist() == [draw.threshold, draw.seed, 0] and draw.seed >= 2**32
