"""Reading a checkpoint imports no code the user did not name.

A checkpoint's stored recipe may name a user builder (``model.name = "package.module:function"``); importing
that module runs its code. The module here leaves a marker file when it is imported. Its folder is on
``sys.path`` throughout, so any command that imported it unasked would leave the marker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cli_fixture_helpers import USER_NET_SOURCE
from conftest import TINY
from typer.testing import CliRunner

from asgl.config import load_recipe, recipe_to_dict, validate_recipe
from asgl.engine.restore import open_checkpoint
from asgl.trust import CodeTrust, UntrustedCode
from asgl_cli.main import app

MODULE = "marked_nets"
BUILDER = f"{MODULE}:build"
MARKER = 'from pathlib import Path\nPath({marker!r}).write_text("imported")\n'  # imported: leaves the marker


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's folder (its import writes ``marker``) and a finished run of a recipe that names it."""
    folder = tmp_path_factory.mktemp("user_code")
    (folder / f"{MODULE}.py").write_text(MARKER.format(marker=str(folder / "marker")) + USER_NET_SOURCE)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        from asgl.engine.trainer import train

        raw = recipe_to_dict(load_recipe("digits_quick", TINY))
        train(validate_recipe({**raw, "model": {"name": BUILDER}}), out_dir=folder / "runs")
        sys.modules.pop(MODULE)
    return folder


@pytest.fixture
def marker(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The marker path, absent; the module importable and not yet imported."""
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    (folder / "marker").unlink(missing_ok=True)
    yield folder / "marker"
    sys.modules.pop(MODULE, None)


def run_folder(folder: Path) -> Path:
    (run,) = (folder / "runs").iterdir()
    return run


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_refused(result, marker: Path) -> None:
    assert result.exit_code == 2, f"{result.output}\n{result.exception!r}"
    text = " ".join(result.output.split())
    assert f"wants to import module '{MODULE}'" in text and f"--builder {BUILDER}" in text, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not marker.exists() and MODULE not in sys.modules


COMMANDS = {
    "eval": lambda run, tmp: ["eval", "--ckpt", run],
    "export": lambda run, tmp: ["export", "--ckpt", run, "--out", tmp / "net.nir"],
    "diagnose": lambda run, tmp: ["diagnose", "gradients", "--ckpt", run, "--out", tmp / "diag"],
    "resume": lambda run, tmp: ["train", "--resume", run],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_stored_user_builder_refused_unimported(folder: Path, marker: Path, tmp_path: Path, command: str) -> None:
    assert_refused(cli(*COMMANDS[command](run_folder(folder), tmp_path)), marker)


@pytest.mark.parametrize("consent", [["--trust-code"], ["--builder", BUILDER]], ids=["trust_code", "builder"])
def test_consent_imports_the_builder(folder: Path, marker: Path, consent: list[str]) -> None:
    result = cli("eval", "--ckpt", run_folder(folder), *consent)
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "imported"


def test_another_builder_named_is_no_consent(folder: Path, marker: Path) -> None:
    assert_refused(cli("eval", "--ckpt", run_folder(folder), "--builder", f"{MODULE}:other"), marker)


def test_resume_with_the_same_recipe_names_the_builder(folder: Path, marker: Path, tmp_path: Path) -> None:
    """``train RECIPE --resume RUN``: the recipe the user passes names the builder (no --builder needed)."""
    recipe = tmp_path / "mine.toml"
    recipe.write_text((run_folder(folder) / "config.resolved.toml").read_text())
    result = cli("train", recipe, "--resume", run_folder(folder))
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "imported"


def test_library_refuses_by_default(folder: Path, marker: Path) -> None:
    with pytest.raises(UntrustedCode, match=f"wants to import module '{MODULE}'"):
        open_checkpoint(run_folder(folder))
    assert not marker.exists()
    stored = open_checkpoint(run_folder(folder), trust=CodeTrust((BUILDER,)))
    assert stored.recipe.model.name == BUILDER and not marker.exists()  # reading allowed it; building imports


def test_import_reference_never_imports_a_user_builder(folder: Path, marker: Path, tmp_path: Path) -> None:
    source = tmp_path / "ref.pth"
    source.write_bytes(b"unused")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[model]\nname = "{BUILDER}"\n')
    result = cli("import-reference", source, "--recipe", recipe, "--out", tmp_path / "o.pt")
    assert result.exit_code == 2 and "resnet18, resnet19, resnet34, vggsnn2" in " ".join(result.output.split())
    assert not marker.exists() and MODULE not in sys.modules


def test_a_sweep_resumes_its_own_cells_builder(folder: Path, marker: Path, tmp_path: Path) -> None:
    """A sweep cell's recipe is the one the user gave the sweep: resuming it needs no further consent."""
    from asgl.config import read_stored_recipe
    from asgl.sweeps.cell import train_cell
    from asgl.sweeps.grid import Cell
    from asgl.sweeps.launchers import cell_command

    run = run_folder(folder)
    cell = Cell((), 0, validate_recipe(read_stored_recipe((run / "config.resolved.toml").read_text())))
    command = cell_command(cell, tmp_path, run, None)  # the child gets the cell's own recipe beside the run
    assert command[command.index("--resume") :] == ["--resume", str(run)]
    assert BUILDER in (tmp_path / "cells" / f"{cell.name}.toml").read_text()
    assert train_cell(cell.recipe, tmp_path, run) == 0
    assert marker.read_text() == "imported"
