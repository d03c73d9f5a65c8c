"""benchmarks/gpu_check.py: the parts that run without a GPU (its refusal, its report, the CPU side of each
part). Loading the script imports everything its parts use, so a renamed function fails here."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asgl.bench import BenchResult, VariantTiming

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


def test_the_script_checks_this_checkouts_asgl(tmp_path):
    """Run from anywhere with no PYTHONPATH (sys.path[0] is then benchmarks/), the asgl it imports is this
    checkout's, not another installed copy."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = f"import runpy; runpy.run_path({str(SCRIPT)!r}); import asgl; print(asgl.__file__)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()).resolve() == SCRIPT.parents[1] / "asgl" / "__init__.py"


def fake_bench(skipped):
    """A stand-in for asgl.bench.run_bench: a result with two timed variants and ``skipped``."""

    def run(recipe, batch, repeats, warmup, variants, device):
        assert recipe.run.device == "cuda" and device == "cuda" and "triton" in variants
        timings = [VariantTiming(v, 10.0, 9.0, 11.0, 8.0, 10.0, 2**20, [10.0]) for v in ("fused", "relu")]
        return BenchResult(recipe.run.name, recipe.model.name, "cuda", batch, 2, [batch, 3, 32, 32], repeats, warmup,
                           recipe.train.amp, "cuda_peak_allocated", torch.__version__, timings, {}, skipped)  # fmt: skip

    return run


def test_bench_grid_fails_where_triton_was_skipped(monkeypatch):
    """The grid's recipes load with its overrides (real keys); a row whose triton variant was skipped fails the
    part with the reason, and rows where every variant ran pass it."""
    monkeypatch.setattr(gpu_check, "run_bench", fake_bench({"triton": "needs CUDA and triton"}))
    result = gpu_check.bench_grid(batch=8, repeats=1)
    assert result["ok"] is False and len(result["rows"]) == 6 == len(result["failures"])
    assert result["failures"][0] == "amp=off,channels_last=False: triton skipped (needs CUDA and triton)"
    monkeypatch.setattr(gpu_check, "run_bench", fake_bench({}))
    result = gpu_check.bench_grid(batch=8, repeats=1)
    assert result["ok"] is True and result["failures"] == []
    assert result["rows"]["amp=fp16,channels_last=True"]["ms"] == {"fused": 10.0, "relu": 10.0}


def test_synthetic_epoch_runs_the_training_loop_on_cpu():
    """The epoch part on the small digits network: the real trainer, random samples in the data's shape."""
    result = gpu_check.synthetic_epoch(64, 16, "digits_quick", ("run.device=cpu", "neuron.backend=fused"))
    assert result["ok"] and result["images"] == 64 and result["images_per_s"] > 0
    assert result["epoch_s_50k"] == pytest.approx(50_000 / result["images_per_s"])


def test_parity_case_runs_on_cpu_with_the_interpreted_kernel():
    """One case of the parity part, with the Triton kernel in the interpreter (tests/conftest.py)."""
    pytest.importorskip("triton")
    from asgl.neuron import lif_triton

    assert gpu_check.parity_case(lif_triton, "asgl", "sigmoid", True, (4, 1, 1), "float32", "cpu") < 1e-4


def test_verdict_names_each_failed_part_and_its_first_reason():
    results = {
        "cuda tests": {"ok": False, "summary": "1 failed", "failures": ["FAILED tests/test_triton.py::test_x"]},
        "parity": {"ok": True},
        "bench cifar100_resnet18": {"ok": False, "failures": ["amp=off,channels_last=False: triton skipped (x)"]},
        "epoch": {"ok": False, "error": "RuntimeError: boom"},
    }
    line = gpu_check.verdict(results)
    assert line == (
        "gpu_check: 3 of 4 parts FAILED: cuda tests (FAILED tests/test_triton.py::test_x); "
        "bench cifar100_resnet18 (amp=off,channels_last=False: triton skipped (x)); epoch (RuntimeError: boom)"
    )
    assert gpu_check.verdict({"parity": {"ok": True}}) == "gpu_check: all 1 parts passed"
