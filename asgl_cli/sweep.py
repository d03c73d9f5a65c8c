"""``asgl sweep alpha``: SG vs ASGL over surrogate widths, one training run each (docs/method.md#published-runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from asgl.terminal import make_console
from asgl_cli.errors import user_errors

app = typer.Typer(help="Parameter sweeps made of ordinary training runs.", no_args_is_help=True)


def parse_list(text: str, what: str, cast: type = str) -> list:
    """``"a,b,c"`` -> [cast(a), ...]; an empty or malformed list is a user error."""
    from asgl.config import RecipeError

    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [cast(t) for t in items]
    except ValueError:
        raise RecipeError(f"--{what} {text!r}: expected a comma-separated list of {cast.__name__}") from None
    if not values:
        raise RecipeError(f"--{what} is empty")
    return values


@app.command("alpha")
@user_errors
def alpha(
    recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name."),
    widths: str = typer.Option("0.5,1,2.5,5,10", "--widths", help="Surrogate widths α, comma-separated."),
    methods: str = typer.Option("sg,asgl", "--methods", help="sg (fixed width, p = 0) and/or asgl (the recipe)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Runs per (method, width), seeds run.seed + 0..N-1."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key for every run (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Sweep folder (default <run.out_dir>/<name>-sweep-alpha)."),
) -> None:
    """Train SG and ASGL at each width; table of test accuracy (mean ± std), sweep.csv, sweep.png.

    Started again with the same --out, finished runs are skipped and interrupted ones resumed.
    """
    from asgl.config import RecipeError, load_recipe

    cfg = load_recipe(recipe, overrides)
    width_list = parse_list(widths, "widths", float)
    if any(w <= 0 for w in width_list):
        raise RecipeError(f"--widths {widths!r}: widths must be > 0")
    method_list = parse_list(methods, "methods")
    from asgl.diagnose.sweep import SWEEP_METHODS, accuracy_table, mean_std, sweep_alpha

    unknown = [m for m in method_list if m not in SWEEP_METHODS]
    if unknown:
        raise RecipeError(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(SWEEP_METHODS)}")
    folder = out or Path(cfg.run.out_dir) / f"{cfg.run.name}-sweep-alpha"
    rows = sweep_alpha(cfg, folder, width_list, method_list, seeds, make_console(stderr=True))

    points = accuracy_table(rows)
    table = Table()
    table.add_column("α", justify="right")
    for m in method_list:
        table.add_column(m, justify="right")
    for w in width_list:
        cells = []
        for m in method_list:
            mean, std = mean_std(points[m][w])
            cells.append(f"{100 * mean:.2f} ± {100 * std:.2f}" if seeds > 1 else f"{100 * mean:.2f}")
        table.add_row(f"{w:g}", *cells)
    console = make_console()
    console.print(f"{cfg.run.name}: test accuracy (%) over {seeds} seed(s), {folder}", markup=False)
    console.print(table)
    console.print(f"wrote {folder / 'sweep.csv'} and {folder / 'sweep.png'}", markup=False)
