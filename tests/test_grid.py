"""`asgl sweep grid`: the plan, parallel cells in child processes, killed and resumed, a rerun that does nothing,
and the same grid through submitit's local executor."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asgl.config import RecipeError, load_recipe, recipe_to_toml
from asgl.sweeps import cell
from asgl.sweeps.grid import parse_axes, plan_grid
from asgl.sweeps.launchers import cell_threads, slot_env
from asgl.sweeps.results import GridRow, summarize
from asgl_cli.main import app

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.subset=32", "model.hidden=8", "train.batch_size=16", "train.time_steps=2", "train.epochs=1"]
SET = [a for item in TINY for a in ("--set", item)]
AXES = ["--axis", "surrogate.width=1,10", "--axis", "noise.prob=0,0.2"]


def test_plan_is_the_product_of_the_axes_times_the_seeds():
    base = load_recipe("digits_quick")
    cells = plan_grid(base, parse_axes(["surrogate.width=1,10", "noise.prob=0,0.2"]), seeds=2)
    assert [c.name for c in cells[:3]] == [
        "digits_quick-width1-prob0-s0", "digits_quick-width1-prob0-s1", "digits_quick-width1-prob0.2-s0"
    ]  # fmt: skip
    assert len({c.name for c in cells}) == 8
    last = cells[-1].recipe
    assert (last.surrogate.width, last.noise.prob, last.run.seed) == (10.0, 0.2, base.run.seed + 1)
    assert [v.label for v in cells[-1].values] == ["10", "0.2"]
    # two keys ending alike: the run names spell the whole key
    axes = parse_axes(["optim.name=adam", "data.name=digits"])
    assert plan_grid(base, axes, 1)[0].name == "digits_quick-optim.nameadam-data.namedigits-s0"


@pytest.mark.parametrize(
    "axes, expected",
    [
        (["surrogate.width="], "--axis 'surrogate.width='"),
        (["width=1,2"], "must be dotted"),
        (["surrogate.width=1", "surrogate.width=2"], "appears twice"),
        (["surrogate.width=1,-2"], "surrogate.width = -2"),
        (["run.out_dir=d/x,d_x"], "same run name"),
    ],
)
def test_bad_axes_are_refused_before_anything_runs(axes, expected):
    with pytest.raises(RecipeError, match=expected):
        plan_grid(load_recipe("digits_quick"), parse_axes(axes), 1)


def test_threads_and_gpus_are_split_among_jobs():
    free = load_recipe("digits_quick", ["run.threads=8"])
    free.run.threads = None
    assert cell_threads(free, jobs=2, cpus=16) == 8 and cell_threads(free, jobs=32, cpus=16) == 1
    assert cell_threads(load_recipe("digits_quick"), jobs=2, cpus=16) == 1  # the recipe asks for 1
    assert [slot_env(s, 4, ["2", "5"]).get("CUDA_VISIBLE_DEVICES") for s in range(3)] == ["2", "5", "2"]
    assert slot_env(0, 4, []) == {"OMP_NUM_THREADS": "4"}


def test_summary_is_mean_and_std_over_seeds():
    rows = [GridRow(("1",), s, 0.1, acc, {}, "") for s, acc in enumerate([0.5, 0.7])] + [
        GridRow(("10",), 0, 0.2, 0.9, {}, "")
    ]
    (a, b) = summarize(rows)
    assert a.values == ("1",) and a.runs == 2 and a.test_acc == pytest.approx((0.6, 0.1))
    assert b.test_acc == (0.9, 0.0) and b.val_acc == (0.2, 0.0)
    # without a validation split there is no validation figure: none to average, the test figures as before
    (c,) = summarize([GridRow(("1",), s, None, acc, {}, "") for s, acc in enumerate([0.5, 0.7])])
    assert c.val_acc is None and c.test_acc == pytest.approx((0.6, 0.1))


def finished_runs(out: Path) -> dict[str, float]:
    """Run folders with a summary, and the time it was written."""
    return {p.parent.name: p.stat().st_mtime for p in out.glob("*/summary.json")}


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_parallel_grid_killed_resumed_and_rerun_as_a_no_op(tmp_path):
    out = tmp_path / "grid"
    args = ["sweep", "grid", "digits_quick", *AXES, *SET, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "asgl_cli", *args, "--jobs", "2"]  # 2 cells at a time, in child processes
    sweep = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(out.glob("*/summary.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    sweep.send_signal(signal.SIGTERM)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    kept = finished_runs(out)
    assert kept, "no cell finished before the deadline: nothing here tests a resume"
    assert len(kept) < 4, "every cell finished before the signal: nothing was interrupted"

    runner = CliRunner()
    resumed = runner.invoke(app, args)  # the rest in this process
    assert resumed.exit_code == 0, resumed.output
    assert f"{len(kept)} finished already" in resumed.output
    done = finished_runs(out)
    assert len(done) == 4 and all(done[k] == t for k, t in kept.items())  # finished cells were not run again
    rows = read_csv(out / "grid.csv")
    assert [(r["surrogate.width"], r["noise.prob"]) for r in rows] == [
        ("1", "0"),
        ("1", "0.2"),
        ("10", "0"),
        ("10", "0.2"),
    ]
    assert all(0 <= float(r["test_acc"]) <= 1 and Path(r["run_dir"]).is_dir() for r in rows)
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert "surrogate.width" in resumed.output and "test acc" in resumed.output

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "4 finished already, 0 to run" in again.output
    assert finished_runs(out) == done and read_csv(out / "grid.csv") == rows

    changed = runner.invoke(app, args + ["--set", "model.hidden=9"])
    assert changed.exit_code == 2 and "different recipe" in changed.output


def test_grid_through_submitit_local_executor(tmp_path):
    pytest.importorskip("submitit", reason="the cluster extra (submitit) is not installed")
    out = tmp_path / "grid"
    args = ["sweep", "grid", "digits_quick", "--axis", "surrogate.width=1,10", *SET, "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--launcher", "submitit-local", "--cpus-per-job", "1"])
    assert result.exit_code == 0, result.output
    rows = read_csv(out / "grid.csv")
    assert [r["surrogate.width"] for r in rows] == ["1", "10"]
    assert len(finished_runs(out)) == 2 and len(list((out / "submitit").glob("*_result.pkl"))) == 2  # 2 jobs
    assert "submitted" in result.output


def test_a_failed_cell_is_reported_and_the_others_collected(tmp_path):
    out = tmp_path / "grid"
    # the second cell asks for batches larger than its 32-sample training split: the trainer refuses it
    args = ["sweep", "grid", "digits_quick", "--axis", "train.batch_size=16,1000", *SET, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "1 cell(s) failed: digits_quick-batch_size1000-s0" in result.output
    assert [r["train.batch_size"] for r in read_csv(out / "grid.csv")] == ["16"]


def test_grid_without_validation_split_survives_a_failing_write(tmp_path, monkeypatch):
    """No validation split (val_acc NaN in the summaries) and the results file failing to be written after the
    first finished cell: the second cell still runs, and the results are written at the end."""
    import asgl.sweeps.grid as grid

    real_write, calls = grid.write_results, []

    def write_once_failing(*args, **kwargs):
        calls.append(len(args[0]))
        if len(calls) == 1:
            raise OSError("disk full")
        real_write(*args, **kwargs)

    monkeypatch.setattr(grid, "write_results", write_once_failing)
    out = tmp_path / "grid"
    no_val = ["--set", "train.val_fraction=0", "--set", "train.select=last"]
    args = ["sweep", "grid", "digits_quick", "--axis", "surrogate.width=1,10", *SET, *no_val, "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "could not write the results yet: OSError: disk full" in result.output
    assert calls[0] == 1 and len(finished_runs(out)) == 2  # the failure came after the first cell, both ran
    rows = read_csv(out / "grid.csv")
    assert [(r["surrogate.width"], r["val_acc"]) for r in rows] == [("1", ""), ("10", "")]
    assert all(0 <= float(r["test_acc"]) <= 1 for r in rows) and (out / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_a_cell_trains_through_the_library(tmp_path, capsys):
    """train_recipe: a run folder with the cell's threads; resuming it with another recipe is refused. The child
    process entry point exits 1 with the reason when the cell cannot train."""
    recipe = load_recipe("digits_quick", TINY)
    run_dir = cell.train_recipe(recipe, tmp_path, threads=2)  # the recipe asks for 1
    assert run_dir.parent == tmp_path and (run_dir / "summary.json").is_file()
    assert "threads = 2\n" in (run_dir / "config.resolved.toml").read_text()
    other = load_recipe("digits_quick", [*TINY, "model.hidden=9"])
    with pytest.raises(RecipeError, match="different recipe .*model.hidden"):
        cell.train_recipe(other, tmp_path, resume=run_dir)

    too_big = tmp_path / "too_big.toml"  # batches larger than the 32-sample training split
    too_big.write_text(recipe_to_toml(load_recipe("digits_quick", [*TINY, "train.batch_size=1000"])))
    assert cell.main([str(too_big), "--out", str(tmp_path / "cells")]) == 1
    assert "batch_size" in capsys.readouterr().err
