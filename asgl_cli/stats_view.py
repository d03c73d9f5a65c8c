"""Rendering of ``asgl eval --stats``: firing rates, operations and energy per sample."""

from __future__ import annotations

from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from asgl.analysis.stats import NetworkStats


def stats_record(stats: NetworkStats) -> dict:
    """The JSON form: every field of ``stats`` plus the energy ratio."""
    return {**asdict(stats), "energy_ratio": stats.energy_ratio}


def _count(x: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


def _energy(pj: float) -> str:
    for unit, scale in (("mJ", 1e9), ("uJ", 1e6), ("nJ", 1e3)):
        if pj >= scale:
            return f"{pj / scale:.2f} {unit}"
    return f"{pj:.1f} pJ"


def render_stats(console: Console, stats: NetworkStats) -> None:
    """Two tables (LIF layers, conv/linear layers) and the per-sample totals with the energy ratio."""
    rates = Table(title="LIF layers")
    rates.add_column("layer")
    rates.add_column("firing rate", justify="right")
    for name, rate in stats.firing_rates.items():
        rates.add_row(name, f"{rate:.4f}")
    ops = Table(title=f"Operations per sample ({stats.samples} samples)")
    for col in ("layer", "input", "SNN ops", "ANN MACs"):
        ops.add_column(col, justify="left" if col == "layer" else "right")
    for layer in stats.layers:
        kind = "analog (MAC)" if layer.op == "mac" else "spikes (AC)"
        ops.add_row(layer.name, kind, _count(layer.ops), _count(layer.ann_macs))
    console.print(rates)
    console.print(ops)
    console.print(
        f"SNN: {_count(stats.accumulates)} AC + {_count(stats.macs)} MAC = {_energy(stats.snn_energy_pj)}"
        f" per sample ({stats.energy_ac_pj} pJ/AC, {stats.energy_mac_pj} pJ/MAC)"
    )
    console.print(
        f"ANN: {_count(stats.ann_macs)} MAC = {_energy(stats.ann_energy_pj)} per sample;"
        f" ANN / SNN energy = {stats.energy_ratio:.2f}x"
    )
