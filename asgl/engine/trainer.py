"""The training loop: one recipe -> one run folder (see :mod:`asgl.engine.runfolder`).

Reproducibility: model weights are initialised under ``run.seed``; the order of epoch ``e`` is a
permutation drawn from a generator seeded with ``epoch_seed(run.seed, e)``, so a checkpoint only needs
(epoch, step) to resume at the exact batch; noise masks and in-process augmentation draw from the
global torch RNG, whose state every checkpoint carries. A run resumed from any of its checkpoints on
CPU therefore ends with the same metrics as an uninterrupted one (with data workers, augmentation
drawn inside workers is reproducible per epoch but not across a mid-epoch resume).

Faults: SIGINT / SIGTERM finish the current step, write ``checkpoints/last.pt`` and raise
:class:`TrainingInterrupted`; a non-finite loss stops the run (:class:`NonFiniteLossError`) or skips the
step (``train.nan_policy = "skip"``); a failed checkpoint write raises ``CheckpointError`` and leaves
the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
import torch
from rich.console import Console
from torch.utils.data import DataLoader, Dataset, Sampler

from asgl.config import Recipe, RecipeError, apply_overrides, recipe_to_dict, recipe_to_toml, validate_recipe
from asgl.data import build_data
from asgl.diagnose.report import epoch_record
from asgl.engine import distributed
from asgl.engine.checkpoint import load_checkpoint, resolve_checkpoint_path, save_checkpoint
from asgl.engine.device import autocast, check_amp, resolve_device, to_device
from asgl.engine.evaluation import EvalResult, evaluate
from asgl.engine.logging import MetricsLog, TensorBoard, TrainProgress, neuron_state
from asgl.engine.runfolder import create_run_folder, run_folder_of
from asgl.losses import build_loss, predict
from asgl.models import build_model, count_parameters
from asgl.neuron import set_noise_prob, use_deterministic_backends
from asgl.optim import Optimizers, build_optimizers
from asgl.schedules import noise_prob_at

# keys a resumed run may change: they do not alter what is computed
RESUME_SAFE_KEYS = (
    "run.device",
    "run.threads",
    "data.root",
    "data.cache_dir",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "train.eval_batch_size",
    "train.checkpoint_every_steps",
    "train.nan_policy",
    "train.log_every",
    "train.compile",
)


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
    best_epoch: int
    best_val_acc: float
    test: EvalResult
    summary: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- recipe, device


def recipe_for_resume(checkpoint: str | Path, overrides: list[str] | None = None) -> Recipe:
    """The recipe stored in ``checkpoint`` with ``overrides`` applied (only :data:`RESUME_SAFE_KEYS`)."""
    path = resolve_checkpoint_path(checkpoint)
    ckpt = load_checkpoint(path)
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key not in RESUME_SAFE_KEYS:
            raise RecipeError(
                f"--set {key} cannot change when resuming (the run would no longer match its checkpoint); "
                f"changeable: {', '.join(RESUME_SAFE_KEYS)}"
            )
    raw = apply_overrides(tomllib.loads(ckpt["recipe"]), overrides or [])
    return validate_recipe(raw, f"stored in {path}")


def recipe_differences(a: Recipe, b: Recipe) -> list[str]:
    """Dotted keys whose values differ between two recipes."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    fa, fb = flat(recipe_to_dict(a)), flat(recipe_to_dict(b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


# ---------------------------------------------------------------- data order


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data order of ``epoch``: a pure function, so resuming needs only (epoch, step)."""
    return (seed * 1_000_003 + epoch) % (2**63)


class EpochBatches(Sampler[list[int]]):
    """Index batches of one epoch in a seeded random order, starting at batch ``start``."""

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch, self.start = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch)))
        for b in range(self.start, self.batches_per_epoch):
            yield order[b * self.batch_size : (b + 1) * self.batch_size].tolist()

    def __len__(self) -> int:
        return self.batches_per_epoch - self.start


def check_batches(train_size: int, recipe: Recipe) -> None:
    """Refuse batch sizes the training split cannot serve (raises :class:`RecipeError`)."""
    bs = recipe.train.batch_size
    if bs > train_size:
        raise RecipeError(f"train.batch_size = {bs} is larger than the training split ({train_size} samples)")
    if train_size % bs == 1 and recipe.train.time_steps == 1 and recipe.neuron.norm != "none":
        raise RecipeError(
            f"train.batch_size = {bs} leaves a last training batch of 1 sample ({train_size} samples), which "
            "batch norm cannot normalise with train.time_steps = 1; choose another batch size"
        )


def _loader(ds: Dataset, recipe: Recipe, device: torch.device, **kw: Any) -> DataLoader:
    workers = recipe.data.num_workers
    pin = recipe.data.pin_memory if recipe.data.pin_memory is not None else device.type == "cuda"
    # an own generator keeps DataLoader from drawing worker seeds from the global RNG
    return DataLoader(
        ds,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=recipe.data.persistent_workers and workers > 0,
        generator=torch.Generator().manual_seed(recipe.run.seed),
        **kw,
    )


# ---------------------------------------------------------------- RNG and signals


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StopSignals:
    """Records SIGINT / SIGTERM so the loop can stop after the current step; a second signal acts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        signal.signal(signum, self._previous[signum])  # a second one is not deferred

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


# ---------------------------------------------------------------- training


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


@dataclass
class _Running:
    """Sums over the batches of the epoch in progress (kept in mid-epoch checkpoints)."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    skipped: int = 0
    seconds: float = 0.0


def train(
    recipe: Recipe,
    out_dir: str | Path | None = None,
    resume: str | Path | None = None,
    console: Console | None = None,
) -> TrainResult:
    """Train ``recipe`` into a new run folder under ``out_dir`` (default ``run.out_dir``), or continue
    the run of checkpoint ``resume`` (a ``.pt`` file or a run folder) in its own folder.

    When resuming, ``recipe`` should come from :func:`recipe_for_resume`. ``run.threads`` applies for the
    duration of the call; the process's thread count is restored afterwards.
    """
    previous_threads = torch.get_num_threads()
    if recipe.run.threads is not None:
        torch.set_num_threads(recipe.run.threads)
    try:
        return _train(recipe, out_dir, resume, console)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    recipe: Recipe, out_dir: str | Path | None, resume: str | Path | None, console: Console | None
) -> TrainResult:
    console = console or Console(stderr=True)
    # torchrun jobs: one process per device, rank 0 alone writes (see asgl.engine.distributed)
    dist_info, device = distributed.init(resolve_device(recipe.run.device))
    if not dist_info.is_main:
        console = Console(quiet=True)
    save = save_checkpoint if dist_info.is_main else (lambda state, path: None)
    check_amp(recipe.train.amp, device)
    ckpt = None
    if resume is not None:
        ckpt_path = resolve_checkpoint_path(resume)
        ckpt = load_checkpoint(ckpt_path, map_location="cpu")

    if recipe.run.deterministic:
        torch.use_deterministic_algorithms(True)
    torch.manual_seed(recipe.run.seed)
    data = build_data(recipe)
    tcfg = recipe.train
    check_batches(len(data.train), recipe)
    torch.manual_seed(recipe.run.seed)  # weights do not depend on how much RNG data building used
    model = build_model(recipe, data.info).to(device)
    if recipe.run.deterministic and (note := use_deterministic_backends(model, device)):
        console.print(f"[yellow]warning:[/] {note}")
    if recipe.model.channels_last:
        model = model.to(memory_format=torch.channels_last)

    if dist_info.is_main:
        folder = (
            run_folder_of(ckpt_path)
            if ckpt is not None
            else create_run_folder(out_dir or recipe.run.out_dir, recipe.run.name)
        )
        folder.config.write_text(recipe_to_toml(recipe))
    folder = distributed.broadcast_object(folder if dist_info.is_main else None, dist_info)
    net = distributed.wrap_model(model, dist_info, device)
    net = torch.compile(net) if tcfg.compile else net
    epochs = tcfg.epochs
    opt = build_optimizers(model, recipe.optim, epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=tcfg.amp == "fp16")
    readout = recipe.model.readout
    loss_fn = build_loss(tcfg, readout)

    sampler = EpochBatches(len(data.train), tcfg.batch_size, recipe.run.seed)
    train_loader = _loader(data.train, recipe, device, batch_sampler=distributed.ShardedBatches(sampler, dist_info))
    eval_bs = tcfg.eval_batch_size or tcfg.batch_size
    val_loader = _loader(data.val, recipe, device, batch_size=eval_bs)
    test_loader = _loader(data.test, recipe, device, batch_size=eval_bs)

    start_epoch, start_step, best = 0, 0, {"val_acc": -1.0, "epoch": -1}
    running = _Running()
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt)
        if ckpt["scaler"]:
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_step, best = ckpt["epoch"], ckpt["step"], dict(ckpt["best"])
        running = _Running(**ckpt["running"]) if dist_info.is_main else _Running()
        set_rng_state(ckpt["rng"])
        console.print(f"resuming {folder.root} at epoch {start_epoch + 1}, step {start_step}")
    if start_epoch > epochs:
        raise RecipeError(f"checkpoint is at epoch {start_epoch} but train.epochs = {epochs}")

    def payload(epoch: int, step: int, run: _Running) -> dict[str, Any]:
        return {
            "recipe": recipe_to_toml(recipe),
            "model": model.state_dict(),
            **opt.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "epoch": epoch,
            "step": step,
            # the batch sums of every process, so a resumed rank 0 carries them for all (the others restart at 0)
            "running": distributed.sum_fields(vars(run), ("loss_sum", "correct", "seen", "skipped"), dist_info, device),
            "best": dict(best),
            "rng": rng_state(),
        }

    metrics = MetricsLog(folder.metrics, start_epoch) if dist_info.is_main else distributed.Silent()
    board = TensorBoard(folder.root) if dist_info.is_main else distributed.Silent()
    steps_per_epoch = sampler.batches_per_epoch
    console.print(
        f"run folder {folder.root}\n{recipe.model.name} ({count_parameters(model):,} parameters) on {recipe.data.name}: "
        f"{len(data.train)} train / {len(data.val)} val / {len(data.test)} test, device {device}"
    )
    try:
        with StopSignals() as stop, TrainProgress(console, epochs) as progress:
            for epoch in range(start_epoch, epochs):
                p = noise_prob_at(epoch, recipe.noise, epochs)
                set_noise_prob(model, p)
                lr = opt.main.param_groups[0]["lr"]
                step = start_step if epoch == start_epoch else 0
                if step == 0:
                    running = _Running()
                sampler.set_epoch(epoch, step)
                progress.start_epoch(epoch, steps_per_epoch, step)
                net.train()
                tick = time.perf_counter()
                for x, y in train_loader:
                    x, y = to_device(x, device, recipe.model.channels_last), y.to(device, non_blocking=True)
                    with autocast(device, tcfg.amp):
                        logits = net(x)
                    logits = logits.float()
                    loss = loss_fn(logits, y)
                    step += 1
                    if not distributed.all_finite(loss, dist_info):
                        where = f"epoch {epoch + 1}, step {step}"
                        if tcfg.nan_policy == "stop":
                            last = (
                                f"last good checkpoint: {folder.last}" if folder.last.exists() else "no checkpoint yet"
                            )
                            raise NonFiniteLossError(
                                f"loss is {float(loss.detach())} at {where}; training stopped ({last})"
                            )
                        console.print(f"[yellow]warning:[/] loss is {float(loss.detach())} at {where}; step skipped")
                        running.skipped += 1
                    else:
                        optimizer_step(loss, model, opt, scaler, recipe.optim.grad_clip)
                        running.loss_sum += float(loss.detach()) * len(y)
                        running.correct += int((predict(logits.detach(), readout) == y).sum())
                        running.seen += len(y)
                    progress.step(running.loss_sum / max(running.seen, 1), running.correct / max(running.seen, 1))
                    global_step = epoch * steps_per_epoch + step
                    if global_step % tcfg.log_every == 0 and torch.isfinite(loss):
                        board.step(float(loss.detach()), global_step)
                    signum = distributed.agreed_signal(stop.signum, dist_info, device)
                    if signum is not None or (
                        tcfg.checkpoint_every_steps
                        and step % tcfg.checkpoint_every_steps == 0
                        and step < steps_per_epoch
                    ):
                        running.seconds += time.perf_counter() - tick
                        tick = time.perf_counter()
                        save(payload(epoch, step, running), folder.last)
                    if signum is not None:
                        distributed.barrier(dist_info)  # no rank exits before rank 0 has saved
                        raise TrainingInterrupted(signum, folder.last, folder.root)

                opt.scheduler.step()
                val = evaluate(net, val_loader, loss_fn, device, tcfg.amp, recipe.model.channels_last, readout)
                running.seconds += time.perf_counter() - tick
                improved = val.accuracy > best["val_acc"]
                if improved:
                    best = {"val_acc": val.accuracy, "epoch": epoch}
                loss_sum, correct, seen = distributed.all_reduce_sum(
                    [running.loss_sum, running.correct, running.seen], dist_info, device
                )
                record = {
                    "epoch": epoch,
                    "train_loss": loss_sum / seen if seen else float("nan"),
                    "train_acc": correct / seen if seen else float("nan"),
                    "val_loss": val.loss,
                    "val_acc": val.accuracy,
                    "p": p,
                    "lr": lr,
                    "neuron_lr": opt.neuron.param_groups[0]["lr"] if opt.neuron is not None else None,
                    **neuron_state(model),
                    "skipped_steps": running.skipped,
                    "best": improved,
                    "epoch_time": running.seconds,
                }
                if tcfg.diagnose_every and (epoch + 1) % tcfg.diagnose_every == 0:
                    record.update(epoch_record(model, recipe, val_loader, p))
                metrics.append(record)
                board.epoch(record)
                progress.end_epoch(record)
                end_state = payload(epoch + 1, 0, _Running())
                if improved:
                    save(end_state, folder.best)
                save(end_state, folder.last)
                signum = distributed.agreed_signal(stop.signum, dist_info, device)
                if signum is not None:
                    distributed.barrier(dist_info)
                    raise TrainingInterrupted(signum, folder.last, folder.root)
    finally:
        board.close()

    distributed.barrier(dist_info)  # rank 0 has written best.pt
    if not folder.best.exists():
        raise RecipeError(f"no epoch finished in {folder.root}, so there is no best checkpoint to test")
    model.load_state_dict(load_checkpoint(folder.best)["model"])
    test = evaluate(net, test_loader, loss_fn, device, tcfg.amp, recipe.model.channels_last, readout)
    summary = {
        "run_dir": str(folder.root),
        "recipe": recipe.run.name,
        "epochs": epochs,
        "best_epoch": best["epoch"],
        "best_val_acc": best["val_acc"],
        "test_acc": test.accuracy,
        "test_loss": test.loss,
        "test_samples": test.samples,
        "parameters": count_parameters(model),
        "neurons": neuron_state(model),
    }
    if dist_info.is_main:
        folder.summary.write_text(json.dumps(summary, indent=2) + "\n")
    distributed.teardown(dist_info)
    return TrainResult(folder.root, best["epoch"], best["val_acc"], test, summary)
