"""Compile every variant of the Triton neuron kernels ahead of time for real GPU targets, without a GPU.

Run by tests/test_triton_compile.py in a subprocess without ``TRITON_INTERPRET`` (the interpreter runs plain
Python and accepts code the compiler rejects). Prints one line per target, ``sm_<arch>: <count> variants
...``, and exits non-zero on the first kernel that does not compile or whose PTX breaks a rule: no atomic
instruction anywhere (the parameter gradients must be summed in a fixed order, so that they are bit-identical
from run to run); no barrier in the half-precision forward at the block configuration ``block_config`` picks
for it (a barrier there means the state store and the input load were laid out apart and relayed through shared
memory every step; at 1024 lanes on 4 warps they are, which is compiled too, as the check's own control);
no 64-bit division in the channels-last forward (its C and H·W are compile-time constants).

Which variants. The launch code's switches multiply: spike (family, mode, reset, amplitude, width rule),
width granularity (a per-layer width is F = 1, which the JIT turns into a constant, as it does for any
integer argument equal to 1), input dtype (float32, float16, bfloat16), gradient gating (which of decay,
threshold, width need a gradient), block configuration (three), memory layout (row-major, or channels-last
with C and H·W compile-time constants; row-major passes C = H·W = 1), whether the forward stores its states (not in
eval or without gradients), and what the JIT specialises on: N past 2³¹ (i64), T and N multiples of 16,
T = N = 1, an input that is a view at an unaligned offset. The width's size F is a compile-time constant: 1
for a per-layer width, here 4 (the channels of the test shape) for a per-channel one. The full product would be thousands of compiles; the test has about a minute of CPU per target.
The spike switches change the code of every step, so their full product is compiled, at the default dtype
(float32), gating (every gradient), block configuration (512 lanes, 4 warps) and layout (row-major). The
other switches touch only loads and stores (dtype, alignment), which sums exist (gating), the lanes per
program (block), the integer types of the sizes or how a lane's element index is computed (layout),
independently of the spike: each of their values is compiled at least once, with the default spike
(sigmoid, asgl, hard reset, amplitude θ); channels-last with a per-layer width at C = 7, H·W = 25 (no power
of two), and with a per-channel width at C = 64, H·W = 1024, T and N multiples of 16 (a typical convolution).
Usage: python tests/triton_aot.py ARCH ...   (e.g. 80 90)
"""

from __future__ import annotations

import itertools
import re
import sys
import time
from typing import NamedTuple

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from asgl.kernels.triton_lif import (
    BLOCK_CONFIGS,
    WIDE_N,
    _backward_kernel,
    _forward_kernel,
    backward_flags,
    block_config,
    forward_flags,
    layout_args,
    runs_family,
)
from asgl.neuron_models import NEURONS, NeuronDef
from asgl.spike import SpikeSpec
from asgl.surrogates import SURROGATES

FAMILIES = [name for name, surrogate in SURROGATES.items() if runs_family(surrogate)]  # the others fall back
MODES = ("asgl", "sg", "heaviside", "analog")
LIF, ALIF = NEURONS["lif"], NEURONS["alif"]  # IF runs the LIF texts: the same compiles
ALL_GRADS = (True, True, True)  # LIF: width, decay, threshold
ROW_MAJOR = layout_args((), channels_last=False)  # C = HW = 1
PER_CHANNEL_F = 4  # the width's size F for a per-channel (or per-neuron) width, row-major
SMALL_NHWC = {"C": 7, "HW": 25, "CHANNELS_LAST": True}  # channels-last at sizes that are no powers of two
CONV_NHWC = {"C": 64, "HW": 1024, "CHANNELS_LAST": True}  # a typical convolution's output
DEFAULT_BLOCK = BLOCK_CONFIGS[1]
HALF_BLOCK = block_config(WIDE_N, torch.float16)  # what a wide layer under AMP gets
# PTX patterns -> what they mean: atomics must never appear; the others where a Variant forbids them
ATOMICS = re.compile(r"\b(atom|red)\.")  # atomic read-modify-write and reduction instructions
BARRIER = re.compile(r"\bbar\.sync\b")
DIVISION64 = re.compile(r"\b(div|rem)\.[su]64\b")
IO_POINTERS = {"cur_ptr", "out_ptr", "gout_ptr", "gu_ptr"}  # in the input's dtype; the others float32 or int64
INPUT_POINTERS = {"cur_ptr", "gout_ptr"}  # the caller's tensors; the kernels' other tensors are fresh allocations


def spike_specs(families: list[str] = FAMILIES) -> list[SpikeSpec]:
    """Every spike the layer can hand to the kernels."""
    grid = itertools.product(families, MODES, ("hard", "soft"), ("threshold", "unit"), ("all", "analog"))
    return [SpikeSpec(SURROGATES[f], spike, reset, amp, width_grad) for f, spike, reset, amp, width_grad in grid]


class Variant(NamedTuple):
    """One compile: a kernel, its constexprs, and what else the launch decides."""

    fn: triton.JITFunction
    consts: dict
    block: tuple[int, int] = DEFAULT_BLOCK  # (BLOCK_N, num_warps)
    dtype: str = "fp32"  # of the input-dtype pointers
    wide: tuple[str, ...] = ()  # integer arguments past 2³¹ (i64; the others i32)
    divisible: tuple[str, ...] = ()  # integer arguments that are multiples of 16
    aligned_inputs: bool = True  # input and output gradient 16-byte aligned (a view at an offset may not be)
    forbidden: tuple[re.Pattern, ...] = ()  # PTX patterns this variant must not contain (atomics: none may)
    required: tuple[re.Pattern, ...] = ()  # PTX patterns it must contain (the control of a forbidden pattern)


def kernels(
    spec: SpikeSpec, k_scalar: bool, needs: tuple[bool, ...] = ALL_GRADS, layout: dict = ROW_MAJOR,
    model: NeuronDef = LIF,
) -> list[Variant]:  # fmt: skip
    """The two kernels with their switches for one model, spike, width granularity (a per-channel width: F = C,
    or 4 for a row-major layout), gating (width, then each param) and memory layout."""
    consts = {"F": 1 if k_scalar else max(layout["C"], PER_CHANNEL_F)} | layout
    return [
        Variant(_forward_kernel, forward_flags(model, spec) | consts | {"SAVE": True}),
        Variant(_backward_kernel, backward_flags(model, spec, k_scalar, needs) | consts),
    ]


def key(v: Variant) -> tuple:
    """What the JIT compiles a variant by: a compile-time function by its source (with its callees')."""
    consts = ((name, getattr(value, "cache_key", value)) for name, value in v.consts.items())
    return v.fn.__name__, tuple(sorted(consts))


def variants() -> list[Variant]:
    """Each distinct (kernel, constexprs) of the spike product once (LIF: every family; ALIF: sigmoid, as the
    family's code is shared), then every other switch's values with LIF."""
    found = {}
    products = [(LIF, spike_specs(), ALL_GRADS), (ALIF, spike_specs(["sigmoid"]), (True,) * 5)]
    for model, specs, needs in products:
        for spec, k_scalar in itertools.product(specs, (True, False)):
            for v in kernels(spec, k_scalar, needs, model=model):
                found[key(v)] = v
    spec = SpikeSpec(SURROGATES["sigmoid"], "asgl")
    per_layer, per_channel = kernels(spec, True), kernels(spec, False)
    # half precision with T and N multiples of 16 (vector loads and stores: where the layouts can differ)
    half = [v._replace(dtype=d, block=HALF_BLOCK, divisible=("T", "N")) for v in per_layer for d in ("fp16", "bf16")]
    extra = [v._replace(forbidden=(BARRIER,)) if v.fn is _forward_kernel else v for v in half]
    extra += [half[0]._replace(block=(1024, 4), forbidden=(), required=(BARRIER,))]  # the relayout, as control
    extra += [v._replace(block=block) for v in per_layer for block in BLOCK_CONFIGS if block != DEFAULT_BLOCK]
    extra += [v._replace(wide=("N",)) for v in per_layer]
    extra += [v._replace(consts=v.consts | {"T": 1, "N": 1}) for v in per_layer]
    extra += [v._replace(divisible=("T", "N")) for v in per_channel]
    extra += [v._replace(aligned_inputs=False) for v in per_layer]
    extra += [per_layer[0]._replace(consts=per_layer[0].consts | {"SAVE": False})]  # eval / no-grad forward
    conv = [v._replace(divisible=("T", "N")) for v in kernels(spec, False, layout=CONV_NHWC)]
    extra += [v._replace(forbidden=(DIVISION64,)) for v in kernels(spec, True, layout=SMALL_NHWC) + conv]
    gatings = [needs for needs in itertools.product((True, False), repeat=3) if needs != ALL_GRADS]
    extra += [kernels(spec, False, needs)[1] for needs in gatings]
    return list(found.values()) + extra


def source(v: Variant) -> ASTSource:
    """What the JIT builds for this launch: the signature and the 16-divisibility of pointers and integers."""
    consts = v.consts | {"BLOCK_N": v.block[0]}
    signature = {}
    for name in v.fn.arg_names:
        if name in consts:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*i64" if name == "keys_ptr" else f"*{v.dtype}" if name in IO_POINTERS else "*fp32"
        else:
            signature[name] = "i64" if name in v.wide else "i32"
    divisible = [
        i
        for i, name in enumerate(v.fn.arg_names)
        if name in v.divisible or (name.endswith("_ptr") and (v.aligned_inputs or name not in INPUT_POINTERS))
    ]
    return ASTSource(v.fn, signature, constexprs=consts, attrs={(i,): [["tt.divisibility", 16]] for i in divisible})


def main(targets: list[str]) -> None:
    todo = variants()
    for target in targets:
        arch = int(target.split(":")[0])
        start = time.perf_counter()
        for v in todo:
            try:
                options = {"num_warps": v.block[1]}
                kernel = triton.compile(source(v), target=GPUTarget("cuda", arch, 32), options=options)
            except Exception as error:
                sys.exit(f"sm_{arch}: {v.fn.__name__} {v.consts} {v[2:]} does not compile:\n{error}")
            ptx = kernel.asm["ptx"]
            for pattern in (ATOMICS, *v.forbidden):  # atomics: sums in no fixed order, gradients varying by run
                if pattern.search(ptx):
                    sys.exit(f"sm_{arch}: {v.fn.__name__} {v.consts} {v[2:6]} has {pattern.pattern} in its PTX")
            for pattern in v.required:
                if not pattern.search(ptx):
                    sys.exit(f"sm_{arch}: {v.fn.__name__} {v.consts} {v[2:6]} lacks {pattern.pattern} in its PTX")
        print(f"sm_{arch}: {len(todo)} variants compiled in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
