"""Compile every variant of the Triton LIF kernels ahead of time for real GPU targets, without a GPU.

Run by tests/test_triton_compile.py in a subprocess without ``TRITON_INTERPRET`` (the interpreter runs plain
Python and accepts code the compiler rejects). Prints one line per target, ``sm_<arch>: <count> variants
...``, and exits non-zero on the first kernel that does not compile or whose PTX has an atomic instruction
(the parameter gradients must be summed in a fixed order, so that they are bit-identical from run to run).

Which variants. The launch code's switches multiply: spike (family, mode, reset, amplitude, width rule),
width granularity (a per-layer width is F = 1, which the JIT turns into a constant, as it does for any
integer argument equal to 1), input dtype (float32, float16, bfloat16), gradient gating (which of decay,
threshold, width need a gradient), block configuration (three), and the sizes the JIT specialises on
(N past 2³¹ as i64, multiples of 16, T = N = 1). The full product would be thousands of compiles; the test
has about a minute of CPU per target. The spike switches change the code of every step, so their full
product is compiled, at the default dtype (float32), gating (every gradient) and block configuration
(512 lanes, 4 warps). The other switches touch only loads and stores (dtype), which sums exist (gating),
the lanes per program (block) or the integer types of the sizes, independently of the spike: each of their
values is compiled at least once, with the default spike (sigmoid, asgl, hard reset, amplitude θ).
Usage: python tests/triton_aot.py ARCH ...   (e.g. 80 90)
"""

from __future__ import annotations

import itertools
import re
import sys
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from asgl.kernels.triton_lif import (
    BLOCK_CONFIGS,
    FAMILIES,
    MODES,
    _lif_backward_kernel,
    _lif_forward_kernel,
    backward_flags,
    forward_flags,
)
from asgl.spike import SpikeSpec
from asgl.surrogates import SURROGATES

ALL_GRADS = (True, True, True)
DEFAULT_BLOCK = BLOCK_CONFIGS[1]
ATOMICS = re.compile(r"\b(atom|red)\.")  # PTX atomic read-modify-write and reduction instructions
IO_POINTERS = {"cur_ptr", "out_ptr", "gout_ptr", "gu_ptr"}  # in the input's dtype; the others float32 or int64


def spike_specs() -> list[SpikeSpec]:
    """Every spike the LIF layer can hand to the kernels."""
    grid = itertools.product(FAMILIES, MODES, ("hard", "soft"), ("threshold", "unit"), ("all", "analog"))
    return [SpikeSpec(SURROGATES[f], spike, reset, amp, width_grad) for f, spike, reset, amp, width_grad in grid]


# kernel, constexprs, (BLOCK_N, num_warps), input dtype, argument types (default i32), integer args divisible by 16
Variant = tuple[triton.JITFunction, dict, tuple[int, int], str, dict, tuple[str, ...]]


def kernels(spec: SpikeSpec, k_scalar: bool, needs: tuple[bool, bool, bool]) -> list[tuple[triton.JITFunction, dict]]:
    """The two kernels with their switches for one spike, width granularity and gating."""
    width = {"F": 1} if k_scalar else {}
    return [
        (_lif_forward_kernel, forward_flags(spec) | width),
        (_lif_backward_kernel, backward_flags(spec, k_scalar, needs) | width),
    ]


def variants() -> list[Variant]:
    """Each distinct (kernel, constexprs) of the spike product once, then every other switch's values."""
    found = {}
    for spec, k_scalar in itertools.product(spike_specs(), (True, False)):
        for fn, consts in kernels(spec, k_scalar, ALL_GRADS):
            found[(fn.__name__, tuple(sorted(consts.items())))] = (fn, consts, DEFAULT_BLOCK, "fp32", {}, ())
    default = kernels(SpikeSpec(SURROGATES["sigmoid"], "asgl"), True, ALL_GRADS)
    backward = _lif_backward_kernel
    extra = [(fn, c, DEFAULT_BLOCK, dtype, {}, ()) for fn, c in default for dtype in ("fp16", "bf16")]
    extra += [(fn, c, block, "fp32", {}, ()) for fn, c in default for block in BLOCK_CONFIGS if block != DEFAULT_BLOCK]
    extra += [(fn, c | {"F": 1}, DEFAULT_BLOCK, "fp32", {"N": "i64"}, ()) for fn, c in default]
    extra += [(fn, c | {"F": 1, "T": 1, "N": 1}, DEFAULT_BLOCK, "fp32", {}, ()) for fn, c in default]
    spec = SpikeSpec(SURROGATES["sigmoid"], "asgl")
    extra += [(fn, c, DEFAULT_BLOCK, "fp32", {}, ("T", "N", "F")) for fn, c in kernels(spec, False, ALL_GRADS)]
    for needs in itertools.product((True, False), repeat=3):
        if needs != ALL_GRADS:
            extra.append((backward, backward_flags(spec, False, needs), DEFAULT_BLOCK, "fp32", {}, ()))
    return list(found.values()) + extra


def source(fn: triton.JITFunction, consts: dict, dtype: str, types: dict, divisible: tuple[str, ...]) -> ASTSource:
    """What the JIT builds for a launch: 16-byte aligned pointers, i32 sizes (or ``types``), those in
    ``divisible`` multiples of 16."""
    signature = {}
    for name in fn.arg_names:
        if name in consts:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*i64" if name == "keys_ptr" else f"*{dtype}" if name in IO_POINTERS else "*fp32"
        else:
            signature[name] = types.get(name, "i32")
    aligned = [i for i, name in enumerate(fn.arg_names) if name.endswith("_ptr") or name in divisible]
    return ASTSource(fn, signature, constexprs=consts, attrs={(i,): [["tt.divisibility", 16]] for i in aligned})


def main(targets: list[str]) -> None:
    todo = variants()
    for target in targets:
        arch = int(target.split(":")[0])
        start = time.perf_counter()
        for fn, consts, (block, warps), dtype, types, divisible in todo:
            try:
                src = source(fn, consts | {"BLOCK_N": block}, dtype, types, divisible)
                kernel = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
            except Exception as error:
                sys.exit(f"sm_{arch}: {fn.__name__} {consts} {dtype} block {block} does not compile:\n{error}")
            if ATOMICS.search(kernel.asm["ptx"]):  # sums in no fixed order: gradients would vary from run to run
                sys.exit(f"sm_{arch}: {fn.__name__} {consts} uses atomic instructions")
        print(f"sm_{arch}: {len(todo)} variants compiled in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
