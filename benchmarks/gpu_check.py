"""One command on one GPU (a few minutes): is asgl right and fast there? Prints a table, then one JSON line.

    python benchmarks/gpu_check.py [--quick]

1. the CUDA tests (tests/test_triton.py on the real device, not the interpreter);
2. Triton vs stepwise parity on CUDA for every mode, family, reset and width granularity (spikes identical,
   gradients within 1e-4 at float32), and for every mode with float16 and bfloat16 input against stepwise on
   the float32-cast input (gradients within one rounding of the dtype);
3. ``asgl bench cifar100_resnet18`` at batch 128 with fused, triton and relu, AMP off / bf16 / fp16,
   channels-last off / on: step times, ratios and peak training-step memory;
4. images per second of a synthetic CIFAR-100 epoch slice through the real training loop (``asgl.engine.
   trainer.train`` with random images in place of the dataset), and the seconds per 50,000-image epoch;
5. ``train.compile = true`` steps on the Triton kernel.

Each part records its failure and the others still run; the last lines are a verdict (which parts failed,
and why) and the JSON. Exit 0 when every part passed, 1 otherwise; without CUDA it says so in one line and
exits 2. The asgl it checks is this checkout's, whatever else is installed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script, sys.path[0] is benchmarks/: import this checkout's asgl

import torch  # noqa: E402

import asgl.engine.trainer as trainer  # noqa: E402
from asgl.bench import BenchResult, run_bench  # noqa: E402
from asgl.builders import describe_data  # noqa: E402
from asgl.config import load_recipe  # noqa: E402
from asgl.data import DataBundle  # noqa: E402
from asgl.neuron import BACKENDS, in_float32, lif_triton  # noqa: E402
from asgl.neuron_models import NEURONS, neuron_stepwise  # noqa: E402
from asgl.spike import MaskDraw, SpikeSpec  # noqa: E402
from asgl.surrogates import SURROGATES  # noqa: E402

# The CUDA tests compile about a hundred Triton variants (one to a few seconds each) and the numba CPU kernel
# from cold (a minute or more): far more than the run of a warm cache.
CUDA_TESTS_TIMEOUT_S = 1200
MODES = ("asgl", "sg", "heaviside", "analog")
FAMILIES = tuple(SURROGATES)  # every registered family
GRANULARITY_SHAPES = {"layer": (), "channel": (4, 1, 1), "neuron": (4, 3, 3)}
HALF_TOLERANCE = {"float16": 2**-10, "bfloat16": 2**-7}  # one rounding of the dtype


def cuda_tests() -> dict[str, Any]:
    """The kernel tests on the GPU (TRITON_INTERPRET unset, so the kernels are compiled for real)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])  # the subprocess: this asgl too
    tests = ["tests/test_triton.py", "tests/test_cpu_lif.py", "tests/test_neuron_models.py"]  # IF, ALIF, a toy model
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", *tests]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CUDA_TESTS_TIMEOUT_S)
    lines = proc.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    summary = lines[-1] if lines else proc.stderr.strip()[-200:]
    return {"ok": proc.returncode == 0, "summary": summary, "failures": failed}


def parity_case(
    backend: Callable, mode: str, family: str, hard: bool, k_shape: tuple[int, ...], dtype: str, device: str = "cuda"
) -> float:
    """Largest gradient difference |a − b| / (1 + |b|), triton vs stepwise (on the input cast to float32, in
    ``dtype`` out), for one case; raises if spikes differ."""
    g = torch.Generator().manual_seed(0)
    current = (torch.randn(6, 3, 4, 3, 3, generator=g) * 1.5).to(device, getattr(torch, dtype))
    params = [torch.tensor(0.6), torch.tensor(0.8), torch.linspace(0.5, 1.5, max(1, torch.Size(k_shape).numel()))]
    params[2] = params[2].reshape(k_shape)
    width_grad = "analog" if mode == "asgl" and not hard else "all"
    spec = SpikeSpec(SURROGATES[family], mode, "hard" if hard else "soft", "threshold", width_grad)
    draw = MaskDraw(0.3, seed=7) if mode == "asgl" else None
    results = []

    def reference(current, gamma, theta, k, draw, spec):  # the LIF reference on the input cast to float32
        return in_float32(neuron_stepwise, NEURONS["lif"], current, (gamma, theta), k, draw, spec)

    for fn in (reference, backend):
        args = [current.clone().requires_grad_()] + [p.to(device).requires_grad_() for p in params]
        out = fn(*args, draw, spec)
        loss = (out * torch.linspace(-1, 1, out.numel(), device=device).view_as(out)).sum()
        grads = torch.autograd.grad(loss, args, allow_unused=True)  # heaviside: no gradient for the input
        results.append((out.detach(), [torch.zeros_like(a) if g is None else g for a, g in zip(args, grads)]))
    (ref, ref_grads), (out, grads) = results
    binary = (ref == 0) | (ref == torch.tensor(0.8).to(ref.dtype))
    if not torch.equal(out[binary], ref[binary]):
        raise AssertionError("spikes differ")
    return max(float(((a - b).abs() / (1 + b.abs())).max()) for a, b in zip(grads, ref_grads))


def parity_cases() -> list[tuple[str, tuple, float]]:
    """(name, parity_case arguments after the backend, gradient tolerance): every mode, family, reset and width
    granularity at float32, then every mode with float16 and bfloat16 input (sigmoid, hard reset, one width)."""
    cases = []
    for mode, family, hard, (granularity, k_shape) in itertools.product(
        MODES, FAMILIES, (True, False), GRANULARITY_SHAPES.items()
    ):
        name = f"{mode}/{family}/{'hard' if hard else 'soft'}/{granularity}"
        cases.append((name, (mode, family, hard, k_shape, "float32"), 1e-4))
    for dtype, tolerance in HALF_TOLERANCE.items():
        cases += [
            (f"{mode}/sigmoid/hard/layer/{dtype}", (mode, "sigmoid", True, (), dtype), tolerance) for mode in MODES
        ]
    return cases


def triton_parity() -> dict[str, Any]:
    if "triton" not in BACKENDS:
        return {"ok": False, "error": "the triton backend is not registered (is triton installed?)"}
    failures, worst, cases = [], 0.0, parity_cases()
    for name, args, tolerance in cases:
        try:
            diff = parity_case(lif_triton, *args)
            worst = max(worst, diff)
            if diff > tolerance:
                failures.append(f"{name}: gradient diff {diff:.2e}")
        except Exception as err:  # recorded, the other cases still run
            failures.append(f"{name}: {type(err).__name__}: {err}")
    return {"ok": not failures, "cases": len(cases), "worst_grad_diff": worst, "failures": failures}


BENCH_VARIANTS = ("fused", "triton", "relu")


def bench_row(r: BenchResult) -> dict[str, Any]:
    """One grid row of a bench result; a variant that was skipped (triton, where it cannot run) fails the row."""
    return {
        "ms": {v.variant: v.median_ms for v in r.variants},
        "peak_MiB": {v.variant: v.memory_bytes / 2**20 for v in r.variants},
        "ratios": r.ratios,
        "skipped": r.skipped,
    }


def bench_grid(batch: int, repeats: int) -> dict[str, Any]:
    """asgl bench cifar100_resnet18 for AMP off/bf16/fp16 x channels-last off/on; fails where a variant was
    skipped (the grid exists to time triton against fused and relu)."""
    rows, failures = {}, []
    for amp in ("off", "bf16", "fp16"):
        for channels_last in (False, True):
            recipe = load_recipe(
                "cifar100_resnet18",
                ["run.device=cuda", f"train.amp={amp}", f"model.channels_last={str(channels_last).lower()}"],
            )
            name = f"amp={amp},channels_last={channels_last}"
            rows[name] = bench_row(run_bench(recipe, batch, repeats, 2, BENCH_VARIANTS, "cuda"))
            failures += [f"{name}: {variant} skipped ({why})" for variant, why in rows[name]["skipped"].items()]
    return {"ok": not failures, "batch": batch, "rows": rows, "failures": failures}


def synthetic_epoch(
    images: int, batch: int, recipe_name: str = "cifar100_resnet18", overrides: tuple[str, ...] = ("run.device=cuda",)
) -> dict[str, Any]:
    """The real training loop on ``images`` random samples shaped as ``recipe_name``'s data (one epoch, the
    evaluation on one batch), with ``overrides``."""
    epoch = ["train.epochs=1", f"train.batch_size={batch}", "data.num_workers=0", "data.persistent_workers=false"]
    recipe = load_recipe(recipe_name, [*epoch, *overrides])
    info = describe_data(recipe)
    x = torch.rand(images, info.in_channels, *info.input_size)
    y = torch.randint(0, info.num_classes, (images,))
    data = torch.utils.data.TensorDataset(x, y)
    small = torch.utils.data.TensorDataset(x[:batch], y[:batch])
    build = trainer.build_data
    trainer.build_data = lambda _recipe: DataBundle(data, small, small, info)
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            trainer.train(recipe, out_dir=out)
            seconds = time.perf_counter() - start
    finally:
        trainer.build_data = build
    return {"ok": True, "images": images, "seconds": seconds, "images_per_s": images / seconds,
            "epoch_s_50k": 50_000 * seconds / images}  # fmt: skip


def compile_step(batch: int) -> dict[str, Any]:
    """``train.compile = true`` steps with the Triton kernel behind its opaque operator (fails where skipped)."""
    recipe = load_recipe("cifar100_resnet18", ["run.device=cuda", "train.compile=true"])
    r = run_bench(recipe, batch, 3, 2, ("triton",), "cuda")
    failures = [f"{variant} skipped ({why})" for variant, why in r.skipped.items()]
    return {"ok": not failures, "ms": r.variants[0].median_ms if r.variants else float("nan"), "failures": failures}


def run_part(part: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        result = part()
    except Exception as err:  # one part failing must not hide the others
        result = {"ok": False, "error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err) else ''}"}
    return result | {"seconds": round(time.perf_counter() - start, 1)}


def table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one line per part and one per bench row; failures listed under their part."""
    lines = [f"{'part':<44}{'ok':>4}{'seconds':>9}  detail"]
    for name, r in results.items():
        detail = r.get("error") or r.get("summary") or ""
        if name == "parity" and "cases" in r:
            detail = f"{r['cases']} cases, worst gradient diff {r['worst_grad_diff']:.1e}"
        if name == "epoch" and "images_per_s" in r:
            detail = f"{r['images_per_s']:.0f} images/s, {r['epoch_s_50k']:.1f} s per 50k-image epoch"
        if name == "compile" and "ms" in r:
            detail = f"{r['ms']:.1f} ms per step"
        lines.append(f"{name:<44}{'yes' if r.get('ok') else 'NO':>4}{r.get('seconds', 0):>9.1f}  {detail}")
        lines += [f"    {failure}" for failure in r.get("failures", [])]
        for row, b in r.get("rows", {}).items():
            ms = ", ".join(f"{k} {v:.1f} ms" for k, v in b["ms"].items())
            mem = ", ".join(f"{k} {v:.0f} MiB" for k, v in b["peak_MiB"].items())
            lines.append(f"    {row:<40}{ms}; peak {mem}")
    return "\n".join(lines)


def verdict(results: dict[str, dict[str, Any]]) -> str:
    """One line: every part passed, or which failed and the first reason of each."""
    failed = {name: r for name, r in results.items() if not r.get("ok")}
    if not failed:
        return f"gpu_check: all {len(results)} parts passed"
    reasons = [
        f"{name} ({(r.get('failures') or [r.get('error') or r.get('summary') or '?'])[0]})"
        for name, r in failed.items()
    ]
    return f"gpu_check: {len(failed)} of {len(results)} parts FAILED: {'; '.join(reasons)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller bench and epoch slice (a smoke run)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with a GPU", file=sys.stderr)
        return 2
    batch, images = (32, 2048) if args.quick else (128, 10_240)
    parts: dict[str, Callable[[], dict[str, Any]]] = {
        "cuda tests": cuda_tests,
        "parity": triton_parity,
        "bench cifar100_resnet18": lambda: bench_grid(batch, 3 if args.quick else 10),
        "epoch": lambda: synthetic_epoch(images, batch),
        "compile": lambda: compile_step(batch),
    }
    results = {name: run_part(part) for name, part in parts.items()}
    device = torch.cuda.get_device_name()
    print(f"gpu_check on {device}, torch {torch.__version__}")
    print(table(results))
    print(verdict(results))
    print(json.dumps({"device": device, "torch": torch.__version__, "results": results}))
    return 0 if all(r.get("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
