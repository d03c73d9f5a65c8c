"""The alpha sweep (docs/method.md#published-runs): SG and ASGL trained at each width, one normal run per
(method, width, seed), collected into ``sweep.csv`` and ``sweep.png``.

- ``sg``: spike ``sg``, fixed width (``surrogate.learnable = false``), p = 0;
- ``asgl``: the recipe as it is, with ``surrogate.width`` set.

Run folders live in the sweep folder as ``<name>-<method>-a<width>-s<seed>-<timestamp>``. A sweep started
again over the same folder skips finished runs (``summary.json`` present) and resumes interrupted ones from
``checkpoints/last.pt``; a folder holding a run of a different recipe is an error. The sweep folder is
locked while a sweep runs in it, so a second sweep over the same folder is refused.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from asgl.config import Recipe, RecipeError, apply_overrides, read_stored_recipe, recipe_to_dict, validate_recipe
from asgl.diagnose.report import diagnosis_callbacks
from asgl.engine.device import check_runtime
from asgl.engine.restore import RESUME_SAFE_KEYS, open_checkpoint, recipe_differences
from asgl.engine.runfolder import RunFolderLock
from asgl.engine.trainer import train

SWEEP_METHODS: tuple[str, ...] = ("sg", "asgl")
DEFAULT_WIDTHS: tuple[float, ...] = (0.5, 1.0, 2.5, 5.0, 10.0)
CSV_FIELDS = ("method", "width", "seed", "val_acc", "test_acc", "learned_widths", "run_dir")


@dataclass
class SweepRow:
    method: str
    width: float
    seed: int
    val_acc: float
    test_acc: float
    learned_widths: dict[str, float]  # final α per LIF layer
    run_dir: str


def method_overrides(method: str, width: float) -> list[str]:
    """``--set`` overrides that turn a recipe into the ``method`` run at ``width``."""
    if method == "sg":
        return ["neuron.spike='sg'", "surrogate.learnable=false", "noise.prob=0", f"surrogate.width={width}"]
    if method == "asgl":
        return [f"surrogate.width={width}"]
    raise RecipeError(f"unknown sweep method {method!r}; known: {', '.join(SWEEP_METHODS)}")


def sweep_recipe(recipe: Recipe, method: str, width: float, seed_index: int) -> Recipe:
    """The recipe of one sweep run: method settings, width, seed ``run.seed + seed_index`` and its run name."""
    name = f"{recipe.run.name}-{method}-a{width:g}-s{seed_index}"
    overrides = method_overrides(method, width) + [f"run.name='{name}'", f"run.seed={recipe.run.seed + seed_index}"]
    return validate_recipe(apply_overrides(recipe_to_dict(recipe), overrides), f"sweep run {name}")


def _stored_recipe(run_dir: Path) -> Recipe:
    path = run_dir / "config.resolved.toml"
    return validate_recipe(read_stored_recipe(path.read_text()), str(path))


def _check_same(run_dir: Path, expected: Recipe) -> None:
    differing = [k for k in recipe_differences(_stored_recipe(run_dir), expected) if k not in RESUME_SAFE_KEYS]
    if differing:
        raise RecipeError(
            f"{run_dir} holds a run of a different recipe ({', '.join(differing)}); "
            "sweep into another --out folder, or remove that run"
        )


def _row(method: str, width: float, seed: int, summary: dict) -> SweepRow:
    return SweepRow(
        method,
        width,
        seed,
        summary["best_val_acc"],
        summary["test_acc"],
        summary["neurons"]["widths"],
        summary["run_dir"],
    )


def run_one(recipe: Recipe, out: Path, console: Console) -> dict:
    """Train one sweep run into ``out`` (or finish / reuse its folder there); returns its summary."""
    existing = sorted(d for d in out.glob(f"{recipe.run.name}-*") if (d / "config.resolved.toml").exists())
    for d in existing:
        _check_same(d, recipe)
    finished = [d for d in existing if (d / "summary.json").exists()]
    if finished:
        console.print(f"[dim]done already:[/] {finished[-1]}")
        return json.loads((finished[-1] / "summary.json").read_text())
    callbacks = diagnosis_callbacks(recipe)
    resumable = [d for d in existing if (d / "checkpoints" / "last.pt").exists()]
    if resumable:
        stored = open_checkpoint(resumable[-1]).recipe
        return train(stored, resume=resumable[-1], console=console, callbacks=callbacks).summary
    return train(recipe, out_dir=out, console=console, callbacks=callbacks).summary


def sweep_alpha(
    recipe: Recipe,
    out: Path,
    widths: Sequence[float] = DEFAULT_WIDTHS,
    methods: Sequence[str] = SWEEP_METHODS,
    seeds: int = 1,
    console: Console | None = None,
) -> list[SweepRow]:
    """Run (or resume) the sweep into ``out``; writes ``sweep.csv`` and ``sweep.png`` there after every run."""
    console = console or Console(stderr=True)
    plan = [(m, w, s, sweep_recipe(recipe, m, w, s)) for m in methods for w in widths for s in range(seeds)]
    for *_, cfg in plan:
        check_runtime(cfg)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[SweepRow] = []
    with RunFolderLock(out):
        for i, (method, width, seed, cfg) in enumerate(plan, 1):
            console.rule(f"sweep {i}/{len(plan)}: {method}, α = {width:g}, seed {seed}")
            rows.append(_row(method, width, seed, run_one(cfg, out, console)))
            write_sweep(rows, out)
    return rows


def accuracy_table(rows: Sequence[SweepRow], key: str = "test_acc") -> dict[str, dict[float, list[float]]]:
    """points[method][width] = the accuracies of every seed."""
    points: dict[str, dict[float, list[float]]] = {}
    for r in rows:
        points.setdefault(r.method, {}).setdefault(r.width, []).append(getattr(r, key))
    return points


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values)


def write_sweep(rows: Sequence[SweepRow], out: Path) -> tuple[Path, Path]:
    """``sweep.csv`` (one line per run) and ``sweep.png`` (test accuracy vs width, log-x)."""
    from asgl.diagnose.plots import plot_sweep

    path = out / "sweep.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in rows:
            learned = ";".join(f"{k}={v:.4g}" for k, v in r.learned_widths.items())
            w.writerow([r.method, r.width, r.seed, r.val_acc, r.test_acc, learned, r.run_dir])
    png = out / "sweep.png"
    plot_sweep(accuracy_table(rows), png)
    return path, png
