"""``asgl data check``: whether a recipe's dataset is in place."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from asgl_cli.errors import user_errors

app = typer.Typer(help="Dataset checks.", no_args_is_help=True)


@app.command("check")
@user_errors
def check(recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name.")) -> None:
    """List the recipe's data files and whether they are readable; exit 1 when something is missing."""
    from asgl.config import load_recipe

    cfg = load_recipe(recipe)
    from asgl.data import check_data

    problems = check_data(cfg)
    where = f" in {cfg.data.root}" if hasattr(cfg.data, "root") else ""  # digits are embedded: no folder
    table = Table(title=f"data {cfg.data.name}{where}")
    table.add_column("")
    table.add_column("path", overflow="fold")  # paths are never truncated: the user must see them whole
    table.add_column("size", no_wrap=True)
    table.add_column("status", overflow="fold")
    for p in problems:
        table.add_row("[green]ok[/]" if p.ok else "[red]missing[/]", p.path, p.size, p.message)
    Console().print(table)
    if not all(p.ok for p in problems):
        raise typer.Exit(1)
