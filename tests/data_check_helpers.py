"""`asgl data check` on a bundled recipe: fails before its fixture is written, passes after."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def assert_data_check_round_trip(tmp_path: Path, name: str, write_fixture: Callable[[Path], object]) -> None:
    from typer.testing import CliRunner

    from asgl.config import load_recipe, recipe_to_toml
    from asgl_cli.main import app

    path = tmp_path / f"{name}.toml"
    path.write_text(recipe_to_toml(load_recipe(name, [f"data.root={tmp_path / 'data'}"])))
    missing = CliRunner().invoke(app, ["data", "check", str(path)])
    assert missing.exit_code == 1 and "missing" in missing.output
    write_fixture(tmp_path / "data")
    present = CliRunner().invoke(app, ["data", "check", str(path)])
    assert present.exit_code == 0, present.output
