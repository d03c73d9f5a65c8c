"""The training loop: one recipe -> one run folder (see :mod:`asgl.engine.runfolder`).

:func:`train` (a new run) and :func:`resume` (a checkpoint's run, its folder locked before the checkpoint
is read once) drive a :class:`Trainer`: building it runs every check that can fail and builds everything
(through :mod:`asgl.builders`) before the run folder exists; then ``open_run`` (the folder, locked), per
epoch ``train_epoch`` and ``end_epoch``, and ``finish`` (the best checkpoint on the test split,
``summary.json``). The metrics file, TensorBoard, progress, checkpoints and signal handling are callbacks
(:mod:`asgl.engine.callbacks`), which see a :class:`asgl.engine.callbacks.TrainContext`; callers add their
own, such as the per-epoch gradient diagnosis of :mod:`asgl.diagnose.report`. Each epoch's p reaches the
neurons through one :func:`asgl.neuron.set_noise_prob` call.

Reproducibility: model weights are initialised under ``run.seed``; the order of epoch ``e`` is a
permutation drawn from a generator seeded with ``epoch_seed(run.seed, e)``, so a checkpoint only needs
(epoch, step) to resume at the exact batch; noise masks and in-process augmentation draw from the
global torch RNG, whose state every checkpoint carries. A run resumed from any of its checkpoints on
CPU therefore ends with the same metrics as an uninterrupted one (with data workers, augmentation
drawn inside workers is reproducible per epoch but not across a mid-epoch resume).

Faults: SIGINT / SIGTERM finish the current step, write ``checkpoints/last.pt`` and raise
:class:`TrainingInterrupted`; a non-finite loss stops the run (:class:`NonFiniteLossError`) or skips the
step (``train.nan_policy = "skip"``); a failed checkpoint write raises ``CheckpointError`` and leaves
the previous checkpoint intact. Epochs a user reads (screen, metrics.jsonl, summary.json) are 1-based.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from asgl.builders import build_data, build_optimizers
from asgl.config import Recipe, RecipeError, RunConfig, recipe_to_toml
from asgl.engine import distributed
from asgl.engine.batches import EpochBatches, check_batches, make_loader
from asgl.engine.callbacks import (
    Callback,
    Checkpoints,
    MetricsFile,
    Progress,
    RunningSums,
    StopOnSignal,
    TensorBoardScalars,
    TrainContext,
)
from asgl.engine.checkpoint import load_checkpoint, resolve_checkpoint_path
from asgl.engine.device import autocast, check_runtime, to_device
from asgl.engine.evaluation import EvalResult, evaluate
from asgl.engine.logging import neuron_state
from asgl.engine.restore import Stored, build_model_for, open_checkpoint
from asgl.engine.runfolder import RunFolder, RunFolderLock, create_run_folder, run_folder_of
from asgl.losses import build_loss, predict
from asgl.models import count_parameters
from asgl.neuron import set_mask_stream, set_noise_prob
from asgl.optim import Optimizers
from asgl.schedules import noise_prob_at
from asgl.terminal import say
from asgl.trust import CodeTrust


class TrainingInterrupted(Exception):
    """SIGINT / SIGTERM: a resumable checkpoint was written; ``exit_code`` is 128 + signal number."""

    def __init__(self, signum: int, checkpoint: Path, run_dir: Path):
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        self.run_dir = run_dir
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: checkpoint written to {checkpoint}\nresume with: asgl train --resume {run_dir}"
        )


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf with ``train.nan_policy = "stop"``."""


@dataclass
class TrainResult:
    run_dir: Path
    best_epoch: int  # 1-based
    best_val_acc: float
    test: EvalResult
    summary: dict[str, Any] = field(default_factory=dict)


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def optimizer_step(
    loss: torch.Tensor, model: torch.nn.Module, opt: Optimizers, scaler: torch.amp.GradScaler, grad_clip: float | None
) -> None:
    """Backward pass and one step of the main and neuron optimisers (fp16 loss scaling, optional clipping)."""
    steppers = [o for o in (opt.main, opt.neuron) if o is not None]
    opt.zero_grad()
    scaler.scale(loss).backward()
    if grad_clip is not None:
        for o in steppers:
            scaler.unscale_(o)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    for o in steppers:
        scaler.step(o)
    scaler.update()


def check_callbacks(recipe: Recipe, callbacks: Sequence[Callback]) -> None:
    """Recipe keys implemented by a caller's callback must have one (the engine does not import diagnosis)."""
    handled = {key for c in callbacks for key in c.handles}
    if recipe.train.diagnose_every and "train.diagnose_every" not in handled:
        raise RecipeError(
            "train.diagnose_every needs the per-epoch diagnosis callback: pass "
            "callbacks=asgl.diagnose.report.diagnosis_callbacks(recipe) (asgl train does)"
        )


class Trainer:
    """One run of one recipe; see the module docstring for its steps. Building one checks and builds
    everything (device, backend, data, model, optimisers; the progress of ``stored`` when resuming) and
    writes nothing."""

    def __init__(
        self,
        recipe: Recipe,
        console: Console | None = None,
        callbacks: Sequence[Callback] = (),
        stored: Stored | None = None,
    ):
        r, t = recipe, recipe.train
        check_callbacks(r, callbacks)
        self.recipe = recipe
        # torchrun jobs: one process per device, rank 0 alone writes (see asgl.engine.distributed)
        self.dist, self.device = distributed.init(check_runtime(r))
        self.console = (console or Console(stderr=True)) if self.dist.is_main else Console(quiet=True)
        self.extra = list(callbacks)
        self.callbacks: list[Callback] = []  # with the writers, once the run folder is open
        self.folder: RunFolder | None = None
        self.lock: RunFolderLock | None = None  # of a new run folder (a resumed one is locked by the caller)
        torch.manual_seed(r.run.seed)
        self.data = build_data(r)
        check_batches(len(self.data.train), r)
        self.model = build_model_for(r, self.data.info, stored).to(self.device)
        set_mask_stream(self.model, self.dist.rank)  # same RNG on every rank, independent masks
        net = distributed.wrap_model(self.model, self.dist, self.device)
        self.net = torch.compile(net) if t.compile else net
        self.opt = build_optimizers(r, self.model)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.amp == "fp16")
        self.loss_fn = build_loss(r.train, r.model.readout)
        self.sampler = EpochBatches(len(self.data.train), t.batch_size, r.run.seed)
        sharded = distributed.ShardedBatches(self.sampler, self.dist)
        self.train_loader = make_loader(self.data.train, r, self.device, batch_sampler=sharded)
        eval_bs = t.eval_batch_size or t.batch_size
        self.val_loader = make_loader(self.data.val, r, self.device, batch_size=eval_bs)
        self.test_loader = make_loader(self.data.test, r, self.device, batch_size=eval_bs)
        self.best = {"val_acc": -1.0, "epoch": 0}  # epoch 1-based, 0 before the first validation
        self.start_epoch, self.start_step = 0, 0
        self.noise_prob, self.lr = r.noise.prob, self.opt.main.param_groups[0]["lr"]  # of the epoch in progress
        self.context = TrainContext(
            self.model, self.val_loader, self.dist, self.device, self.sampler.batches_per_epoch, self.checkpoint_state
        )
        self._tick = time.perf_counter()
        if stored is not None:
            self.load_progress(stored.state)

    def load_progress(self, state: dict[str, Any]) -> None:
        """Optimiser, scaler, position, best epoch, running sums and RNG of a checkpoint."""
        self.opt.load_state_dict(state)
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.start_epoch, self.start_step, self.best = state["epoch"], state["step"], dict(state["best"])
        if self.dist.is_main:  # rank 0 carries the sums of every process; the others restart at 0
            self.context.running = RunningSums(**state["running"])
        if self.start_epoch > self.recipe.train.epochs:
            raise RecipeError(
                f"checkpoint is at epoch {self.start_epoch} but train.epochs = {self.recipe.train.epochs}"
            )
        set_rng_state(state["rng"])

    # ------------------------------------------------------------ the run folder

    def open_run(self, out_dir: str | Path | None, stored: Stored | None) -> None:
        """Create (or reopen, when resuming) the run folder, write the recipe, set up the callbacks."""
        r, main = self.recipe, self.dist.is_main
        folder = self._main_folder(out_dir, stored) if main else None
        self.folder = distributed.broadcast_object(folder, self.dist)
        writers = [MetricsFile(self.folder.metrics, self.start_epoch)] if main else []
        writers += [TensorBoardScalars(self.folder.root, r.train.log_every)] if main else []
        self.callbacks = [
            StopOnSignal(),
            *self.extra,
            *writers,
            Progress(self.console, r.train.epochs),
            Checkpoints(self.folder, r.train.checkpoint_every_steps, main),
        ]
        if stored is not None:
            say(self.console, f"resuming {self.folder.root} at epoch {self.start_epoch + 1}, step {self.start_step}")
        say(self.console, f"run folder {self.folder.root}")
        say(
            self.console,
            f"{r.model.name} ({count_parameters(self.model):,} parameters) on {r.data.name}: {len(self.data.train)} "
            f"train / {len(self.data.val)} val / {len(self.data.test)} test, device {self.device}",
        )

    def _main_folder(self, out_dir: str | Path | None, stored: Stored | None) -> RunFolder:
        """Rank 0: a new locked run folder (the resumed run's own, locked in :meth:`setup`) with the recipe."""
        if stored is not None:  # locked by the caller, before the checkpoint was read (see :func:`resume`)
            folder = run_folder_of(stored.path)
        else:
            folder = create_run_folder(out_dir or self.recipe.run.out_dir, self.recipe.run.name)
            self.lock = RunFolderLock(folder.root).acquire()
        folder.config.write_text(recipe_to_toml(self.recipe))
        return folder

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` of every callback, in order."""
        for c in self.callbacks:
            getattr(c, hook)(self.context, *args)

    # ------------------------------------------------------------ the loop

    def fit(self) -> TrainResult:
        """Train the remaining epochs, then :meth:`finish`."""
        self.call("on_start")
        for epoch in range(self.start_epoch, self.recipe.train.epochs):
            self.train_epoch(epoch)
            self.end_epoch(epoch)
        self.call("on_loop_end")
        return self.finish()

    def train_epoch(self, epoch: int) -> None:
        """The training batches of epoch ``epoch`` (0-based), from ``start_step`` when resuming into it."""
        r = self.recipe
        self.noise_prob = noise_prob_at(epoch, r.noise, r.train.epochs)
        set_noise_prob(self.model, self.noise_prob)
        self.lr = self.opt.main.param_groups[0]["lr"]
        step = self.start_step if epoch == self.start_epoch else 0
        if step == 0:
            self.context.running = RunningSums()
        self.sampler.set_epoch(epoch, step)
        self.call("on_epoch_start", epoch, step)
        self.net.train()
        self._tick = time.perf_counter()
        for x, y in self.train_loader:
            step += 1
            loss = self.train_step(x, y, epoch, step)
            self.call("on_step_end", epoch, step, loss)
            if self.context.stop_signal is not None:
                self.interrupt()

    def train_step(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> float:
        """Forward, loss and (when the loss is finite on every rank) an optimiser step; returns the loss."""
        r = self.recipe
        x, y = to_device(x, self.device, r.model.channels_last), y.to(self.device, non_blocking=True)
        with autocast(self.device, r.train.amp):
            logits = self.net(x)
        logits = logits.float()
        loss = self.loss_fn(logits, y)
        value = float(loss.detach())
        if not distributed.all_finite(loss, self.dist):
            where = f"epoch {epoch + 1}, step {step}"
            if r.train.nan_policy == "stop":
                last = self.folder.last
                saved = f"last good checkpoint: {last}" if last.exists() else "no checkpoint yet"
                raise NonFiniteLossError(f"loss is {value} at {where}; training stopped ({saved})")
            say(self.console, f"[yellow]warning:[/] loss is {value} at {where}; step skipped")
            self.context.running.skipped += 1
            return value
        optimizer_step(loss, self.model, self.opt, self.scaler, r.optim.grad_clip)
        running = self.context.running
        running.loss_sum += value * len(y)
        running.correct += int((predict(logits.detach(), r.model.readout) == y).sum())
        running.seen += len(y)
        return value

    def end_epoch(self, epoch: int) -> None:
        """Validation, the epoch's record (callbacks log it and save checkpoints), best epoch."""
        r = self.recipe
        self.opt.scheduler.step()
        val = (  # no validation split (train.val_fraction = 0): nan
            evaluate(
                self.net,
                self.val_loader,
                self.loss_fn,
                self.device,
                r.train.amp,
                r.model.channels_last,
                r.model.readout,
            )
            if len(self.data.val)
            else EvalResult(float("nan"), float("nan"), 0)
        )
        self.lap()
        improved = r.train.select == "last" or val.accuracy > self.best["val_acc"]
        if improved:
            self.best = {"val_acc": val.accuracy, "epoch": epoch + 1}
        loss_sum, correct, seen = distributed.all_reduce_sum(
            [self.context.running.loss_sum, self.context.running.correct, self.context.running.seen],
            self.dist,
            self.device,
        )
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / seen if seen else float("nan"),
            "train_acc": correct / seen if seen else float("nan"),
            "val_loss": val.loss,
            "val_acc": val.accuracy,
            "p": self.noise_prob,
            "lr": self.lr,
            "neuron_lr": self.opt.neuron.param_groups[0]["lr"] if self.opt.neuron is not None else None,
            **neuron_state(self.model),
            "skipped_steps": self.context.running.skipped,
            "best": improved,
            "epoch_time": self.context.running.seconds,
        }
        self.call("on_epoch_end", record)
        if self.context.stop_signal is not None:
            self.interrupt()

    def lap(self) -> None:
        """Add the time since the last lap to the epoch's running time."""
        now = time.perf_counter()
        self.context.running.seconds += now - self._tick
        self._tick = now

    def checkpoint_state(self, finished_epochs: int, step: int) -> dict[str, Any]:
        """Everything a resume needs, at batch ``step`` of the epoch after ``finished_epochs`` (a collective)."""
        running = self.context.running if step else RunningSums()
        if step:
            self.lap()
        return {
            "recipe": recipe_to_toml(self.recipe),
            "model": self.model.state_dict(),
            **self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "epoch": finished_epochs,
            "step": step,
            # the sums of every process, so a resumed rank 0 carries them for all (the others restart at 0)
            "running": distributed.sum_fields(
                vars(running), ("loss_sum", "correct", "seen", "skipped"), self.dist, self.device
            ),
            "best": dict(self.best),
            "rng": rng_state(),
        }

    def interrupt(self) -> None:
        distributed.barrier(self.dist)  # no rank exits before rank 0 has saved
        raise TrainingInterrupted(self.context.stop_signal, self.folder.last, self.folder.root)

    # ------------------------------------------------------------ the end

    def finish(self) -> TrainResult:
        """The best checkpoint on the test split; summary.json."""
        r, folder = self.recipe, self.folder
        distributed.barrier(self.dist)  # rank 0 has written best.pt
        if not folder.best.exists():
            raise RecipeError(f"no epoch finished in {folder.root}, so there is no best checkpoint to test")
        self.model.load_state_dict(load_checkpoint(folder.best)["model"])
        test = evaluate(
            self.net, self.test_loader, self.loss_fn, self.device, r.train.amp, r.model.channels_last, r.model.readout
        )
        summary = {
            "run_dir": str(folder.root),
            "recipe": r.run.name,
            "epochs": r.train.epochs,
            "best_epoch": self.best["epoch"],
            "best_val_acc": self.best["val_acc"],
            "test_acc": test.accuracy,
            "test_loss": test.loss,
            "test_samples": test.samples,
            "parameters": count_parameters(self.model),
            "neurons": neuron_state(self.model),
        }
        if self.dist.is_main:
            folder.summary.write_text(json.dumps(summary, indent=2) + "\n")
        distributed.teardown(self.dist)
        return TrainResult(folder.root, self.best["epoch"], self.best["val_acc"], test, summary)

    def close(self) -> None:
        """Close the callbacks and release the new run folder (also after an error)."""
        for c in self.callbacks:
            c.close()
        if self.lock is not None:
            self.lock.release()


@contextlib.contextmanager
def process_settings(run: RunConfig) -> Iterator[None]:
    """``run.threads`` and ``run.deterministic`` for the duration of a run; the caller's settings come back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    if run.deterministic:
        torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def train(
    recipe: Recipe,
    out_dir: str | Path | None = None,
    console: Console | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``recipe`` into a new run folder under ``out_dir`` (default ``run.out_dir``).

    ``callbacks`` run before the built-in writers (see :mod:`asgl.engine.callbacks`). Every problem the
    setup can find is raised before the run folder is made.
    """
    return _run(recipe, None, out_dir, console, callbacks)


def resume(
    checkpoint: str | Path,
    overrides: Sequence[str] = (),
    trust: CodeTrust = CodeTrust(),
    check: Callable[[Recipe], None] | None = None,
    console: Console | None = None,
    callbacks: Callable[[Recipe], Sequence[Callback]] = lambda recipe: (),
) -> TrainResult:
    """Continue the run of ``checkpoint`` (a ``.pt`` file or a run folder) in its own folder, with the recipe
    stored there (``overrides``: resume-safe ``--set`` items; ``trust``: see :func:`open_checkpoint`).

    The run folder is locked before the checkpoint is read, and the checkpoint is read once. ``check`` may
    refuse the stored recipe (raise); ``callbacks`` makes the extra callbacks for it.
    """
    path = resolve_checkpoint_path(checkpoint)
    main = distributed.from_env().is_main  # before reading: another process may be writing it
    with RunFolderLock(run_folder_of(path).root) if main else contextlib.nullcontext():
        stored = open_checkpoint(path, list(overrides), trust)
        if check is not None:
            check(stored.recipe)
        return _run(stored.recipe, stored, None, console, callbacks(stored.recipe))


def _run(
    recipe: Recipe,
    stored: Stored | None,
    out_dir: str | Path | None,
    console: Console | None,
    callbacks: Sequence[Callback],
) -> TrainResult:
    with process_settings(recipe.run):
        trainer: Trainer | None = None
        try:
            trainer = Trainer(recipe, console, callbacks, stored)
            trainer.open_run(out_dir, stored)
            return trainer.fit()
        finally:
            if trainer is not None:
                trainer.close()
