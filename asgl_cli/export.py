"""``asgl export``: a checkpoint's network in a format other simulators and chips read (NIR)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal, Optional

import typer

from asgl.errors import ExportUnsupported
from asgl.terminal import make_console, say
from asgl_cli.errors import user_errors
from asgl_cli.trust import BUILDER, TRUST_CODE, code_trust


@user_errors
def export(
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint file, or a run folder (uses checkpoints/last.pt)."),
    fmt: Literal["nir"] = typer.Option("nir", "--format", help="Output format: nir (Neuromorphic IR, HDF5)."),
    out: Path = typer.Option(..., "--out", help="File to write, e.g. model.nir."),
    dt: float = typer.Option(1e-4, "--dt", help="Time step of the NIR neurons (s)."),
    builder: Optional[str] = BUILDER,
    trust_code: bool = TRUST_CODE,
) -> None:
    """Export the eval-mode network (norms folded, exact LIF parameters); see docs/deploy.md."""
    if dt <= 0:
        raise typer.BadParameter(f"{dt} is not a positive time step", param_hint="--dt")
    if importlib.util.find_spec("nir") is None:
        raise ExportUnsupported("the nir package is not installed: pip install 'asgl[export]'")
    from asgl.analysis.nir_export import export_checkpoint

    graph = export_checkpoint(ckpt, out, dt, code_trust(builder, trust_code))
    neurons = sum(type(node).__name__ == "LIF" for node in graph.nodes.values())
    say(make_console(), f"wrote {out} ({len(graph.nodes)} nodes, {neurons} LIF layers, dt = {dt:g} s)", markup=False)
