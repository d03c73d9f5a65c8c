"""One cell of a sweep: an ordinary training run, started through the library.

:func:`train_recipe` trains a cell in the calling process (the in-process launcher, a submitit job).
The local launcher runs each cell in a child process of its own:

    python -m asgl.sweeps.cell RECIPE_FILE --out OUT [--resume RUN_DIR] [--threads N]

which exits with 0 (trained), 1 (the cell failed; the reason is on stderr) or 128 + the signal that stopped it
(SIGINT / SIGTERM, after writing ``checkpoints/last.pt``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asgl.config import Recipe, RecipeError, apply_overrides, load_recipe, recipe_to_dict, validate_recipe
from asgl.errors import UserError
from asgl.sweeps.grid import recipe_conflicts
from asgl.terminal import make_console, say


def train_recipe(
    recipe: Recipe, out: Path, resume: Path | None = None, threads: int | None = None, console: Any = None
) -> Path:
    """Train ``recipe`` into a new run folder under ``out``, or continue the run ``resume`` (a run folder or
    checkpoint of ``recipe``) in its own folder with the recipe stored there; returns the run folder.

    ``threads`` sets ``run.threads``. The run records the per-epoch diagnosis its recipe asks for. Raises what
    :func:`asgl.engine.trainer.train` raises: a ``UserError``, ``NonFiniteLossError``, ``TrainingInterrupted``.
    """
    from asgl.diagnose.report import diagnosis_callbacks
    from asgl.engine.trainer import resume as resume_training
    from asgl.engine.trainer import train
    from asgl.trust import CodeTrust

    sets = [f"run.threads={threads}"] if threads is not None else []
    if resume is None:
        recipe = validate_recipe(apply_overrides(recipe_to_dict(recipe), sets), recipe.run.name)
        return Path(train(recipe, out_dir=out, console=console, callbacks=diagnosis_callbacks(recipe)).run_dir)

    def the_cells(stored: Recipe) -> None:
        differing = recipe_conflicts(stored, recipe)
        if differing:
            raise RecipeError(f"{resume} holds a run of a different recipe ({', '.join(differing)})")

    # the stored recipe must be the cell's: its user builder is one the sweep was given
    trust = CodeTrust((recipe.model.name,))
    result = resume_training(resume, sets, trust, the_cells, console, diagnosis_callbacks)
    return Path(result.run_dir)


def train_cell(
    recipe: Recipe, out: Path, resume: Path | None = None, threads: int | None = None, console: Any = None
) -> int:
    """:func:`train_recipe`, a failure printed on ``console``: 0, or 1 when the cell failed (the body of a
    submitit job too). ``TrainingInterrupted`` (SIGINT / SIGTERM, a checkpoint written) propagates."""
    from asgl.engine.trainer import NonFiniteLossError

    console = console or make_console(stderr=True)
    try:
        train_recipe(recipe, out, resume, threads, console)
    except (UserError, NonFiniteLossError) as e:
        say(console, f"[red]{recipe.run.name}:[/] {e}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The child process of a cell: train it, return its exit code."""
    from asgl.engine.trainer import TrainingInterrupted

    parser = argparse.ArgumentParser(prog="python -m asgl.sweeps.cell", description="Train one cell of a sweep.")
    parser.add_argument("recipe", type=Path, help="the cell's recipe file")
    parser.add_argument("--out", type=Path, required=True, help="the sweep folder (parent of the run folder)")
    parser.add_argument("--resume", type=Path, help="continue this run folder of the cell")
    parser.add_argument("--threads", type=int, help="run.threads of the cell")
    args = parser.parse_args(argv)
    try:
        return train_cell(load_recipe(str(args.recipe)), args.out, args.resume, args.threads)
    except TrainingInterrupted as e:
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
