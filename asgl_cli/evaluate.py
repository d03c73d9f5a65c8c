"""``asgl eval``: pure-SNN accuracy of a checkpoint, rebuilt from the recipe stored in it."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Literal, Optional

import typer
from rich.table import Table

from asgl.analysis import ENERGY_AC_PJ, ENERGY_MAC_PJ, ENERGY_SOURCE
from asgl.terminal import make_console, say
from asgl_cli.errors import user_errors
from asgl_cli.trust import BUILDER, TRUST_CODE, code_trust


@user_errors
def eval_checkpoint(
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint file, or a run folder (uses checkpoints/last.pt)."),
    split: Literal["val", "test"] = typer.Option("test", "--split", help="Which split to evaluate."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print one JSON object instead of a table."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    stats: bool = typer.Option(False, "--stats", metavar="", help="Also firing rates, synaptic operations and energy."),
    energy_ac: float = typer.Option(ENERGY_AC_PJ, "--energy-ac", min=0.0, help=f"pJ per accumulate ({ENERGY_SOURCE})."),
    energy_mac: float = typer.Option(ENERGY_MAC_PJ, "--energy-mac", min=0.0, help=f"pJ per MAC ({ENERGY_SOURCE})."),
    builder: Optional[str] = BUILDER,
    trust_code: bool = TRUST_CODE,
) -> None:
    """Evaluate a checkpoint as a pure SNN (eval mode: binary spikes, no noise)."""
    from asgl.analysis.stats import Activity, count_activity, summarize
    from asgl.engine.evaluation import evaluate_checkpoint

    activity = Activity()
    observe = (lambda model: count_activity(model, activity)) if stats else nullcontext
    result, stored = evaluate_checkpoint(ckpt, split, device, observe, code_trust(builder, trust_code))
    network = summarize(activity, result.samples, energy_ac, energy_mac) if stats else None
    record = {
        "checkpoint": str(stored.path),
        "epoch": stored.state["epoch"],
        "step": stored.state["step"],
        "split": split,
        "samples": result.samples,
        "accuracy": result.accuracy,
        "loss": result.loss,
    }
    if network is not None:
        from asgl_cli.stats_view import render_stats, stats_record

        record["stats"] = stats_record(network)
    if as_json:
        typer.echo(json.dumps(record))
        return
    table = Table()
    for col in ("samples", "accuracy", "loss"):
        table.add_column(col, justify="right")
    table.add_row(str(result.samples), f"{result.accuracy:.2%}", f"{result.loss:.4f}")
    console = make_console()
    # a title line: the file read (a run folder's checkpoints/last.pt) and when it was saved, never squeezed
    say(console, f"{stored.path}, {saved_at(stored.state)} ({split})", markup=False)
    console.print(table)
    if network is not None:
        render_stats(console, network)


def saved_at(state: dict) -> str:
    """When a checkpoint was saved: ``epoch 3`` (after it), or ``epoch 4, step 20`` mid-epoch."""
    epoch, step = state["epoch"], state["step"]
    return f"epoch {epoch + 1}, step {step}" if step else f"epoch {epoch}"
