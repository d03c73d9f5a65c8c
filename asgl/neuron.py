"""The neuron layer (:class:`LIF`, for every model of asgl.neuron_models) and the backends that run it.

The LIF model, step t with input current I[t] ([B, ...]) and state v (0 before the first step):

    u = γ v + I             γ = sigmoid(d), d learnable
    s = spike(u − θ)        ASGL (mixed), SG or Θ
    v = u (1 − s)           hard reset; soft: v = u − θ s
    out = a s               a = θ ("threshold" amplitude, reference) or 1

IF is the same step with γ = 1 and no decay parameter; ALIF adds an adaptive threshold. Each model is written
once, in asgl.neuron_models, and every backend runs every model from that definition. Nothing is detached
(full BPTT through reset and leak). Backends over a whole sequence [T, B, ...]:

- ``stepwise``: the definition under autograd, the reference;
- ``fused``: one autograd function; the forward runs without a graph and saves only the charged states
  [T, B, ...]; the backward is one reverse pass over T of the definition's generated adjoint, on [B, ...]
  slices that stay in cache;
- ``cpu_kernel`` (asgl.kernels.cpu_lif, numba): the same generated maths compiled, one pass each way over
  [T, N]; what ``auto`` picks on CPU, and where numba cannot load ``auto`` says so in one line and runs
  ``fused``;
- ``triton`` (asgl.kernels.triton_lif): registered where CUDA and Triton are available; runs ``fused`` after
  one line where its first launch fails (:func:`triton_kernel`);
- ``compiled`` (asgl.kernels.compiled_lif, opt-in): torch.compile of the fused loops.

Under torch.compile the fused and triton calls go through opaque operators (asgl.kernels.lif_op).

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
from asgl.kernels.compiled_lif import neuron_compiled
from asgl.kernels.lif_op import draw_words, neuron_op
from asgl.neuron_models import NEURONS, NeuronDef, neuron_fused, neuron_stepwise
from asgl.spike import Amplitude, MaskDraw, Reset, Spike, SpikeSpec, WidthGrad, materialize_mask, new_mask_draw
from asgl.surrogates import SurrogateWidth, check_choice

if TYPE_CHECKING:
    from asgl.config import NeuronConfig, SurrogateConfig

# A backend runs a layer of any neuron model (asgl.neuron_models) over a whole sequence:
# (model, current [T, B, ...], params, k, mask draw (asgl mode in training) or None, spec) -> output [T, B, ...]
Backend = Callable[[NeuronDef, Tensor, tuple[Tensor, ...], Tensor, "MaskDraw | None", SpikeSpec], Tensor]
HALF_PRECISION = (torch.float16, torch.bfloat16)


def run_triton(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """Triton backend (CUDA); reads float16/bfloat16 input in place (output in its dtype). What the kernel lacks,
    and every call where Triton cannot launch (:func:`triton_kernel`), goes to the fused path (in float32 for
    half precision)."""
    triton_lif = triton_kernel(current.device.type)
    if triton_lif is not None and triton_lif.supports(current, params, k, mask, spec) and triton_lif.runs_model(model):
        return triton_lif.neuron_triton(model, current, params, k, mask, spec)
    return in_float32(neuron_fused, model, current, params, k, mask, spec)


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


def in_float32(backend: Backend, model: NeuronDef, current: Tensor, *args) -> Tensor:
    """``backend`` on a float16/bfloat16 ``current`` [T, B, ...] cast to float32, the output cast back (other
    dtypes pass through): how every backend but the Triton kernel runs half precision."""
    if current.dtype not in HALF_PRECISION:
        return backend(model, current, *args)
    return backend(model, current.float(), *args).to(current.dtype)


@functools.cache
def cpu_kernel() -> ModuleType | None:
    """asgl.kernels.cpu_lif, or None after one line on the ``asgl`` logger when numba cannot load."""
    try:
        return importlib.import_module("asgl.kernels.cpu_lif")
    except Exception as err:  # numba missing, or built against another numpy: any import failure
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        logging.getLogger("asgl").warning("LIF: the numba CPU kernel cannot load (%s); using the fused backend", reason)
        return None


def run_cpu_kernel(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """CPU kernel backend (numba); CUDA tensors and half precision go to the fused path."""
    kernel = cpu_kernel()
    if kernel is None:
        raise BackendUnavailable("LIF backend 'cpu_kernel' needs numba, which cannot load here; use 'fused'")
    backend = kernel.neuron_cpu_kernel if kernel.supports(current, spec) else neuron_fused
    return backend(model, current, params, k, mask, spec)


BACKENDS: dict[str, Backend] = {
    "stepwise": neuron_stepwise,
    "fused": neuron_fused,
    "cpu_kernel": run_cpu_kernel,
    "compiled": neuron_compiled,
}
if torch.cuda.is_available() and importlib.util.find_spec("triton") is not None:
    BACKENDS["triton"] = run_triton


def _on_lif(backend: Backend) -> Callable:
    """``backend`` for the LIF model with its parameters spelled out:
    (current [T, B, ...], gamma, theta, k, mask, spec) -> output [T, B, ...]."""

    def run(current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask, spec: SpikeSpec) -> Tensor:
        return backend(NEURONS["lif"], current, (gamma, theta), k, mask, spec)

    run.__name__ = run.__qualname__ = f"lif_{backend.__name__.removeprefix('neuron_').removeprefix('run_')}"
    run.__doc__ = f"The LIF model on :func:`{backend.__name__}`."
    return run


# the LIF model on each backend (benchmarks, tests and scripts that run one layer's maths); ``lif_stepwise``
# takes a mask draw or its bool mask [T, B, ...]
lif_stepwise = _on_lif(neuron_stepwise)
lif_fused = _on_lif(neuron_fused)
lif_cpu_kernel = _on_lif(run_cpu_kernel)
lif_triton = _on_lif(run_triton)
lif_compiled = _on_lif(neuron_compiled)


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


def _register(module: nn.Module, name: str, value: Tensor, learnable: bool) -> None:
    """A parameter when learnable, else a buffer (saved in the state dict either way)."""
    if learnable:
        module.register_parameter(name, nn.Parameter(value))
    else:
        module.register_buffer(name, value)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class LIF(nn.Module):
    """Multi-step neuron layer over [T, B, *feature_shape] with its own decay, threshold and surrogate width.

    ``width`` owns the surrogate family and width (its shape follows the per-sample features); the other
    arguments are the recipe's ``neuron`` keys. In training the spike follows ``spike`` with analog probability
    ``noise_prob``; in eval mode the output is binary (Θ). Masks come from ``generator`` (None = global RNG).
    ``model`` names an asgl.neuron_models model: ``lif``; ``if``, the integrate-and-fire neuron (LIF without
    leak: γ = 1, no decay parameter, ``decay`` and ``learn_decay`` unused); ``alif``, the adaptive threshold
    θ + β a (``beta``, fixed; ρ = sigmoid of a logit from ``rho``, learned with ``learn_rho``); or a registered
    model, whose own parameters the layer holds under their names. Build one from a recipe with
    :func:`neuron_from_config`.
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
        names = NEURONS[model].params
        if "gamma" in names and model != "if":  # IF: γ = 1
            _register(self, "decay_logit", torch.tensor(_logit(decay)), learn_decay)
        _register(self, "threshold", torch.tensor(float(threshold)), learn_threshold)
        if "rho" in names:
            _register(self, "adapt_logit", torch.tensor(_logit(rho)), learn_rho)
        if "beta" in names:
            _register(self, "beta", torch.tensor(float(beta)), False)
        for name, value in NEURONS[model].init:  # a registered model's own parameters
            _register(self, name, torch.tensor(float(value)), True)
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
        return torch.sigmoid(self.decay_logit) if hasattr(self, "decay_logit") else torch.ones_like(self.threshold)

    def theta(self) -> Tensor:
        return self.threshold.clamp(min=0)

    def params(self) -> tuple[Tensor, ...]:
        """The step parameters of this layer's model (asgl.neuron_models), in its order: γ (``gamma``), θ
        (``theta``), β (``beta``), ρ = sigmoid of the adaptation logit (``rho``), and a registered model's own
        parameters by their names."""
        known = {"gamma": self.decay, "theta": self.theta, "beta": lambda: self.beta}
        known["rho"] = lambda: torch.sigmoid(self.adapt_logit)
        return tuple(known[name]() if name in known else getattr(self, name) for name in NEURONS[self.model].params)

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
        backend = self.resolve_backend(x)
        params = tuple(p.to(dtype) for p in self.params())
        k = self.width.slope().to(dtype)
        if torch.compiler.is_compiling() and backend in (neuron_fused, run_triton):  # opaque ops: asgl.kernels.lif_op
            op = functools.partial(neuron_op, backend="triton" if backend is run_triton else "fused")
            call = op if backend is run_triton else functools.partial(in_float32, op)
            return call(self.model, x, params, k, self.mask_words(), self.spec())
        run = functools.partial(backend, NEURONS[self.model])
        if backend is run_triton:
            return run(x, params, k, self.mask_draw(), self.spec())
        return in_float32(backend, NEURONS[self.model], x, params, k, self.mask_draw(), self.spec())

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
