"""The LIF neuron: a functional step, a fused multi-step autograd function, and the module.

One step, input current I[t] ([B, ...]), state ũ[t−1] (ũ[−1] = 0):

    u[t] = γ ũ[t−1] + I[t]              γ = sigmoid(d), d learnable
    s[t] = spike(u[t] − θ)              ASGL (mixed), SG or Θ
    ũ[t] = u[t] (1 − s[t])              hard reset; soft: ũ[t] = u[t] − θ s[t]
    out  = a s[t]                       a = θ ("threshold" amplitude, reference) or 1

The IF model (``model = "if"``) is the same step with γ = 1 and no decay parameter. The step of every model
is written once in asgl.neuron_models; a model without kernels there (``alif``, adaptive threshold) runs on its
definition's stepwise or fused path whatever backend is asked for (:func:`model_backend`). Nothing is detached
(full BPTT through reset and leak). Backends over a whole sequence [T, B, ...]:
``stepwise`` (plain autograd, the reference) and ``fused`` (one autograd function: the forward runs without
a graph and saves only u [T, B, ...]; the backward is one reverse pass over T that regenerates the spike and
surrogate terms from u step by step, so its temporaries are [B, ...] slices that stay in cache).
``cpu_kernel`` (asgl.kernels.cpu_lif, numba) runs the same maths in one pass each way over [T, N] on CPU and
is what ``auto`` picks there; where numba cannot load, ``auto`` says so in one line and runs ``fused``.
``triton`` (asgl.kernels.triton_lif) registers itself in :data:`BACKENDS` where CUDA and Triton are
available, and runs ``fused`` after one line where its first launch fails (:func:`triton_kernel`). Under
torch.compile the fused and triton calls go through opaque operators (asgl.kernels.lif_op); ``compiled`` (asgl.kernels.compiled_lif, opt-in: torch.compile of the fused maths) is always
registered.

The ASGL mask reaches a backend as a :class:`asgl.spike.MaskDraw` (seed, offset, p), never as a tensor:
the element i of step t is a pure function of (seed, offset + t, i), so the kernels regenerate it where
they need it and :func:`asgl.spike.materialize_mask` gives the stepwise reference the same mask.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, get_args

import torch
from torch import Tensor, nn

from asgl.choices import NeuronModel
from asgl.errors import BackendUnavailable
from asgl.kernels.compiled_lif import lif_compiled
from asgl.kernels.lif_op import draw_words, lif_op
from asgl.neuron_models import NEURONS, charge, neuron_fused, neuron_stepwise, reset_state
from asgl.spike import (
    Amplitude,
    MaskDraw,
    Reset,
    Spike,
    SpikeSpec,
    WidthGrad,
    materialize_mask,
    new_mask_draw,
    step_mask_of,
)
from asgl.surrogates import Surrogate, SurrogateWidth, check_choice

if TYPE_CHECKING:
    from asgl.config import NeuronConfig, SurrogateConfig

# A backend runs a LIF layer over a whole sequence:
# (current [T, B, ...], gamma, theta, k, mask draw (asgl mode in training) or None, spec) -> output [T, B, ...]
Backend = Callable[[Tensor, Tensor, Tensor, Tensor, "MaskDraw | None", SpikeSpec], Tensor]
HALF_PRECISION = (torch.float16, torch.bfloat16)


def lif_stepwise(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | Tensor | None, spec: SpikeSpec
) -> Tensor:
    """Reference backend: the LIF definition's step (asgl.neuron_models) in a loop under autograd.
    current [T, B, ...] -> output [T, B, ...]. ``mask``: a draw or, for tests of a kernel that takes one, the
    bool mask [T, B, ...]."""
    return neuron_stepwise(NEURONS["lif"], current, (gamma, theta), k, mask, spec)


def _spike_values(x: Tensor, y: Tensor, surrogate: Surrogate, spike: Spike, mask: Tensor | None, out: Tensor) -> Tensor:
    """Forward spike values for x = u − θ and y = k x (any shape), written into ``out``."""
    if spike in ("heaviside", "sg"):
        return torch.ge(x, 0, out=out)
    if spike == "analog":
        return out.copy_(surrogate.step(y))
    # where(mask, Θ(x), H) as lerp(H, Θ, m), exact for m in {0, 1} (lerp returns end − (end − start)·(1 − w)
    # for w >= ½ and start + w·(end − start) below): torch.where is ~6x slower than a mul on CPU
    return torch.lerp(surrogate.step(y), torch.ge(x, 0, out=out), mask.to(x.dtype), out=out)


def _sum_product(a: Tensor, b: Tensor, shape: torch.Size) -> Tensor:
    """Σ a·b reduced to ``shape`` (a parameter's shape); no temporary when ``shape`` is ()."""
    if len(shape) == 0 and a.is_contiguous() and b.is_contiguous():
        return torch.dot(a.view(-1), b.view(-1))
    return (a * b).sum_to_size(shape)


class _FusedLIF(torch.autograd.Function):
    """One reverse pass over T on [B, ...] slices that stay in cache; surrogate terms regenerated from u. The
    forward runs the LIF definition's charge and reset (asgl.neuron_models); the backward is its hand-written
    adjoint, tested against autograd of the definition's step (the stepwise backend).

    Backward per step, with G = dL/dũ[t] (from step t+1) and gd = grad_s · f(k x):
    grad_s = a·g_out − G·u (hard) or a·g_out − G·θ (soft); dL/du = k·gd + G·(1 − s) (hard) or k·gd + G;
    the width gets gd·x, the threshold −k·gd (+ g_out·s for amplitude θ, − G·s for soft reset).
    """

    @staticmethod
    def forward(ctx, current, gamma, theta, k, mask, spec: SpikeSpec):
        surrogate, spike, reset = spec.surrogate, spec.spike, spec.reset
        u_all = torch.empty_like(current)
        spikes = torch.empty_like(current)
        state = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            u = charge(current[t], state, gamma, out=u_all[t])
            x = u - theta
            s = _spike_values(x, k * x, surrogate, spike, step_mask(mask, current, t), spikes[t])
            state = reset_state(u, s, theta, reset)
        ctx.save_for_backward(u_all, gamma, theta, k)
        ctx.draw, ctx.spec = mask, spec
        return spikes.mul_(theta) if spec.amplitude == "threshold" else spikes

    @staticmethod
    def backward(ctx, grad_out):
        u_all, gamma, theta, k = ctx.saved_tensors
        spec: SpikeSpec = ctx.spec
        surrogate, spike, reset = spec.surrogate, spec.spike, spec.reset
        hard_reset, amplitude_threshold = reset == "hard", spec.amplitude == "threshold"
        width_analog = spec.width_grad == "analog"
        need_gamma, need_theta, need_k = ctx.needs_input_grad[1:4]
        grad_out = grad_out.contiguous()
        grad_u = torch.empty_like(u_all)  # = gradient w.r.t. current
        sum_gamma = torch.zeros_like(gamma)
        sum_gd = torch.zeros_like(k)  # Σ gd reduced to k's shape (threshold term −k·gd)
        sum_k = torch.zeros_like(k)
        sum_theta = torch.zeros_like(theta)  # amplitude and soft-reset threshold terms
        grad_state = None  # dL/dũ[t], None = 0 (after the last step)
        s_buffer = torch.empty_like(u_all[0])
        for t in range(u_all.shape[0] - 1, -1, -1):
            u, g_out = u_all[t], grad_out[t]
            x = u - theta
            y = k * x
            mask_t = step_mask(ctx.draw, u_all, t)
            s = _spike_values(x, y, surrogate, spike, mask_t, s_buffer)
            grad_s = g_out * theta if amplitude_threshold else g_out
            if grad_state is not None:
                grad_s = torch.addcmul(grad_s, grad_state, u if hard_reset else theta, value=-1)
            if grad_state is None:
                carried = None
            else:
                carried = torch.addcmul(grad_state, grad_state, s, value=-1) if hard_reset else grad_state
            if spike == "heaviside":
                g = grad_u[t].zero_() if carried is None else grad_u[t].copy_(carried)
            else:
                gd = grad_s * surrogate.density(y)
                if carried is None:
                    g = torch.mul(gd, k, out=grad_u[t])
                else:
                    g = torch.addcmul(carried, gd, k, out=grad_u[t])
                if need_theta:
                    sum_gd += gd.sum_to_size(k.shape)
                if need_k and width_analog and spike == "asgl":
                    sum_k += (gd * x).masked_fill_(mask_t, 0).sum_to_size(k.shape)
                elif need_k and not (width_analog and spike == "sg"):
                    sum_k += _sum_product(gd, x, k.shape)
            if need_theta:
                if amplitude_threshold:
                    sum_theta += _sum_product(g_out, s, theta.shape)
                if not hard_reset and grad_state is not None:
                    sum_theta -= _sum_product(grad_state, s, theta.shape)
            if need_gamma and grad_state is not None:
                sum_gamma += _sum_product(grad_u[t + 1], reset_state(u, s, theta, reset), gamma.shape)
            grad_state = g * gamma
        grad_theta = (sum_theta - (sum_gd * k).sum_to_size(theta.shape)) if need_theta else None
        return grad_u, sum_gamma if need_gamma else None, grad_theta, sum_k if need_k else None, None, None


def step_mask(draw: MaskDraw | None, current: Tensor, t: int) -> Tensor | None:
    """The bool mask [B, ...] of step t of ``current`` [T, B, ...] under ``draw`` (None when there is none)."""
    if draw is None:
        return None
    return step_mask_of(draw, t, current.shape[1:], current.device)


def lif_fused(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """Fused backend, same contract as :func:`lif_stepwise`."""
    return _FusedLIF.apply(current, gamma, theta, k, mask, spec)


def lif_triton(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """Triton backend (CUDA), same contract as :func:`lif_stepwise`; reads float16/bfloat16 input in place (output
    in its dtype). What the kernel lacks, and every call where Triton cannot launch (:func:`triton_kernel`), goes
    to :func:`lif_fused` (in float32 for half precision)."""
    triton_lif = triton_kernel(current.device.type)
    if triton_lif is not None and triton_lif.supports(current, gamma, theta, k, mask, spec):
        return triton_lif.lif_triton(current, gamma, theta, k, mask, spec)
    return in_float32(lif_fused, current, gamma, theta, k, mask, spec)


@functools.cache
def triton_kernel(device_type: str) -> ModuleType | None:
    """asgl.kernels.triton_lif once a tiny kernel has compiled and run on ``device_type`` ("cuda"; "cpu" under
    Triton's interpreter), or None after one line on the ``asgl`` logger: Triton installs where it cannot
    build its launcher (no C compiler, no Python headers), and fails only at the first launch."""
    try:
        module = importlib.import_module("asgl.kernels.triton_lif")  # imports triton: only when this backend runs
        module.probe(torch.device(device_type))
        return module
    except Exception as err:  # any failure to import, compile or launch
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        logging.getLogger("asgl").warning(
            "LIF: the Triton kernel cannot run here (%s); using the fused backend", reason
        )
        return None


def in_float32(
    backend: Backend, current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """``backend`` on a float16/bfloat16 ``current`` [T, B, ...] cast to float32, the output cast back (other
    dtypes pass through): how every backend but the Triton kernel runs half precision."""
    if current.dtype not in HALF_PRECISION:
        return backend(current, gamma, theta, k, mask, spec)
    return backend(current.float(), gamma, theta, k, mask, spec).to(current.dtype)


@functools.cache
def cpu_kernel() -> ModuleType | None:
    """asgl.kernels.cpu_lif, or None after one line on the ``asgl`` logger when numba cannot load."""
    try:
        return importlib.import_module("asgl.kernels.cpu_lif")
    except Exception as err:  # numba missing, or built against another numpy: any import failure
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        logging.getLogger("asgl").warning("LIF: the numba CPU kernel cannot load (%s); using the fused backend", reason)
        return None


def lif_cpu_kernel(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """CPU kernel backend (numba), same contract as :func:`lif_stepwise`; CUDA tensors, half precision and
    families the kernel lacks go to :func:`lif_fused`."""
    kernel = cpu_kernel()
    if kernel is None:
        raise BackendUnavailable("LIF backend 'cpu_kernel' needs numba, which cannot load here; use 'fused'")
    backend = kernel.lif_cpu_kernel if kernel.supports(current, spec) else lif_fused
    return backend(current, gamma, theta, k, mask, spec)


BACKENDS: dict[str, Backend] = {
    "stepwise": lif_stepwise,
    "fused": lif_fused,
    "cpu_kernel": lif_cpu_kernel,
    "compiled": lif_compiled,
}
if torch.cuda.is_available() and importlib.util.find_spec("triton") is not None:
    BACKENDS["triton"] = lif_triton


def auto_backend(on_cuda: bool) -> str:
    """The backend ``auto`` runs. On CUDA: triton where registered, else fused. On CPU: the CPU kernel where
    numba loads and the call is not being traced by torch.compile, else fused. None of them adds gradients up
    in an order that varies from run to run (the triton backward sums per-program partials in a fixed order),
    so ``run.deterministic`` does not change the choice."""
    if on_cuda:
        return "triton" if "triton" in BACKENDS else "fused"
    return "fused" if torch.compiler.is_compiling() or cpu_kernel() is None else "cpu_kernel"


def resolve_backend(name: str, x: Tensor) -> Backend:
    """The backend called ``name`` (``auto``: see :func:`auto_backend`) for input ``x``."""
    name = auto_backend(x.is_cuda) if name == "auto" else name
    if name not in BACKENDS:
        raise BackendUnavailable(f"LIF backend {name!r} is not available here (have: {', '.join(BACKENDS)})")
    return BACKENDS[name]


def model_backend(backend: str, model: str) -> Callable | None:
    """How a layer of neuron ``model`` runs when ``backend`` is asked for: None where the LIF backends run it
    (the models with kernels: lif, if); any other model runs on its definition's stepwise reference for
    ``stepwise`` and on its definition's fused path for every other backend (auto, fused, cpu_kernel, triton,
    compiled). The one place where a backend falls back for a model (asgl.neuron_models)."""
    if NEURONS[model].kernels:
        return None
    return neuron_stepwise if backend == "stepwise" else neuron_fused


def _register(module: nn.Module, name: str, value: Tensor, learnable: bool) -> None:
    """A parameter when learnable, else a buffer (saved in the state dict either way)."""
    if learnable:
        module.register_parameter(name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


LEAKY = ("lif", "alif")  # the models with a learnable leak γ = sigmoid(d)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class LIF(nn.Module):
    """Multi-step LIF layer over [T, B, *feature_shape] with its own decay, threshold and surrogate width.

        ``width`` owns the surrogate family and width (its shape follows the per-sample features); the other
        arguments are the recipe's ``neuron`` keys. In training the spike follows ``spike`` with analog
        probability ``noise_prob``; in eval mode the output is binary (Θ). Masks come from ``generator``
        (None = global RNG). ``model = "if"`` is the integrate-and-fire neuron: LIF without leak (γ = 1, no decay
        parameter, ``decay`` and ``learn_decay`` unused); ``model = "alif"`` adds the adaptive threshold θ + β a
    (``beta``, fixed; ρ = sigmoid of a logit from ``rho``, learned with ``learn_rho``; see asgl.neuron_models).
    Build one from a recipe with :func:`neuron_from_config`.
    """

    asgl_neuron = True  # tag: asgl.optim gives every parameter under this module the neuron optimiser

    def __init__(
        self,
        width: SurrogateWidth,
        model: NeuronModel = "lif",
        spike: Spike = "asgl",
        decay: float = 0.5,
        learn_decay: bool = True,
        threshold: float = 1.0,
        learn_threshold: bool = False,
        reset: Reset = "hard",
        amplitude: Amplitude = "threshold",
        width_grad: WidthGrad = "all",
        backend: str = "auto",
        beta: float = 0.5,
        rho: float = 0.9,
        learn_rho: bool = True,
        noise_prob: float = 0.0,
    ):
        super().__init__()
        for key, value, choices in (
            ("model", model, tuple(NEURONS)),
            ("spike", spike, get_args(Spike)),
            ("reset", reset, get_args(Reset)),
            ("amplitude", amplitude, get_args(Amplitude)),
            ("width_grad", width_grad, get_args(WidthGrad)),
        ):
            check_choice(key, value, choices)
        for key, value in (("decay", decay), ("rho", rho)):
            if not 0 < value < 1:
                raise ValueError(f"{key} = {value}: the initial decay must be in (0, 1)")
        self.model: NeuronModel = model
        self.width = width
        self.surrogate = width.surrogate
        if model in LEAKY:
            _register(self, "decay_logit", torch.tensor(_logit(decay)), learn_decay)
        _register(self, "threshold", torch.tensor(float(threshold)), learn_threshold)
        if model == "alif":
            _register(self, "adapt_logit", torch.tensor(_logit(rho)), learn_rho)
            _register(self, "beta", torch.tensor(float(beta)), False)
        self.spike: Spike = spike
        self.reset: Reset = reset
        self.amplitude: Amplitude = amplitude
        self.width_grad: WidthGrad = width_grad
        self.backend = backend
        self.noise_prob = noise_prob
        self.generator: torch.Generator | None = None
        self.mask_stream = 0  # mixed into every mask seed: the DDP rank (see set_mask_stream)

    def decay(self) -> Tensor:
        """γ: sigmoid of the decay logit, or 1 for the IF model (no leak)."""
        return torch.sigmoid(self.decay_logit) if self.model in LEAKY else torch.ones_like(self.threshold)

    def theta(self) -> Tensor:
        return self.threshold.clamp(min=0)

    def params(self) -> tuple[Tensor, ...]:
        """The step parameters of this layer's model (asgl.neuron_models): (γ, θ), and (γ, θ, β, ρ) for alif
        with ρ = sigmoid of the adaptation logit."""
        adaptive = (self.beta, torch.sigmoid(self.adapt_logit)) if self.model == "alif" else ()
        return (self.decay(), self.theta(), *adaptive)

    def active_spike(self) -> Spike:
        """The spike in use: ``spike`` in training, binary Θ in eval mode."""
        return self.spike if self.training else "heaviside"

    def mask_draw(self) -> MaskDraw | None:
        """A fresh mask draw (seed from ``generator``) for the ASGL mode in training, else None."""
        if self.active_spike() != "asgl":
            return None
        return new_mask_draw(self.noise_prob, self.generator, self.mask_stream)

    def mask_words(self) -> Tensor:
        """:meth:`mask_draw` for a compiled model: int64 [3] (threshold, seed, offset), the seed never read back
        (see asgl.kernels.lif_op), or an empty tensor without a mask."""
        if self.active_spike() != "asgl":
            return torch.zeros(0, dtype=torch.int64)
        return draw_words(self.noise_prob, self.generator, self.mask_stream)

    def draw_mask(self, shape: torch.Size, device: torch.device) -> Tensor | None:
        """The bool mask [T, B, ...] of a fresh draw for the ASGL mode in training, else None."""
        draw = self.mask_draw()
        return None if draw is None else materialize_mask(draw, shape, device)

    def spec(self) -> SpikeSpec:
        """The active spike with this layer's surrogate, reset, amplitude and width-gradient rule."""
        return SpikeSpec(self.surrogate, self.active_spike(), self.reset, self.amplitude, self.width_grad)

    def resolve_backend(self, x: Tensor) -> Backend:
        return resolve_backend(self.backend, x)

    def forward(self, x: Tensor) -> Tensor:
        """x [T, B, *feature_shape] input current -> spikes [T, B, *feature_shape] (amplitude θ or 1), in x's
        dtype. Half precision: parameters and state in float32, the input read by the Triton kernel in place
        and cast to float32 for the other backends."""
        dtype = torch.float32 if x.dtype in HALF_PRECISION else x.dtype  # parameters and state
        run = model_backend(self.backend, self.model)
        if run is not None:
            params = tuple(p.to(dtype) for p in self.params())
            out = run(
                NEURONS[self.model], x.to(dtype), params, self.width.slope().to(dtype), self.mask_draw(), self.spec()
            )
            return out.to(x.dtype)
        backend = self.resolve_backend(x)
        params = (self.decay().to(dtype), self.theta().to(dtype), self.width.slope().to(dtype))
        if torch.compiler.is_compiling() and backend in (lif_fused, lif_triton):  # one opaque op: asgl.kernels.lif_op
            op = functools.partial(lif_op, backend="triton" if backend is lif_triton else "fused")
            call = op if backend is lif_triton else functools.partial(in_float32, op)
            return call(x, *params, self.mask_words(), self.spec())
        if backend is lif_triton:
            return backend(x, *params, self.mask_draw(), self.spec())
        return in_float32(backend, x, *params, self.mask_draw(), self.spec())

    def extra_repr(self) -> str:
        return f"model={self.model}, spike={self.spike}, surrogate={self.surrogate.name}, reset={self.reset}, backend={self.backend}"


def neuron_from_config(
    neuron: NeuronConfig, surrogate: SurrogateConfig, feature_shape: tuple[int, ...], noise_prob: float = 0.0
) -> LIF:
    """The neuron layer of a recipe's ``neuron`` and ``surrogate`` sections for per-sample features
    ``feature_shape`` (``neuron.norm`` is the model's): the one place a recipe becomes a neuron."""
    width = SurrogateWidth.from_config(surrogate, feature_shape)
    keys = neuron.model_dump(exclude={"norm", "shared_decay"})  # the same key names; unused ones are not dumped
    return LIF(width, **keys, noise_prob=noise_prob)


def lif_layers(model: nn.Module) -> list[tuple[str, LIF]]:
    """Every LIF layer of a model with its qualified name, in definition order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LIF)]


def set_noise_prob(model: nn.Module, noise_prob: float) -> None:
    """Set p (probability of the analog value) on every LIF layer."""
    for _, layer in lif_layers(model):
        layer.noise_prob = noise_prob


def set_mask_stream(model: nn.Module, stream: int) -> None:
    """Give every LIF layer the mask stream ``stream`` (the DDP rank: ranks draw independent masks)."""
    for _, layer in lif_layers(model):
        layer.mask_stream = stream


def set_mask_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Draw every LIF layer's masks from ``generator`` (None = the global RNG)."""
    for _, layer in lif_layers(model):
        layer.generator = generator
