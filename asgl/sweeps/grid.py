"""Grid sweeps over any recipe keys: the product of the axes times the seeds, each cell an ordinary training run.

This module plans the cells, finds their runs on disk and collects the results; a launcher
(:mod:`asgl.sweeps.launchers`) trains the cells: in the sweep's own process, in child processes (``jobs`` at a
time, CPU threads or GPUs split among them), or as submitit jobs (a SLURM cluster, or submitit's local
executor). In the sweep folder ``out``:

    cells/<name>.toml            a child process's recipe (``<name>`` = ``<recipe>-<tags>-s<seed>``)
    logs/<name>.log              a child process's output (appended to when it is resumed)
    submitit/                    submitit's job files and job output
    <name>-<timestamp>/          its run folder, written by that process alone
    grid.csv, grid.png           one line per finished cell (val_acc empty without a validation split); mean ±
                                 std over seeds, one line per value of the second axis (or of the other axes),
                                 written by the sweep process alone (:mod:`asgl.sweeps.results`)

A cell is finished when its run folder holds ``summary.json``. Started again over the same folder, a sweep
skips finished cells, resumes interrupted ones from ``checkpoints/last.pt`` and refuses a folder whose run of
a cell was trained with a different recipe, so killing it at any moment loses no finished cell.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asgl.config import (
    Recipe,
    RecipeError,
    apply_overrides,
    parse_override,
    read_stored_recipe,
    recipe_to_dict,
    validate_recipe,
)
from asgl.sweeps.results import GridRow, write_results
from asgl.terminal import say


@dataclass(frozen=True)
class AxisValue:
    label: str  # in the table, the CSV and the plot
    tag: str  # in run names
    overrides: tuple[str, ...]  # ``--set`` items of this value


@dataclass(frozen=True)
class Axis:
    name: str
    values: tuple[AxisValue, ...]


@dataclass(frozen=True)
class Cell:
    values: tuple[AxisValue, ...]  # one per axis
    seed: int  # index 0..seeds-1; the run's seed is run.seed + index
    recipe: Recipe

    @property
    def name(self) -> str:
        return self.recipe.run.name


# ---------------------------------------------------------------- the plan


def _tag_text(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def parse_axes(items: Sequence[str]) -> list[Axis]:
    """``["surrogate.width=1,5", "noise.prob=0,0.2"]`` -> axes; a value's tag is the key's last part + value."""
    parsed = []
    for item in items:
        key, _, raw = item.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not values:
            raise RecipeError(f"--axis {item!r}: expected key=value1,value2,... like surrogate.width=1,5,10")
        parse_override(f"{key}={values[0]}")  # the key must be dotted
        parsed.append((key.strip(), values))
    keys = [key for key, _ in parsed]
    if len(set(keys)) < len(keys):
        raise RecipeError(f"--axis: a key appears twice ({', '.join(keys)})")
    shorts = [key.rsplit(".", 1)[-1] for key in keys]
    unique = len(set(shorts)) == len(shorts)
    return [
        Axis(key, tuple(AxisValue(v, _tag_text((short if unique else key) + v), (f"{key}={v}",)) for v in values))
        for (key, values), short in zip(parsed, shorts)
    ]


def cell_recipe(recipe: Recipe, values: Sequence[AxisValue], seed: int) -> Recipe:
    """The recipe of one cell: the values' overrides, seed ``run.seed + seed`` and the cell's run name."""
    name = "-".join([recipe.run.name, *(v.tag for v in values), f"s{seed}"])
    overrides = [o for v in values for o in v.overrides] + [f"run.name='{name}'", f"run.seed={recipe.run.seed + seed}"]
    return validate_recipe(apply_overrides(recipe_to_dict(recipe), overrides), f"sweep cell {name}")


def plan_grid(recipe: Recipe, axes: Sequence[Axis], seeds: int) -> list[Cell]:
    """Every cell of the grid, in product order (first axis outermost, seeds innermost), recipes validated."""
    cells = [
        Cell(values, s, cell_recipe(recipe, values, s))
        for values in itertools.product(*(a.values for a in axes))
        for s in range(seeds)
    ]
    names = [c.name for c in cells]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RecipeError(f"--axis values that differ only in punctuation give the same run name ({', '.join(twice)})")
    return cells


# ---------------------------------------------------------------- the cells on disk


def cell_runs(out: Path, name: str) -> list[Path]:
    """Run folders of the cell ``name`` in ``out``, oldest first."""
    pattern = re.compile(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?")
    if not out.is_dir():
        return []
    return sorted(d for d in out.iterdir() if pattern.fullmatch(d.name) and (d / "config.resolved.toml").is_file())


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``summary.json``; None while it is not (completely) written."""
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def recipe_conflicts(stored: Recipe, expected: Recipe) -> list[str]:
    """Keys whose values differ between the recipe of a run and ``expected``, keys that change nothing aside."""
    from asgl.engine.restore import RESUME_SAFE_KEYS, recipe_differences

    return [k for k in recipe_differences(stored, expected) if k not in RESUME_SAFE_KEYS]


def check_same_recipe(run_dir: Path, expected: Recipe) -> None:
    """Refuse a run folder trained with another recipe than ``expected`` (keys that change nothing aside)."""
    path = run_dir / "config.resolved.toml"
    stored = validate_recipe(read_stored_recipe(path.read_text()), str(path))
    differing = recipe_conflicts(stored, expected)
    if differing:
        raise RecipeError(
            f"{run_dir} holds a run of a different recipe ({', '.join(differing)}); "
            "sweep into another --out folder, or remove that run"
        )


def cell_state(cell: Cell, out: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """(summary, run folder) of a finished cell, (None, folder to resume) or (None, None) for a new one."""
    runs = cell_runs(out, cell.name)
    for run_dir in runs:
        check_same_recipe(run_dir, cell.recipe)
    for run_dir in reversed(runs):
        summary = read_summary(run_dir)
        if summary is not None:
            return summary, run_dir
    resumable = [d for d in runs if (d / "checkpoints" / "last.pt").is_file()]
    return None, (resumable[-1] if resumable else None)


# ---------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class Task:
    """A cell to train: new (``resume`` None) or continued from the run folder ``resume``."""

    cell: Cell
    resume: Path | None


# a launcher trains the tasks and calls ``done(cell, exit_code)`` as each one ends (0: trained)
Launch = Callable[[Sequence[Task], Callable[[Cell, int], None]], None]


def row_of(cell: Cell, summary: dict[str, Any]) -> GridRow:
    """The row of a finished cell; a validation accuracy that is missing or not a number (no validation split)
    is None."""
    val_acc = summary.get("best_val_acc")
    return GridRow(
        tuple(v.label for v in cell.values),
        cell.seed,
        val_acc if isinstance(val_acc, (int, float)) and math.isfinite(val_acc) else None,
        summary["test_acc"],
        summary["neurons"]["widths"],
        summary["run_dir"],
    )


def run_grid(
    cells: Sequence[Cell],
    axes: Sequence[Axis],
    out: Path,
    launch: Launch,
    console: Any,
    stem: str = "grid",
    x_axis: int = 0,
) -> tuple[list[GridRow], list[str]]:
    """Run (or resume) every unfinished cell; write ``<stem>.csv`` and ``<stem>.png`` after each finished one.

    Returns the rows of the finished cells (in plan order) and the names of the cells that failed.
    """
    from asgl.engine.device import check_runtime
    from asgl.engine.runfolder import RunFolderLock

    for cell in cells:  # a device or backend that cannot run here stops the sweep before any cell starts
        check_runtime(cell.recipe)
    out.mkdir(parents=True, exist_ok=True)
    with RunFolderLock(out):  # a second sweep over the same folder is refused while this one runs
        return _run_cells(cells, axes, out, launch, console, stem, x_axis)


def _run_cells(
    cells: Sequence[Cell], axes: Sequence[Axis], out: Path, launch: Launch, console: Any, stem: str, x_axis: int
) -> tuple[list[GridRow], list[str]]:
    rows: dict[str, GridRow] = {}
    tasks = []
    for cell in cells:
        summary, run_dir = cell_state(cell, out)
        if summary is not None:
            rows[cell.name] = row_of(cell, summary)
            continue
        tasks.append(Task(cell, run_dir))
    say(console, f"{len(cells)} cells: {len(rows)} finished already, {len(tasks)} to run")
    failed: list[str] = []

    def done(cell: Cell, code: int) -> None:
        runs = cell_runs(out, cell.name)
        summary = read_summary(runs[-1]) if code == 0 and runs else None
        if summary is None:
            failed.append(cell.name)
            say(console, f"[red]failed[/] {cell.name} (exit {code}): see {out / 'logs' / cell.name}.log")
            return
        rows[cell.name] = row_of(cell, summary)
        say(console, f"[green]done[/] {cell.name}: test acc {summary['test_acc']:.2%}")
        try:  # the results are written again at the end: a failure here must not stop the running cells
            write_results(ordered(rows, cells), axes, out, stem, x_axis)
        except Exception as e:
            say(console, f"[yellow]could not write the results yet:[/] {type(e).__name__}: {e}")

    if tasks:
        launch(tasks, done)
    finished = ordered(rows, cells)
    write_results(finished, axes, out, stem, x_axis)
    return finished, failed


def ordered(rows: dict[str, GridRow], cells: Sequence[Cell]) -> list[GridRow]:
    return [rows[c.name] for c in cells if c.name in rows]
