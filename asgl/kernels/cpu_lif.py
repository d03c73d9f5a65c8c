"""Every neuron model as a CPU kernel (numba): one pass over [T, N] forward, one reverse pass backward.

Same contract and maths as the fused path (:func:`asgl.neuron_models.neuron_fused`): the kernels are one
template whose element functions are the model's generated forward and adjoint texts
(:func:`asgl.neuron_models.step_texts`, padded to MAX_STATES states and MAX_PARAMS params) compiled with
the spike of the call (:func:`element_functions`), so no maths of a model is written here. The sequence is
viewed as [T, N] (N = every element of one step). Threads take blocks of ``BLOCK`` neurons; a block walks T
with its states in small rows that stay in L1, so each value of [T, N] is read or written once: the forward
reads the current and writes the output and the charged states; the backward reads those and the output
gradient and writes the input gradient. The ASGL mask is regenerated from its :class:`asgl.spike.MaskDraw`
in both passes (the same 32-bit element words as :func:`asgl.spike.element_bits`), so no mask tensor exists.

Everything runs in the input's precision (float32 in training: 8 lanes of a 256-bit vector), with the
exponential written in plain arithmetic (a 2ⁿ range reduction and a short polynomial) and the mask words
made with 32-bit integer operations, because a libm call or a 64-bit multiply stops LLVM from vectorising
the loop around it.

The parameter and (layer) width gradients are summed per neuron in float64 and per block, and the
block partials are added in block order afterwards; a channel or neuron width gets per-neuron sums reduced
by torch. Blocks depend on N only, so gradients are bit-identical whatever the thread count.

Compiled by numba on the first use of a configuration (seconds) and cached on disk, where every later process
finds it: in the package's ``__pycache__``, or where that cannot be written (a system-wide install) in the
user's cache folder (numba's own fallback: ``$XDG_CACHE_HOME/numba``, by default ``~/.cache/numba``);
``NUMBA_CACHE_DIR`` overrides both.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from types import FunctionType
from typing import NamedTuple

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic
from torch import Tensor

from asgl.adjoint import Emitted, define
from asgl.neuron_models import MAX_PARAMS, NeuronDef, spike_texts, step_texts, summed_gradients
from asgl.scalar import fingerprint, rebind, with_literals
from asgl.spike import MaskDraw, SpikeSpec, element_word, keyed_round
from asgl.surrogates import Surrogate

BLOCK = 1024
_NUMPY = {torch.float32: np.float32, torch.float64: np.float64}
_INLINE = {"inline": "always", "error_model": "numpy", "fastmath": {"contract"}}  # helpers: inlined, never alone
_KERNEL = {"parallel": True, "cache": True, "error_model": "numpy", "fastmath": {"contract"}}
# numba's default OpenMP pool keeps its threads spinning for a while after each kernel, taking the cores from
# torch's own OpenMP pool: every torch op between two LIF layers (a convolution, the loss) ran several times
# slower. The workqueue pool's threads sleep as soon as a kernel ends. It runs one parallel launch at a time,
# hence the lock. A threading layer the user chose (NUMBA_THREADING_LAYER) is kept.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
_LAUNCH = threading.Lock()


def _word_op(name: str, operation: Callable) -> Callable:
    """An intrinsic ``name(a, b)``: ``operation`` on 32-bit LLVM words (b a uint32 or an integer constant, cut to
    32 bits), since numba would widen uint32 arithmetic to 64 bits."""

    def typer(typingctx, a, b):  # pragma: no cover - compiled code
        def codegen(context, builder, signature, args):
            i32 = ir.IntType(32)
            other = args[1] if signature.args[1] == types.uint32 else builder.trunc(args[1], i32)
            return operation(builder, args[0], other)

        return types.uint32(types.uint32, b), codegen

    typer.__name__ = name
    return intrinsic(typer)


# the integer vocabulary of asgl.scalar, for the mask hash of asgl.spike
WORD_HELPERS = {
    "xor": _word_op("xor", lambda builder, a, b: builder.xor(a, b)),
    "shr": _word_op("shr", lambda builder, a, b: builder.lshr(a, b)),
    "mul32": _word_op("mul32", lambda builder, a, b: builder.mul(a, b)),
}
_keyed_round = njit(**_INLINE)(rebind(keyed_round, WORD_HELPERS))
_element_word = njit(**_INLINE)(rebind(element_word, {"keyed_round": _keyed_round}))


@intrinsic
def _pow2(typingctx, exponent, like):  # pragma: no cover - compiled code
    """2**exponent (an int32 within the normal range) as a float of ``like``'s type, by placing the biased
    exponent into the bits (float32: (e + 127) << 23; float64: (e + 1023) << 52)."""
    sig = like(types.int32, like)

    def codegen(context, builder, signature, args):
        if signature.return_type == types.float32:
            bits = builder.shl(builder.add(args[0], ir.Constant(ir.IntType(32), 127)), ir.Constant(ir.IntType(32), 23))
            return builder.bitcast(bits, ir.FloatType())
        wide = builder.add(builder.sext(args[0], ir.IntType(64)), ir.Constant(ir.IntType(64), 1023))
        return builder.bitcast(builder.shl(wide, ir.Constant(ir.IntType(64), 52)), ir.DoubleType())

    return sig, codegen


class _Consts(NamedTuple):
    """The float constants of one precision, each a ``dtype`` scalar so that float32 loops stay float32."""

    dtype: type
    zero: np.floating
    one: np.floating
    half: np.floating
    a_max: np.floating  # e^−a_max is still a normal float
    log2e: np.floating
    ln2_hi: np.floating  # ln 2 split in a high part exact in few bits and a low part
    ln2_lo: np.floating
    inv: tuple  # 1/1 .. 1/degree: the Taylor coefficients of e⁻ʳ


@functools.cache
def _consts(dtype: type) -> _Consts:
    """The constants in ``dtype`` (np.float32 or np.float64); float64 gets a longer polynomial."""
    wide = dtype is np.float64
    values = (0.0, 1.0, 0.5, 708.0 if wide else 87.0, 1.4426950408889634)
    ln2 = (0.6931471803691238, 1.9082149292705877e-10) if wide else (0.693359375, -2.12194440e-4)
    inv = tuple(dtype(1.0 / j) for j in range(1, 13 if wide else 8))
    return _Consts(dtype, *(dtype(v) for v in values + ln2), inv)


@njit(**_INLINE)
def _is_binary(i, k0, k1, thr):  # pragma: no cover - compiled code
    """Whether element i of the step with key halves (k0, k1) spikes: its word is >= thr (int64 in [0, 2³²])."""
    return np.int64(_element_word(np.uint32(i), k0, k1)) >= thr


@njit(**_INLINE)
def _exp_neg(a, c):  # pragma: no cover - compiled code
    """exp(−a) for a >= 0 in plain arithmetic, so that the loop calling it vectorises: 2⁻ⁿ e⁻ʳ with
    n = round(a / ln 2), r = a − n ln 2 in [−ln2/2, ln2/2], e⁻ʳ by its Taylor polynomial (below 2 ulp)."""
    a = min(a, c.a_max)
    n = np.int32(a * c.log2e + c.half)
    r = (a - c.dtype(n) * c.ln2_hi) - c.dtype(n) * c.ln2_lo
    p = c.one
    for j in range(len(c.inv) - 1, -1, -1):
        p = c.one - r * c.inv[j] * p
    return p * _pow2(-n, a)


@functools.cache
def numba_helpers(dtype: type) -> dict[str, Callable]:
    """The scalar vocabulary of asgl.scalar for ``dtype`` (np.float32 or np.float64), each helper inlined:
    the exponential in plain arithmetic (:func:`_exp_neg`), so that the loops calling it vectorise."""
    c = _consts(dtype)

    def sigmoid(y):  # pragma: no cover - compiled code
        e = _exp_neg(abs(y), c)
        return (e if y < c.zero else c.one) / (c.one + e)

    def exp(y):  # pragma: no cover - compiled code
        e = _exp_neg(abs(y), c)
        return e if y < c.zero else c.one / e

    def atan(y):  # pragma: no cover - compiled code
        return c.dtype(math.atan(y))

    def fabs(y):  # pragma: no cover - compiled code
        return abs(y)

    def minimum(a, b):  # pragma: no cover - compiled code
        return min(a, b)

    def maximum(a, b):  # pragma: no cover - compiled code
        return max(a, b)

    def where(condition, a, b):  # pragma: no cover - compiled code
        return a if condition else b

    helpers = (sigmoid, exp, atan, fabs, minimum, maximum, where)
    return {fn.__name__: njit(**_INLINE)(fn) for fn in helpers}


@functools.cache
def family_functions(surrogate: Surrogate, dtype: type) -> dict[str, Callable]:
    """``family_step`` and ``family_density``: the family's F and f (asgl.surrogates) compiled for ``dtype``
    from their one text, every literal a ``dtype`` constant."""
    helpers = numba_helpers(dtype)
    return {
        "family_step": njit(**_INLINE)(with_literals(surrogate.F, helpers, dtype)),
        "family_density": njit(**_INLINE)(with_literals(surrogate.f, helpers, dtype)),
    }


@functools.cache
def element_functions(model: NeuronDef, spec: SpikeSpec, dtype: type) -> dict[str, Callable]:
    """``_charge``, ``_fire``, ``_charge_adjoint`` and ``_fire_adjoint``: the model's generated texts
    (asgl.neuron_models.step_texts, padded to MAX_STATES and MAX_PARAMS) compiled for ``dtype`` with the spike
    of ``spec``, every literal a ``dtype`` constant; all inlined into the kernels."""
    helpers = numba_helpers(dtype)
    family = helpers | family_functions(spec.surrogate, dtype)
    spike = {name: njit(**_INLINE)(with_literals(fn, family, dtype)) for name, fn in spike_texts(spec).items()}
    compiled = {
        f"_{e.name}": njit(**_INLINE)(with_literals(define(e, {}), helpers | spike, dtype)) for e in _texts(model, spec)
    }
    return compiled | {f"_{name}": fn for name, fn in spike.items()}


def _texts(model: NeuronDef, spec: SpikeSpec) -> tuple[Emitted, ...]:
    """The generated texts the kernels compile: charge, fire, their adjoints, and for the backward the spike's
    argument, fire and its adjoint given the spike's value and derivatives."""
    t = step_texts(model, spec.reset, spec.amplitude, padded=True)
    return t.charge, t.fire, t.charge_adjoint, t.fire_adjoint, t.spike_argument, t.fire_given, t.fire_adjoint_given


def _digest(model: NeuronDef, spec: SpikeSpec) -> str:
    """The digest of every text a kernel compiles: the model's generated functions, the spike, the family and
    the mask hash (numba's disk cache does not see the functions bound as globals, so the kernels' names
    carry it)."""
    generated = [define(e, {}) for e in _texts(model, spec)]
    spike = spike_texts(spec).values()
    return fingerprint(*generated, *spike, spec.surrogate.F, spec.surrogate.f, keyed_round, element_word)


@functools.cache
def forward_kernel(model: NeuronDef, spec: SpikeSpec, per_neuron: bool, dtype: type) -> Callable:
    """The forward compiled for one configuration: ``k`` [1] (one width) or [N] (``per_neuron``), ``dtype``
    the array type (see :func:`backward_kernel` for how the kernels are built and cached)."""
    forward = _forward_kernel(len(model.states), spec.spike == "asgl", per_neuron, _consts(dtype))
    name = f"neuron_forward_{_digest(model, spec)}"
    return njit(**_KERNEL)(_specialise(forward, name, **element_functions(model, spec, dtype)))


@functools.cache
def backward_kernel(model: NeuronDef, spec: SpikeSpec, per_neuron: bool, needs: tuple, dtype: type) -> Callable:
    """The backward compiled for one configuration, ``needs``: the sums each adjoint adds to
    (:func:`asgl.neuron_models.summed_gradients`).

    The kernels are closures over the configuration's flags and float constants, which numba compiles as
    constants, so every branch on them folds away; the element functions are inlined into them. numba keys a
    closure's disk cache on its pickled values, so these must stay plain numbers: a compiled function in
    the closure pickles with an id new in every process, and each process would compile again. The element
    functions are bound as globals instead (:func:`_specialise`), which that key does not see, so the
    kernels' names carry their digest.

    Each step of a block runs in short loops over the block's neurons, each touching few arrays so that
    LLVM vectorises it. The block's [BLOCK] rows stay in L1, so [T, N] is still read once."""
    backward = _backward_kernel(len(model.states), spec.spike == "asgl", per_neuron, needs, _consts(dtype))
    name = f"neuron_backward_{_digest(model, spec)}"
    return njit(**_KERNEL)(_specialise(backward, name, **element_functions(model, spec, dtype)))


def _specialise(fn: Callable, qualname: str, **names: object) -> Callable:
    """``fn`` (same code and closure) with ``names`` added to its globals, under ``qualname``: numba names
    the cache files of a kernel after its qualified name."""
    special = FunctionType(fn.__code__, fn.__globals__ | names, fn.__name__, fn.__defaults__, fn.__closure__)
    special.__qualname__ = qualname
    return special


def _forward_kernel(states: int, asgl: bool, per_neuron: bool, c: _Consts) -> Callable:
    """The forward pass for one configuration (the arguments are constants of the closure), to compile."""
    two = states > 1

    def forward(cur, params, k, keys, thr, out, saved):  # pragma: no cover - compiled code
        """cur [T, N] -> out [T, N] and saved [S, T, N] (each step's charged states); params [4] (padded);
        keys [T, 2] uint32 (each step's key halves)."""
        steps, n = cur.shape
        p0, p1, p2, p3 = params[0], params[1], params[2], params[3]
        for b in prange((n + BLOCK - 1) // BLOCK):
            lo = b * BLOCK
            m = min(BLOCK, n - lo)  # rows are sliced: an index lo + j would defeat vectorisation
            k_b = k[lo : lo + m] if per_neuron else k
            k_layer = k_b[0]
            v0, v1 = np.zeros(m, cur.dtype), np.zeros(m if two else 1, cur.dtype)
            for t in range(steps):
                cur_b, out_b = cur[t, lo : lo + m], out[t, lo : lo + m]
                c0_b, c1_b = saved[0, t, lo : lo + m], saved[states - 1, t, lo : lo + m]
                for j in range(m):
                    c0, c1 = _charge(cur_b[j], v0[j], v1[j] if two else c.zero, p0, p1, p2, p3)  # noqa: F821
                    c0_b[j] = c0
                    if two:
                        c1_b[j] = c1
                for j in range(m):
                    binary = asgl and _is_binary(lo + j, keys[t, 0], keys[t, 1], thr)
                    kk = k_b[j] if per_neuron else k_layer
                    o, w0, w1 = _fire(c0_b[j], c1_b[j] if two else c.zero, p0, p1, p2, p3, kk, binary)  # noqa: F821
                    out_b[j] = o
                    v0[j] = w0
                    if two:
                        v1[j] = w1

    return forward


@njit(**_INLINE)
def _add(j, a0, a1, a2, a3, q0, q1, q2, q3, n0, n1, n2, n3):  # pragma: no cover - compiled code
    """Add the adjoints q to the rows a at j, each where its flag n (a constant) says so."""
    if n0:
        a0[j] += q0
    if n1:
        a1[j] += q1
    if n2:
        a2[j] += q2
    if n3:
        a3[j] += q3


@njit(**_INLINE)
def _store_sums(part, k_rows, a0, a1, a2, a3, ak, per_neuron):  # pragma: no cover - compiled code
    """A block's sums: each param's into ``part`` [5], the width's there too or per neuron into ``k_rows``."""
    part[0], part[1], part[2], part[3] = a0.sum(), a1.sum(), a2.sum(), a3.sum()
    if per_neuron:
        k_rows[:] = ak
    else:
        part[4] = ak.sum()


def _backward_kernel(states: int, asgl: bool, per_neuron: bool, needs: tuple, c: _Consts) -> Callable:
    """The reverse pass for one configuration (constants of the closure), to compile. Per step t: the spike's
    value and derivatives (the mask, the family: the costly part) in a loop LLVM vectorises; then per neuron
    the adjoint of step t+1's charge (from the states step t leaves) and of step t's fire. Last, step 0's
    charge from the zero states."""
    two = states > 1
    (c0, c1, c2, c3), (f0, f1, f2, f3, nk) = needs  # the sums each adjoint adds to (charge; fire and width)

    def backward(saved, g_out, params, k, keys, thr, grad_in, parts, k_acc):  # pragma: no cover - compiled code
        """Reverse pass: grad_in [T, N]; parts [blocks, 5] (the padded params, one width); k_acc [N] per neuron.

        The parameter gradients are per-neuron float64 sums over T, reduced per block at the end."""
        steps, n = g_out.shape
        p0, p1, p2, p3 = params[0], params[1], params[2], params[3]
        for b in prange((n + BLOCK - 1) // BLOCK):
            lo = b * BLOCK
            m = min(BLOCK, n - lo)  # rows are sliced: an index lo + j would defeat vectorisation
            k_b = k[lo : lo + m] if per_neuron else k
            k_layer = k_b[0]
            d0, d1 = np.zeros(m, g_out.dtype), np.zeros(m if two else 1, g_out.dtype)  # step t+1's charged adjoints
            sv, sdx, sdk = np.zeros(m, g_out.dtype), np.zeros(m, g_out.dtype), np.zeros(m, g_out.dtype)
            a0, a1, a2, a3, ak = np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m), np.zeros(m)
            for t in range(steps - 1, -1, -1):
                c0_b, c1_b = saved[0, t, lo : lo + m], saved[states - 1, t, lo : lo + m]
                go_b, gi_b = g_out[t, lo : lo + m], grad_in[min(t + 1, steps - 1), lo : lo + m]
                for j in range(m):  # step t's spike: value and derivatives
                    (x,) = _spike_argument(c0_b[j], c1_b[j] if two else c.zero, p0, p1, p2, p3)  # noqa: F821
                    binary = asgl and _is_binary(lo + j, keys[t, 0], keys[t, 1], thr)
                    kk = k_b[j] if per_neuron else k_layer
                    sv[j], sdx[j], sdk[j] = _spike_value(x, kk, binary), _spike_dx(x, kk), _spike_dk(x, kk, binary)  # noqa: F821
                # step t+1's charge from the states step t leaves, then step t's fire; at t = T − 1 the charged
                # adjoints are 0, so is what the charge's adjoint stores in row T − 1, which t = T − 2 overwrites
                for j in range(m):
                    c0j, c1j = c0_b[j], c1_b[j] if two else c.zero
                    _, w0, w1 = _fire_given(c0j, c1j, p0, p1, p2, p3, sv[j], c.zero, c.zero)  # noqa: F821
                    gi, s0, s1, q0, q1, q2, q3 = _charge_adjoint(  # noqa: F821
                        w0, w1, p0, p1, p2, p3, d0[j], d1[j] if two else c.zero
                    )
                    gi_b[j] = gi
                    _add(j, a0, a1, a2, a3, q0, q1, q2, q3, c0, c1, c2, c3)
                    e0, e1, r0, r1, r2, r3, rk = _fire_adjoint_given(  # noqa: F821
                        c0j, c1j, p0, p1, p2, p3, sv[j], sdx[j], sdk[j], go_b[j], s0, s1
                    )
                    d0[j] = e0
                    if two:
                        d1[j] = e1
                    _add(j, a0, a1, a2, a3, r0, r1, r2, r3, f0, f1, f2, f3)
                    ak[j] += rk if nk else c.zero
            gi_b = grad_in[0, lo : lo + m]
            for j in range(m):  # step 0's charge, from the zero states
                gi, _, _, q0, q1, q2, q3 = _charge_adjoint(  # noqa: F821
                    c.zero, c.zero, p0, p1, p2, p3, d0[j], d1[j] if two else c.zero
                )
                gi_b[j] = gi
                _add(j, a0, a1, a2, a3, q0, q1, q2, q3, c0, c1, c2, c3)
            _store_sums(parts[b], k_acc[lo : lo + m] if per_neuron else k_acc, a0, a1, a2, a3, ak, per_neuron)

    return backward


def _mask_args(mask: MaskDraw | None, steps: int) -> tuple[np.ndarray, np.int64]:
    """Each step's 64-bit key as its (low, high) 32-bit halves [T, 2] uint32, and the threshold (int64)."""
    draw = mask or MaskDraw(0.0, 0)
    keys = np.array([(key & 0xFFFFFFFF, key >> 32) for key in draw.keys(steps)], dtype=np.uint32)
    return keys.reshape(steps, 2), np.int64(draw.threshold)


def _per_neuron_k(k: Tensor, step_shape: torch.Size) -> np.ndarray:
    """k as [1] (one width) or expanded to one value per neuron [N]."""
    flat = k.detach().reshape(1) if k.numel() == 1 else k.detach().expand(step_shape).reshape(-1)
    return flat.contiguous().numpy()


def _padded(params: tuple[Tensor, ...], dtype: type) -> np.ndarray:
    """The params' values [MAX_PARAMS] (zeros after the model's own)."""
    values = [float(p) for p in params] + [0.0] * (MAX_PARAMS - len(params))
    return np.array(values, dtype=dtype)


def _launch(kernel: Callable, *args: object) -> None:
    """Run a compiled kernel on as many threads as torch uses, one launch at a time."""
    with _LAUNCH:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        kernel(*args)


class _CpuNeuron(torch.autograd.Function):
    """Same contract as asgl.neuron_models._FusedNeuron."""

    @staticmethod
    def forward(ctx, model: NeuronDef, draw: MaskDraw | None, spec: SpikeSpec, current, k, *params):
        cur = current.detach().contiguous()
        steps, states = cur.shape[0], len(model.states)
        out, saved = torch.empty_like(cur), cur.new_empty((states, *cur.shape))
        dtype = _NUMPY[cur.dtype]
        _launch(
            forward_kernel(model, spec, k.numel() > 1, dtype), cur.view(steps, -1).numpy(), _padded(params, dtype), _per_neuron_k(k, cur.shape[1:]),
            *_mask_args(draw, steps), out.view(steps, -1).numpy(), saved.view(states, steps, -1).numpy(),
        )  # fmt: skip
        ctx.save_for_backward(k, *params, *saved)
        ctx.model, ctx.draw, ctx.spec = model, draw, spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        model, spec = ctx.model, ctx.spec
        k, *rest = ctx.saved_tensors
        params, saved = rest[: len(model.params)], torch.stack(rest[len(model.params) :])
        states, steps, n = saved.shape[0], saved.shape[1], saved[0, 0].numel()
        needs = summed_gradients(model, spec, (ctx.needs_input_grad[4], *ctx.needs_input_grad[5:]))
        dtype = _NUMPY[saved.dtype]
        grad_in = torch.empty_like(saved[0])
        parts, k_acc = np.zeros(((n + BLOCK - 1) // BLOCK, 5)), np.zeros(n if k.numel() > 1 else 0)
        _launch(
            backward_kernel(model, spec, k.numel() > 1, needs, dtype),
            saved.view(states, steps, -1).numpy(), grad_out.contiguous().view(steps, -1).numpy(),
            _padded(params, dtype), _per_neuron_k(k, saved.shape[2:]), *_mask_args(ctx.draw, steps),
            grad_in.view(steps, -1).numpy(), parts, k_acc,
        )  # fmt: skip
        sums = [torch.tensor(float(parts[:, j].sum()), dtype=saved.dtype) for j in range(5)]
        grad_k = sums[4] if k.numel() == 1 else torch.from_numpy(k_acc).view(saved.shape[2:]).sum_to_size(k.shape)
        need = ctx.needs_input_grad
        grads = [s.reshape(p.shape) if n else None for s, p, n in zip(sums, params, need[5:])]
        return None, None, None, grad_in, grad_k.to(k.dtype).reshape(k.shape) if need[4] else None, *grads


def supports(current: Tensor, spec: SpikeSpec) -> bool:
    """Whether the kernel runs this call: a CPU float32/float64 tensor (it compiles every family and model)."""
    return current.device.type == "cpu" and current.dtype in _NUMPY


def neuron_cpu_kernel(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, draw: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """CPU kernel backend, same contract as :func:`asgl.neuron_models.neuron_stepwise` (the mask as a draw)."""
    return _CpuNeuron.apply(model, draw, spec, current, k, *params)
