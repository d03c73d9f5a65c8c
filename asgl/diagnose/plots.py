"""Small matplotlib figures of the diagnosis (Agg backend, PNG files); the sweep plots live in asgl.sweeps.results."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from asgl.diagnose.dynamics import LayerDynamics  # noqa: E402
from asgl.diagnose.gradients import Comparison  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _grouped_bars(ax: plt.Axes, groups: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        ax.bar([g + i * width for g in range(len(groups))], values, width, label=label)
    ax.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups, rotation=30, ha="right", fontsize=8)


def plot_gradient_bars(comparisons: Sequence[Comparison], path: Path) -> None:
    """Cosine and norm ratio per layer (bars per method)."""
    layers = list(dict.fromkeys(c.layer for c in comparisons))
    methods = list(dict.fromkeys(c.method for c in comparisons))
    value = {(c.layer, c.method): c for c in comparisons}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    _grouped_bars(a, layers, {m: [value[layer, m].cosine for layer in layers] for m in methods})
    a.set_ylabel("cosine to FD reference")
    a.axhline(0, color="k", lw=0.5)
    a.legend(fontsize=8)
    ratios = {m: [value[layer, m].norm_ratio for layer in layers] for m in methods}
    _grouped_bars(b, layers, ratios)
    b.set_ylabel("norm ratio |g| / |FD|")
    if any(r > 0 for rs in ratios.values() for r in rs):  # NaN where the FD reference is 0
        b.set_yscale("log")
    _save(fig, path)


def plot_dynamics_bars(rows: Sequence[LayerDynamics], path: Path) -> None:
    """Firing rate, in-window fraction and smoothing error per LIF layer; width in the labels."""
    labels = [f"{r.layer}\nα={r.width:.3g}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(rows) + 2), 3.6))
    _grouped_bars(
        ax,
        labels,
        {
            "firing rate": [r.firing_rate for r in rows],
            "in window": [r.in_window for r in rows],
            "E|H-Θ|": [r.smoothing_error for r in rows],
        },
    )
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_curves(curves: dict[str, tuple[list[int], list[float]]], path: Path, ylabel: str) -> None:
    """One line per label: curves[label] = (epochs, values)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
