"""What is refused before a run starts writing: problems found before the run folder is made (one line,
exit 2, no folder left), and a run folder in use by another live process (its lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY, set_args
from typer.testing import CliRunner

from asgl.engine.checkpoint import load_checkpoint, save_checkpoint
from asgl.engine.runfolder import RunFolderLock
from asgl_cli.main import app

ROOT = Path(__file__).resolve().parent.parent
ONE_EPOCH = TINY + ["train.epochs=1"]


def invoke(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def assert_one_error(result, *expected: str) -> None:
    out = result.output
    assert result.exit_code == 2, f"exit {result.exit_code}\n{out}\n{result.exception!r}"
    assert "Traceback" not in out and out.count("error:") == 1 and len(out.strip().splitlines()) == 1, out
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"


# ---------------------------------------------------------------- problems found before the run folder


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["neuron.backend=triton"], "neuron.backend = 'triton' cannot run here"),
        (["run.device=cuda:99"], "run.device = 'cuda:99'"),
        (["train.amp=fp16"], "train.amp = 'fp16' needs CUDA"),
        (["train.batch_size=1000"], "train.batch_size = 1000"),
        (["data.name=cifar10", "data.root=MISSING"], "MISSING"),
    ],
    ids=["triton-on-cpu", "absent-gpu", "fp16-on-cpu", "batch-too-large", "data-missing"],
)
def test_problem_is_one_line_and_leaves_no_run_folder(tmp_path, overrides, expected):
    overrides = [o.replace("MISSING", str(tmp_path / "missing")) for o in overrides]
    expected = expected.replace("MISSING", str(tmp_path / "missing"))
    out = tmp_path / "runs"
    assert_one_error(invoke("train", "digits_quick", *set_args(ONE_EPOCH + overrides), "--out", out), expected)
    assert not out.exists() or not any(out.iterdir()), "a run folder was left behind"


def test_out_dir_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    assert_one_error(invoke("train", "digits_quick", *set_args(ONE_EPOCH), "--out", blocker), str(blocker))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = invoke("train", "digits_quick", *set_args(ONE_EPOCH), "--out", out)
    assert result.exit_code == 0, result.output
    (run,) = out.iterdir()
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder but its lock file (taken before the checkpoint is read)."""
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"]
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


def test_checkpoint_that_does_not_fit_its_recipe_is_refused_before_writing(finished_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    state = load_checkpoint(finished_run)
    state["model"] = {k: v for k, v in state["model"].items() if not k.startswith("head")}
    save_checkpoint({k: v for k, v in state.items() if k != "asgl_checkpoint"}, run / "checkpoints" / "last.pt")
    before = snapshot(run)
    assert_one_error(invoke("train", "--resume", run), "does not fit the model of its recipe", "head")
    assert snapshot(run) == before, "the run folder was written to"


def test_damaged_checkpoint_is_refused_before_writing(finished_run, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    data = (finished_run / "checkpoints" / "last.pt").read_bytes()
    (run / "checkpoints" / "last.pt").write_bytes(data[: len(data) // 2])
    before = snapshot(run)
    assert_one_error(invoke("train", "--resume", run), "truncated or corrupt")
    assert snapshot(run) == before


def test_library_refuses_diagnose_every_without_its_callback(tiny_recipe, tmp_path):
    from asgl.config import RecipeError
    from asgl.diagnose.report import diagnosis_callbacks
    from asgl.engine.trainer import train

    recipe = tiny_recipe("train.epochs=1", "train.diagnose_every=1", "train.diagnose_directions=1")
    with pytest.raises(RecipeError, match="diagnosis callback"):
        train(recipe, out_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()
    assert [type(c).__name__ for c in diagnosis_callbacks(recipe)] == ["EpochDiagnosis"]


# ---------------------------------------------------------------- the run-folder lock

# a real `asgl train` that writes checkpoints after steps 1 and 2, then hangs in step 3 (alive, holding the folder)
HANGS_AT_STEP_3 = """
import sys, time
import asgl.engine.trainer as trainer
real, calls = trainer.optimizer_step, {"n": 0}
def step(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == 3:
        time.sleep(600)
    return real(*args, **kwargs)
trainer.optimizer_step = step
from asgl_cli.main import app
app(prog_name="asgl", args=sys.argv[1:])
"""

HOLDS_LOCK = """
import sys, time
from pathlib import Path
from asgl.engine.runfolder import RunFolderLock
with RunFolderLock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(600)
"""


def start(code: str, *args: object, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with log.open("w") as sink:
        return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=sink, stderr=sink, env=env)


def wait_for(condition, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 240
    while not condition():
        assert proc.poll() is None, f"exited early ({proc.returncode}):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()}"
        time.sleep(0.05)


def test_resume_of_a_folder_a_live_process_writes_is_refused_then_allowed_once_it_is_killed(tmp_path):
    out, log = tmp_path / "runs", tmp_path / "holder.log"
    overrides = set_args(TINY + ["train.checkpoint_every_steps=1"])
    holder = start(HANGS_AT_STEP_3, "train", "digits_quick", *overrides, "--out", out, log=log)
    try:
        wait_for(lambda: any(out.glob("*/checkpoints/last.pt")) and load_checkpoint(next(out.iterdir()))["step"] == 2,
                 holder, log)  # fmt: skip
        (run,) = out.iterdir()
        before = snapshot(run)
        assert_one_error(invoke("train", "--resume", run), str(run), f"in use by process {holder.pid}")
        assert snapshot(run) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert (run / ".lock").exists(), "the killed process left its lock file"
    resumed = invoke("train", "--resume", run)
    assert resumed.exit_code == 0, resumed.output
    assert "epoch 1, step 2" in resumed.output and (run / "summary.json").exists()


def test_sweep_over_a_folder_in_use_is_refused(tmp_path):
    folder, log = tmp_path / "sweep", tmp_path / "holder.log"
    folder.mkdir()
    holder = start(HOLDS_LOCK, folder, log=log)
    try:
        wait_for(lambda: "locked" in log.read_text(), holder, log)
        args = ["sweep", "alpha", "digits_quick", "--widths", "1", "--methods", "sg", "--out", folder]
        assert_one_error(invoke(*args, *set_args(ONE_EPOCH)), f"in use by process {holder.pid}")
        assert sorted(p.name for p in folder.iterdir()) == [".lock"], "the sweep started a run"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    with RunFolderLock(folder):  # the dead holder's lock file does not block
        assert (folder / ".lock").read_text().strip() == str(os.getpid())
