"""Compile every variant of the Triton LIF kernels ahead of time for real GPU targets, without a GPU.

Run by tests/test_triton_compile.py in a subprocess without ``TRITON_INTERPRET`` (the interpreter runs plain
Python and accepts code the compiler rejects). The variants are those the launch code can ask for: the
switches of every spike (family, mode, reset, amplitude, width gradient) from ``forward_flags`` and
``backward_flags``, each with a per-layer width (F = 1, which the JIT turns into a constant, as it does for
any integer argument equal to 1) and a per-channel or per-neuron width. Prints one line per target:
``sm_<arch>: <count> variants ...``; exits non-zero on the first kernel that does not compile.
Besides, the default spike is compiled with large sizes (N as i64, past 2³¹) and with T = N = 1 (constants).
Usage: python tests/triton_aot.py ARCH ...   (e.g. 80 90)
"""

from __future__ import annotations

import itertools
import sys
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from asgl.kernels.triton_lif import (
    FAMILIES,
    MODES,
    _lif_backward_kernel,
    _lif_forward_kernel,
    backward_flags,
    forward_flags,
)
from asgl.spike import SpikeSpec
from asgl.surrogates import SURROGATES


def spike_specs() -> list[SpikeSpec]:
    """Every spike the LIF layer can hand to the kernels."""
    grid = itertools.product(FAMILIES, MODES, (False, True), (False, True), (False, True))
    return [SpikeSpec(SURROGATES[f], mode, hard, amp, analog) for f, mode, hard, amp, analog in grid]


Variant = tuple[triton.JITFunction, dict, dict]  # kernel, constexprs, argument types other than the default


def variants() -> list[Variant]:
    """Every (kernel, constexprs) pair once, F the constant 1 for a per-layer width; then the size variants."""
    found = {}
    for spec, k_scalar in itertools.product(spike_specs(), (True, False)):
        width = {"F": 1} if k_scalar else {}
        for fn, flags in (
            (_lif_forward_kernel, forward_flags(spec)),
            (_lif_backward_kernel, backward_flags(spec, k_scalar)),
        ):
            consts = flags | width
            found[(fn.__name__, tuple(sorted(consts.items())))] = (fn, consts, {})
    spec = SpikeSpec(SURROGATES["sigmoid"], "asgl", True, True)
    kernels = ((_lif_forward_kernel, forward_flags(spec)), (_lif_backward_kernel, backward_flags(spec, True)))
    sizes = [({"F": 1}, {"N": "i64"}), ({"F": 1, "T": 1, "N": 1}, {})]
    return list(found.values()) + [(fn, flags | consts, types) for fn, flags in kernels for consts, types in sizes]


def source(fn: triton.JITFunction, consts: dict, types: dict) -> ASTSource:
    """What the JIT builds for a launch on float32 tensors: 16-byte aligned pointers, i32 sizes (or ``types``)."""
    signature = {}
    for name in fn.arg_names:
        if name in consts:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = "*u8" if name == "mask_ptr" else "*fp32"
        else:
            signature[name] = types.get(name, "i32")
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names) if name.endswith("_ptr")}
    return ASTSource(fn, signature, constexprs=consts, attrs=attrs)


def main(targets: list[str]) -> None:
    todo = variants()
    for target in targets:
        arch = int(target.split(":")[0])
        start = time.perf_counter()
        for fn, consts, types in todo:
            try:
                triton.compile(source(fn, consts, types), target=GPUTarget("cuda", arch, 32))
            except Exception as error:
                sys.exit(f"sm_{arch}: {fn.__name__} {consts} does not compile:\n{error}")
        print(f"sm_{arch}: {len(todo)} variants compiled in {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
