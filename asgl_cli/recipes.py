"""``asgl recipes list | show | validate | cp``: the bundled recipes and recipe files."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer
from rich.text import Text

from asgl.config import RecipeError, bundled_recipes, load_recipe, recipes_folder, resolve_recipe_path
from asgl.terminal import make_console, pack, say, words
from asgl_cli.errors import err_console, user_errors

app = typer.Typer(help="List, show, validate and copy recipes.", no_args_is_help=True)


def description(path: Path) -> str:
    """The first sentence of a recipe file's leading comment block."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def bundled_path(name: str) -> Path:
    path = recipes_folder() / f"{name}.toml"
    if not path.is_file():
        raise RecipeError(f"unknown recipe {name!r}; bundled: {', '.join(bundled_recipes()) or 'none'}")
    return path


@app.command("list")
@user_errors
def list_recipes() -> None:
    """Bundled recipes: name, dataset, model, epochs, and the first sentence of each file's comment."""
    console = make_console()
    for name in bundled_recipes():
        r = load_recipe(name)
        console.print(Text.assemble((name, "bold"), f"  {r.data.name} / {r.model.name}, {r.train.epochs} epochs"))
        for line in pack(words(description(bundled_path(name))), console.width - 4):
            console.print(Text(f"    {line}"))


@app.command("show")
@user_errors
def show(name: str = typer.Argument(..., help="Bundled recipe name (or a recipe file).")) -> None:
    """Print a recipe's TOML text."""
    path = resolve_recipe_path(name)
    typer.echo(path.read_text(encoding="utf-8"), nl=False)


@app.command("validate")
@user_errors
def validate(files: list[str] = typer.Argument(..., help="Recipe files or bundled names.")) -> None:
    """Check recipes against the schema, the model registry and the data's shapes; exit 2 if any is invalid."""
    failed = 0
    out = make_console()
    for item in files:
        try:
            recipe = load_recipe(item)
        except RecipeError as e:
            failed += 1
            say(err_console, Text.assemble(("invalid", "red"), f" {item}"))
            say(err_console, str(e), markup=False)
            continue
        from asgl.builders import (
            check_model,
            check_model_name,
            describe_data,  # after the schema: the model checks need torch
        )
        from asgl.errors import UserError

        try:
            check_model_name(recipe)
            if recipe.model.name == "sequential":  # layer shapes follow from the data's description
                check_model(recipe, describe_data(recipe))
        except UserError as e:
            failed += 1
            say(err_console, Text.assemble(("invalid", "red"), f" {item}"))
            say(err_console, str(e), markup=False)
            continue
        say(out, Text.assemble(("ok", "green"), f" {item}"))
    if failed:
        raise typer.Exit(2)


@app.command("cp")
@user_errors
def copy(
    name: str = typer.Argument(..., help="Bundled recipe name."),
    dest: Path = typer.Argument(..., help="Destination file, or a folder (keeps the name)."),
    force: bool = typer.Option(False, "--force", metavar="", help="Overwrite an existing file."),
) -> None:
    """Copy a bundled recipe to edit it."""
    source = bundled_path(name)
    target = dest / source.name if dest.is_dir() else dest
    if target.exists() and not force:
        raise RecipeError(f"{target} exists; pass --force to overwrite it")
    shutil.copyfile(source, target)
    say(make_console(), f"copied {name} to {target}", markup=False)
