"""Sweeps over any recipe keys: the product of the axes times the seeds, each cell an ordinary training run.

Every cell is one training run: in the sweep's own process, in an ``asgl train`` child process (``jobs`` at
a time, CPU threads or GPUs split among them), or in a submitit job (a SLURM cluster, or submitit's local
executor). In the sweep folder ``out``:

    cells/<name>.toml            a child process's recipe (``<name>`` = ``<recipe>-<tags>-s<seed>``)
    logs/<name>.log              a child process's output (appended to when it is resumed)
    submitit/                    submitit's job files and job output
    <name>-<timestamp>/          its run folder, written by that process alone
    grid.csv, grid.png           one line per finished cell (val_acc empty without a validation split); mean ±
                                 std over seeds, one line per value of the second axis (or of the other axes),
                                 written by the sweep process alone

A cell is finished when its run folder holds ``summary.json``. Started again over the same folder, a sweep
skips finished cells, resumes interrupted ones from ``checkpoints/last.pt`` and refuses a folder whose run of
a cell was trained with a different recipe, so killing it at any moment loses no finished cell.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
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
    recipe_to_toml,
    validate_recipe,
)
from asgl.errors import UserError
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


@dataclass(frozen=True)
class GridRow:
    values: tuple[str, ...]  # labels, one per axis
    seed: int
    val_acc: float | None  # None: the recipe has no validation split
    test_acc: float
    learned_widths: dict[str, float]  # final α per LIF layer
    run_dir: str


class GridInterrupted(Exception):
    """The sweep was stopped by SIGINT / SIGTERM after its running cells wrote a checkpoint."""

    def __init__(self, signum: int, out: Path):
        self.exit_code = 128 + signum
        super().__init__(f"sweep interrupted; finished cells are kept: run the same command to resume ({out})")


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


def check_same_recipe(run_dir: Path, expected: Recipe) -> None:
    """Refuse a run folder trained with another recipe than ``expected`` (keys that change nothing aside)."""
    from asgl.engine.restore import RESUME_SAFE_KEYS, recipe_differences

    path = run_dir / "config.resolved.toml"
    stored = validate_recipe(read_stored_recipe(path.read_text()), str(path))
    differing = [k for k in recipe_differences(stored, expected) if k not in RESUME_SAFE_KEYS]
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


def cell_command(cell: Cell, out: Path, resume: Path | None, threads: int | None) -> list[str]:
    """The ``asgl train`` command line of a cell, new (its recipe is written to ``cells/``) or resumed."""
    command = [sys.executable, "-m", "asgl_cli", "train"]
    if resume is not None:
        command += ["--resume", str(resume)]
        # the stored recipe is the cell's (check_same_recipe): its user builder is one the sweep was given
        command += ["--builder", cell.recipe.model.name] if ":" in cell.recipe.model.name else []
    else:
        recipe_file = out / "cells" / f"{cell.name}.toml"
        recipe_file.parent.mkdir(exist_ok=True)
        recipe_file.write_text(recipe_to_toml(cell.recipe))
        command += [str(recipe_file), "--out", str(out)]
    (out / "logs").mkdir(exist_ok=True)
    return command + (["--set", f"run.threads={threads}"] if threads is not None else [])


def cell_threads(recipe: Recipe, jobs: int, cpus: int) -> int:
    """CPU threads of one of ``jobs`` parallel cells: its share of ``cpus``, or fewer if the recipe asks."""
    share = max(1, cpus // jobs)
    return min(recipe.run.threads or share, share)


def slot_env(slot: int, threads: int, gpus: Sequence[str]) -> dict[str, str]:
    """Environment of the job in ``slot``: its CPU threads, and one GPU (round robin) if there are any."""
    env = {"OMP_NUM_THREADS": str(threads)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def visible_gpus(device: str) -> list[str]:
    """The GPUs parallel cells may share (as ``CUDA_VISIBLE_DEVICES`` items): none for ``cpu`` or a fixed
    ``cuda:N`` device."""
    if device not in ("auto", "cuda"):
        return []
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    return ids[: torch.cuda.device_count()]


# ---------------------------------------------------------------- launchers


@dataclass(frozen=True)
class Task:
    cell: Cell
    resume: Path | None


Launch = Callable[[Sequence[Task], Callable[[Cell, int], None]], None]


def train_cell(task: Task, out: Path, threads: int | None = None, console: Any = None) -> int:
    """Train one cell in this process (the body of a submitit job too): 0, or 1 when it failed.

    :class:`asgl.engine.trainer.TrainingInterrupted` (SIGINT / SIGTERM, a checkpoint written) propagates.
    """
    from rich.console import Console

    from asgl.diagnose.report import diagnosis_callbacks
    from asgl.engine.restore import open_checkpoint
    from asgl.engine.trainer import NonFiniteLossError, train
    from asgl.trust import CodeTrust

    console = console or Console(stderr=True)
    sets = [f"run.threads={threads}"] if threads is not None else []
    try:
        if task.resume is not None:
            recipe = open_checkpoint(task.resume, sets, CodeTrust((task.cell.recipe.model.name,))).recipe
        else:
            recipe = validate_recipe(apply_overrides(recipe_to_dict(task.cell.recipe), sets), task.cell.name)
        callbacks = diagnosis_callbacks(recipe)
        if task.resume is not None:
            train(recipe, resume=task.resume, console=console, callbacks=callbacks)
        else:
            train(recipe, out_dir=out, console=console, callbacks=callbacks)
    except (UserError, NonFiniteLossError) as e:
        say(console, f"[red]{task.cell.name}:[/] {e}")
        return 1
    return 0


def inprocess_launcher(out: Path, console: Any) -> Launch:
    """One cell after the other in this process: no start-up cost per cell. SIGINT / SIGTERM stop the running
    cell at a checkpoint and raise :class:`GridInterrupted`."""

    def launch(tasks: Sequence[Task], done: Callable[[Cell, int], None]) -> None:
        from asgl.engine.trainer import TrainingInterrupted

        for task in tasks:
            console.rule(task.cell.name)
            try:
                code = train_cell(task, out, console=console)
            except TrainingInterrupted as e:
                raise GridInterrupted(e.exit_code - 128, out) from None
            done(task.cell, code)

    return launch


def local_launcher(out: Path, jobs: int, cpus: int, gpus: Sequence[str], console: Any) -> Launch:
    """``jobs`` child processes at a time on this machine, ``cpus`` threads and ``gpus`` shared among them.

    SIGINT / SIGTERM: every running cell gets one SIGTERM (it checkpoints and stops), then
    :class:`GridInterrupted` is raised; cells not started yet stay to do.
    """

    def launch(tasks: Sequence[Task], done: Callable[[Cell, int], None]) -> None:
        pending, running, free = list(tasks), {}, list(range(jobs))
        received = [signal.SIGINT]

        def on_sigterm(signum: int, frame: object) -> None:
            received[0] = signum
            raise KeyboardInterrupt

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, on_sigterm) if main else None
        try:
            while pending or running:
                while pending and free:
                    task, slot = pending.pop(0), free.pop(0)
                    threads = cell_threads(task.cell.recipe, jobs, cpus)
                    command = cell_command(task.cell, out, task.resume, threads)
                    say(console, f"[dim]start[/] {task.cell.name}")
                    log = open(out / "logs" / f"{task.cell.name}.log", "a")
                    env = {**os.environ, **slot_env(slot, threads, gpus)}
                    # a session of its own: a Ctrl-C in the terminal reaches the sweep alone, which stops the cells
                    child = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
                    )
                    running[child] = (task.cell, slot, log)
                for child in [c for c in running if c.poll() is not None]:
                    cell, slot, log = running.pop(child)
                    log.close()
                    free.append(slot)
                    done(cell, child.returncode)
                time.sleep(0.1)
        except KeyboardInterrupt:
            for child in running:
                child.send_signal(signal.SIGTERM)
            for child, (_, _, log) in running.items():
                child.wait()
                log.close()
            raise GridInterrupted(received[0], out) from None
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)

    return launch


def submitit_launcher(out: Path, cluster: str, parameters: dict[str, Any], console: Any) -> Launch:
    """One submitit job per cell (``cluster`` = ``slurm`` or ``local``), waited for and collected here; a job's
    output is in ``<out>/submitit/``."""

    def launch(tasks: Sequence[Task], done: Callable[[Cell, int], None]) -> None:
        import submitit

        executor = submitit.AutoExecutor(folder=out / "submitit", cluster=cluster)
        executor.update_parameters(**parameters)
        jobs = {}
        for task in tasks:
            job = executor.submit(train_cell, task, out, parameters.get("cpus_per_task"))
            say(console, f"[dim]submitted[/] {task.cell.name}: job {job.job_id}")
            jobs[job] = task.cell
        for job in submitit.helpers.as_completed(list(jobs), poll_frequency=1 if cluster == "local" else 30):
            try:
                code = job.result()
            except Exception as e:  # the job itself failed (node failure, time limit): the cell stays unfinished
                say(console, f"[red]job {job.job_id} failed:[/] {e}")
                code = 1
            done(jobs[job], code)

    return launch


# ---------------------------------------------------------------- the sweep


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


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Summary:
    values: tuple[str, ...]
    test_acc: tuple[float, float]  # mean, std over seeds
    val_acc: tuple[float, float] | None  # None: no run has a validation figure
    runs: int


def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    """(mean, population std) of the values that are there; None when none is."""
    present = [v for v in values if v is not None]
    return (statistics.fmean(present), statistics.pstdev(present)) if present else None


def summarize(rows: Sequence[GridRow]) -> list[Summary]:
    """Mean ± std (population) over the seeds of every point of the grid, in row order."""
    groups: dict[tuple[str, ...], list[GridRow]] = {}
    for r in rows:
        groups.setdefault(r.values, []).append(r)
    return [
        Summary(values, mean_std([r.test_acc for r in rs]), mean_std([r.val_acc for r in rs]), len(rs))
        for values, rs in groups.items()
    ]


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_results(rows: Sequence[GridRow], axes: Sequence[Axis], out: Path, stem: str, x_axis: int) -> None:
    """``<stem>.csv`` (one line per run) and ``<stem>.png`` (test accuracy along axis ``x_axis``)."""

    def write_csv(path: Path) -> None:
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow([*(a.name for a in axes), "seed", "val_acc", "test_acc", "learned_widths", "run_dir"])
            for r in rows:
                learned = ";".join(f"{k}={v:.4g}" for k, v in r.learned_widths.items())
                val_acc = "" if r.val_acc is None else r.val_acc  # an empty field: no validation split
                w.writerow([*r.values, r.seed, val_acc, r.test_acc, learned, r.run_dir])

    _replace(out / f"{stem}.csv", write_csv)
    if rows:
        _replace(out / f"{stem}.png", lambda path: plot_grid(summarize(rows), axes, x_axis, path))


def _numbers(labels: Sequence[str]) -> list[float] | None:
    try:
        return [float(v) for v in labels]
    except ValueError:
        return None


def plot_grid(points: Sequence[Summary], axes: Sequence[Axis], x_axis: int, path: Path) -> None:
    """Test accuracy (mean ± std over seeds) along axis ``x_axis``, a line per value of the other axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: dict[str, list[Summary]] = {}
    for p in points:
        others = [f"{a.name}={v}" for i, (a, v) in enumerate(zip(axes, p.values)) if i != x_axis]
        lines.setdefault(", ".join(others) or "test accuracy", []).append(p)
    labels = [v.label for v in axes[x_axis].values]
    numbers = _numbers(labels)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, ps in lines.items():
        xs = [labels.index(p.values[x_axis]) for p in ps]
        xs = [numbers[i] for i in xs] if numbers else xs
        order = sorted(range(len(ps)), key=lambda i: xs[i])
        ax.errorbar(
            [xs[i] for i in order],
            [100 * ps[i].test_acc[0] for i in order],
            yerr=[100 * ps[i].test_acc[1] for i in order],
            marker="o",
            capsize=3,
            label=name,
        )
    if numbers and min(numbers) > 0 and max(numbers) >= 10 * min(numbers):
        ax.set_xscale("log")
    if not numbers:
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(axes[x_axis].name)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
