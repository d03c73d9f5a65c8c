"""Triton kernels for the multi-step LIF with the ASGL spike: one program per block of neurons loops over T.

Same contract and maths as :func:`asgl.neuron.lif_fused` (see :class:`asgl.neuron._FusedLIF`). Tensors are
viewed as [T, N], N = B·prod(features), and the lanes walk each step in memory order. A step stored row-major
or, for [T, B, C, H, W], NHWC (the output of channels_last convolutions, :func:`is_channels_last`) is read in
place, any other layout copied row-major; the output, the saved u and the input gradient get the input's
strides, so a channels-last layer hands the next convolution channels-last. What depends on an element's
position stays logical, as on every other backend: for NHWC steps the kernels compute the row-major index n
of each lane (a compile-time switch), which numbers the mask bits and indexes the width, expanded to the
feature shape, with n mod F (F = 1 for a per-layer width). Offsets are int64, so T·N may pass 2³¹.

- The ASGL mask never exists as a tensor: both kernels compute the bits of their lanes from the step keys
  of the :class:`asgl.spike.MaskDraw` (an int64 tensor [threshold, K_0, ..., K_{T−1}]), in registers.
- The input and the output gradient are read in their own dtype (float32, float16 or bfloat16) and the
  output and input gradient written in it; the membrane state, the saved u and every sum are float32, so
  the backward recomputes exactly the spikes of the forward.
- Parameter gradients without atomics: each program writes its block sums (decay, threshold, per-layer
  width) to a [programs] buffer and a per-channel or per-neuron width gets per-neuron sums [N]; torch adds
  them up after the kernel in a fixed order, so gradients are bit-identical from run to run. A sum runs
  only for a parameter whose gradient autograd needs (compile-time switches).
- :func:`block_config` picks the block size and warps from N.

Runs on CUDA, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1`` set before importing
triton), which is how the tests check the maths without a GPU; tests/test_triton_compile.py compiles every
variant for real GPU targets. :func:`asgl.neuron.lif_triton` sends what :func:`supports` refuses (float64,
a family using ``atan``, which Triton's core lacks) to the PyTorch fused path.

The surrogate family reaches the kernels as two compile-time arguments, STEP and DENSITY: its F and f from
asgl.surrogates, compiled by ``triton.jit`` from their one text with Triton's helpers (:func:`family_functions`).
"""

from __future__ import annotations

import contextlib
import functools

import torch
import triton
import triton.language as tl
from torch import Tensor

from asgl.scalar import helpers_of, rebind
from asgl.spike import MAX_STEP, MaskDraw, SpikeSpec, element_word, keyed_round
from asgl.surrogates import Surrogate

MODES = {"asgl": 0, "sg": 1, "heaviside": 2, "analog": 3}
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
    """STEP and DENSITY: the family's F and f (asgl.surrogates) compiled by Triton from their one text; the
    kernels take them as compile-time arguments (a new family is a new compile)."""
    helpers = HELPERS | {"tl": tl}  # the interpreter looks tl up in each function's globals
    return {"STEP": triton.jit(rebind(surrogate.F, helpers)), "DENSITY": triton.jit(rebind(surrogate.f, helpers))}


@triton.jit
def _spike(x, y, m, MODE: tl.constexpr, STEP: tl.constexpr):
    """Spike value for x = u − θ, y = k x; ``m`` = mask (True = binary), used by the asgl mode; STEP = F."""
    binary = tl.where(x >= 0, 1.0, 0.0)
    if MODE == 0:
        return tl.where(m, binary, STEP(y))
    elif MODE == 3:
        return STEP(y)
    else:
        return binary


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
def _lif_forward_kernel(
    cur_ptr, u_ptr, out_ptr, keys_ptr, gamma_ptr, theta_ptr, k_ptr, T, N, F: tl.constexpr, C: tl.constexpr,
    HW: tl.constexpr, MODE: tl.constexpr, STEP: tl.constexpr, HARD: tl.constexpr, AMP_THETA: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, SAVE_U: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # int64: T·N may pass 2³¹
    valid = offs < N
    lin = _logical_index(offs, C, HW, CHANNELS_LAST)  # offs in memory order; lin for the mask and the width
    gamma = tl.load(gamma_ptr)
    theta = tl.load(theta_ptr)
    k = _load_slope(k_ptr, lin, valid, F)
    state = tl.zeros([BLOCK_N], dtype=tl.float32)
    for t in range(T):
        idx = tl.cast(t, tl.int64) * N + offs
        u = gamma * state + tl.load(cur_ptr + idx, mask=valid, other=0.0).to(tl.float32)
        if SAVE_U:  # for the backward; an eval or no-grad forward writes no u
            tl.store(u_ptr + idx, u, mask=valid)
        x = u - theta
        m = _binary_lanes(keys_ptr, t, lin) if MODE == 0 else valid
        s = _spike(x, k * x, m, MODE, STEP)
        tl.store(out_ptr + idx, (theta * s if AMP_THETA else s).to(out_ptr.dtype.element_ty), mask=valid)
        state = u - u * s if HARD else u - theta * s


@triton.jit
def _store_block_sum(ptr, acc, valid):
    """This program's sum of ``acc`` [BLOCK_N] over its valid lanes, at ptr[program id]."""
    tl.store(ptr + tl.program_id(0), tl.sum(tl.where(valid, acc, 0.0), axis=0))


@triton.jit
def _lif_backward_kernel(
    u_ptr, gout_ptr, gu_ptr, keys_ptr, gamma_ptr, theta_ptr, k_ptr, ggamma_ptr, gtheta_ptr, gk_ptr, T, N,
    F: tl.constexpr, C: tl.constexpr, HW: tl.constexpr, MODE: tl.constexpr, STEP: tl.constexpr,
    DENSITY: tl.constexpr, HARD: tl.constexpr, AMP_THETA: tl.constexpr,
    K_SCALAR: tl.constexpr, ANALOG_K_ONLY: tl.constexpr,
    GRAD_GAMMA: tl.constexpr, GRAD_THETA: tl.constexpr, GRAD_K: tl.constexpr,
    CHANNELS_LAST: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    offs = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)  # int64: T·N may pass 2³¹
    valid = offs < N
    lin = _logical_index(offs, C, HW, CHANNELS_LAST)  # offs in memory order; lin for the mask and the width
    gamma = tl.load(gamma_ptr)
    theta = tl.load(theta_ptr)
    k = _load_slope(k_ptr, lin, valid, F)
    grad_state = tl.zeros([BLOCK_N], dtype=tl.float32)  # dL/dũ[t] from step t+1
    grad_next = tl.zeros([BLOCK_N], dtype=tl.float32)  # dL/du[t+1]
    acc_gamma = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc_theta = tl.zeros([BLOCK_N], dtype=tl.float32)
    acc_k = tl.zeros([BLOCK_N], dtype=tl.float32)
    for i in range(T):
        t = T - 1 - i
        idx = tl.cast(t, tl.int64) * N + offs
        u = tl.load(u_ptr + idx, mask=valid, other=0.0)
        g_out = tl.load(gout_ptr + idx, mask=valid, other=0.0).to(tl.float32)
        x = u - theta
        y = k * x
        m = _binary_lanes(keys_ptr, t, lin) if MODE == 0 else valid
        s = _spike(x, y, m, MODE, STEP)
        amp_g = theta * g_out if AMP_THETA else g_out
        grad_s = amp_g - grad_state * u if HARD else amp_g - grad_state * theta
        gd = grad_s * DENSITY(y) if MODE != 2 else tl.zeros([BLOCK_N], dtype=tl.float32)
        g = grad_state * (1.0 - s) + k * gd if HARD else grad_state + k * gd
        tl.store(gu_ptr + idx, g.to(gu_ptr.dtype.element_ty), mask=valid)
        if GRAD_THETA:
            acc_theta += -k * gd
            if AMP_THETA:
                acc_theta += g_out * s
            if not HARD:
                acc_theta -= grad_state * s
        if GRAD_K:
            acc_k += tl.where(m, 0.0, gd * x) if ANALOG_K_ONLY else gd * x
        if GRAD_GAMMA:
            acc_gamma += grad_next * (u - u * s if HARD else u - theta * s)
        grad_next = g
        grad_state = g * gamma
    if GRAD_GAMMA:
        _store_block_sum(ggamma_ptr, acc_gamma, valid)
    if GRAD_THETA:
        _store_block_sum(gtheta_ptr, acc_theta, valid)
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


def forward_flags(spec: SpikeSpec) -> dict[str, object]:
    """The compile-time switches of :func:`_lif_forward_kernel` for this spike (BLOCK_N: see block_config)."""
    return {
        "MODE": MODES[spec.spike],
        "STEP": family_functions(spec.surrogate)["STEP"],
        "HARD": spec.reset == "hard",
        "AMP_THETA": spec.amplitude == "threshold",
    }


def backward_flags(spec: SpikeSpec, k_scalar: bool, needs: tuple[bool, bool, bool]) -> dict[str, object]:
    """The compile-time switches of :func:`_lif_backward_kernel` for this spike, width granularity and
    ``needs`` = whether autograd needs the (decay, threshold, width) gradients."""
    width_analog = spec.width_grad == "analog"
    k_grad = spec.spike != "heaviside" and not (width_analog and spec.spike == "sg")
    return forward_flags(spec) | {
        "DENSITY": family_functions(spec.surrogate)["DENSITY"],
        "K_SCALAR": k_scalar,
        "ANALOG_K_ONLY": width_analog and spec.spike == "asgl",
        "GRAD_GAMMA": needs[0],
        "GRAD_THETA": needs[1],
        "GRAD_K": needs[2] and k_grad,
    }


def _on_device(x: Tensor) -> contextlib.AbstractContextManager:
    """Launch on x's GPU, whatever the current CUDA device (nothing to do for CPU tensors under the interpreter)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _forward(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, draw: MaskDraw | None, spec: SpikeSpec, save_u: bool
) -> tuple[Tensor, Tensor | None]:
    """One launch of the forward kernel: (output, u [T, B, ...] float32 or None without ``save_u``)."""
    channels_last = is_channels_last(current)  # read in place; any other layout is copied row-major
    current = current if channels_last else current.contiguous()
    steps, n = current.shape[0], current[0].numel()
    k_flat, _ = _slope_per_feature(k, current.shape[2:])
    out = torch.empty_like(current)  # dense: empty_like keeps the strides, so channels-last in gives channels-last
    u_all = torch.empty_like(current, dtype=torch.float32) if save_u else None
    keys = mask_keys(draw, steps, current.device)
    layout = layout_args(current.shape, channels_last)
    block, warps = block_config(n, current.dtype)
    with _on_device(current):
        _lif_forward_kernel[(triton.cdiv(n, block),)](
            current, out if u_all is None else u_all, out, keys, gamma.reshape(1), theta.reshape(1), k_flat,
            steps, n, k_flat.numel(), **layout, **forward_flags(spec), SAVE_U=save_u, BLOCK_N=block,
            num_warps=warps,
        )  # fmt: skip
    return out, u_all


class _TritonLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, gamma, theta, k, draw: MaskDraw | None, spec: SpikeSpec):
        out, u_all = _forward(current, gamma, theta, k, draw, spec, save_u=True)
        ctx.save_for_backward(u_all, gamma, theta, k)  # u keeps the layout the kernel read the input in
        ctx.draw, ctx.spec = draw, spec
        return out

    @staticmethod
    def backward(ctx, grad_out):
        u_all, gamma, theta, k = ctx.saved_tensors
        if grad_out.stride() != u_all.stride():  # the kernel indexes both alike: one copy into u's layout
            grad_out = torch.empty_like(u_all, dtype=grad_out.dtype).copy_(grad_out)
        steps, n = u_all.shape[0], u_all[0].numel()
        keys = mask_keys(ctx.draw, steps, u_all.device)  # again (a few words, sent without waiting)
        layout = layout_args(u_all.shape, is_channels_last(u_all))
        k_flat, k_scalar = _slope_per_feature(k, u_all.shape[2:])
        flags = backward_flags(ctx.spec, k_scalar, ctx.needs_input_grad[1:4])
        block, warps = block_config(n, grad_out.dtype)
        programs = triton.cdiv(n, block)
        grad_u = torch.empty_like(u_all, dtype=grad_out.dtype)  # the input's dtype, as the output's
        sums_gamma, sums_theta = u_all.new_empty(programs), u_all.new_empty(programs)  # one block sum per program
        sums_k = u_all.new_empty(n if flags["GRAD_K"] and not k_scalar else programs)  # per neuron or per program
        with _on_device(u_all):
            _lif_backward_kernel[(programs,)](
                u_all, grad_out, grad_u, keys, gamma.reshape(1), theta.reshape(1), k_flat,
                sums_gamma, sums_theta, sums_k, steps, n, k_flat.numel(), **layout, **flags,
                BLOCK_N=block, num_warps=warps,
            )  # fmt: skip
        grad_k = None
        if flags["GRAD_K"]:
            grad_k = sums_k.sum().reshape(k.shape) if k_scalar else sums_k.view(u_all.shape[1:]).sum_to_size(k.shape)
        elif ctx.needs_input_grad[3]:
            grad_k = torch.zeros_like(k)  # a spike without a width gradient
        return (
            grad_u,
            sums_gamma.sum().reshape(gamma.shape) if flags["GRAD_GAMMA"] else None,
            sums_theta.sum().reshape(theta.shape) if flags["GRAD_THETA"] else None,
            grad_k,
            None, None,
        )  # fmt: skip


def supports(current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, draw: MaskDraw | None, spec: SpikeSpec) -> bool:
    """Whether the kernels take these operands: input float32, float16 or bfloat16, parameters float32 on the
    same device, a family Triton can compile (:func:`runs_family`), and for a mask draw fewer than 2³²
    elements per step."""
    params_ok = all(p.dtype == torch.float32 and p.device == current.device for p in (gamma, theta, k))
    draw_ok = draw is None or current[0].numel() < MAX_STEP
    return current.dtype in DTYPES and params_ok and draw_ok and runs_family(spec.surrogate)


def lif_triton(
    current: Tensor, gamma: Tensor, theta: Tensor, k: Tensor, draw: MaskDraw | None, spec: SpikeSpec
) -> Tensor:
    """The kernels as an autograd function, same contract as :func:`asgl.neuron.lif_stepwise` (see :func:`supports`);
    the output and input gradient in the input's dtype."""
    if spec.spike == "asgl" and draw is None:
        raise ValueError("the asgl spike needs its mask draw; got None")
    if not supports(current, gamma, theta, k, draw, spec):
        operands = ", ".join(f"{x.dtype} on {x.device}" for x in (current, gamma, theta, k))
        raise ValueError(
            f"the Triton LIF takes a float32, float16 or bfloat16 input with float32 parameters on its device, "
            f"fewer than 2³² elements per step with a mask and a family without atan; "
            f"got {operands}, {current[0].numel()} elements per step, {spec.surrogate.name}"
        )
    if torch.is_grad_enabled() and any(x.requires_grad for x in (current, gamma, theta, k)):
        return _TritonLIF.apply(current, gamma, theta, k, draw, spec)
    return _forward(current, gamma, theta, k, draw, spec, save_u=False)[0]  # eval or no grad: no u written
