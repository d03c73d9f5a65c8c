"""The alpha sweep (docs/method.md#published-runs): SG and ASGL trained at each surrogate width, a preset of the grid sweep
(:mod:`asgl.sweeps.grid`) over the axes ``method`` x ``width``, collected into ``sweep.csv`` and ``sweep.png``.

- ``sg``: spike ``sg``, fixed width (``surrogate.learnable = false``), p = 0;
- ``asgl``: the recipe as it is, with ``surrogate.width`` set.

Run folders live in the sweep folder as ``<name>-<method>-a<width>-s<seed>-<timestamp>``; resuming, skipping
and refusing a folder of a different recipe work as for every grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asgl.config import Recipe, RecipeError
from asgl.sweeps.grid import Axis, AxisValue, GridRow, Launch, plan_grid, run_grid

SWEEP_METHODS: tuple[str, ...] = ("sg", "asgl")
DEFAULT_WIDTHS: tuple[float, ...] = (0.5, 1.0, 2.5, 5.0, 10.0)
METHOD_OVERRIDES: dict[str, tuple[str, ...]] = {
    "sg": ("neuron.spike='sg'", "surrogate.learnable=false", "noise.prob=0"),
    "asgl": (),
}


def alpha_axes(widths: Sequence[float], methods: Sequence[str]) -> list[Axis]:
    """The axes ``method`` (sg / asgl) and ``width`` (run names ``...-<method>-a<width>-...``)."""
    unknown = [m for m in methods if m not in METHOD_OVERRIDES]
    if unknown:
        raise RecipeError(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(SWEEP_METHODS)}")
    return [
        Axis("method", tuple(AxisValue(m, m, METHOD_OVERRIDES[m]) for m in methods)),
        Axis("width", tuple(AxisValue(f"{w:g}", f"a{w:g}", (f"surrogate.width={w}",)) for w in widths)),
    ]


def sweep_alpha(
    recipe: Recipe,
    out: Path,
    launch: Launch,
    console: Any,
    widths: Sequence[float] = DEFAULT_WIDTHS,
    methods: Sequence[str] = SWEEP_METHODS,
    seeds: int = 1,
) -> tuple[list[GridRow], list[str], list[Axis]]:
    """Run (or resume) the sweep into ``out``: (rows of finished runs, failed run names, the axes)."""
    axes = alpha_axes(widths, methods)
    rows, failed = run_grid(plan_grid(recipe, axes, seeds), axes, out, launch, console, stem="sweep", x_axis=1)
    return rows, failed, axes
