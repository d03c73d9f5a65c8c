"""The full diagnosis of one model snapshot: gradients + dynamics + accuracy gap, written as CSV and PNG.

A *subject* is a model snapshot with its recipe, current p and the fixed minibatches: the first K batches
of the validation split (no augmentation, fixed order), from a checkpoint or from a freshly initialised
recipe. :func:`epoch_record` is the light version the trainer calls every ``train.diagnose_every`` epochs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomllib
import torch
from torch import nn
from torch.utils.data import DataLoader

from asgl.config import Recipe, validate_recipe
from asgl.diagnose.dynamics import LayerDynamics, accuracy_gap, layer_dynamics
from asgl.diagnose.gradients import Batch, GradientReport, GradientSettings, diagnose_gradients, prepare
from asgl.losses import build_loss


@dataclass
class Subject:
    model: nn.Module
    recipe: Recipe
    noise_prob: float  # p of the snapshot's epoch
    batches: list[Batch]
    source: str
    epoch: int  # epochs trained (0 for a fresh model)


@dataclass
class Diagnosis:
    gradients: GradientReport
    dynamics: list[LayerDynamics]
    hybrid_acc: float
    snn_acc: float


def with_validation_split(recipe: Recipe, fraction: float = 0.1) -> Recipe:
    """The recipe, or a copy carving ``fraction`` of the training set when it has no validation split
    (``train.val_fraction = 0``): the diagnosis measures on validation batches."""
    if recipe.train.val_fraction > 0:
        return recipe
    train = recipe.train.model_copy(update={"val_fraction": fraction, "select": "best_val"})
    return recipe.model_copy(update={"train": train})


def load_subject(
    recipe: Recipe | None = None, checkpoint: str | Path | None = None, batches: int = 4, device: str = "cpu"
) -> Subject:
    """The snapshot of ``checkpoint`` (its stored recipe), or a freshly initialised model of ``recipe``."""
    from asgl.data import build_data, describe_data
    from asgl.engine.checkpoint import load_checkpoint, resolve_checkpoint_path
    from asgl.engine.device import resolve_device
    from asgl.models import build_model
    from asgl.schedules import noise_prob_at

    if (recipe is None) == (checkpoint is None):
        raise ValueError("give exactly one of a recipe or a checkpoint")
    ckpt = None
    if checkpoint is not None:
        path = resolve_checkpoint_path(checkpoint)
        ckpt = load_checkpoint(path)
        recipe = validate_recipe(tomllib.loads(ckpt["recipe"]), f"stored in {path}")
        source = str(path)
    else:
        source = f"recipe {recipe.run.name} (initial weights, seed {recipe.run.seed})"
    assert recipe is not None
    torch.manual_seed(recipe.run.seed)
    model = build_model(recipe, describe_data(recipe))
    epoch = 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        epoch = int(ckpt["epoch"])
    model.to(resolve_device(device))
    data = build_data(with_validation_split(recipe))  # only the fixed batches need the data
    # p in force during the last finished epoch (the one that produced these weights)
    p = noise_prob_at(max(epoch - 1, 0), recipe.noise, recipe.train.epochs)
    loader = DataLoader(data.val, batch_size=recipe.train.eval_batch_size or recipe.train.batch_size)
    fixed = [b for _, b in zip(range(batches), loader)]
    return Subject(model, recipe, p, fixed, source, epoch)


def diagnose(subject: Subject, settings: GradientSettings) -> Diagnosis:
    """Gradients against the finite-difference reference, per-layer dynamics and the hybrid-vs-SNN gap."""
    recipe = subject.recipe
    loss_fn = build_loss(recipe.train, recipe.model.readout)
    grads = diagnose_gradients(subject.model, subject.batches, loss_fn, recipe.surrogate, subject.noise_prob, settings)
    work, fixed = prepare(subject.model, subject.batches, settings)
    dyn = layer_dynamics(work, fixed)
    hybrid, snn = accuracy_gap(work, fixed, subject.noise_prob, settings.seed, recipe.model.readout)
    return Diagnosis(grads, dyn, hybrid, snn)


def epoch_record(model: nn.Module, recipe: Recipe, batches: Iterable[Batch], noise_prob: float) -> dict[str, Any]:
    """Overall cosine and norm ratio of each method, and the FD zero fraction, for ``metrics.jsonl``.

    Settings come from ``train.diagnose_batches / diagnose_directions / diagnose_eps``; the probes and masks
    are seeded by ``run.seed``, so every epoch is measured along the same directions.
    """
    t = recipe.train
    settings = GradientSettings(
        batches=t.diagnose_batches, directions=t.diagnose_directions, eps=t.diagnose_eps, seed=recipe.run.seed
    )
    loss_fn = build_loss(t, recipe.model.readout)
    report = diagnose_gradients(model, batches, loss_fn, recipe.surrogate, noise_prob, settings)
    overall = [c for c in report.comparisons if c.layer == "overall"]
    return {
        "grad_cosine": {c.method: c.cosine for c in overall},
        "grad_norm_ratio": {c.method: c.norm_ratio for c in overall},
        "fd_zero_fraction": report.zero_fraction["overall"],
    }


def write_diagnosis(diagnosis: Diagnosis, out: Path) -> list[Path]:
    """gradients.csv, dynamics.csv, diagnosis.json, gradients.png and dynamics.png in ``out``; returns the paths."""
    from asgl.diagnose.plots import plot_dynamics_bars, plot_gradient_bars

    out.mkdir(parents=True, exist_ok=True)
    g = diagnosis.gradients
    grad_csv = out / "gradients.csv"
    with grad_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["layer", "method", "cosine", "norm_ratio", "fd_zero_fraction", "numel"])
        total = sum(g.layer_sizes.values())
        for c in g.comparisons:
            w.writerow(
                [c.layer, c.method, c.cosine, c.norm_ratio, g.zero_fraction[c.layer], g.layer_sizes.get(c.layer, total)]
            )
    dyn_csv = out / "dynamics.csv"
    with dyn_csv.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(LayerDynamics.__dataclass_fields__))
        w.writeheader()
        w.writerows(asdict(d) for d in diagnosis.dynamics)
    summary = out / "diagnosis.json"
    record = {
        "noise_prob": g.noise_prob,
        "hybrid_acc": diagnosis.hybrid_acc,
        "snn_acc": diagnosis.snn_acc,
        "accuracy_gap": diagnosis.hybrid_acc - diagnosis.snn_acc,
        "settings": asdict(g.settings),
    }
    summary.write_text(json.dumps(record, indent=2) + "\n")
    grad_png, dyn_png = out / "gradients.png", out / "dynamics.png"
    plot_gradient_bars(g.comparisons, grad_png)
    plot_dynamics_bars(diagnosis.dynamics, dyn_png)
    return [grad_csv, dyn_csv, summary, grad_png, dyn_png]
