"""``asgl import-reference``: turn the reference implementation's checkpoint into an asgl checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from asgl_cli.errors import user_errors


@user_errors
def import_reference(
    source: Path = typer.Argument(..., help="The reference's checkpoint (.pth, a best_net state dict)."),
    recipe: str = typer.Option(..., "--recipe", help="Recipe of the same network (resnet18 or vggsnn2) and its data."),
    out: Path = typer.Option(..., "--out", help="asgl checkpoint to write."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key (repeatable)."),
    decay_stored: Literal["gamma", "logit"] = typer.Option(
        "logit",
        "--decay-stored",
        help="How the file stores each leak: its logit d (reference, gamma = sigmoid(d)) or gamma itself.",
    ),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing OUT."),
) -> None:
    """Import reference weights (key mapping: asgl/engine/reference_import.py); evaluate with asgl eval --ckpt OUT."""
    from asgl.config import RecipeError, load_recipe

    cfg = load_recipe(recipe, overrides)
    if out.exists() and not force:
        raise RecipeError(f"{out} exists; pass --force to overwrite it")
    from asgl.engine.reference_import import import_reference as run_import

    path, count = run_import(source, cfg, out, decay_stored)
    Console().print(
        f"imported {count} tensors of {source} into {cfg.model.name}: {path}\nevaluate with: asgl eval --ckpt {path}",
        soft_wrap=True,
    )
