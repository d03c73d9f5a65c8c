"""The CLI as a user runs it: train, eval, recipes, data check, user errors (exit 2) and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib
import torch
from conftest import TINY, set_args
from typer.testing import CliRunner

from asgl.config import bundled_recipes
from asgl_cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_error(result, *expected: str) -> None:
    """Exit 2, a single ``error:`` line-set with every expected text, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1, result.output
    for text in expected:
        assert text in result.output, f"{text!r} not in {result.output!r}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = invoke("train", "digits_quick", *set_args(TINY), "--out", out)
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    return folder


# ---------------------------------------------------------------- train and eval


def test_train_writes_a_reproducible_run_folder(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["test_samples"] == 48
    stored = tomllib.loads((run_dir / "config.resolved.toml").read_text())
    assert stored["data"]["subset"] == 48 and stored["model"]["hidden"] == 16
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_eval_json_matches_the_training_summary(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    result = invoke("eval", "--ckpt", run_dir / "checkpoints" / "best.pt", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["split"] == "test" and record["samples"] == 48
    assert record["accuracy"] == pytest.approx(summary["test_acc"])
    assert record["loss"] == pytest.approx(summary["test_loss"])


def test_eval_table_on_val_split_of_a_run_folder(run_dir):
    result = invoke("eval", "--ckpt", run_dir, "--split", "val")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "(val)" in result.stdout and "48" in result.stdout


def test_resume_of_a_finished_run_keeps_its_metrics(run_dir):
    before = (run_dir / "metrics.jsonl").read_text()
    result = invoke("train", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert (run_dir / "metrics.jsonl").read_text() == before


def test_resume_with_a_different_recipe_is_refused(run_dir):
    result = invoke("train", "digits_quick", "--resume", run_dir)
    assert_one_error(result, "differs from the one stored", "data.subset")


# ---------------------------------------------------------------- recipes and data


def test_recipes_list_show_cp(tmp_path):
    listed = invoke("recipes", "list")
    assert listed.exit_code == 0 and "digits_quick" in listed.stdout and "digits_convnet" in listed.stdout
    shown = invoke("recipes", "show", "digits_quick")
    assert shown.exit_code == 0
    assert tomllib.loads(shown.stdout)["surrogate"]["width"] == 5.0
    assert invoke("recipes", "cp", "digits_quick", tmp_path).exit_code == 0
    copied = tmp_path / "digits_quick.toml"
    assert copied.read_text() == (ROOT / "recipes" / "digits_quick.toml").read_text()
    assert_one_error(invoke("recipes", "cp", "digits_quick", copied), "exists", "--force")
    assert invoke("recipes", "cp", "digits_quick", copied, "--force").exit_code == 0


def test_every_bundled_recipe_validates():
    names = bundled_recipes()
    result = invoke("recipes", "validate", *names)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok ") == len(names)


def test_validate_reports_each_invalid_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[surrogate]\nwidth = -2\n")
    unknown_model = tmp_path / "model.toml"
    unknown_model.write_text('[model]\nname = "resnet1000"\n')
    result = invoke("recipes", "validate", "digits_quick", bad, unknown_model)
    assert result.exit_code == 2
    assert "ok digits_quick" in result.output
    assert "surrogate.width = -2" in result.output and "resnet1000" in result.output


def test_data_check_digits():
    result = invoke("data", "check", "digits_quick")
    assert result.exit_code == 0, result.output
    assert "load_digits" in result.stdout


# ---------------------------------------------------------------- user errors: exit 2, one message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[train]\nepochs = = 3\n", ("TOML syntax error", "line 2")),
        ("[train]\nepochs = 'many'\n", ("train.epochs = 'many'",)),
        ("[surrogate]\nwidth = 0\n", ("surrogate.width = 0", "greater than 0")),
        ("[noise]\nprobability = 0.1\n", ("noise.probability", "unknown key")),
    ],
    ids=["syntax", "type", "range", "unknown-key"],
)
def test_bad_recipe_files(tmp_path, content, expected):
    path = tmp_path / "r.toml"
    path.write_text(content)
    assert_one_error(invoke("train", path, "--out", tmp_path / "runs"), str(path), *expected)
    assert not (tmp_path / "runs").exists()


def test_missing_and_unknown_recipes(tmp_path):
    assert_one_error(invoke("train", tmp_path / "gone.toml"), "recipe not found")
    assert_one_error(invoke("train", "no_such_recipe"), "recipe not found", "digits_quick")
    assert_one_error(invoke("recipes", "show", "no_such_recipe"), "recipe not found")
    assert_one_error(invoke("train", "digits_quick", "--set", "train.epoch=3"), "train.epoch", "unknown key")
    assert_one_error(invoke("train"), "give a RECIPE")


def test_eval_refuses_bad_checkpoints(tmp_path, run_dir):
    good = (run_dir / "checkpoints" / "last.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(good[: len(good) // 2])
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "foreign.pt")
    newer = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    newer["asgl_checkpoint"] += 1
    torch.save(newer, tmp_path / "newer.pt")
    cases = {
        "missing.pt": "checkpoint not found",
        "truncated.pt": "truncated or corrupt",
        "foreign.pt": "not an asgl checkpoint",
        "newer.pt": "newer than this asgl reads",
    }
    for name, expected in cases.items():
        assert_one_error(invoke("eval", "--ckpt", tmp_path / name), expected)
    assert_one_error(invoke("train", "--resume", tmp_path / "foreign.pt"), "not an asgl checkpoint")


def test_recipe_errors_are_reported_without_importing_torch(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("[noise]\nprob = 2\n")
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom asgl_cli.main import app\n"
        f"r = CliRunner().invoke(app, ['train', {str(path)!r}])\n"
        "assert r.exit_code == 2, r.output\nassert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- SIGTERM / Ctrl-C through the real entry point


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_writes_a_resumable_checkpoint_and_exits_128_plus_signal(tmp_path, signum, code):
    overrides = TINY + ["train.epochs=500", "train.checkpoint_every_steps=1"]
    log = tmp_path / "train.log"
    runs = tmp_path / "runs"
    with log.open("w") as sink:  # a file, not a pipe: the child never blocks on a full pipe
        proc = subprocess.Popen(
            [sys.executable, "-m", "asgl_cli", "train", "digits_quick", *set_args(overrides), "--out", str(runs)],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
        )
        deadline = time.monotonic() + 60
        while not list(runs.glob("*/checkpoints/last.pt")):
            assert proc.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.1)
        proc.send_signal(signum)
        proc.wait(timeout=60)
    output = log.read_text()
    assert proc.returncode == code, output
    (run,) = runs.iterdir()
    assert f"asgl train --resume {run}" in output and "Traceback" not in output

    from asgl.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run)
    assert ckpt["epoch"] < 500 and 0 <= ckpt["step"] <= 3
    evaluated = invoke("eval", "--ckpt", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
