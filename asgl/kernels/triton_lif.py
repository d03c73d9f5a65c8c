"""Triton kernels for every neuron model with the ASGL spike: one program per block of neurons loops over T.

Same contract and maths as the fused path (:func:`asgl.neuron_models.neuron_fused`): the two kernels are
templates whose element maths is the model's generated forward and adjoint (asgl.neuron_models.step_texts,
padded to MAX_STATES states and MAX_PARAMS params), compiled by ``triton.jit`` with the spike of the call and
taken as compile-time arguments (:func:`element_functions`). Tensors are viewed as [T, N], N =
B·prod(features), and the lanes walk each step in memory order. A step stored row-major or, for
[T, B, C, H, W], NHWC (the output of channels_last convolutions, :func:`is_channels_last`) is read in place,
any other layout copied row-major; the output, the saved states and the input gradient get the input's
strides, so a channels-last layer hands the next convolution channels-last. What depends on an element's
position stays logical, as on every other backend: for NHWC steps the kernels compute the row-major index n
of each lane (a compile-time switch), which numbers the mask bits and indexes the width, expanded to the
feature shape, with n mod F (F = 1 for a per-layer width). Offsets are int64, so T·N may pass 2³¹.

- The ASGL mask never exists as a tensor: both kernels compute the bits of their lanes from the step keys
  of the :class:`asgl.spike.MaskDraw` (an int64 tensor [threshold, K_0, ..., K_{T−1}]), in registers.
- The input and the output gradient are read in their own dtype (float32, float16 or bfloat16) and the
  output and input gradient written in it; the states, the saved charged states and every sum are float32,
  so the backward recomputes exactly the spikes of the forward.
- Parameter gradients without atomics: each program writes its block sums (each param, per-layer
  width) to a [programs] buffer and a per-channel or per-neuron width gets per-neuron sums [N]; torch adds
  them up after the kernel in a fixed order, so gradients are bit-identical from run to run. A sum runs
  only for a parameter whose gradient autograd needs (compile-time switches).
- :func:`block_config` picks the block size and warps from N.

Runs on CUDA, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before importing
triton), which is how the tests check the maths without a GPU; tests/test_triton_compile.py compiles every
variant for real GPU targets. :func:`asgl.neuron.run_triton` sends what :func:`supports` refuses (float64,
a family using ``atan``, which Triton's core lacks) to the PyTorch fused path.

The surrogate family's F and f (asgl.surrogates) are compiled by ``triton.jit`` from their one text with
Triton's helpers (:func:`family_functions`) and reach the kernels inside the spike of the element functions.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from asgl.adjoint import Emitted, define
from asgl.neuron_models import MAX_PARAMS, NeuronDef, spike_texts, step_texts, summed_gradients
from asgl.scalar import helpers_of, rebind
from asgl.spike import MAX_STEP, MaskDraw, SpikeSpec, element_word, keyed_round
from asgl.surrogates import SURROGATES, Surrogate

DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # input / output dtypes the kernels read and write
# (BLOCK_N, num_warps), picked by block_config from the neurons per step: narrow, default, wide
BLOCK_CONFIGS = ((128, 1), (512, 4), (1024, 4))
NARROW_N, WIDE_N = 2**17, 2**22
HALF_DTYPES = (torch.float16, torch.bfloat16)


def block_config(n: int, dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """(BLOCK_N, num_warps) for N neurons per step of a ``dtype`` input.

    Programs run side by side over N and each loops over T serially, so only N sets how many can run at once.
    Below 2¹⁷ neurons (an audio or event layer with a small batch: 700 × 32) blocks of 128 on one warp, so
    even ~20k neurons fill the ~100+ SMs of a large GPU; from 2²² (a convolutional layer with a big batch)
    blocks of 1024 on four warps (8 lanes per thread: more loads in flight per step); 512 on four between.
    A half-precision input stays at 512 on four warps past 2²²: at 1024 on four the compiler lays the
    half-precision load and the float32 store of u out differently and moves every step's u through shared
    memory, with two barriers per step (tests/triton_aot.py checks the PTX).
    """
    if n < NARROW_N:
        return BLOCK_CONFIGS[0]
    return BLOCK_CONFIGS[1] if n < WIDE_N or dtype in HALF_DTYPES else BLOCK_CONFIGS[2]


# the scalar vocabulary of asgl.scalar in Triton (no arctangent in Triton's core: a family using atan is refused)
@triton.jit
def _sigmoid(y):
    return tl.sigmoid(y)


@triton.jit
def _exp(y):
    return tl.exp(y)


@triton.jit
def _fabs(y):
    return tl.abs(y)


@triton.jit
def _minimum(a, b):
    return tl.minimum(a, b)


@triton.jit
def _maximum(a, b):
    return tl.maximum(a, b)


@triton.jit
def _where(condition, a, b):
    return tl.where(condition, a, b)


HELPERS = {"sigmoid": _sigmoid, "exp": _exp, "fabs": _fabs, "minimum": _minimum, "maximum": _maximum, "where": _where}


def runs_family(surrogate: Surrogate) -> bool:
    """Whether the kernels can compile the family: its F and f use only helpers Triton has."""
    return helpers_of(surrogate.F) | helpers_of(surrogate.f) <= HELPERS.keys()


@functools.cache
def family_functions(surrogate: Surrogate) -> dict[str, triton.JITFunction]:
    """The family's F and f (asgl.surrogates) compiled by Triton from their one text, as ``family_step`` and
    ``family_density``."""
    helpers = HELPERS | {"tl": tl}  # the interpreter looks tl up in each function's globals
    return {
        "family_step": triton.jit(rebind(surrogate.F, helpers)),
        "family_density": triton.jit(rebind(surrogate.f, helpers)),
    }


def _emitted(model: NeuronDef, spec: SpikeSpec) -> tuple[Emitted, ...]:
    texts = step_texts(model, spec.reset, spec.amplitude, padded=True)
    return texts.charge, texts.fire, texts.charge_adjoint, texts.fire_adjoint


@functools.cache
def element_functions(model: NeuronDef, spec: SpikeSpec) -> dict[str, triton.JITFunction]:
    """CHARGE, FIRE, CHARGE_ADJOINT and FIRE_ADJOINT: the model's generated texts (asgl.neuron_models.step_texts,
    padded to MAX_STATES and MAX_PARAMS) compiled by Triton with the spike of ``spec``; the kernels take them as
    compile-time arguments (a new model, spike, reset or amplitude is a new compile)."""
    family = HELPERS | {"tl": tl} | family_functions(spec.surrogate)
    spike = {name: triton.jit(rebind(fn, family)) for name, fn in spike_texts(spec).items()}
    helpers = HELPERS | {"tl": tl} | spike
    names = ("CHARGE", "FIRE", "CHARGE_ADJOINT", "FIRE_ADJOINT")
    return {name: triton.jit(define(e, helpers)) for name, e in zip(names, _emitted(model, spec))}


_ANY_SPEC = SpikeSpec(SURROGATES["sigmoid"], "asgl")


@functools.cache
def runs_model(model: NeuronDef) -> bool:
    """Whether the kernels can compile the model's texts: they use only helpers Triton has."""
    spike = {"spike_value", "spike_dx", "spike_dk"}
    return all(helpers_of(define(e, {})) <= HELPERS.keys() | spike for e in _emitted(model, _ANY_SPEC))


# the integer vocabulary of asgl.scalar on uint32 lanes (logical shifts, products mod 2³²), for the mask hash
@triton.jit
def _xor(a, b):
    return a ^ b


@triton.jit
def _shr(a, n):
    return a >> n


@triton.jit
def _mul32(a, b):
    return a * b


_keyed_round = triton.jit(rebind(keyed_round, {"tl": tl, "xor": _xor, "shr": _shr, "mul32": _mul32}))
_element_word = triton.jit(rebind(element_word, {"tl": tl, "keyed_round": _keyed_round}))


@triton.jit
def _binary_lanes(keys_ptr, t, offs):
    """The ASGL mask of step t for element indices ``offs`` [BLOCK_N] (True = binary), from keys_ptr =
    [threshold, K_0, ..., K_{T−1}] (int64; a key's 64 bits as a signed integer): asgl.spike.element_bits."""
    key = tl.load(keys_ptr + 1 + t).to(tl.uint64, bitcast=True)
    x = _element_word(offs.to(tl.uint32), key.to(tl.uint32), (key >> 32).to(tl.uint32))
    return x.to(tl.int64) >= tl.load(keys_ptr)


@triton.jit
def _logical_index(offs, C: tl.constexpr, HW: tl.constexpr, CHANNELS_LAST: tl.constexpr):
    """Row-major element index ((b·C + c)·H + h)·W + w within a step [BLOCK_N] of the memory positions ``offs``:
    themselves, or, for steps stored NHWC (channels-last), from offs = (b·HW + hw)·C + c. C and H·W are
    compile-time constants, so the divisions become multiplications (runtime ones cost dozens of int64
    instructions per lane); a network has a handful of layer shapes, each compiled once."""
    if CHANNELS_LAST:
        p = offs // C  # b·HW + hw
        return (p // HW * C + offs % C) * HW + p % HW
    else:
        return offs


@triton.jit
def _load_slope(k_ptr, offs, valid, F: tl.constexpr):
    """Slope per lane [BLOCK_N]: k[n mod F]; F = 1 for a per-layer width (one value in every lane).

    One return of one block type: the compiler rejects a scalar return beside a block return.
    """
    return tl.load(k_ptr + offs % F, mask=valid, other=1.0)


@triton.jit
def _forward_kernel(
    cur_ptr, save0_ptr, save1_ptr, out_ptr, keys_ptr, params_ptr, k_ptr, T, N, F: tl.constexpr, C: tl.constexpr,
    HW: tl.constexpr, ASGL: tl.constexpr, STATES: tl.constexpr, CHARGE: tl.constexpr, FIRE: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, SAVE: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # int64: T·N may pass 2³¹
    valid = offs < N
    lin = _logical_index(offs, C, HW, CHANNELS_LAST)  # offs in memory order; lin for the mask and the width
    p0, p1, p2, p3 = tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2), tl.load(params_ptr + 3)
    k = _load_slope(k_ptr, lin, valid, F)
    v0 = tl.zeros([BLOCK_N], dtype=tl.float32)
    v1 = tl.zeros([BLOCK_N], dtype=tl.float32)
    for t in range(T):
        idx = tl.cast(t, tl.int64) * N + offs
        c0, c1 = CHARGE(tl.load(cur_ptr + idx, mask=valid, other=0.0).to(tl.float32), v0, v1, p0, p1, p2, p3)
        if SAVE:  # for the backward; an eval or no-grad forward saves nothing
            tl.store(save0_ptr + idx, c0, mask=valid)
            if STATES > 1:
                tl.store(save1_ptr + idx, c1, mask=valid)
        m = _binary_lanes(keys_ptr, t, lin) if ASGL else valid
        out, v0, v1 = FIRE(c0, c1, p0, p1, p2, p3, k, m)
        tl.store(out_ptr + idx, out.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _store_block_sum(ptr, acc, valid):
    """This program's sum of ``acc`` [BLOCK_N] over its valid lanes, at ptr[program id]."""
    tl.store(ptr + tl.program_id(0), tl.sum(tl.where(valid, acc, 0.0), axis=0))


@triton.jit
def _backward_kernel(
    save0_ptr, save1_ptr, gout_ptr, gu_ptr, keys_ptr, params_ptr, k_ptr, gparams_ptr, gk_ptr, T, N,
    F: tl.constexpr, C: tl.constexpr, HW: tl.constexpr, ASGL: tl.constexpr, STATES: tl.constexpr,
    FIRE: tl.constexpr, CHARGE_ADJOINT: tl.constexpr, FIRE_ADJOINT: tl.constexpr, K_SCALAR: tl.constexpr,
    G0: tl.constexpr, G1: tl.constexpr, G2: tl.constexpr, G3: tl.constexpr, GRAD_K: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # int64: T·N may pass 2³¹
    valid = offs < N
    lin = _logical_index(offs, C, HW, CHANNELS_LAST)  # offs in memory order; lin for the mask and the width
    p0, p1, p2, p3 = tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2), tl.load(params_ptr + 3)
    k = _load_slope(k_ptr, lin, valid, F)
    d0 = tl.zeros([BLOCK_N], dtype=tl.float32)  # adjoints of step t+1's charged states
    d1 = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc0 = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc1 = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc3 = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc_k = tl.zeros([BLOCK_N], dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        idx = tl.cast(t, tl.int64) * N + offs
        c0 = tl.load(save0_ptr + idx, mask=valid, other=0.0)
        c1 = tl.load(save1_ptr + idx, mask=valid, other=0.0) if STATES > 1 else d1
        m = _binary_lanes(keys_ptr, t, lin) if ASGL else valid
        _, w0, w1 = FIRE(c0, c1, p0, p1, p2, p3, k, m)  # the states step t leaves
        gi, s0, s1, q0, q1, q2, q3 = CHARGE_ADJOINT(w0, w1, p0, p1, p2, p3, d0, d1)  # step t+1's charge
        tl.store(gu_ptr + idx + N, gi.to(gu_ptr.dtype.element_ty), mask=valid & (t + 1 < T))
        g_out = tl.load(gout_ptr + idx, mask=valid, other=0.0).to(tl.float32)
        e0, e1, r0, r1, r2, r3, rk = FIRE_ADJOINT(c0, c1, p0, p1, p2, p3, k, m, g_out, s0, s1)
        d0 = e0
        if STATES > 1:
            d1 = e1
        acc0, acc1, acc2, acc3 = acc0 + q0 + r0, acc1 + q1 + r1, acc2 + q2 + r2, acc3 + q3 + r3
        if GRAD_K:
            acc_k += tl.where(valid, rk, 0.0)
    zero = tl.zeros([BLOCK_N], dtype=tl.float32)
    gi, s0, s1, q0, q1, q2, q3 = CHARGE_ADJOINT(zero, zero, p0, p1, p2, p3, d0, d1)  # step 0's charge
    tl.store(gu_ptr + offs, gi.to(gu_ptr.dtype.element_ty), mask=valid)
    programs = tl.num_programs(0)
    if G0:
        _store_block_sum(gparams_ptr, acc0 + q0, valid)
    if G1:
        _store_block_sum(gparams_ptr + programs, acc1 + q1, valid)
    if G2:
        _store_block_sum(gparams_ptr + 2 * programs, acc2 + q2, valid)
    if G3:
        _store_block_sum(gparams_ptr + 3 * programs, acc3 + q3, valid)
    if GRAD_K:
        if K_SCALAR:
            _store_block_sum(gk_ptr, acc_k, valid)
        else:
            tl.store(gk_ptr + lin, acc_k, mask=valid)  # per neuron, row-major: torch sums to the width's shape


@triton.jit
def _probe_kernel(ptr):
    tl.store(ptr, tl.load(ptr) + 1)


def probe(device: torch.device) -> None:
    """Compile and launch a one-element kernel on ``device``; raises where Triton cannot (no C compiler for its
    launcher, no Python headers, a driver it does not know). Waits for the result: run once, at first use."""
    x = torch.zeros(1, dtype=torch.int32, device=device)
    with _on_device(x):
        _probe_kernel[(1,)](x)
    if int(x.item()) != 1:
        raise RuntimeError("the probe kernel ran but did not write its result")


def _slope_per_feature(k: Tensor, feature_shape: torch.Size) -> tuple[Tensor, bool]:
    """k flattened for indexing by n mod F: a 1-element tensor (scalar k) or k expanded to the features."""
    if k.numel() == 1:
        return k.reshape(1).contiguous(), True
    return k.expand(feature_shape).contiguous().view(-1), False


def is_channels_last(x: Tensor) -> bool:
    """Whether x [T, B, C, H, W] is stored NHWC within each step, steps and batch outermost (a channels_last
    convolution's output [T·B, C, H, W] viewed as [T, B, C, H, W]); False for a row-major x (with C = 1 or
    H·W = 1 both orders are one)."""
    return x.dim() == 5 and not x.is_contiguous() and x.permute(0, 1, 3, 4, 2).is_contiguous()


def layout_args(shape: torch.Size | tuple[int, ...], channels_last: bool) -> dict[str, int | bool]:
    """The layout arguments of both kernels for an input of ``shape`` [T, B, C, H, W] stored NHWC per step, or any
    row-major input: C = H·W = 1 then (unused, and a constant to the JIT: one compile whatever the shape)."""
    if not channels_last:
        return {"C": 1, "HW": 1, "CHANNELS_LAST": False}
    return {"C": shape[2], "HW": shape[3] * shape[4], "CHANNELS_LAST": True}


def mask_keys(draw: MaskDraw | None, steps: int, device: torch.device) -> Tensor:
    """int64 [1 + T] on ``device``: the draw's threshold, then the key of each step with its 64 bits as a signed
    integer ([0] without a draw: the kernels read it in the asgl mode only). A tensor, not integer arguments:
    an argument's Triton type follows its value, and each new type would compile the kernels again.

    Built on the host and sent without waiting: a copy from pageable memory would first wait for the GPU to
    finish its queue, once per LIF call (and could not be captured in a CUDA graph)."""
    words = [0] if draw is None else [draw.threshold] + [k - 2**64 if k >= 2**63 else k for k in draw.keys(steps)]
    return to_device_async(torch.tensor(words, dtype=torch.int64), device)


def to_device_async(host: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on ``device`` without a host-device synchronisation: on CUDA through pinned (page-locked)
    memory and a non-blocking copy, which torch's caching host allocator keeps alive until the copy is done."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def forward_flags(model: NeuronDef, spec: SpikeSpec) -> dict[str, object]:
    """The compile-time switches of :func:`_forward_kernel` for this model and spike (BLOCK_N: see block_config)."""
    functions = element_functions(model, spec)
    return {
        "ASGL": spec.spike == "asgl",
        "STATES": len(model.states),
        "CHARGE": functions["CHARGE"],
        "FIRE": functions["FIRE"],
    }


def backward_flags(model: NeuronDef, spec: SpikeSpec, k_scalar: bool, needs: tuple[bool, ...]) -> dict[str, object]:
    """The compile-time switches of :func:`_backward_kernel` for this model, spike and width granularity;
    ``needs``: whether autograd needs the width's gradient, then each param's."""
    functions = element_functions(model, spec)
    from_charge, from_fire = summed_gradients(model, spec, needs)
    grads = {f"G{j}": from_charge[j] or from_fire[j] for j in range(MAX_PARAMS)}
    return grads | {
        "ASGL": spec.spike == "asgl",
        "STATES": len(model.states),
        "FIRE": functions["FIRE"],
        "CHARGE_ADJOINT": functions["CHARGE_ADJOINT"],
        "FIRE_ADJOINT": functions["FIRE_ADJOINT"],
        "K_SCALAR": k_scalar,
        "GRAD_K": from_fire[-1],
    }


def _on_device(x: Tensor) -> contextlib.AbstractContextManager:
    """Launch on x's GPU, whatever the current CUDA device (nothing to do for CPU tensors under the interpreter)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _padded(params: tuple[Tensor, ...]) -> Tensor:
    """The params as one float32 tensor [MAX_PARAMS] on their device (zeros after the model's own)."""
    values = [p.reshape(()) for p in params]
    return torch.stack(values + [values[0].new_zeros(())] * (MAX_PARAMS - len(values)))


def _forward(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, draw: MaskDraw | None,
    spec: SpikeSpec, save: bool,
) -> tuple[Tensor, list[Tensor]]:  # fmt: skip
    """One launch of the forward kernel: (output, the charged states [T, B, ...] float32, none without ``save``)."""
    channels_last = is_channels_last(current)  # read in place; any other layout is copied row-major
    current = current if channels_last else current.contiguous()
    steps, n = current.shape[0], current[0].numel()
    k_flat, _ = _slope_per_feature(k, current.shape[2:])
    out = torch.empty_like(current)  # dense: empty_like keeps the strides, so channels-last in gives channels-last
    saved = [torch.empty_like(current, dtype=torch.float32) for _ in model.states] if save else []
    pointers = saved + saved[:1] if len(saved) == 1 else saved or [out, out]
    keys = mask_keys(draw, steps, current.device)
    block, warps = block_config(n, current.dtype)
    with _on_device(current):
        _forward_kernel[(triton.cdiv(n, block),)](
            current, *pointers, out, keys, _padded(params), k_flat, steps, n, k_flat.numel(),
            **layout_args(current.shape, channels_last), **forward_flags(model, spec), SAVE=save, BLOCK_N=block,
            num_warps=warps,
        )  # fmt: skip
    return out, saved


class _TritonNeuron(torch.autograd.Function):
    """Same contract as asgl.neuron_models._FusedNeuron."""

    @staticmethod
    def forward(ctx, model: NeuronDef, draw: MaskDraw | None, spec: SpikeSpec, current, k, *params):
        out, saved = _forward(model, current, params, k, draw, spec, save=True)
        ctx.save_for_backward(k, *params, *saved)  # the states keep the layout the kernel read the input in
        ctx.model, ctx.draw, ctx.spec = model, draw, spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        model = ctx.model
        k, *rest = ctx.saved_tensors
        params, saved = rest[: len(model.params)], rest[len(model.params) :]
        like = saved[0]
        if grad_out.stride() != like.stride():  # the kernel indexes both alike: one copy into the states' layout
            grad_out = torch.empty_like(like, dtype=grad_out.dtype).copy_(grad_out)
        steps, n = like.shape[0], like[0].numel()
        k_flat, k_scalar = _slope_per_feature(k, like.shape[2:])
        flags = backward_flags(model, ctx.spec, k_scalar, (ctx.needs_input_grad[4], *ctx.needs_input_grad[5:]))
        block, warps = block_config(n, grad_out.dtype)
        programs = triton.cdiv(n, block)
        grad_in = torch.empty_like(like, dtype=grad_out.dtype)  # the input's dtype, as the output's
        sums = like.new_zeros((MAX_PARAMS, programs))  # one block sum per program and param
        sums_k = like.new_empty(n if flags["GRAD_K"] and not k_scalar else programs)  # per neuron or per program
        with _on_device(like):
            _backward_kernel[(programs,)](
                *(saved + saved[:1] if len(saved) == 1 else saved), grad_out, grad_in,
                mask_keys(ctx.draw, steps, like.device), _padded(params), k_flat, sums, sums_k, steps, n,
                k_flat.numel(), **layout_args(like.shape, is_channels_last(like)), **flags, BLOCK_N=block,
                num_warps=warps,
            )  # fmt: skip
        return (
            None,
            None,
            None,
            grad_in,
            _grad_k(flags, sums_k, k, like, ctx.needs_input_grad[4]),
            *(
                sums[j].sum().reshape(p.shape) if need else None
                for j, (p, need) in enumerate(zip(params, ctx.needs_input_grad[5:]))
            ),
        )


def _grad_k(flags: dict, sums_k: Tensor, k: Tensor, like: Tensor, needed: bool) -> Tensor | None:
    """The width's gradient from the kernel's sums (per program, or per neuron), zeros for a spike without one."""
    if not needed:
        return None
    if not flags["GRAD_K"]:
        return torch.zeros_like(k)
    return sums_k.sum().reshape(k.shape) if k.numel() == 1 else sums_k.view(like.shape[1:]).sum_to_size(k.shape)


def supports(current: Tensor, params: tuple[Tensor, ...], k: Tensor, draw: MaskDraw | None, spec: SpikeSpec) -> bool:
    """Whether the kernels take these operands: input float32, float16 or bfloat16, parameters float32 on the
    same device, a family Triton can compile (:func:`runs_family`), and for a mask draw fewer than 2³²
    elements per step."""
    params_ok = all(p.dtype == torch.float32 and p.device == current.device for p in (*params, k))
    draw_ok = draw is None or current[0].numel() < MAX_STEP
    return current.dtype in DTYPES and params_ok and draw_ok and runs_family(spec.surrogate)


def neuron_triton(
    model: NeuronDef, current: Tensor, params: tuple[Tensor, ...], k: Tensor, draw: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """The kernels as an autograd function, same contract as :func:`asgl.neuron_models.neuron_stepwise` (see
    :func:`supports`); the output and input gradient in the input's dtype."""
    if spec.spike == "asgl" and draw is None:
        raise ValueError("the asgl spike needs its mask draw; got None")
    if not supports(current, params, k, draw, spec) or not runs_model(model):
        operands = ", ".join(f"{x.dtype} on {x.device}" for x in (current, *params, k))
        raise ValueError(
            f"the Triton kernels take a float32, float16 or bfloat16 input with float32 parameters on its device, "
            f"fewer than 2³² elements per step with a mask, a family without atan and a model whose texts use "
            f"Triton's helpers; got {operands}, {current[0].numel()} elements per step, {spec.surrogate.name}"
        )
    if torch.is_grad_enabled() and any(x.requires_grad for x in (current, *params, k)):
        return _TritonNeuron.apply(model, draw, spec, current, k, *params)
    return _forward(model, current, params, k, draw, spec, save=False)[0]  # eval or no grad: nothing saved
