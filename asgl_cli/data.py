"""``asgl data check``: whether a recipe's dataset is in place."""

from __future__ import annotations

import typer
from rich.text import Text

from asgl.terminal import make_console, pack, say, words
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
    console = make_console()
    where = f" in {cfg.data.root}" if hasattr(cfg.data, "root") else ""  # digits are embedded: no folder
    say(console, f"data {cfg.data.name}{where}", markup=False)
    for p in problems:
        status = Text("ok     ", "green") if p.ok else Text("missing", "red")
        say(console, Text.assemble(status, f" {p.path}", f"  {p.size}" if p.size else ""))
        for line in pack(words(p.message), console.width - 4):
            console.print(Text(f"    {line}"))
    if not all(p.ok for p in problems):
        raise typer.Exit(1)
