"""Launchers: how the cells of a sweep are trained. Each returns a :data:`asgl.sweeps.grid.Launch`.

- :func:`inprocess_launcher`: one cell after the other in the sweep's process;
- :func:`local_launcher`: ``jobs`` child processes at a time (``python -m asgl.sweeps.cell``), the CPU threads
  and GPUs shared among them;
- :func:`submitit_launcher`: a submitit job per cell (a SLURM cluster, or submitit's local executor).

Every cell trains through :func:`asgl.sweeps.cell.train_recipe`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from asgl.config import Recipe, recipe_to_toml
from asgl.sweeps.cell import train_cell
from asgl.sweeps.grid import Cell, Launch, Task
from asgl.terminal import say


class GridInterrupted(Exception):
    """The sweep was stopped by SIGINT / SIGTERM after its running cells wrote a checkpoint."""

    def __init__(self, signum: int, out: Path):
        self.exit_code = 128 + signum
        super().__init__(f"sweep interrupted; finished cells are kept: run the same command to resume ({out})")


def cell_command(cell: Cell, out: Path, resume: Path | None, threads: int | None) -> list[str]:
    """The command line of a cell's child process (:mod:`asgl.sweeps.cell`); its recipe is written to ``cells/``."""
    recipe_file = out / "cells" / f"{cell.name}.toml"
    recipe_file.parent.mkdir(exist_ok=True)
    recipe_file.write_text(recipe_to_toml(cell.recipe))
    (out / "logs").mkdir(exist_ok=True)
    command = [sys.executable, "-m", "asgl.sweeps.cell", str(recipe_file), "--out", str(out)]
    command += ["--resume", str(resume)] if resume is not None else []
    return command + (["--threads", str(threads)] if threads is not None else [])


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


def inprocess_launcher(out: Path, console: Any) -> Launch:
    """One cell after the other in this process: no start-up cost per cell. SIGINT / SIGTERM stop the running
    cell at a checkpoint and raise :class:`GridInterrupted`."""

    def launch(tasks: Sequence[Task], done: Callable[[Cell, int], None]) -> None:
        from asgl.engine.trainer import TrainingInterrupted

        for task in tasks:
            console.rule(task.cell.name)
            try:
                code = train_cell(task.cell.recipe, out, task.resume, console=console)
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
            threads = parameters.get("cpus_per_task")
            job = executor.submit(train_cell, task.cell.recipe, out, task.resume, threads)
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
