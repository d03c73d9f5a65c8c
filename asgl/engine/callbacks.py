"""What the trainer calls around its loop: signals, the metrics file, TensorBoard, progress, checkpoints.

A callback subclasses :class:`Callback` and overrides the hooks it needs. Hooks receive a
:class:`TrainContext`, what callbacks may read of the run (and ``stop_signal``, which they may set), not
the trainer itself. The trainer calls them in list order on every process of a DDP job (writers exist on rank 0 only; collectives run on every rank).
``on_epoch_end`` gets the epoch's record before it is written, so a callback placed before the writers may
add keys to it (the per-epoch gradient diagnosis of :mod:`asgl.diagnose.report` does). Epochs passed to the
hooks are 0-based loop indices; records carry the 1-based epoch a user reads.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from asgl.engine import distributed
from asgl.engine.checkpoint import save_checkpoint
from asgl.engine.logging import MetricsLog, TensorBoard, TrainProgress
from asgl.engine.runfolder import RunFolder


@dataclass
class RunningSums:
    """Sums over the batches of the epoch in progress (kept in mid-epoch checkpoints)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    skipped: int = 0
    seconds: float = 0.0


@dataclass
class TrainContext:
    """What callbacks see of a run. ``running`` is the epoch's sums (replaced at each epoch start);
    ``checkpoint_state(finished_epochs, step)`` is a collective; a callback sets ``stop_signal`` to end the run
    after the current step with a checkpoint."""

    model: nn.Module
    val_loader: Any  # DataLoader of the validation split
    dist: distributed.DistInfo
    device: torch.device
    steps_per_epoch: int
    checkpoint_state: Callable[[int, int], dict[str, Any]]
    running: RunningSums = field(default_factory=RunningSums)
    stop_signal: int | None = None


class Callback:
    """Every hook does nothing; ``handles`` names the recipe keys a callback implements."""

    handles: tuple[str, ...] = ()

    def on_start(self, t: TrainContext) -> None:
        """Before the first epoch of this process (also when resuming)."""

    def on_epoch_start(self, t: TrainContext, epoch: int, step: int) -> None:
        """Epoch ``epoch`` starts (at batch ``step`` when resuming mid-epoch)."""

    def on_step_end(self, t: TrainContext, epoch: int, step: int, loss: float) -> None:
        """Batch ``step`` (1-based) of ``epoch`` is done; ``loss`` may be non-finite (a skipped step)."""

    def on_epoch_end(self, t: TrainContext, record: dict[str, Any]) -> None:
        """Validation is done; ``record`` is the epoch's line of metrics.jsonl."""

    def on_loop_end(self, t: TrainContext) -> None:
        """The last epoch is done (before the test of the best checkpoint)."""

    def close(self) -> None:
        """The run ends, normally or not; release what the callback holds."""


class StopOnSignal(Callback):
    """SIGINT / SIGTERM set ``t.stop_signal`` (agreed by every rank) after the current step; a second
    signal acts at once. Handlers are installed for the loop only."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        signal.signal(signum, self._previous[signum])  # a second one is not deferred

    def on_start(self, t: TrainContext) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)

    def on_step_end(self, t: TrainContext, epoch: int, step: int, loss: float) -> None:
        t.stop_signal = distributed.agreed_signal(self.signum, t.dist, t.device)

    def on_epoch_end(self, t: TrainContext, record: dict[str, Any]) -> None:
        t.stop_signal = distributed.agreed_signal(self.signum, t.dist, t.device)

    def on_loop_end(self, t: TrainContext) -> None:
        self.close()

    def close(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


class MetricsFile(Callback):
    """metrics.jsonl: one line per epoch; on resume the lines of epochs after ``finished_epochs`` go."""

    def __init__(self, path: Path, finished_epochs: int):
        self.log = MetricsLog(path, finished_epochs)

    def on_epoch_end(self, t: TrainContext, record: dict[str, Any]) -> None:
        self.log.append(record)


class TensorBoardScalars(Callback):
    """Every epoch record, and the step loss every ``log_every`` steps."""

    def __init__(self, folder: Path, log_every: int):
        self.board, self.log_every = TensorBoard(folder), log_every

    def on_step_end(self, t: TrainContext, epoch: int, step: int, loss: float) -> None:
        global_step = epoch * t.steps_per_epoch + step
        if global_step % self.log_every == 0 and math.isfinite(loss):
            self.board.step(loss, global_step)

    def on_epoch_end(self, t: TrainContext, record: dict[str, Any]) -> None:
        self.board.epoch(record)

    def close(self) -> None:
        self.board.close()


class Progress(Callback):
    """The progress bar of the epoch in progress and one line per finished epoch."""

    def __init__(self, console: Console, epochs: int):
        self.progress = TrainProgress(console, epochs)
        self.running = False

    def on_start(self, t: TrainContext) -> None:
        self.progress.__enter__()
        self.running = True

    def on_epoch_start(self, t: TrainContext, epoch: int, step: int) -> None:
        self.progress.start_epoch(epoch, t.steps_per_epoch, step)

    def on_step_end(self, t: TrainContext, epoch: int, step: int, loss: float) -> None:
        seen = max(t.running.seen, 1)
        self.progress.step(t.running.loss_sum / seen, t.running.correct / seen)

    def on_epoch_end(self, t: TrainContext, record: dict[str, Any]) -> None:
        self.progress.end_epoch(record)

    def on_loop_end(self, t: TrainContext) -> None:
        self.close()

    def close(self) -> None:
        if self.running:
            self.progress.__exit__()
            self.running = False


class Checkpoints(Callback):
    """checkpoints/last.pt every ``every_steps`` steps, on a stop signal and at every epoch end;
    checkpoints/best.pt when validation improves. Only rank 0 writes; every rank builds the state
    (it holds a collective)."""

    def __init__(self, folder: RunFolder, every_steps: int, writes: bool):
        self.folder, self.every_steps, self.writes = folder, every_steps, writes

    def _save(self, state: dict[str, Any], path: Path) -> None:
        if self.writes:
            save_checkpoint(state, path)

    def on_step_end(self, t: TrainContext, epoch: int, step: int, loss: float) -> None:
        periodic = self.every_steps and step % self.every_steps == 0 and step < t.steps_per_epoch
        if t.stop_signal is not None or periodic:
            self._save(t.checkpoint_state(epoch, step), self.folder.last)

    def on_epoch_end(self, t: TrainContext, record: dict[str, Any]) -> None:
        state = t.checkpoint_state(record["epoch"], 0)
        if record["best"]:
            self._save(state, self.folder.best)
        self._save(state, self.folder.last)
