"""``asgl bench``: time one training step with the fused, Triton and stepwise LIF and with ReLU instead of LIF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from asgl.terminal import make_console, pack, say, words
from asgl_cli.errors import user_errors

RATIO_LABELS = {
    "stepwise_over_fused": "fused LIF speed-up over stepwise",
    "fused_over_relu": "SNN (fused) step / ReLU step",
    "triton_over_relu": "SNN (triton) step / ReLU step",
    "fused_over_triton": "Triton speed-up over fused",
    "cpu_kernel_over_relu": "SNN (CPU kernel) step / ReLU step",
    "fused_over_cpu_kernel": "CPU kernel speed-up over fused",
    "cpu_time_cpu_kernel_over_relu": "SNN (CPU kernel) step / ReLU step (process CPU time)",
    "stepwise_over_relu": "SNN (stepwise) step / ReLU step",
    "stepwise_over_compiled": "compiled LIF speed-up over stepwise",
    "compiled_over_relu": "SNN (compiled) step / ReLU step",
    "cpu_time_stepwise_over_fused": "fused LIF speed-up over stepwise (process CPU time)",
    "cpu_time_fused_over_relu": "SNN (fused) step / ReLU step (process CPU time)",
    "memory_stepwise_over_fast": "memory: stepwise / fastest LIF",
}


@user_errors
def bench(
    recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name (its network, T, AMP, compile)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key, e.g. --set train.time_steps=2."),
    model: Optional[str] = typer.Option(
        None, "--model", help="Model name (asgl.models.MODELS) instead of the recipe's."
    ),
    batch_size: int = typer.Option(16, "--batch-size", "-b", help="Batch size of the synthetic batch."),
    repeats: int = typer.Option(10, "--repeats", "-r", help="Timed steps per variant (after warm-up)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed steps per variant first."),
    variants: str = typer.Option(
        "fused,cpu_kernel,triton,stepwise,relu",
        "--variants",
        help="Comma-separated: fused, cpu_kernel, triton, stepwise, relu, compiled (opt-in).",
    ),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda[:N] (default: the recipe's run.device)."),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write the result as JSON to this file ('-' = stdout only)."
    ),
) -> None:
    """Time and memory of one training step (forward + backward + optimiser) on a synthetic batch."""
    from asgl.config import load_recipe

    cfg = load_recipe(recipe, overrides + ([f"model.name={json.dumps(model)}"] if model else []))
    from asgl.bench import run_bench

    result = run_bench(
        cfg, batch_size, repeats, warmup, tuple(v.strip() for v in variants.split(",") if v.strip()), device
    )
    record = result.to_dict()
    if json_out is not None and str(json_out) == "-":
        typer.echo(json.dumps(record))
        return
    if json_out is not None:
        json_out.write_text(json.dumps(record, indent=2) + "\n")

    memory = "peak CUDA memory" if result.memory_kind == "cuda_peak_allocated" else "saved for backward"
    table = Table()
    for col in ("variant", "median ms", "IQR ms", "min ms", "CPU-time ms", f"{memory} MiB"):
        table.add_column(col, justify="right")
    for v in result.variants:
        table.add_row(
            v.variant,
            f"{v.median_ms:.1f}",
            f"{v.q25_ms:.1f}–{v.q75_ms:.1f}",
            f"{v.min_ms:.1f}",
            f"{v.cpu_median_ms:.1f}",
            f"{v.memory_bytes / 2**20:.1f}",
        )
    console = make_console()
    title = f"{result.model} ({result.recipe}) on {result.device}: batch {result.batch_size}, T = {result.time_steps}"
    say(console, f"{title}, amp {result.amp}, {result.repeats} repeats", markup=False)
    console.print(table)
    for key, value in result.ratios.items():
        console.print(Text.assemble(f"{RATIO_LABELS[key]}: ", (f"{value:.2f}x", "bold")))
    for name, why in result.skipped.items():
        for line in pack(words(f"skipped {name}: {why}"), console.width, indent="    "):
            console.print(line, markup=False)
