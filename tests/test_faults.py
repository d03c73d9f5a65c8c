"""Fault injection on digits: kills, signals, full disks, NaN losses, broken data and hostile checkpoints.

Each test breaks one thing the way it breaks in real life (a real SIGKILL or SIGTERM to a real
``asgl train`` process, an ``OSError(ENOSPC)`` from the write, a checkpoint file cut short or carrying
code) and asserts what the user gets: the run is resumable to the same result, the previous
checkpoint is intact, the message names the step or the file, nothing runs that the user did not ask
for. All runs use a 64-sample digits subset, 8 steps per epoch and a mid-epoch checkpoint every 2 steps.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures_images import write_cifar10
from typer.testing import CliRunner

from asgl.engine.checkpoint import load_checkpoint
from asgl_cli.main import app

RECIPE = """\
[run]
name = "faults"
seed = 0
device = "cpu"

[data]
name = "digits"
subset = 64

[model]
name = "digits_convnet"
hidden = 8

[optim]
name = "adam"
lr = 0.003
weight_decay = 0.0

[train]
epochs = 2
batch_size = 8
time_steps = 2
checkpoint_every_steps = 2
"""
EPOCHS = 2
PROCESS_TIMEOUT_S = 240

pytestmark = pytest.mark.timeout(600)


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_recipe(folder: Path, text: str = RECIPE) -> Path:
    path = folder / "faults.toml"
    path.write_text(text)
    return path


def the_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def outcome(run: Path) -> tuple[list[dict], dict]:
    """Per-epoch metrics and the summary, without wall-clock times and paths."""
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for record in metrics:
        record.pop("epoch_time")
    summary = json.loads((run / "summary.json").read_text())
    summary.pop("run_dir")
    return metrics, summary


def asgl_process(*args: object, prelude: str = "") -> list[str]:
    """Command line of a real ``asgl`` process; ``prelude`` is Python run first (the fault injection)."""
    code = f"{prelude}\nimport sys\nfrom asgl_cli.main import app\napp(prog_name='asgl', args=sys.argv[1:])\n"
    return [sys.executable, "-c", code, *[str(a) for a in args]]


def assert_one_error(result, *expected: str, code: int = 2) -> str:
    out = result.output
    assert result.exit_code == code, f"exit {result.exit_code}\n{out}\n{result.exception!r}"
    assert "Traceback" not in out
    assert out.count("error:") == 1, out
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of RECIPE: what every interrupted-and-resumed run must end with."""
    folder = tmp_path_factory.mktemp("reference")
    result = cli("train", write_recipe(folder), "--out", folder / "runs")
    assert result.exit_code == 0, result.output
    return the_run(folder / "runs")


# ---------------------------------------------------------------- kill, Ctrl-C, SIGTERM

# dies by SIGKILL in the middle of writing the step-4 checkpoint of epoch 1: steps 3-4 are lost,
# a half-written temp file is left behind, checkpoints/last.pt still holds step 2
SIGKILL_DURING_SAVE = """
import os, signal, torch
_save = torch.save
def save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("epoch") == 0 and obj.get("step") == 4:
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return _save(obj, f, *args, **kwargs)
torch.save = save
"""


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path: Path, reference: Path) -> None:
    out = tmp_path / "runs"
    proc = subprocess.run(
        asgl_process("train", write_recipe(tmp_path), "--out", out, prelude=SIGKILL_DURING_SAVE),
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_S,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run = the_run(out)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2), "the checkpoint before the interrupted write must survive"

    result = cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert "epoch 1, step 2" in result.output
    assert outcome(run) == outcome(reference)


def wait_until(condition, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not condition():
        assert proc.poll() is None, f"asgl exited early ({proc.returncode}):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()}"
        time.sleep(0.005)


def test_sigterm_writes_resumable_checkpoint_and_exits_143(tmp_path: Path, reference: Path) -> None:
    out, log = tmp_path / "runs", tmp_path / "asgl.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(asgl_process("train", write_recipe(tmp_path), "--out", out), stdout=sink, stderr=sink)
        try:
            wait_until(lambda: out.exists() and any(out.glob("*/checkpoints/last.pt")), proc, log)
            proc.send_signal(signal.SIGTERM)  # the training loop is running: epoch 1, step 2 was saved
            proc.wait(timeout=PROCESS_TIMEOUT_S)
        finally:
            proc.kill()
    output = log.read_text()
    run = the_run(out)
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert "SIGTERM" in output and "Traceback" not in output
    assert f"asgl train --resume {run}" in " ".join(output.split()), output
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) < (EPOCHS, 0), "stopped before the end"

    result = cli("train", "--resume", run)
    assert result.exit_code == 0, result.output
    assert outcome(run) == outcome(reference)


def loss_hook(monkeypatch: pytest.MonkeyPatch, at_call: int, action) -> None:
    """Make the training loss (calls with grad enabled) run ``action(loss)`` at its ``at_call``-th call."""
    import asgl.engine.trainer as trainer

    build = trainer.build_loss
    calls = {"n": 0}

    def build_hooked(*args, **kwargs):
        loss_fn = build(*args, **kwargs)

        def hooked(logits, target):
            loss = loss_fn(logits, target)
            if torch.is_grad_enabled():
                calls["n"] += 1
                if calls["n"] == at_call:
                    return action(loss)
            return loss

        return hooked

    monkeypatch.setattr(trainer, "build_loss", build_hooked)


def test_ctrl_c_writes_resumable_checkpoint_and_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def ctrl_c(loss):
        # without asgl's handler this SIGINT would abort the test session: fail instead
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler, "no SIGINT handler while training"
        os.kill(os.getpid(), signal.SIGINT)
        return loss

    loss_hook(monkeypatch, 3, ctrl_c)
    out = tmp_path / "runs"
    result = cli("train", write_recipe(tmp_path), "--out", out)
    run = the_run(out)
    assert result.exit_code == 128 + signal.SIGINT, result.output
    assert "Traceback" not in result.output
    assert f"asgl train --resume {run}" in " ".join(result.output.split())
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (0, 3), "the step in progress finishes, then a checkpoint is written"


# ---------------------------------------------------------------- disk full


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["torch.save", "os.replace"])
def test_disk_full_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    real = {"torch.save": torch.save, "os.replace": os.replace}[failing]
    calls = {"n": 0}

    def second_checkpoint_fails(*args, **kwargs):
        calls["n"] += 1
        return _enospc() if calls["n"] == 2 else real(*args, **kwargs)

    if failing == "torch.save":
        monkeypatch.setattr(torch, "save", second_checkpoint_fails)
    else:
        monkeypatch.setattr(os, "replace", second_checkpoint_fails)
    out = tmp_path / "runs"
    result = cli("train", write_recipe(tmp_path), "--out", out)
    monkeypatch.undo()
    assert_one_error(result, "last.pt", os.strerror(errno.ENOSPC), "previous checkpoint is intact")
    folder = the_run(out) / "checkpoints"
    ckpt = load_checkpoint(folder / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2)
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt"], "no temp file left behind"


# ---------------------------------------------------------------- NaN / inf loss


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_loss_stops_naming_the_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: float) -> None:
    loss_hook(monkeypatch, 5, lambda loss: loss * bad)
    out = tmp_path / "runs"
    result = cli("train", write_recipe(tmp_path), "--out", out)
    run = the_run(out)
    assert_one_error(result, "epoch 1, step 5", str(run / "checkpoints" / "last.pt"), code=1)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (0, 4), "the last good checkpoint stays"
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_non_finite_loss_skipped_by_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loss_hook(monkeypatch, 5, lambda loss: loss * float("nan"))
    out = tmp_path / "runs"
    result = cli("train", write_recipe(tmp_path), "--out", out, "--set", "train.nan_policy=skip")
    assert result.exit_code == 0, result.output
    assert "epoch 1, step 5" in result.output
    run = the_run(out)
    metrics, _ = outcome(run)
    assert [m["skipped_steps"] for m in metrics] == [1, 0]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


# ---------------------------------------------------------------- broken data files


def cifar_recipe(folder: Path) -> Path:
    write_cifar10(folder / "data", per_batch=4, n_test=6)
    text = RECIPE.replace('name = "digits"\nsubset = 64', f'name = "cifar10"\nroot = "{folder / "data"}"')
    return write_recipe(folder, text.replace("batch_size = 8", "batch_size = 4"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "huge-frame", "folder"])
def test_broken_data_file_is_named(tmp_path: Path, damage: str) -> None:
    recipe = cifar_recipe(tmp_path)
    victim = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_3"
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:100])
    elif damage == "garbage":
        victim.write_bytes(bytes(range(256)) * 2)
    elif damage == "huge-frame":  # a pickle frame header claiming 2**64 - 1 bytes (OverflowError)
        victim.write_bytes(b"\x80\x04\x95" + (2**64 - 1).to_bytes(8, "little"))
    else:
        victim.unlink()
        victim.mkdir()
    result = cli("train", recipe, "--out", tmp_path / "runs")
    assert_one_error(result, "data_batch_3")
    assert not (tmp_path / "runs").exists(), "found after the run folder was made"


class CodePayload:
    """Unpickling this runs ``os.mkdir(marker)``: harmless, and visible if it ever happens."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_data_file_carrying_code_is_refused(tmp_path: Path) -> None:
    import pickle

    recipe = cifar_recipe(tmp_path)
    marker = tmp_path / "code-ran"
    victim = tmp_path / "data" / "cifar-10-batches-py" / "data_batch_2"
    victim.write_bytes(pickle.dumps({b"data": CodePayload(marker), b"labels": [0]}, protocol=2))
    result = cli("train", recipe, "--out", tmp_path / "runs")
    assert not marker.exists(), "loading the data file ran code"
    assert_one_error(result, "data_batch_2")
    assert not (tmp_path / "runs").exists(), "found after the run folder was made"


# ---------------------------------------------------------------- hostile and broken checkpoints


@pytest.fixture
def good_checkpoint(reference: Path, tmp_path: Path) -> Path:
    path = tmp_path / "good.pt"
    shutil.copyfile(reference / "checkpoints" / "best.pt", path)
    return path


def test_good_checkpoint_evaluates(good_checkpoint: Path) -> None:
    result = cli("eval", "--ckpt", good_checkpoint, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["samples"] == 64


def test_checkpoint_carrying_code_is_refused_unexecuted(good_checkpoint: Path, tmp_path: Path) -> None:
    payload = torch.load(good_checkpoint, weights_only=True)
    payload["model"]["extra"] = CodePayload(tmp_path / "code-ran")
    evil = tmp_path / "evil.pt"
    torch.save(payload, evil)
    # the payload is live: an unrestricted load runs it
    torch.load(evil, weights_only=False)
    assert (tmp_path / "code-ran").is_dir()
    (tmp_path / "code-ran").rmdir()

    assert_one_error(cli("eval", "--ckpt", evil), "refused", str(evil))
    assert not (tmp_path / "code-ran").exists()


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _bad_header(data: bytes) -> bytes:
    return bytes(64) + data[64:]


def _flipped_tensor_bytes(data: bytes) -> bytes:
    # flip bytes inside the stored tensor data (well past the pickle record at the start)
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :]


@pytest.mark.parametrize(
    "damage",
    [_truncated, _bad_header, _flipped_tensor_bytes, lambda d: b"", lambda d: b"epoch = 3\nnot a checkpoint\n"],
    ids=["truncated", "bad-header", "flipped-tensor-bytes", "empty", "text"],
)
def test_damaged_checkpoint_refused(good_checkpoint: Path, tmp_path: Path, damage) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(damage(good_checkpoint.read_bytes()))
    assert_one_error(cli("eval", "--ckpt", bad), str(bad))


@pytest.mark.parametrize("kind", ["state-dict", "other-project", "tensor"])
def test_foreign_checkpoint_refused(good_checkpoint: Path, tmp_path: Path, kind: str) -> None:
    state = load_checkpoint(good_checkpoint)["model"]
    foreign = {
        "state-dict": state,
        "other-project": {"epoch": 3, "net": state, "acc": 91.2},
        "tensor": torch.zeros(3),
    }[kind]
    path = tmp_path / "foreign.pt"
    torch.save(foreign, path)
    assert_one_error(cli("eval", "--ckpt", path), "not an asgl checkpoint")


def test_newer_schema_refused(good_checkpoint: Path, tmp_path: Path) -> None:
    payload = torch.load(good_checkpoint, weights_only=True)
    payload["asgl_checkpoint"] += 1
    path = tmp_path / "newer.pt"
    torch.save(payload, path)
    assert_one_error(cli("eval", "--ckpt", path), "newer", "upgrade asgl")
