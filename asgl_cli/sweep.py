"""``asgl sweep grid | alpha``: sweeps made of ordinary training runs, here or on a SLURM cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from asgl.terminal import make_console, say
from asgl_cli.errors import fail, user_errors

app = typer.Typer(help="Parameter sweeps made of ordinary training runs.", no_args_is_help=True)

LAUNCHERS = ("local", "slurm", "submitit-local")


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


# options shared by every sweep command
JOBS = typer.Option(
    1,
    "--jobs",
    min=1,
    help="Cells run at a time here, as child processes sharing the CPU threads and GPUs (1: in this process).",
)
LAUNCHER = typer.Option("local", "--launcher", help="local (here), slurm (a submitit job per cell) or submitit-local.")
PARTITION = typer.Option(None, "--partition", help="SLURM partition (slurm launcher).")
GPUS = typer.Option(0, "--gpus-per-job", min=0, help="GPUs of each SLURM job.")
CPUS = typer.Option(4, "--cpus-per-job", min=1, help="CPU cores (and threads) of each SLURM job.")
TIME = typer.Option(240, "--time-min", min=1, help="Time limit of each SLURM job, in minutes.")


def make_launcher(
    launcher: str, out: Path, jobs: int, device: str, partition: Optional[str], gpus: int, cpus: int, minutes: int
):
    from asgl.config import RecipeError
    from asgl.sweeps.launchers import inprocess_launcher, local_launcher, submitit_launcher, visible_gpus

    console = make_console(stderr=True)
    if launcher == "local" and jobs == 1:
        return inprocess_launcher(out, console)
    if launcher == "local":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return local_launcher(out, jobs, cpus, visible_gpus(device), console)
    if launcher not in LAUNCHERS:
        raise RecipeError(f"--launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise RecipeError(f"--launcher {launcher} needs submitit: pip install 'asgl[cluster]'") from None
    parameters = {"timeout_min": minutes, "cpus_per_task": cpus, "gpus_per_node": gpus, "nodes": 1, "tasks_per_node": 1}
    if partition is not None:
        parameters["slurm_partition"] = partition
    return submitit_launcher(out, "slurm" if launcher == "slurm" else "local", parameters, console)


def show_results(title: str, rows: list, failed: list[str], axes: list, seeds: int, out: Path, stem: str) -> None:
    """The table of mean ± std over seeds, the files written, and exit 1 if a cell failed."""
    from asgl.sweeps.results import summarize

    table = Table()
    for a in axes:
        table.add_column(a.name, justify="right")
    for col in ("test acc (%)", "val acc (%)", "runs"):
        table.add_column(col, justify="right")

    def cell(mean_std: tuple[float, float] | None) -> str:
        if mean_std is None:  # no validation split
            return "—"
        return f"{100 * mean_std[0]:.2f} ± {100 * mean_std[1]:.2f}" if seeds > 1 else f"{100 * mean_std[0]:.2f}"

    for s in summarize(rows):
        table.add_row(*s.values, cell(s.test_acc), cell(s.val_acc), str(s.runs))
    console = make_console()
    say(console, title, markup=False)  # a title line: the table never squeezes it
    console.print(table)
    say(console, f"wrote {out / f'{stem}.csv'} and {out / f'{stem}.png'}", markup=False)
    if failed:
        raise fail(f"{len(failed)} cell(s) failed: {', '.join(failed)} (their output is under {out})", code=1)


def run_sweep(run, out: Path) -> tuple:
    """Run a sweep, turning an interruption into its exit code."""
    from asgl.sweeps.launchers import GridInterrupted

    try:
        return run()
    except GridInterrupted as e:
        say(make_console(stderr=True), f"[yellow]interrupted:[/] {e}")
        raise typer.Exit(e.exit_code) from None


@app.command("grid")
@user_errors
def grid(
    recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name."),
    axes: list[str] = typer.Option(..., "--axis", help="key=v1,v2,... : one axis of the grid (repeatable)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Runs per point, seeds run.seed + 0..N-1."),
    jobs: int = JOBS,
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key for every run (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Sweep folder (default: <name>-sweep-grid in run.out_dir)."),
    launcher: str = LAUNCHER,
    partition: Optional[str] = PARTITION,
    gpus_per_job: int = GPUS,
    cpus_per_job: int = CPUS,
    time_min: int = TIME,
) -> None:
    """Train every point of the product of the axes, SEEDS times; table of test accuracy (mean ± std), grid.csv
    and grid.png (a line per value of the second axis).

    Started again with the same --out, finished runs are skipped and interrupted ones resumed.
    """
    from asgl.config import load_recipe
    from asgl.sweeps.grid import parse_axes, plan_grid, run_grid

    cfg = load_recipe(recipe, overrides)
    axis_list = parse_axes(axes)
    cells = plan_grid(cfg, axis_list, seeds)  # every cell's recipe is valid before anything runs
    folder = out or Path(cfg.run.out_dir) / f"{cfg.run.name}-sweep-grid"
    launch = make_launcher(launcher, folder, jobs, cfg.run.device, partition, gpus_per_job, cpus_per_job, time_min)
    rows, failed = run_sweep(lambda: run_grid(cells, axis_list, folder, launch, make_console(stderr=True)), folder)
    title = f"{cfg.run.name}: test accuracy over {seeds} seed(s), {len(rows)}/{len(cells)} runs"
    show_results(title, rows, failed, axis_list, seeds, folder, "grid")


@app.command("alpha")
@user_errors
def alpha(
    recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name."),
    widths: str = typer.Option("0.5,1,2.5,5,10", "--widths", help="Surrogate widths α, comma-separated."),
    methods: str = typer.Option("sg,asgl", "--methods", help="sg (fixed width, p = 0) and/or asgl (the recipe)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Runs per (method, width), seeds run.seed + 0..N-1."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key for every run (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Sweep folder (default <run.out_dir>/<name>-sweep-alpha)."),
    jobs: int = JOBS,
    launcher: str = LAUNCHER,
    partition: Optional[str] = PARTITION,
    gpus_per_job: int = GPUS,
    cpus_per_job: int = CPUS,
    time_min: int = TIME,
) -> None:
    """Train SG and ASGL at each width (a grid over method x width); table of test accuracy (mean ± std),
    sweep.csv, sweep.png.

    Started again with the same --out, finished runs are skipped and interrupted ones resumed.
    """
    from asgl.config import RecipeError, load_recipe
    from asgl.sweeps.alpha import sweep_alpha

    cfg = load_recipe(recipe, overrides)
    width_list = parse_list(widths, "widths", float)
    if any(w <= 0 for w in width_list):
        raise RecipeError(f"--widths {widths!r}: widths must be > 0")
    method_list = parse_list(methods, "methods")
    folder = out or Path(cfg.run.out_dir) / f"{cfg.run.name}-sweep-alpha"
    launch = make_launcher(launcher, folder, jobs, cfg.run.device, partition, gpus_per_job, cpus_per_job, time_min)
    console = make_console(stderr=True)
    rows, failed, axes = run_sweep(
        lambda: sweep_alpha(cfg, folder, launch, console, width_list, method_list, seeds), folder
    )
    show_results(f"{cfg.run.name}: test accuracy over {seeds} seed(s)", rows, failed, axes, seeds, folder, "sweep")
