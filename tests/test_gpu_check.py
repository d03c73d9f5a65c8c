"""benchmarks/gpu_check.py: the parts that run without a GPU (its refusal, its report)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == "" and proc.stderr.strip().count("\n") == 0 and "no CUDA device" in proc.stderr


def test_a_failing_part_is_recorded_and_the_table_shows_every_part():
    def broken():
        raise RuntimeError("triton: out of resources\nmore detail")

    results = {
        "cuda tests": gpu_check.run_part(lambda: {"ok": True, "summary": "12 passed in 30.0s"}),
        "parity": gpu_check.run_part(broken),
        "bench cifar100_resnet18": {
            "ok": True,
            "seconds": 40.0,
            "rows": {
                "amp=bf16,channels_last=True": {"ms": {"fused": 52.5, "relu": 40.0}, "peak_MiB": {"fused": 900.0}}
            },
        },
        "epoch": {"ok": True, "seconds": 20.0, "images_per_s": 2500.0, "epoch_s_50k": 20.0},
    }
    assert results["parity"]["ok"] is False and results["parity"]["error"] == "RuntimeError: triton: out of resources"
    lines = gpu_check.table(results).splitlines()
    assert len(lines) == 1 + 4 + 1  # header, one per part, one bench row
    assert "12 passed" in lines[1] and " NO " in lines[2] and "out of resources" in lines[2]
    assert "fused 52.5 ms" in lines[4] and "fused 900 MiB" in lines[4]
    assert "2500 images/s, 20.0 s per 50k-image epoch" in lines[5]


def test_parity_cases_cover_every_spike_at_float32_and_every_mode_in_half_precision():
    cases = gpu_check.parity_cases()
    assert len({name for name, _, _ in cases}) == len(cases) == 4 * 5 * 2 * 3 + 2 * 4
    half = [(args[0], args[4], tolerance) for _, args, tolerance in cases if args[4] != "float32"]
    modes = {"asgl", "sg", "heaviside", "analog"}
    assert {(m, d) for m, d, _ in half} == {(m, d) for m in modes for d in ("float16", "bfloat16")}
    assert all(tolerance == {"float16": 2**-10, "bfloat16": 2**-7}[d] for _, d, tolerance in half)
