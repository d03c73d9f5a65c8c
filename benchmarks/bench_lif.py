"""Fused and compiled vs step-by-step LIF: forward+backward time and memory saved for backward, as ratios.

    python benchmarks/bench_lif.py [--steps 8] [--shape 32,64,16,16] [--repeats 20]

Time is the median (wall and process CPU time) of ``repeats`` fwd+bwd passes after warm-up, backends interleaved; memory
is the bytes autograd keeps for the backward pass (counted with saved-tensor hooks), which is what bounds
the batch size in training. The compiled backend's first pass (its compile time) is reported on its own.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from asgl.neuron import BACKENDS, LIF
from asgl.surrogates import SurrogateWidth


def saved_bytes(layer: LIF, x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return total


def fwd_bwd_ms(layer: LIF, x: torch.Tensor) -> tuple[float, float]:
    """(wall, process CPU) milliseconds of one forward + backward pass."""
    if x.is_cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    layer(x).sum().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    x.grad = None
    return (time.perf_counter() - wall) * 1e3, (time.process_time() - cpu) * 1e3


def bench(
    steps: int, shape: tuple[int, ...], repeats: int, mode: str, device: str, warmup: int = 3
) -> dict[str, float]:
    """Backends timed round-robin (one pass of each per repeat), so machine load hits them alike.

    Process CPU time is reported beside wall time: on a shared machine it is the steadier measure of work.
    """
    layer = LIF(SurrogateWidth(shape[1:], "sigmoid", width=2.0), spike=mode, noise_prob=0.2).to(device)
    x = torch.randn(steps, *shape, device=device, requires_grad=True)
    backends = ["stepwise", "fused", "compiled"]
    backends += ["triton"] if device.startswith("cuda") and "triton" in BACKENDS else []
    times: dict[str, list[tuple[float, float]]] = {b: [] for b in backends}
    layer.backend = "compiled"
    compile_ms = fwd_bwd_ms(layer, x)[0]  # first pass: compiles the forward and the backward
    for i in range(warmup + repeats):
        for backend in backends:
            layer.backend = backend
            ms = fwd_bwd_ms(layer, x)
            if i >= warmup:
                times[backend].append(ms)
    out: dict[str, float] = {}
    for backend, ts in times.items():
        layer.backend = backend
        out[f"{backend}_ms"] = statistics.median(t[0] for t in ts)
        out[f"{backend}_cpu_ms"] = statistics.median(t[1] for t in ts)
        out[f"{backend}_saved_MiB"] = saved_bytes(layer, x) / 2**20
    out["speedup"] = out["stepwise_ms"] / out["fused_ms"]
    out["speedup_cpu"] = out["stepwise_cpu_ms"] / out["fused_cpu_ms"]
    out["memory_ratio"] = out["stepwise_saved_MiB"] / out["fused_saved_MiB"]
    out["compile_s"] = compile_ms / 1e3
    out["compiled_speedup"] = out["stepwise_ms"] / out["compiled_ms"]
    out["compiled_speedup_cpu"] = out["stepwise_cpu_ms"] / out["compiled_cpu_ms"]
    if "triton" in times:
        out["triton_speedup_over_fused"] = out["fused_ms"] / out["triton_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--shape", default="32,64,16,16", help="B,C,H,W (or B,F) of one time step")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    print(f"LIF fwd+bwd, T={args.steps}, step shape {shape}, device {args.device}, torch {torch.__version__}")
    for mode in ("asgl", "sg"):
        r = bench(args.steps, shape, args.repeats, mode, args.device)
        print(
            f"{mode:5s} stepwise {r['stepwise_ms']:8.2f} ms (CPU {r['stepwise_cpu_ms']:.2f}) "
            f"saved {r['stepwise_saved_MiB']:6.1f} MiB | fused {r['fused_ms']:8.2f} ms (CPU {r['fused_cpu_ms']:.2f}) "
            f"saved {r['fused_saved_MiB']:6.1f} MiB | speed-up {r['speedup']:.2f}x (CPU time {r['speedup_cpu']:.2f}x), "
            f"memory {r['memory_ratio']:.2f}x less | compiled {r['compiled_ms']:8.2f} ms (CPU {r['compiled_cpu_ms']:.2f}) "
            f"saved {r['compiled_saved_MiB']:6.1f} MiB, speed-up {r['compiled_speedup']:.2f}x "
            f"(CPU time {r['compiled_speedup_cpu']:.2f}x), compile {r['compile_s']:.1f} s"
            + (
                f" | triton {r['triton_ms']:.2f} ms, {r['triton_speedup_over_fused']:.2f}x fused"
                if "triton_ms" in r
                else ""
            )
        )


if __name__ == "__main__":
    main()
