"""The multi-step LIF as a CPU kernel (numba): one pass over [T, N] forward, one reverse pass backward.

Same contract and maths as :func:`asgl.neuron.lif_fused` (see :class:`asgl.neuron._FusedLIF`), with the
sequence viewed as [T, N] (N = every element of one step). Threads take blocks of ``BLOCK`` neurons; a block
walks T with its state in small rows that stay in L1, so each value of [T, N] is read or written once: the
forward reads the current and writes the output and u; the backward reads u and the output gradient and
writes the input gradient. The ASGL mask is regenerated from its :class:`asgl.spike.MaskDraw` in both passes
(the same 32-bit element words as :func:`asgl.spike.element_bits`), so no mask tensor exists.

Everything runs in the input's precision (float32 in training: 8 lanes of a 256-bit vector), with the
exponential written in plain arithmetic (a 2ⁿ range reduction and a short polynomial) and the mask words
made with 32-bit integer operations, because a libm call or a 64-bit multiply stops LLVM from vectorising
the loop around it.

The decay, threshold and (layer) width gradients are summed per neuron in float64 and per block, and the
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

from asgl.scalar import fingerprint, rebind, with_literals
from asgl.spike import MaskDraw, SpikeSpec, element_word, keyed_round
from asgl.surrogates import Surrogate

BLOCK = 1024
MODES = {"asgl": 0, "sg": 1, "heaviside": 2, "analog": 3}
WIDTH_ALL, WIDTH_ANALOG, WIDTH_NONE = 0, 1, 2
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


def _terms(u_b, lo, theta, k_b, k0, k1, thr, spk, dens, analog, mode, per_neuron, c):  # pragma: no cover
    """spk[j] = s, dens[j] = f(k x) and analog[j] = 1 − mask for the neurons j of one step's block (u_b
    [m]; neuron lo + j). Θ(x) for binary elements (sg, heaviside, asgl where the mask is True), else
    F(k x); both are computed and one is selected, so that the asgl loop has no data-dependent branch.
    ``family_step`` and ``family_density`` are bound per family (:func:`kernels`); where only one of the two
    is used, LLVM drops the other's arithmetic."""
    k_layer = k_b[0]
    for j in range(u_b.size):
        x = u_b[j] - theta
        theta_x = c.one if x >= c.zero else c.zero
        y = (k_b[j] if per_neuron else k_layer) * x
        smooth, slope = family_step(y), family_density(y)  # noqa: F821 - bound per family
        binary = mode == 1 or mode == 2 or (mode == 0 and _is_binary(lo + j, k0, k1, thr))
        spk[j] = theta_x if binary else smooth
        dens[j] = slope
        analog[j] = c.zero if binary else c.one


@functools.cache
def kernels(
    mode: int, surrogate: Surrogate, hard: bool, amp: bool, width_rule: int, per_neuron: bool, dtype: type
) -> tuple[Callable, Callable]:
    """(forward, backward) compiled for one configuration. ``k`` is [1] (one width) or [N] (``per_neuron``);
    ``dtype`` is the array type.

    The kernels are closures over the configuration's flags and float constants, which numba compiles as
    constants, so every branch on them folds away; the helpers above are inlined into them. numba keys a
    closure's disk cache on its pickled values, so these must stay plain numbers: a compiled function in
    the closure pickles with an id new in every process, and each process would compile again. The family's
    compiled F and f are bound as globals instead (:func:`_specialise`), which that key does not see, so the
    kernels' names carry the digest of the family's code.

    Each step of a block runs in short loops over the block's neurons, each touching few arrays so that
    LLVM vectorises it. The block's [BLOCK] rows stay in L1, so [T, N] is still read once."""
    c = _consts(dtype)
    terms = njit(**_INLINE)(_specialise(_terms, "_terms", **family_functions(surrogate, dtype)))
    digest = fingerprint(surrogate.F, surrogate.f, keyed_round, element_word)
    forward = _specialise(_forward_kernel(mode, hard, amp, per_neuron, c), f"lif_forward_{digest}", _terms=terms)
    backward = _backward_kernel(mode, hard, amp, width_rule, per_neuron, c)
    return njit(**_KERNEL)(forward), njit(**_KERNEL)(_specialise(backward, f"lif_backward_{digest}", _terms=terms))


def _specialise(fn: Callable, qualname: str, **names: object) -> Callable:
    """``fn`` (same code and closure) with ``names`` added to its globals, under ``qualname``: numba names
    the cache files of a kernel after its qualified name."""
    special = FunctionType(fn.__code__, fn.__globals__ | names, fn.__name__, fn.__defaults__, fn.__closure__)
    special.__qualname__ = qualname
    return special


def _forward_kernel(mode: int, hard: bool, amp: bool, per_neuron: bool, c: _Consts) -> Callable:
    """The forward pass for one configuration (the arguments are constants of the closure), to compile."""

    def forward(cur, gamma, theta, k, keys, thr, out, u_all):  # pragma: no cover - compiled code
        """cur [T, N] -> out (a·s) and u_all (u) [T, N]; keys [T, 2] uint32 (each step's key halves)."""
        steps, n = cur.shape
        for b in prange((n + BLOCK - 1) // BLOCK):
            lo = b * BLOCK
            m = min(BLOCK, n - lo)  # rows are sliced: an index lo + j would defeat vectorisation
            k_b = k[lo : lo + m] if per_neuron else k
            state, spk, scratch = np.zeros(m, cur.dtype), np.empty(m, cur.dtype), np.empty(m, cur.dtype)
            for t in range(steps):
                cur_b, u_b, out_b = cur[t, lo : lo + m], u_all[t, lo : lo + m], out[t, lo : lo + m]
                for j in range(m):
                    u_b[j] = cur_b[j] + state[j] * gamma
                # densities and mask both go to scratch, unused: LLVM drops their arithmetic
                _terms(u_b, lo, theta, k_b, keys[t, 0], keys[t, 1], thr, spk, scratch, scratch, mode, per_neuron, c)
                for j in range(m):
                    u, s = u_b[j], spk[j]
                    out_b[j] = s * theta if amp else s
                    state[j] = u - u * s if hard else u - theta * s

    return forward


def _backward_kernel(mode: int, hard: bool, amp: bool, width_rule: int, per_neuron: bool, c: _Consts) -> Callable:
    """The reverse pass for one configuration (the arguments are constants of the closure), to compile."""

    def backward(u_all, g_out, gamma, theta, k, keys, thr, grad_in, parts, k_acc):  # pragma: no cover
        """Reverse pass: grad_in [T, N]; parts [blocks, 3] (decay, threshold, one width); k_acc [N] per neuron.

        The parameter gradients are per-neuron float64 sums over T, reduced per block at the end."""
        steps, n = u_all.shape
        for b in prange((n + BLOCK - 1) // BLOCK):
            lo = b * BLOCK
            m = min(BLOCK, n - lo)  # rows are sliced: an index lo + j would defeat vectorisation
            k_b = k[lo : lo + m] if per_neuron else k
            k_layer = k_b[0]
            g_next = np.zeros(m, u_all.dtype)  # dL/du[t+1]; dL/dũ[t] = γ·dL/du[t+1]
            sum_gamma, sum_theta, sum_k = np.zeros(m), np.zeros(m), np.zeros(m)
            spk, dens, analog = np.zeros(m, u_all.dtype), np.zeros(m, u_all.dtype), np.zeros(m, u_all.dtype)
            for t in range(steps - 1, -1, -1):
                u_b, go_b, gi_b = u_all[t, lo : lo + m], g_out[t, lo : lo + m], grad_in[t, lo : lo + m]
                _terms(u_b, lo, theta, k_b, keys[t, 0], keys[t, 1], thr, spk, dens, analog, mode, per_neuron, c)
                for j in range(m):
                    u, s, go, after = u_b[j], spk[j], go_b[j], g_next[j]
                    kk = k_b[j] if per_neuron else k_layer
                    big_g = after * gamma
                    g = big_g - big_g * s if hard else big_g
                    d_theta = go * s if amp else c.zero
                    if not hard:
                        d_theta -= big_g * s
                    if mode != 2:
                        gd = ((go * theta if amp else go) - big_g * (u if hard else theta)) * dens[j]
                        g += gd * kk
                        d_theta -= kk * gd
                        if width_rule == WIDTH_ALL:
                            sum_k[j] += gd * (u - theta)
                        elif width_rule == WIDTH_ANALOG:
                            sum_k[j] += gd * (u - theta) * analog[j]
                    sum_theta[j] += d_theta
                    sum_gamma[j] += after * (u - u * s if hard else u - theta * s)
                    gi_b[j] = g
                    g_next[j] = g
            parts[b, 0] = sum_gamma.sum()
            parts[b, 1] = sum_theta.sum()
            if per_neuron:
                k_acc[lo : lo + m] = sum_k
            else:
                parts[b, 2] = sum_k.sum()

    return backward


def _kernels(spec: SpikeSpec, per_neuron: bool, dtype: torch.dtype) -> tuple[Callable, Callable]:
    flags = (spec.reset == "hard", spec.amplitude == "threshold", _width_rule(spec), per_neuron)
    return kernels(MODES[spec.spike], spec.surrogate, *flags, _NUMPY[dtype])


def _width_rule(spec: SpikeSpec) -> int:
    if spec.width_grad == "all" or spec.spike in ("analog", "heaviside"):
        return WIDTH_ALL
    return WIDTH_ANALOG if spec.spike == "asgl" else WIDTH_NONE


def _mask_args(mask: MaskDraw | None, steps: int) -> tuple[np.ndarray, np.int64]:
    """Each step's 64-bit key as its (low, high) 32-bit halves [T, 2] uint32, and the threshold (int64)."""
    draw = mask or MaskDraw(0.0, 0)
    keys = np.array([(key & 0xFFFFFFFF, key >> 32) for key in draw.keys(steps)], dtype=np.uint32)
    return keys.reshape(steps, 2), np.int64(draw.threshold)


def _per_neuron_k(k: Tensor, step_shape: torch.Size) -> np.ndarray:
    """k as [1] (one width) or expanded to one value per neuron [N]."""
    flat = k.detach().reshape(1) if k.numel() == 1 else k.detach().expand(step_shape).reshape(-1)
    return flat.contiguous().numpy()


def _launch(kernel: Callable, *args: object) -> None:
    """Run a compiled kernel on as many threads as torch uses, one launch at a time."""
    with _LAUNCH:
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        kernel(*args)


class _CpuLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, gamma, theta, k, mask: MaskDraw | None, spec: SpikeSpec):
        cur = current.detach().contiguous()
        out, u_all = torch.empty_like(cur), torch.empty_like(cur)
        steps = cur.shape[0]
        dtype = _NUMPY[cur.dtype]
        _launch(
            _kernels(spec, k.numel() > 1, cur.dtype)[0],
            cur.view(steps, -1).numpy(), dtype(gamma.item()), dtype(theta.item()), _per_neuron_k(k, cur.shape[1:]),
            *_mask_args(mask, steps), out.view(steps, -1).numpy(), u_all.view(steps, -1).numpy(),
        )  # fmt: skip
        ctx.save_for_backward(u_all, gamma, theta, k)
        ctx.mask, ctx.spec = mask, spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u_all, gamma, theta, k = ctx.saved_tensors
        spec: SpikeSpec = ctx.spec
        steps, n = u_all.shape[0], u_all[0].numel()
        grad_in = torch.empty_like(u_all)
        parts = np.zeros(((n + BLOCK - 1) // BLOCK, 3))
        k_acc = np.zeros(n if k.numel() > 1 else 0)
        dtype = _NUMPY[u_all.dtype]
        _launch(
            _kernels(spec, k.numel() > 1, u_all.dtype)[1],
            u_all.view(steps, -1).numpy(), grad_out.contiguous().view(steps, -1).numpy(), dtype(gamma.item()),
            dtype(theta.item()), _per_neuron_k(k, u_all.shape[1:]), *_mask_args(ctx.mask, steps),
            grad_in.view(steps, -1).numpy(), parts, k_acc,
        )  # fmt: skip
        sums = [torch.tensor(float(parts[:, c].sum()), dtype=u_all.dtype) for c in range(3)]
        grad_k = sums[2] if k.numel() == 1 else torch.from_numpy(k_acc).view(u_all.shape[1:]).sum_to_size(k.shape)
        need = ctx.needs_input_grad
        return (
            grad_in if need[0] else None,
            sums[0].reshape(gamma.shape) if need[1] else None,
            sums[1].reshape(theta.shape) if need[2] else None,
            grad_k.to(k.dtype).reshape(k.shape) if need[3] else None,
            None,
            None,
        )


def supports(current: Tensor, spec: SpikeSpec) -> bool:
    """Whether the kernel runs this call: a CPU float32/float64 tensor (it compiles every family)."""
    return current.device.type == "cpu" and current.dtype in _NUMPY


def lif_cpu_kernel(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, mask: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """CPU kernel backend, same contract as :func:`asgl.neuron.lif_stepwise`."""
    return _CpuLIF.apply(current, gamma, theta, k, mask, spec)
