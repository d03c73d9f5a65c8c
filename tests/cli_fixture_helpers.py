"""CLI helpers for the fixture datasets: `asgl data check` round trip, one-epoch smoke train."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


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


def smoke_train(tmp_path: Path, name: str, overrides: list[str]) -> tuple[dict, dict]:
    """`asgl train NAME` for one epoch on fixture data under tmp_path/data; (the epoch's metrics, summary)."""
    import json

    from typer.testing import CliRunner

    from asgl_cli.main import app

    sets = [f"data.root={tmp_path / 'data'}", "data.subset=4", "data.num_workers=0", "train.batch_size=2",
            "train.epochs=1", "run.device=cpu", *overrides]  # fmt: skip
    args = ["train", name, "--out", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, args + [a for s in sets for a in ("--set", s)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    (epoch,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return epoch, json.loads((run_dir / "summary.json").read_text())


# a user builder module (``model.name = "<module>:build"``): one linear layer over the flattened input
USER_NET_SOURCE = """
from torch import nn

from asgl.layers import to_time_major


class Net(nn.Module):
    def __init__(self, info):
        super().__init__()
        self.t = info.time_steps
        self.fc = nn.Linear(info.in_channels * info.input_size[0] * info.input_size[1], info.num_classes)

    def forward(self, x):
        return self.fc(to_time_major(x, self.t).flatten(2))


def build(recipe, info):
    return Net(info)
"""
