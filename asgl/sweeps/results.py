"""The results of a sweep: one row per finished cell, mean ± std over seeds, ``<stem>.csv`` and ``<stem>.png``."""

from __future__ import annotations

import csv
import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asgl.sweeps.grid import Axis


@dataclass(frozen=True)
class GridRow:
    values: tuple[str, ...]  # labels, one per axis
    seed: int
    val_acc: float | None  # None: the recipe has no validation split
    test_acc: float
    learned_widths: dict[str, float]  # final α per LIF layer
    run_dir: str


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
