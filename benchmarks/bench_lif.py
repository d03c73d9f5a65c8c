"""Fused vs step-by-step LIF: forward+backward time and memory saved for backward, as ratios.

    python benchmarks/bench_lif.py [--steps 8] [--shape 32,64,16,16] [--repeats 20]

Time is the median of ``repeats`` fwd+bwd passes after warm-up; memory is the bytes autograd keeps for the
backward pass (counted with saved-tensor hooks), which is what bounds the batch size in training.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from asgl.config import NeuronConfig, SurrogateConfig
from asgl.neuron import LIF


def saved_bytes(layer: LIF, x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return total


def time_fwd_bwd(layer: LIF, x: torch.Tensor, repeats: int, warmup: int = 3) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        layer(x).sum().backward()
        if x.is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
        x.grad = None
    return times


def bench(steps: int, shape: tuple[int, ...], repeats: int, mode: str, device: str) -> dict[str, float]:
    layer = LIF(NeuronConfig(spike=mode), SurrogateConfig(family="sigmoid", width=2.0), shape[1:], 0.2).to(device)
    x = torch.randn(steps, *shape, device=device, requires_grad=True)
    out: dict[str, float] = {}
    for backend in ("stepwise", "fused"):
        layer.backend = backend
        ts = time_fwd_bwd(layer, x, repeats)
        out[f"{backend}_ms"] = statistics.median(ts) * 1e3
        out[f"{backend}_spread_ms"] = (max(ts) - min(ts)) * 1e3
        out[f"{backend}_saved_MiB"] = saved_bytes(layer, x) / 2**20
    out["speedup"] = out["stepwise_ms"] / out["fused_ms"]
    out["memory_ratio"] = out["stepwise_saved_MiB"] / out["fused_saved_MiB"]
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
            f"{mode:5s} stepwise {r['stepwise_ms']:8.2f} ms (±{r['stepwise_spread_ms']:.2f}) "
            f"saved {r['stepwise_saved_MiB']:7.1f} MiB | fused {r['fused_ms']:8.2f} ms (±{r['fused_spread_ms']:.2f}) "
            f"saved {r['fused_saved_MiB']:7.1f} MiB | speed-up {r['speedup']:.2f}x, memory {r['memory_ratio']:.2f}x less"
        )


if __name__ == "__main__":
    main()
