"""The built wheel is complete: installed into a fresh venv it lists the bundled recipes and trains from elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str | Path], cwd: Path) -> str:
    """Run a command without the source tree on PYTHONPATH; its stdout (stderr is shown when it fails)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", COLUMNS="200")
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def fresh_venv(folder: Path) -> Path:
    """A venv that sees this interpreter's installed packages (torch and the rest) but no asgl of its own yet."""
    run([sys.executable, "-m", "venv", "--without-pip", folder], cwd=folder.parent)
    (site_packages,) = folder.glob("lib/python*/site-packages")
    # a plain path line: the parent's packages become importable, its .pth files (an editable asgl) are not run
    parents = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site_packages / "parent_packages.pth").write_text("\n".join(parents) + "\n")
    return folder / "bin"


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_lists_recipes_and_trains(tmp_path):
    pytest.importorskip("hatchling", reason="the build backend (dev extra) is needed to build the wheel offline")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", ROOT], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("asgl-*.whl")
    bin_dir = fresh_venv(tmp_path / "venv")
    run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    where = run(
        [bin_dir / "python", "-c", "import asgl, asgl.config; print(asgl.__file__, asgl.config.recipes_folder())"],
        elsewhere,
    )
    assert all(Path(p).is_relative_to(tmp_path / "venv") for p in where.split()), where

    picked = run(
        [bin_dir / "python", "-c", "from asgl.neuron import auto_backend; print(auto_backend(False))"], elsewhere
    )
    assert picked.split() == ["cpu_kernel"]  # the installed package brings numba, and auto runs its kernel on CPU

    listed = run([bin_dir / "asgl", "recipes", "list"], elsewhere)
    for recipe in sorted((ROOT / "recipes").glob("*.toml")):
        assert recipe.stem in listed

    run([bin_dir / "asgl", "train", "digits_quick", "--set", "train.epochs=1", "--set", "run.device=cpu"], elsewhere)
    (summary,) = (elsewhere / "runs").glob("digits_quick-*/summary.json")
    assert json.loads(summary.read_text())["epochs"] == 1


def test_the_readme_test_command_prints_the_pass_fail_line(tmp_path):
    """The command CI runs is the README's, and with the project's pytest settings it ends with '1 passed'."""
    (line,) = [x for x in (ROOT / ".ci" / "run").read_text().splitlines() if "-m pytest" in x]
    command = line.split("#")[0].strip()
    assert command in (ROOT / "README.md").read_text()
    flags = command.split("-m pytest", 1)[1].split()[:-1]  # without the final "tests"
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    args = [
        sys.executable,
        "-m",
        "pytest",
        *flags,
        "-c",
        ROOT / "pyproject.toml",
        "-p",
        "no:cacheprovider",
        "test_one.py",
    ]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout
