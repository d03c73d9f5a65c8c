"""What a run reports: metrics.jsonl, TensorBoard scalars, per-layer neuron state and rich progress."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text
from torch import nn

from asgl.neuron import lif_layers
from asgl.neuron_models import NEURONS
from asgl.terminal import pack


def neuron_state(model: nn.Module) -> dict[str, dict[str, float]]:
    """Per LIF layer: mean width alpha = 1/k (``widths``), decay gamma (``decays``), threshold (``thresholds``),
    and each other step parameter of its neuron model under the parameter's name (alif: ``beta``, ``rho``)."""
    state: dict[str, dict[str, float]] = {"widths": {}, "decays": {}, "thresholds": {}}
    for name, layer in lif_layers(model):
        state["widths"][name] = float((1.0 / layer.width.slope().detach()).mean())
        state["decays"][name] = float(layer.decay().detach().mean())
        state["thresholds"][name] = float(layer.theta().detach().mean())
        for key, value in zip(NEURONS[layer.model].params, layer.params()):
            if key not in ("gamma", "theta"):
                state.setdefault(key, {})[name] = float(value.detach().mean())
    return state


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file (empty when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLog:
    """Appends one JSON object per epoch (``epoch`` 1-based); on resume keeps epochs 1..``finished_epochs``."""

    def __init__(self, path: Path, finished_epochs: int = 0):
        self.path = path
        kept = [r for r in read_metrics(path) if r["epoch"] <= finished_epochs]
        path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class TensorBoard:
    """Scalars of every epoch record (nested dicts flattened to ``widths/layer``) and step losses."""

    def __init__(self, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def epoch(self, record: dict[str, Any]) -> None:
        step = record["epoch"]
        for key, value in record.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    self.writer.add_scalar(f"{key}/{sub}", v, step)
            elif isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, step)
        self.writer.flush()

    def step(self, loss: float, global_step: int) -> None:
        self.writer.add_scalar("train/step_loss", loss, global_step)

    def close(self) -> None:
        self.writer.close()


class _SpeedColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} it/s", style="progress.data.speed")


class TrainProgress:
    """Rich progress bar of one epoch (epoch, step, loss, hybrid acc, it/s, ETA) and a line per epoch."""

    def __init__(self, console: Console, epochs: int):
        self.console = console
        self.epochs = epochs
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.1%}"),
            _SpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = None

    def __enter__(self) -> TrainProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start_epoch(self, epoch: int, total_steps: int, done_steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=done_steps, epoch=epoch + 1, epochs=self.epochs, loss=0.0, acc=0.0
        )

    def step(self, loss: float, acc: float) -> None:
        self.progress.update(self.task, advance=1, loss=loss, acc=acc)

    def end_epoch(self, r: dict[str, Any]) -> None:
        for line in epoch_lines(r, self.epochs, self.console.width):
            text = Text(line)
            text.highlight_regex(r"best$", "green")
            self.console.print(text, soft_wrap=True)


def epoch_lines(r: dict[str, Any], epochs: int, width: int) -> list[str]:
    """One epoch's record as lines of at most ``width`` columns, broken only between fields; no validation
    fields without a validation split (its accuracy is nan then, never otherwise)."""
    validated = not math.isnan(r["val_acc"])
    fields = [
        f"epoch {r['epoch']}/{epochs}",
        f"train loss {r['train_loss']:.4f} acc {r['train_acc']:.1%} (hybrid)",
        *([f"val loss {r['val_loss']:.4f} acc {r['val_acc']:.1%}"] if validated else []),
        f"p {r['p']:.3g}",
        f"lr {r['lr']:.3g}",
        f"{r['epoch_time']:.1f}s" + (" best" if r["best"] else ""),
    ]
    return pack(fields, width, sep="  ", indent="    ")
