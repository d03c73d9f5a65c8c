"""The full diagnosis of one model snapshot: gradients + dynamics + accuracy gap, written as CSV and PNG.

A *subject* is a model snapshot with its recipe, current p and the fixed minibatches: the first K batches
of the validation split (no augmentation, fixed order), from a checkpoint or from a freshly initialised
recipe. :func:`epoch_record` is the light version that :class:`EpochDiagnosis` adds to the trainer's epoch
records every ``train.diagnose_every`` epochs.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from asgl.builders import build_data, describe_data
from asgl.config import Recipe, RecipeError, read_stored_recipe, validate_recipe
from asgl.diagnose.dynamics import LayerDynamics, accuracy_gap, layer_dynamics
from asgl.diagnose.gradients import Batch, GradientReport, GradientSettings, diagnose_gradients, prepare
from asgl.engine.callbacks import Callback, TrainContext
from asgl.engine.device import resolve_device
from asgl.engine.logging import read_metrics
from asgl.engine.restore import build_model_for, open_checkpoint
from asgl.engine.runfolder import run_folder_of
from asgl.losses import build_loss
from asgl.schedules import noise_prob_at
from asgl.trust import CodeTrust


@dataclass
class Subject:
    model: nn.Module
    recipe: Recipe
    noise_prob: float  # p of the snapshot's epoch
    batches: list[Batch]
    source: str
    epoch: int  # epochs trained: the 1-based epoch that produced the weights (0 for a fresh model)
    checkpoint: Path | None  # None for a fresh model


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
    recipe: Recipe | None = None,
    checkpoint: str | Path | None = None,
    batches: int = 4,
    device: str = "cpu",
    trust: CodeTrust = CodeTrust(),
) -> Subject:
    """The snapshot of ``checkpoint`` (its stored recipe; ``trust``: the user builders it may import, see
    :func:`asgl.engine.restore.open_checkpoint`), or a freshly initialised model of ``recipe``."""
    if (recipe is None) == (checkpoint is None):
        raise ValueError("give exactly one of a recipe or a checkpoint")
    if checkpoint is not None:
        stored = open_checkpoint(checkpoint, trust=trust)
        recipe, path, epoch = stored.recipe, stored.path, int(stored.state["epoch"])
        source = str(path)
    else:
        stored, path, epoch = None, None, 0
        source = f"recipe {recipe.run.name} (initial weights, seed {recipe.run.seed})"
    # the model needs no data (a wrong checkpoint fails first); only the fixed batches do
    model = build_model_for(recipe, describe_data(recipe), stored).to(resolve_device(device))
    data = build_data(with_validation_split(recipe))
    # p in force during the last finished epoch (the one that produced these weights)
    p = noise_prob_at(max(epoch - 1, 0), recipe.noise, recipe.train.epochs)
    loader = DataLoader(data.val, batch_size=recipe.train.eval_batch_size or recipe.train.batch_size)
    fixed = [b for _, b in zip(range(batches), loader)]
    return Subject(model, recipe, p, fixed, source, epoch, path)


def diagnosis_folder(subject: Subject) -> Path:
    """Where a diagnosis goes by default: ``<run>/diagnose-e<epoch>`` (1-based) for a checkpoint,
    ``<run.out_dir>/<name>-diagnose`` for a fresh model."""
    if subject.checkpoint is not None:
        return run_folder_of(subject.checkpoint).root / f"diagnose-e{subject.epoch}"
    return Path(subject.recipe.run.out_dir) / f"{subject.recipe.run.name}-diagnose"


def diagnose(subject: Subject, settings: GradientSettings) -> Diagnosis:
    """Gradients against the finite-difference reference, per-layer dynamics and the hybrid-vs-SNN gap."""
    recipe = subject.recipe
    loss_fn = build_loss(recipe.train, recipe.model.readout)
    grads = diagnose_gradients(
        subject.model, subject.batches, loss_fn, recipe.surrogate.width, subject.noise_prob, settings
    )
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
    report = diagnose_gradients(model, batches, loss_fn, recipe.surrogate.width, noise_prob, settings)
    overall = [c for c in report.comparisons if c.layer == "overall"]
    return {
        "grad_cosine": {c.method: c.cosine for c in overall},
        "grad_norm_ratio": {c.method: c.norm_ratio for c in overall},
        "fd_zero_fraction": report.zero_fraction["overall"],
    }


class EpochDiagnosis(Callback):
    """A trainer callback: every ``train.diagnose_every`` epochs, :func:`epoch_record` joins the epoch's record."""

    handles = ("train.diagnose_every",)

    def __init__(self, recipe: Recipe):
        self.recipe, self.every = recipe, recipe.train.diagnose_every

    def on_epoch_end(self, t: TrainContext, record: dict[str, Any]) -> None:
        if record["epoch"] % self.every == 0:
            record.update(epoch_record(t.model, self.recipe, t.val_loader, record["p"]))


def diagnosis_callbacks(recipe: Recipe) -> list[Callback]:
    """The trainer callbacks the recipe's diagnosis keys ask for (none when ``train.diagnose_every = 0``)."""
    return [EpochDiagnosis(recipe)] if recipe.train.diagnose_every else []


def write_diagnosis(diagnosis: Diagnosis, subject: Subject, out: Path) -> list[Path]:
    """gradients.csv, dynamics.csv, diagnosis.json, gradients.png and dynamics.png in ``out``; returns the paths.

    diagnosis.json names the snapshot (source, epoch, learnable width), so ``asgl diagnose plot`` can read it.
    """
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
        "source": subject.source,
        "epoch": subject.epoch,
        "learnable": subject.recipe.surrogate.learnable,
        "noise_prob": g.noise_prob,
        "hybrid_acc": diagnosis.hybrid_acc,
        "snn_acc": diagnosis.snn_acc,
        "accuracy_gap": diagnosis.hybrid_acc - diagnosis.snn_acc,
        "grad_cosine": {c.method: c.cosine for c in g.comparisons if c.layer == "overall"},
        "settings": asdict(g.settings),
    }
    summary.write_text(json.dumps(record, indent=2) + "\n")
    grad_png, dyn_png = out / "gradients.png", out / "dynamics.png"
    plot_gradient_bars(g.comparisons, grad_png)
    plot_dynamics_bars(diagnosis.dynamics, dyn_png)
    return [grad_csv, dyn_csv, summary, grad_png, dyn_png]


def cosine_curve(folder: Path, method: str) -> tuple[list[int], list[float], bool | None]:
    """(1-based epochs, cosines of ``method``, whether the width was learnable) of a run folder trained with
    ``train.diagnose_every`` (its metrics.jsonl) or of a folder written by ``asgl diagnose gradients`` (one point).
    """
    diagnosis = folder / "diagnosis.json"
    if diagnosis.exists():
        record = json.loads(diagnosis.read_text())
        records, learnable = [record], record.get("learnable")
    else:
        records = read_metrics(folder / "metrics.jsonl")
        config = folder / "config.resolved.toml"
        learnable = (
            validate_recipe(read_stored_recipe(config.read_text())).surrogate.learnable if config.exists() else None
        )
    records = [r for r in records if method in r.get("grad_cosine", {})]
    if not records:
        raise RecipeError(
            f"{folder} has no '{method}' gradient records: give a run folder trained with "
            "--set train.diagnose_every=1, or a folder written by `asgl diagnose gradients`"
        )
    return [r["epoch"] for r in records], [r["grad_cosine"][method] for r in records], learnable
