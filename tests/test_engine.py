"""Engine: optimiser groups, data order, checkpoints, exact resume and fault handling (on tiny digits)."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
import torch

import asgl.engine.trainer as trainer_module
from asgl.engine.batches import EpochBatches
from asgl.engine.checkpoint import (
    FORMAT_KEY,
    SCHEMA_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from asgl.engine.logging import read_metrics
from asgl.engine.restore import open_checkpoint
from asgl.engine.trainer import NonFiniteLossError, TrainingInterrupted, resume, train
from asgl.neuron import LIF

# ---------------------------------------------------------------- optimiser groups


def test_three_parameter_groups(tiny_recipe):
    from asgl.builders import build_model
    from asgl.data import DataInfo
    from asgl.optim import build_optimizers, split_parameters

    recipe = tiny_recipe("optim.name=sgd", "optim.weight_decay=0.01", "optim.neuron_lr=0.002", "train.epochs=4")
    model = build_model(recipe, DataInfo("static", 1, (16, 16), 10, 2))
    groups = split_parameters(model)
    lif_params = {id(p) for m in model.modules() if isinstance(m, LIF) for p in m.parameters()}
    assert {id(p) for p in groups.neuron} == lif_params and lif_params
    assert all(p.ndim > 1 for p in groups.weights) and all(p.ndim <= 1 for p in groups.no_decay)
    every = [id(p) for p in groups.neuron + groups.weights + groups.no_decay]
    assert sorted(every) == sorted(id(p) for p in model.parameters())

    opt = build_optimizers(model, recipe.optim, recipe.train.epochs)
    assert isinstance(opt.main, torch.optim.SGD) and isinstance(opt.neuron, torch.optim.Adam)
    decay_by_param = {id(p): g["weight_decay"] for g in opt.main.param_groups for p in g["params"]}
    assert all(decay_by_param[id(p)] == 0.01 for p in groups.weights)
    assert all(decay_by_param[id(p)] == 0.0 for p in groups.no_decay)
    assert opt.neuron.param_groups[0]["lr"] == 0.002 and opt.neuron.param_groups[0]["weight_decay"] == 0.0
    for _ in range(4):  # cosine to 0 over the run; the neuron optimiser keeps its lr
        opt.main.step()
        opt.scheduler.step()
    assert opt.main.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert opt.neuron.param_groups[0]["lr"] == 0.002


def test_a_module_tagged_as_neuron_gets_the_neuron_optimiser():
    """The tag, not the class: a neuron written outside asgl gets Adam without weight decay for its decay."""
    from asgl.optim import split_parameters

    class Leaky(torch.nn.Module):
        asgl_neuron = True

        def __init__(self):
            super().__init__()
            self.decay = torch.nn.Parameter(torch.zeros(3, 3))  # ndim 2: untagged, it would take weight decay

    class Untagged(Leaky):
        asgl_neuron = False

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), Leaky(), Untagged())
    groups = split_parameters(model)
    assert [id(p) for p in groups.neuron] == [id(model[1].decay)]
    assert {id(p) for p in groups.weights} == {id(model[0].weight), id(model[2].decay)}


# ---------------------------------------------------------------- data order


def test_epoch_batches_cover_the_split_and_resume_at_a_batch():
    sampler = EpochBatches(10, 4, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(i for b in first for i in b) == list(range(10))
    sampler.set_epoch(1)
    assert list(sampler) != first  # a new order every epoch
    sampler.set_epoch(0, start=1)
    assert list(sampler) == first[1:] and len(sampler) == 2


# ---------------------------------------------------------------- checkpoint files


def minimal_payload(epoch: int) -> dict:
    keys = ("recipe", "model", "optimizer", "lr_scheduler", "step", "best", "rng")
    return {**{k: {} for k in keys}, "epoch": epoch}


def flip_middle_bytes(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 16]) + data[mid + 16 :]


def test_checkpoint_round_trip_and_refusals(tmp_path):
    path = save_checkpoint({**minimal_payload(3), "model": {"w": torch.arange(4096.0)}}, tmp_path / "c.pt")
    assert load_checkpoint(path)["epoch"] == 3
    assert load_checkpoint(path)[FORMAT_KEY] == SCHEMA_VERSION

    cases = {
        "missing.pt": None,
        "foreign.pt": lambda p: torch.save(torch.nn.Linear(2, 2).state_dict(), p),
        "newer.pt": lambda p: torch.save({FORMAT_KEY: SCHEMA_VERSION + 1, **minimal_payload(0)}, p),
        "truncated.pt": lambda p: p.write_bytes(path.read_bytes()[:200]),
        "empty.pt": lambda p: p.write_bytes(b""),
        "text.pt": lambda p: p.write_text("epoch = 3\n"),
        "flipped.pt": lambda p: p.write_bytes(flip_middle_bytes(path.read_bytes())),
    }
    expected = {
        "missing.pt": "not found",
        "foreign.pt": "not an asgl checkpoint",
        "newer.pt": "newer",
        "truncated.pt": "truncated or corrupt",
        "empty.pt": "truncated or corrupt",
        "text.pt": "truncated or corrupt",
        "flipped.pt": "fails the checksum",
    }
    for name, write in cases.items():
        target = tmp_path / name
        if write:
            write(target)
        with pytest.raises(CheckpointError, match=expected[name]):
            load_checkpoint(target)


def test_version_1_checkpoint_has_its_best_epoch_read_1_based(tmp_path):
    path = tmp_path / "v1.pt"
    torch.save({FORMAT_KEY: 1, **minimal_payload(3), "best": {"val_acc": 0.5, "epoch": 2}}, path)
    assert load_checkpoint(path)["best"] == {"val_acc": 0.5, "epoch": 3}  # version 1 stored epoch index 2


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_carrying_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({FORMAT_KEY: SCHEMA_VERSION, **minimal_payload(0), "model": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(minimal_payload(1), tmp_path / "last.pt")
    real_save = torch.save

    def disk_full(obj, f):
        real_save(obj, f)  # the temp file is written, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint is intact"):
        save_checkpoint(minimal_payload(2), path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


# ---------------------------------------------------------------- training runs


def comparable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "epoch_time"} for r in records]


def inject_into_training_loss(monkeypatch, at_call: int, action) -> None:
    """Call ``action(loss)`` at the ``at_call``-th training loss (1-based); its result replaces the loss."""
    real = trainer_module.build_loss
    calls = {"n": 0}

    def build(train_cfg, readout="mean"):
        fn = real(train_cfg, readout)

        def loss(logits, target):
            value = fn(logits, target)
            if torch.is_grad_enabled():  # training steps, not validation
                calls["n"] += 1
                if calls["n"] == at_call:
                    return action(value)
            return value

        return loss

    monkeypatch.setattr(trainer_module, "build_loss", build)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted tiny run (2 epochs x 3 steps) with a mid-epoch checkpoint every 2 steps."""
    from conftest import TINY

    from asgl.config import load_recipe

    recipe = load_recipe("digits_quick", TINY + ["train.checkpoint_every_steps=2"])
    result = train(recipe, out_dir=tmp_path_factory.mktemp("ref"))
    return recipe, result


def test_run_folder_contents(reference_run):
    recipe, result = reference_run
    root = result.run_dir
    for name in ("config.resolved.toml", "metrics.jsonl", "summary.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (root / name).is_file(), name
    assert list(root.glob("events.out.tfevents.*"))
    records = read_metrics(root / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]  # 1-based, as on screen
    for r in records:
        assert set(r["widths"]) == set(r["decays"]) and len(r["widths"]) == 3
        assert r["p"] == 0.2 and 0 <= r["val_acc"] <= 1 and r["train_loss"] > 0
    assert records[0]["lr"] == recipe.optim.lr and records[1]["lr"] < records[0]["lr"]
    last = load_checkpoint(root)
    assert (last["epoch"], last["step"]) == (2, 0)
    assert result.best_val_acc == max(r["val_acc"] for r in records)
    # the best epoch is 1-based everywhere: result, summary.json, best.pt, and the record that set it
    best = next(r for r in records if r["val_acc"] == result.best_val_acc)
    assert best["best"] and result.best_epoch == result.summary["best_epoch"] == best["epoch"]
    best_ckpt = load_checkpoint(root / "checkpoints" / "best.pt")
    assert best_ckpt["best"]["epoch"] == best_ckpt["epoch"] == best["epoch"]


def assert_same_run(a: Path, b: Path) -> None:
    assert comparable(read_metrics(a / "metrics.jsonl")) == comparable(read_metrics(b / "metrics.jsonl"))
    state_a, state_b = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_sigterm_mid_epoch_then_resume_equals_uninterrupted(reference_run, tmp_path, monkeypatch):
    recipe, reference = reference_run
    # the signal arrives during step 2 of epoch 2: the step finishes, then a checkpoint is written
    inject_into_training_loss(monkeypatch, 5, lambda loss: (os.kill(os.getpid(), signal.SIGTERM), loss)[1])
    with pytest.raises(TrainingInterrupted) as info:
        train(recipe, out_dir=tmp_path)
    assert info.value.exit_code == 143 and "--resume" in str(info.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    run_dir = info.value.run_dir
    ckpt = load_checkpoint(run_dir)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 2)
    monkeypatch.undo()

    result = resume(run_dir)
    assert_same_run(reference.run_dir, run_dir)
    assert result.test == reference.test


def test_kill_after_periodic_checkpoint_then_resume_equals_uninterrupted(reference_run, tmp_path, monkeypatch):
    """A hard kill (nothing written on the way out) loses only the steps after the last periodic checkpoint."""
    recipe, reference = reference_run

    class Killed(BaseException):
        pass

    def kill(loss):
        raise Killed

    inject_into_training_loss(monkeypatch, 2, kill)  # step 2 of epoch 1: the step-2 checkpoint is never written
    with pytest.raises(Killed):
        train(recipe, out_dir=tmp_path / "early")
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "early").iterdir()
    assert not (run_dir / "checkpoints" / "last.pt").exists()

    inject_into_training_loss(monkeypatch, 4, kill)  # step 1 of epoch 2, after checkpoints at (0,2) and (1,0)
    with pytest.raises(Killed):
        train(recipe, out_dir=tmp_path / "late")
    monkeypatch.undo()
    (run_dir,) = (tmp_path / "late").iterdir()
    ckpt = load_checkpoint(run_dir)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)
    resume(run_dir)
    assert_same_run(reference.run_dir, run_dir)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_recipe, tmp_path, monkeypatch):
    inject_into_training_loss(monkeypatch, 5, lambda loss: loss * float("nan"))
    with pytest.raises(NonFiniteLossError, match="nan at epoch 2, step 2"):
        train(tiny_recipe(), out_dir=tmp_path)
    (run_dir,) = tmp_path.iterdir()
    ckpt = load_checkpoint(run_dir)
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_nan_loss_skipped_with_skip_policy(tiny_recipe, tmp_path, monkeypatch):
    inject_into_training_loss(monkeypatch, 2, lambda loss: loss * float("inf"))
    result = train(tiny_recipe("train.nan_policy=skip"), out_dir=tmp_path)
    records = read_metrics(result.run_dir / "metrics.jsonl")
    assert [r["skipped_steps"] for r in records] == [1, 0]
    assert all(v == v for r in records for v in (r["train_loss"], r["val_loss"]))  # no NaN leaked


def test_failed_checkpoint_write_during_training(tiny_recipe, tmp_path, monkeypatch):
    import asgl.engine.checkpoint as checkpoint_module

    real_replace = os.replace
    saves = {"n": 0}

    def replace(src, dst):
        saves["n"] += 1
        if saves["n"] > 2:  # epoch 1 wrote best.pt and last.pt; epoch 2 hits a write error
            raise OSError(errno.EIO, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint_module.os, "replace", replace)
    with pytest.raises(CheckpointError, match="Input/output error"):
        train(tiny_recipe(), out_dir=tmp_path)
    monkeypatch.undo()
    (run_dir,) = tmp_path.iterdir()
    assert load_checkpoint(run_dir)["epoch"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]


def test_resume_refuses_changes_that_alter_the_run(reference_run):
    from asgl.config import RecipeError

    _, reference = reference_run
    with pytest.raises(RecipeError, match="surrogate.width cannot change"):
        open_checkpoint(reference.run_dir, ["surrogate.width=1"])
    assert open_checkpoint(reference.run_dir, ["run.device=cpu"]).recipe.run.device == "cpu"


def test_run_threads_applies_during_training_and_is_restored(tiny_recipe, tmp_path, monkeypatch):
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    seen = []
    real_step = trainer_module.optimizer_step
    monkeypatch.setattr(
        trainer_module, "optimizer_step", lambda *a, **k: (seen.append(torch.get_num_threads()), real_step(*a, **k))
    )
    train(tiny_recipe(f"run.threads={wanted}", "train.epochs=1"), out_dir=tmp_path)
    assert seen and set(seen) == {wanted}
    assert torch.get_num_threads() == before  # no global state left behind for the caller


def test_grad_clip_rescales_the_gradient_to_the_clip_norm():
    from asgl.config import validate_recipe
    from asgl.optim import build_optimizers

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3))
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    params = list(model.parameters())
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), params)
    norm = float(torch.sqrt(sum((g**2).sum() for g in grads)))
    clip = norm / 4  # the gradient is 4 times too long
    before = [p.detach().clone() for p in params]
    optim = {"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0, "grad_clip": clip, "schedule": "none"}
    opt = build_optimizers(model, validate_recipe({"optim": optim}).optim, 1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    trainer_module.optimizer_step(torch.nn.functional.cross_entropy(model(x), y), model, opt, scaler, clip)
    steps = [b - p.detach() for b, p in zip(before, params)]  # lr 1: the step is the gradient used
    assert float(torch.sqrt(sum((s**2).sum() for s in steps))) == pytest.approx(clip, rel=1e-5)
    for s, g in zip(steps, grads):
        assert torch.allclose(s, g * clip / norm, atol=1e-7)


def test_grad_clip_of_the_recipe_reaches_the_optimiser_step(tiny_recipe, tmp_path, monkeypatch):
    clips = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, m, *a, **k: (clips.append(m), real(p, m))[1])
    train(tiny_recipe("optim.grad_clip=0.5", "train.epochs=1"), out_dir=tmp_path)
    assert clips == [0.5] * 3  # one per step


def test_run_deterministic_two_runs_are_bit_identical_and_the_setting_is_restored(tiny_recipe, tmp_path, monkeypatch):
    seen = []
    real_step = trainer_module.optimizer_step
    monkeypatch.setattr(
        trainer_module,
        "optimizer_step",
        lambda *a, **k: (seen.append(torch.are_deterministic_algorithms_enabled()), real_step(*a, **k)),
    )
    recipe = tiny_recipe("run.deterministic=true", "train.epochs=1")
    first, second = train(recipe, out_dir=tmp_path / "a"), train(recipe, out_dir=tmp_path / "b")
    assert seen and all(seen), "deterministic algorithms were off while training"
    assert not torch.are_deterministic_algorithms_enabled(), "the setting leaked out of the run"
    assert_same_run(first.run_dir, second.run_dir)
    assert first.test == second.test


def test_callbacks_see_every_hook_in_order_and_extend_the_records(tiny_recipe, tmp_path):
    from asgl.engine.callbacks import Callback

    class Recorder(Callback):
        def __init__(self):
            self.calls = []

        def on_start(self, t):
            self.calls.append("start")

        def on_epoch_start(self, t, epoch, step):
            self.calls.append(("epoch", epoch, step))

        def on_step_end(self, t, epoch, step, loss):
            self.calls.append(("step", epoch, step))

        def on_epoch_end(self, t, record):
            record["custom"] = 10 * record["epoch"]
            self.calls.append(("end", record["epoch"]))

        def on_loop_end(self, t):
            self.calls.append("loop end")

        def close(self):
            self.calls.append("close")

    recorder = Recorder()
    result = train(tiny_recipe(), out_dir=tmp_path, callbacks=[recorder])
    steps = [[("step", e, s) for s in (1, 2, 3)] for e in (0, 1)]
    assert recorder.calls == [
        "start",
        ("epoch", 0, 0), *steps[0], ("end", 1),
        ("epoch", 1, 0), *steps[1], ("end", 2),
        "loop end",
        "close",
    ]  # fmt: skip
    assert [r["custom"] for r in read_metrics(result.run_dir / "metrics.jsonl")] == [10, 20]
