"""Every Triton neuron kernel variant compiles for real GPUs (sm_80, sm_90), ahead of time on this CPU, and its PTX
keeps the rules of tests/triton_aot.py (no atomics; no barrier in the half-precision forward at its block
configuration; no 64-bit division in the channels-last forward)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


# The spike product at the default dtype, gating and block, per reset (2) x amplitude (2) x width granularity
# (2: per layer, per channel), with F families (those registered that Triton compiles: sigmoid, rectangle,
# tanh, triangle, and any family added since). A variant is distinct when its code is: sg and heaviside fire
# alike (Θ, no family), so the forward has asgl F + analog F + one binary variant; the backward has the
# width-gradient switches of each mode, asgl 2F (all / analog elements only), sg 2F (with / without width
# gradient), analog F, and heaviside 1 (no surrogate: no family). Then, with the default spike, both kernels
# for float16 and bfloat16 (2 x 2), the two other block configurations (2 x 2), N as i64, T = N = 1, T and N
# multiples of 16 and an unaligned input (4 x 2), channels-last with a per-layer and with a per-channel width
# (2 x 2), and the backward for the 7 other gradient gatings; the forward at 1024 lanes on 4 warps in float16
# (the control of the barrier check) and the forward that stores no state. The ALIF kernels: the spike
# product with the sigmoid family only (the family's code is LIF's), so 3 forward and 6 backward variants.
def expected(families: int) -> int:
    spikes = 2 * 2 * 2
    lif = spikes * (2 * families + 1) + spikes * (5 * families + 1)
    return lif + spikes * (3 + 6) + 2 * 2 + 2 * 2 + 4 * 2 + 2 * 2 + 7 + 1 + 1


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.parametrize("arch", ["80", "90"])  # one test per target: the test runners share them out
@pytest.mark.slow
def test_every_kernel_variant_compiles_for_sm80_and_sm90(tmp_path, arch):
    """The real compiler (not the interpreter, which runs plain Python) down to cubin with the bundled ptxas."""
    from asgl.kernels.triton_lif import runs_family
    from asgl.surrogates import SURROGATES

    families = sum(runs_family(surrogate) for surrogate in SURROGATES.values())
    assert families >= 4  # sigmoid, rectangle, tanh, triangle
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["TRITON_CACHE_DIR"] = str(tmp_path / arch)  # a fresh cache: every variant really compiles
    command = [sys.executable, str(ROOT / "tests" / "triton_aot.py"), arch]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    print(run.stdout.strip())
    assert re.match(rf"sm_{arch}: (\d+) variants", run.stdout).group(1) == str(expected(families))
