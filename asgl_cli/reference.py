"""``asgl import-reference``: turn the paper authors' checkpoint into an asgl checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from asgl.terminal import make_console
from asgl_cli.errors import user_errors


@user_errors
def import_reference(
    source: Path = typer.Argument(..., help="The authors' checkpoint (.pth holding a best_net state dict)."),
    recipe: str = typer.Option(
        ..., "--recipe", help="Recipe of the same network (resnet18, resnet19, resnet34 or vggsnn2); no data needed."
    ),
    out: Path = typer.Option(..., "--out", help="asgl checkpoint to write."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key (repeatable)."),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing OUT."),
) -> None:
    """Import the authors' weights (key table: asgl/engine/reference_import.py); evaluate with asgl eval --ckpt OUT."""
    from asgl.config import RecipeError, load_recipe

    cfg = load_recipe(recipe, overrides)
    if out.exists() and not force:
        raise RecipeError(f"{out} exists; pass --force to overwrite it")
    from asgl.engine.reference_import import import_reference as run_import

    path, count = run_import(source, cfg, out)
    decay = "learned decays from the file" if cfg.neuron.learn_decay else f"decay {cfg.neuron.decay} from the recipe"
    console = make_console()
    console.print(f"imported {count} tensors into {cfg.model.name} ({decay}):", soft_wrap=True)
    print(path)
    console.print("evaluate with:", soft_wrap=True)
    print(f"asgl eval --ckpt {path}")
