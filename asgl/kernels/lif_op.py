"""The LIF call as a pair of opaque operators, for models under torch.compile (``train.compile = true``).

Dynamo would otherwise trace into a backend: the mask seed, a Python integer read back from a tensor, breaks
the graph, and as a new constant every step it would compile the graph again each step. Here the call is
``asgl::lif_forward`` (current, γ, θ, k, draw words -> output, saved u) and ``asgl::lif_backward``, whose fake
(meta) implementations give the compiler the shapes, and the draw travels as a CPU int64 tensor
[threshold, seed, offset] (empty without a mask) with the seed drawn as a tensor (:func:`asgl.spike.draw_seed`).
Inside, the operators run a backend's autograd function as it is (``fused``, or ``triton`` with its fallback
to ``fused``), so the maths and the saved tensors are those of the eager path.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import torch
from torch import Tensor

from asgl.spike import MaskDraw, SpikeSpec, draw_seed
from asgl.surrogates import SURROGATES

BACKENDS = ("fused", "triton")  # the backends that run behind the operators


def draw_words(noise_prob: float, generator: torch.Generator | None, stream: int = 0) -> Tensor:
    """int64 [3] (threshold, seed, offset 0) of a fresh mask draw, on the CPU, the seed never read back."""
    threshold = torch.tensor([MaskDraw(noise_prob, 0).threshold])
    return torch.cat([threshold, draw_seed(generator, stream).cpu(), torch.zeros(1, dtype=torch.int64)])


def _draw(words: Tensor) -> MaskDraw | None:
    """The MaskDraw of ``words`` (threshold/2³² is a probability whose threshold is that threshold again)."""
    if words.numel() == 0:
        return None
    threshold, seed, offset = words.tolist()  # a CPU tensor: nothing waits for a GPU
    return MaskDraw(threshold / 2**32, seed, offset)


def spec_text(spec: SpikeSpec) -> str:
    return ",".join((spec.surrogate.name, spec.spike, spec.reset, spec.amplitude, spec.width_grad))


def _spec(text: str) -> SpikeSpec:
    family, spike, reset, amplitude, width_grad = text.split(",")
    return SpikeSpec(SURROGATES[family], spike, reset, amplitude, width_grad)


def _function(backend: str, like: Tensor, params: tuple[Tensor, ...], draw: MaskDraw | None, spec: SpikeSpec):
    """(autograd function, whether it runs on the input cast to float32) for ``backend`` and an input shaped,
    typed and placed as ``like``: triton where it runs and takes the operands, as :func:`asgl.neuron.lif_triton`
    decides, else fused."""
    neuron = importlib.import_module("asgl.neuron")
    if backend == "triton":
        triton_lif = neuron.triton_kernel(like.device.type)
        if triton_lif is not None and triton_lif.supports(like, *params, draw, spec):
            return triton_lif._TritonLIF, False
    return neuron._FusedLIF, like.dtype in (torch.float16, torch.bfloat16)


class _Saved:
    """Stands in for an autograd context in a forward: keeps what it saves and the attributes it sets."""

    def save_for_backward(self, *tensors: Tensor) -> None:
        self.saved_tensors = tensors


@torch.library.custom_op("asgl::lif_forward", mutates_args=())
def _forward(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, words: Tensor, backend: str, spec: str
) -> tuple[Tensor, Tensor]:
    draw, spike = _draw(words), _spec(spec)
    function, cast = _function(backend, current, (gamma, theta, k), draw, spike)
    ctx = _Saved()
    out = function.forward(ctx, current.float() if cast else current, gamma, theta, k, draw, spike)
    return out.to(current.dtype), ctx.saved_tensors[0]


@_forward.register_fake
def _(current, gamma, theta, k, words, backend, spec):
    return torch.empty_like(current), torch.empty_like(current, dtype=torch.promote_types(current.dtype, torch.float32))


@torch.library.custom_op("asgl::lif_backward", mutates_args=())
def _backward(
    grad_out: Tensor, u_all: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, words: Tensor, backend: str, spec: str,
    needs: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    draw, spike = _draw(words), _spec(spec)
    function, cast = _function(backend, grad_out, (gamma, theta, k), draw, spike)
    ctx = SimpleNamespace(
        saved_tensors=(u_all, gamma, theta, k), needs_input_grad=(True, *needs), draw=draw, spec=spike
    )
    grads = function.backward(ctx, grad_out.float() if cast else grad_out)
    params = (gamma, theta, k)
    return grads[0].to(grad_out.dtype), *(torch.zeros_like(p) if g is None else g for g, p in zip(grads[1:4], params))


@_backward.register_fake
def _(grad_out, u_all, gamma, theta, k, words, backend, spec, needs):
    return (
        torch.empty_like(u_all, dtype=grad_out.dtype),
        torch.empty_like(gamma),
        torch.empty_like(theta),
        torch.empty_like(k),
    )


def _setup_context(ctx, inputs, output) -> None:
    _, gamma, theta, k, words, backend, spec = inputs
    ctx.save_for_backward(output[1], gamma, theta, k, words)
    ctx.backend, ctx.spec = backend, spec


def _backward_rule(ctx, grad_out: Tensor, _grad_u: Tensor | None):
    u_all, gamma, theta, k, words = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[1:4])
    grads = _backward(grad_out, u_all, gamma, theta, k, words, ctx.backend, ctx.spec, needs)
    return grads[0], *(g if need else None for g, need in zip(grads[1:], needs)), None, None, None


_forward.register_autograd(_backward_rule, setup_context=_setup_context)


def lif_op(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, words: Tensor, spec: SpikeSpec, backend: str
) -> Tensor:
    """``backend`` (fused or triton) on current [T, B, ...] through the operators; ``words`` from
    :func:`draw_words` (an empty int64 tensor without a mask). Same output and gradients as the backend."""
    return _forward(current, gamma, theta, k, words, backend, spec_text(spec))[0]
