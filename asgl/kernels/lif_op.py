"""A neuron layer's call as a pair of opaque operators, for models under torch.compile (``train.compile = true``).

Dynamo would otherwise trace into a backend: the mask seed, a Python integer read back from a tensor, breaks
the graph, and as a new constant every step it would compile the graph again each step. Here the call is
``asgl::neuron_forward`` (current, params, k, draw words -> output, saved states) and ``asgl::neuron_backward``,
whose fake (meta) implementations give the compiler the shapes, and the draw travels as a CPU int64 tensor
[threshold, seed, offset] (empty without a mask) with the seed drawn as a tensor (:func:`asgl.spike.draw_seed`).
Inside, the operators run a backend's autograd function as it is (``fused``, or ``triton`` with its fallback
to ``fused``), so the maths and the saved tensors are those of the eager path: every such function saves
(k, *params, *states) and reads ctx.model, ctx.draw and ctx.spec in its backward.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import torch
from torch import Tensor

from asgl.neuron_models import NEURONS, _FusedNeuron
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


def _function(backend: str, like: Tensor, params: list[Tensor], k: Tensor, draw: MaskDraw | None, spec: SpikeSpec):
    """(autograd function, whether it runs on the input cast to float32) for ``backend`` and an input shaped,
    typed and placed as ``like``: triton where it runs and takes the operands, as :func:`asgl.neuron.run_triton`
    decides, else fused."""
    neuron = importlib.import_module("asgl.neuron")
    if backend == "triton":
        triton_lif = neuron.triton_kernel(like.device.type)
        if triton_lif is not None and triton_lif.supports(like, tuple(params), k, draw, spec):
            return triton_lif._TritonNeuron, False
    return _FusedNeuron, like.dtype in (torch.float16, torch.bfloat16)


class _Saved:
    """Stands in for an autograd context in a forward: keeps what it saves and the attributes it sets."""

    def save_for_backward(self, *tensors: Tensor) -> None:
        self.saved_tensors = tensors


@torch.library.custom_op("asgl::neuron_forward", mutates_args=())
def _forward(
    current: Tensor, params: list[Tensor], k: Tensor, words: Tensor, model: str, backend: str, spec: str
) -> list[Tensor]:
    draw, spike = _draw(words), _spec(spec)
    function, cast = _function(backend, current, params, k, draw, spike)
    ctx = _Saved()
    out = function.forward(ctx, NEURONS[model], draw, spike, current.float() if cast else current, k, *params)
    return [out.to(current.dtype), *ctx.saved_tensors[1 + len(params) :]]


@_forward.register_fake
def _(current, params, k, words, model, backend, spec):
    state = torch.promote_types(current.dtype, torch.float32)
    return [torch.empty_like(current)] + [torch.empty_like(current, dtype=state) for _ in NEURONS[model].states]


@torch.library.custom_op("asgl::neuron_backward", mutates_args=())
def _backward(
    grad_out: Tensor, saved: list[Tensor], params: list[Tensor], k: Tensor, words: Tensor, model: str, backend: str,
    spec: str, needs: list[bool],
) -> list[Tensor]:  # fmt: skip
    draw, spike = _draw(words), _spec(spec)
    function, cast = _function(backend, grad_out, params, k, draw, spike)
    ctx = SimpleNamespace(
        saved_tensors=(k, *params, *saved), needs_input_grad=(False, False, False, True, *needs),
        model=NEURONS[model], draw=draw, spec=spike,
    )  # fmt: skip
    grads = function.backward(ctx, grad_out.float() if cast else grad_out)[3:]
    return [
        grads[0].to(grad_out.dtype),
        *(torch.zeros_like(p) if g is None else g for g, p in zip(grads[1:], [k, *params])),
    ]


@_backward.register_fake
def _(grad_out, saved, params, k, words, model, backend, spec, needs):
    return [torch.empty_like(saved[0], dtype=grad_out.dtype), torch.empty_like(k), *map(torch.empty_like, params)]


def _setup_context(ctx, inputs, output) -> None:
    _, params, k, words, model, backend, spec = inputs
    ctx.save_for_backward(k, words, *params, *output[1:])
    ctx.n, ctx.model, ctx.backend, ctx.spec = len(params), model, backend, spec


def _backward_rule(ctx, grad_out: list[Tensor | None]):
    k, words, *rest = ctx.saved_tensors
    params, saved = rest[: ctx.n], rest[ctx.n :]
    wanted = ctx.needs_input_grad[1]  # one flag per tensor of the params list
    wanted = [bool(w) for w in wanted] if isinstance(wanted, (list, tuple)) else [bool(wanted)] * ctx.n
    needs = [bool(ctx.needs_input_grad[2]), *wanted]
    grads = _backward(grad_out[0], saved, params, k, words, ctx.model, ctx.backend, ctx.spec, needs)
    grad_params = [g if need else None for g, need in zip(grads[2:], wanted)]
    return grads[0], grad_params, grads[1] if needs[0] else None, None, None, None, None


_forward.register_autograd(_backward_rule, setup_context=_setup_context)


def neuron_op(
    model: str, current: Tensor, params: tuple[Tensor, ...], k: Tensor, words: Tensor, spec: SpikeSpec, backend: str
) -> Tensor:
    """``backend`` (fused or triton) on current [T, B, ...] through the operators for the neuron ``model``;
    ``words`` from :func:`draw_words` (an empty int64 tensor without a mask). Same output and gradients as the
    backend."""
    return _forward(current, list(params), k, words, model, backend, spec_text(spec))[0]
