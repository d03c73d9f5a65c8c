"""One LIF layer, forward + backward, against an element-wise ReLU of the same size and (if installed) SpikingJelly.

    python benchmarks/bench_lif.py [--steps 8] [--shape 32,8192] [--repeats 11] [--backends fused,cpu_kernel]
                                   [--family sigmoid] [--json]

Every variant runs once per repeat in turn (round-robin), so load on a shared machine hits them alike; the
figures are medians after warm-up, wall (whole and forward alone) and process CPU time, and the ratios are
of medians of the same run: ASGL-mode over SG-mode LIF per backend, and each over ``torch.relu`` fwd+bwd on the same [T, ...] tensor
(the memory-traffic floor of an element-wise op). Memory is the bytes autograd keeps for the backward pass
(saved-tensor hooks), which bounds the batch size in training. SpikingJelly's multi-step ``LIFNode``
(sigmoid surrogate, SG) is a column of its own when the package imports; it is never a dependency.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from asgl.neuron import BACKENDS, LIF
from asgl.surrogates import SurrogateWidth


def saved_bytes(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size() if t.data_ptr() != x.data_ptr() else 0
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return total


def fwd_bwd_ms(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> tuple[float, float, float]:
    """(wall, process CPU, forward wall) milliseconds of one forward + backward pass."""
    if x.is_cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = module(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    forward = time.perf_counter()
    out.backward(torch.ones_like(out))
    if x.is_cuda:
        torch.cuda.synchronize()
    x.grad = None
    end = time.perf_counter()
    return (end - wall) * 1e3, (time.process_time() - cpu) * 1e3, (forward - wall) * 1e3


def spikingjelly_lif() -> nn.Module | None:
    """SpikingJelly's multi-step LIF (torch, sigmoid surrogate), or None where it is not installed."""
    if importlib.util.find_spec("spikingjelly") is None:
        return None
    from spikingjelly.activation_based import neuron, surrogate

    return neuron.LIFNode(step_mode="m", surrogate_function=surrogate.Sigmoid())


def variants(shape: tuple[int, ...], backends: list[str], device: str, family: str) -> dict[str, Callable]:
    """name -> module: relu, every backend in asgl and sg mode, spikingjelly when installed."""
    out: dict[str, Callable] = {"relu": torch.relu}
    for mode in ("asgl", "sg"):
        for backend in backends:
            width = SurrogateWidth(shape, family, width=2.0)
            out[f"{backend}_{mode}"] = LIF(width, spike=mode, backend=backend, noise_prob=0.2).to(device)
    sj = spikingjelly_lif()
    if sj is not None:
        out["spikingjelly_sg"] = sj.to(device)
    return out


def bench(
    steps: int,
    shape: tuple[int, ...],
    backends: list[str],
    repeats: int,
    device: str,
    warmup: int = 2,
    family: str = "sigmoid",
) -> dict:
    modules = variants(shape[1:], backends, device, family)
    x = torch.randn(steps, *shape, device=device, requires_grad=True)
    times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in modules}
    for i in range(warmup + repeats):
        for name, module in modules.items():
            if name.startswith("spikingjelly"):  # it keeps its membrane between calls
                module.reset()
            ms = fwd_bwd_ms(module, x)
            if i >= warmup:
                times[name].append(ms)
    result = {
        name: {
            "ms": statistics.median(t[0] for t in ts),
            "fwd_ms": statistics.median(t[2] for t in ts),
            "cpu_ms": statistics.median(t[1] for t in ts),
            "saved_MiB": saved_bytes(modules[name], x) / 2**20,
        }
        for name, ts in times.items()
    }
    ratios = {}
    for backend in backends:
        asgl, sg = result[f"{backend}_asgl"]["ms"], result[f"{backend}_sg"]["ms"]
        ratios |= {f"{backend}_asgl_over_sg": asgl / sg, f"{backend}_asgl_over_relu": asgl / result["relu"]["ms"]}
        ratios[f"{backend}_sg_over_relu"] = sg / result["relu"]["ms"]
        if "spikingjelly_sg" in result:
            ratios[f"spikingjelly_over_{backend}_asgl"] = result["spikingjelly_sg"]["ms"] / asgl
    return {"steps": steps, "shape": list(shape), "device": device, "family": family, "times": result, "ratios": ratios}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--shape", default="32,8192", help="B,C,H,W (or B,F) of one time step")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--backends", default=None, help="comma-separated (default: fused, cpu_kernel or triton)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--family", default="sigmoid", help="surrogate family of the LIF layers (SpikingJelly: sigmoid)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = ap.parse_args()
    fast = "triton" if args.device.startswith("cuda") and "triton" in BACKENDS else "cpu_kernel"
    backends = args.backends.split(",") if args.backends else ["fused", fast]
    shape = tuple(int(v) for v in args.shape.split(","))
    r = bench(args.steps, shape, backends, args.repeats, args.device, family=args.family)
    if args.json:
        print(json.dumps(r))
        return
    print(
        f"LIF fwd+bwd, T={args.steps}, step {shape}, {args.family}, {args.device}, torch {torch.__version__}, "
        f"{args.repeats} repeats"
    )
    print(f"{'variant':<18}{'median ms':>11}{'fwd ms':>9}{'CPU ms':>10}{'saved MiB':>11}")
    for name, t in r["times"].items():
        print(f"{name:<18}{t['ms']:>11.2f}{t['fwd_ms']:>9.2f}{t['cpu_ms']:>10.2f}{t['saved_MiB']:>11.1f}")
    for name, value in r["ratios"].items():
        print(f"{name:<32}{value:>7.2f}x")


if __name__ == "__main__":
    main()
