"""Terminal output at 80 and 200 columns, through a pipe and on a pseudo-terminal: copyable text never split,
lines fit, no colour codes in a pipe; and what the commands say about what they did."""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import typer
from conftest import TINY, set_args
from rich.cells import cell_len
from rich.console import Console
from typer.testing import CliRunner

from asgl.builders import check_data
from asgl.config import bundled_recipes, load_recipe, recipe_to_toml, recipes_folder
from asgl.engine.logging import TrainProgress
from asgl.terminal import pack, say, words
from asgl_cli.main import app
from asgl_cli.recipes import description

WIDTHS = [80, 200]
# a folder name long enough that any path under it is wider than 80 columns
DEEP = "a-folder-with-a-long-name/" * 4


def invoke(width: int, *args: object) -> str:
    """Run ``asgl ARGS`` with a terminal of ``width`` columns (not a TTY); stdout and stderr together."""
    result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(width)})
    assert "\x1b[" not in result.output, "colour codes in non-TTY output"
    assert result.exit_code in (0, 1), result.output
    return result.output


def assert_laid_out(text: str, width: int, unbreakable: list[str]) -> None:
    """Each unbreakable string stands whole on one line; a line wider than ``width`` must hold one of them."""
    lines = text.splitlines()
    for token in unbreakable:
        assert any(token in line for line in lines), f"{token!r} is split across lines:\n{text}"
    for line in lines:
        assert cell_len(line) <= width or any(t in line for t in unbreakable), f"line wider than {width}: {line!r}"


# ---------------------------------------------------------------- the layout function


def test_pack_keeps_tokens_whole_and_lines_within_the_width():
    text = "put it in /data/cifar: download https://example.org/a/very/long/file-name.tar.gz and run `tar -xzf f -C /d`"
    lines = pack(words(text), 30, indent="  ")
    assert lines == [
        "put it in /data/cifar:",
        "  download",
        "  https://example.org/a/very/long/file-name.tar.gz",
        "  and run `tar -xzf f -C /d`",
    ]
    assert pack(["ab", "cd", "ef"], 5, sep="  ") == ["ab", "cd", "ef"]
    assert pack(["ab", "cd", "ef"], 6, sep="  ") == ["ab  cd", "ef"]
    assert pack([], 10) == []


def test_say_lays_lines_out_on_a_terminal_and_leaves_them_whole_through_a_pipe():
    message = "error: bad recipe /r.toml:\n  run.seed = 'a': expected an integer, run `asgl recipes show x`"

    def said(terminal: bool) -> list[str]:
        console = Console(width=30, force_terminal=terminal, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
        say(console, message, markup=False)
        return console.export_text().splitlines()

    assert said(False) == message.splitlines()
    assert said(True) == [
        "error: bad recipe /r.toml:",
        "  run.seed = 'a': expected an",
        "    integer, run",
        "    `asgl recipes show x`",
    ]


@pytest.mark.parametrize("width", WIDTHS)
def test_epoch_lines_break_only_between_fields(width):
    record = dict(epoch=11, train_loss=0.1006, train_acc=0.987, val_loss=0.1568, val_acc=0.924, p=0.2, lr=0.00104)
    record.update(epoch_time=0.7, best=True)
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    TrainProgress(console, epochs=300).end_epoch(record)
    text = console.export_text()
    fields = ["train loss 0.1006 acc 98.7% (hybrid)", "val loss 0.1568 acc 92.4%", "p 0.2", "lr 0.00104", "0.7s best"]
    assert_laid_out(text, width, [])
    for field in fields:
        assert any(field in line for line in text.splitlines()), f"{field!r} split in:\n{text}"
    assert len(text.splitlines()) == (1 if width == 200 else 2)


# ---------------------------------------------------------------- the commands


@pytest.mark.parametrize("width", WIDTHS)
def test_recipes_list_never_splits_a_word(width):
    out = invoke(width, "recipes", "list")
    assert_laid_out(out, width, [])
    flowing = " ".join(out.split())
    for name in bundled_recipes():
        assert name in out.split()
        assert " ".join(description(recipes_folder() / f"{name}.toml").split()) in flowing


@pytest.mark.parametrize("width", WIDTHS)
def test_data_check_keeps_paths_urls_and_commands_whole(tmp_path, width):
    root = tmp_path / DEEP
    recipe = load_recipe("cifar100_resnet18", [f"data.root={root}"])
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_to_toml(recipe))
    out = invoke(width, "data", "check", path)
    (problem,) = check_data(recipe)
    copyable = [problem.path, f"asgl data get {path}", *re.findall(r"https?://\S+|`[^`]*`", problem.message)]
    assert any(c.startswith("https://") for c in copyable) and any(c.startswith("`tar ") for c in copyable)
    assert_laid_out(out, width, copyable + [str(root)])


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory) -> tuple[Path, dict[int, str]]:
    """A one-epoch tiny run under a deep folder, trained once per width; (its parent, the output per width)."""
    parent = tmp_path_factory.mktemp("runs") / DEEP
    outputs = {w: invoke(w, "train", "digits_quick", *set_args(TINY), "--out", parent / str(w)) for w in WIDTHS}
    return parent, outputs


@pytest.mark.parametrize("width", WIDTHS)
def test_train_output_keeps_the_run_folder_whole_and_epoch_fields_together(deep_run, width):
    parent, outputs = deep_run
    (run_dir,) = (parent / str(width)).iterdir()
    # through a pipe the engine's run description ("<model> (<n> parameters) on <data>: ...") stays one line
    (description,) = [line for line in outputs[width].splitlines() if "parameters) on" in line]
    assert description.startswith("digits_convnet (") and description.endswith(", device cpu")
    out = "\n".join(line for line in outputs[width].splitlines() if line != description)
    assert_laid_out(out, width, [str(run_dir)])
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ") or line.startswith("    ")]
    assert epoch_lines
    for line in epoch_lines:  # a label never ends a line without its value
        assert not re.search(r"\b(loss|acc|p|lr)$", line.rstrip()), line


@pytest.mark.parametrize("width", WIDTHS)
def test_eval_title_holds_the_whole_checkpoint_path(deep_run, width):
    (run_dir,) = (deep_run[0] / str(width)).iterdir()
    ckpt = run_dir / "checkpoints" / "best.pt"
    out = invoke(width, "eval", "--ckpt", ckpt)
    assert_laid_out(out, width, [str(ckpt)])
    assert "accuracy" in out


def command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command of the app as its argument path, groups included."""
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


@pytest.mark.parametrize("width", WIDTHS)
def test_help_of_every_command_shows_flags_without_a_value(width):
    paths = command_paths(typer.main.get_command(app))
    assert ("eval",) in paths and ("recipes", "cp") in paths
    for path in paths:
        out = invoke(width, *path, "--help")
        assert_laid_out(out, width, [])
        flags = [line for line in out.splitlines() if "<bool>" in line and "--help" not in line]
        assert not flags, f"asgl {' '.join(path)} --help suggests a value for a flag: {flags}"


@pytest.mark.parametrize("width", WIDTHS)
def test_sweep_and_diagnosis_print_their_folders_whole(tmp_path, width):
    folder = tmp_path / DEEP / "sweep"
    args = ["--widths", "5", "--methods", "sg", "--out", folder]
    out = invoke(width, "sweep", "alpha", "digits_quick", *set_args(TINY + ["train.epochs=1"]), *args)
    out = "\n".join(line for line in out.splitlines() if "parameters) on" not in line)  # the engine's, see above
    (run_dir,) = (p for p in folder.iterdir() if p.is_dir())
    assert_laid_out(out, width, [str(folder), str(folder / "sweep.csv"), str(run_dir)])

    diagnosis = tmp_path / DEEP / "diagnosis"
    args = ["--batches", "1", "--directions", "2", "--out", diagnosis]
    out = invoke(width, "diagnose", "gradients", "digits_quick", *set_args(TINY), *args)
    assert_laid_out(out, width, [str(f) for f in diagnosis.iterdir()])


@pytest.mark.parametrize("width", WIDTHS)
def test_bench_and_recipe_copies_fit_and_keep_paths_whole(tmp_path, width):
    args = ["-b", "2", "-r", "1", "--warmup", "0", "--variants", "fused,relu,triton", *set_args(TINY)]
    assert_laid_out(invoke(width, "bench", "digits_quick", *args), width, [])

    target = tmp_path / DEEP / "mine.toml"
    target.parent.mkdir(parents=True)
    out = invoke(width, "recipes", "cp", "digits_quick", target)
    assert_laid_out(out, width, [str(target)])
    assert_laid_out(invoke(width, "recipes", "validate", target), width, [str(target)])


# ---------------------------------------------------------------- a real terminal

CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")  # colour, cursor moves, hyperlinks


def on_terminal(width: int, *args: object) -> tuple[int, list[str]]:
    """Run ``asgl ARGS`` in a child process on a pseudo-terminal ``width`` columns wide (set on the terminal, as a
    window does: no COLUMNS); its exit code and what it wrote, line by line, without colour and cursor codes (a
    carriage return, as a progress bar redraw, starts a line too)."""
    parent_fd, child_fd = os.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, width, 0, 0))
    unset = {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    env = {k: v for k, v in os.environ.items() if k not in unset} | {"TERM": "xterm-256color"}
    root = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    args = [sys.executable, "-m", "asgl_cli", *map(str, args)]
    child = subprocess.Popen(args, stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env, cwd=root)
    os.close(child_fd)
    written = bytearray()
    while True:
        try:
            chunk = os.read(parent_fd, 1 << 16)
        except OSError:  # EIO: the child has exited and its side of the terminal is closed
            break
        if not chunk:
            break
        written += chunk
    os.close(parent_fd)
    return child.wait(), re.split(r"\r\n|\r|\n", CODES.sub("", written.decode()))


def assert_terminal_wraps_nothing(lines: list[str], width: int, copyable: list[str]) -> None:
    """No line is wider than the terminal (which would break it anywhere, mid-word), unless it holds one word
    alone; each copyable string stands whole on one line."""
    for line in lines:
        assert cell_len(line) <= width or len(words(line)) == 1, f"the terminal breaks {line!r}"
    for token in copyable:
        assert any(token in line for line in lines), f"{token!r} is split:\n" + "\n".join(lines)


def test_a_terminal_80_columns_wide_breaks_lines_between_words_only(tmp_path):
    parent = tmp_path / DEEP / "runs"
    code, lines = on_terminal(80, "train", "digits_quick", *set_args(TINY + ["neuron.backend=fused"]), "--out", parent)
    assert code == 0, "\n".join(lines)
    (run_dir,) = parent.iterdir()
    assert_terminal_wraps_nothing(lines, 80, [str(run_dir)])
    flowing = " ".join(" ".join(lines).split())  # the run description's words, whole and in order
    assert re.search(
        r"digits_convnet \([\d,]+ parameters\) on digits: 48 train / 48 val / 48 test, device cpu", flowing
    )
    assert any(line.startswith("epoch 2/2  train loss") for line in lines)

    code, lines = on_terminal(80, "diagnose", "gradients", "--ckpt", run_dir, "--batches", "1", "--directions", "2")
    assert code == 0, "\n".join(lines)
    written = sorted(str(f) for f in (run_dir / "diagnose-e2").iterdir())
    assert len(written) >= 3
    assert_terminal_wraps_nothing(lines, 80, written)

    root = tmp_path / DEEP / "data"
    code, lines = on_terminal(80, "train", "cifar10_resnet18", "--set", f"data.root={root}")
    (missing, *_) = check_data(load_recipe("cifar10_resnet18", [f"data.root={root}"]))
    copyable = [missing.path, *re.findall(r"https?://\S+|`[^`]*`", missing.message)]
    assert code == 2 and lines[0].startswith("error: ") and len(copyable) == 3
    assert_terminal_wraps_nothing(lines, 80, copyable)


def test_an_error_through_a_pipe_stays_one_line(tmp_path):
    root = tmp_path / DEEP / "data"
    result = CliRunner().invoke(app, ["train", "cifar10_resnet18", "--set", f"data.root={root}"], env={"COLUMNS": "80"})
    assert result.exit_code == 2
    (line,) = result.output.splitlines()
    assert line.startswith("error: cifar10") and "https://" in line and "`tar " in line


# ---------------------------------------------------------------- what the commands say


def test_eval_of_a_run_folder_names_the_checkpoint_file_and_its_epoch(deep_run):
    (run_dir,) = (deep_run[0] / "80").iterdir()
    epochs = int(dict(item.split("=") for item in TINY)["train.epochs"])
    last = run_dir / "checkpoints" / "last.pt"
    assert f"{last}, epoch {epochs} (test)" in invoke(80, "eval", "--ckpt", run_dir)
    record = json.loads(invoke(80, "eval", "--ckpt", run_dir, "--json"))
    assert (record["checkpoint"], record["epoch"], record["step"]) == (str(last), epochs, 0)
    best_epoch = json.loads((run_dir / "summary.json").read_text())["best_epoch"]
    best = run_dir / "checkpoints" / "best.pt"
    assert f"{best}, epoch {best_epoch} (val)" in invoke(80, "eval", "--ckpt", best, "--split", "val")


def test_diagnose_says_when_the_validation_split_holds_fewer_batches_than_asked(tmp_path):
    settings = dict(item.split("=") for item in TINY)
    held = math.ceil(int(settings["data.subset"]) / int(settings["train.batch_size"]))  # subset caps val too
    args = ["diagnose", "gradients", "digits_quick", *set_args(TINY), "--directions", "1", "--out", tmp_path]
    out = invoke(80, *args, "--batches", held + 1)
    assert f"--batches {held + 1} lowered to K = {held}: the validation split holds {held} batches" in out
    assert f"K = {held})" in out
    assert "lowered" not in invoke(80, *args, "--batches", held)


def test_a_run_without_a_validation_split_prints_no_validation_fields(tmp_path):
    overrides = TINY + ["train.val_fraction=0", "train.select=last"]
    out = invoke(80, "train", "digits_quick", *set_args(overrides), "--out", tmp_path)
    epoch_lines = [line for line in out.splitlines() if line.startswith(("epoch ", "    "))]
    assert [line.split()[1] for line in epoch_lines if line.startswith("epoch ")] == ["1/2", "2/2"]
    assert not [line for line in epoch_lines if "val" in line]
    header = next(line for line in out.splitlines() if "best epoch" in line)
    assert "test loss" in header and "val" not in header
    assert "nan" not in out.lower()
