"""`asgl sweep alpha` end to end on tiny digits, its resume, the method recipes, and `asgl diagnose plot`."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

from typer.testing import CliRunner

from asgl.config import load_recipe
from asgl.sweeps.alpha import alpha_axes
from asgl.sweeps.grid import plan_grid
from asgl_cli.main import app

TINY = [
    "data.subset=32",
    "model.hidden=8",
    "train.batch_size=16",
    "train.time_steps=2",
    "train.epochs=1",
    "train.diagnose_every=1",
    "train.diagnose_batches=1",
    "train.diagnose_directions=2",
]


def test_method_recipes():
    base = load_recipe("digits_quick")
    cells = {c.name: c.recipe for c in plan_grid(base, alpha_axes([2.5, 10], ["sg", "asgl"]), seeds=2)}
    assert len(cells) == 8
    sg = cells["digits_quick-sg-a2.5-s1"]
    assert (sg.neuron.spike, sg.surrogate.learnable, sg.noise.prob, sg.surrogate.width) == ("sg", False, 0.0, 2.5)
    assert sg.run.seed == base.run.seed + 1 and sg.run.name == "digits_quick-sg-a2.5-s1"
    asgl = cells["digits_quick-asgl-a10-s0"]
    assert (asgl.neuron.spike, asgl.surrogate.learnable, asgl.noise.prob) == ("asgl", True, base.noise.prob)
    assert asgl.surrogate.width == 10 and asgl.run.seed == base.run.seed


def test_sweep_runs_resumes_and_plots(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "alpha", "digits_quick", "--widths", "1,5", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["method"], float(r["width"])) for r in rows] == [("sg", 1), ("sg", 5), ("asgl", 1), ("asgl", 5)]
    assert all(0 <= float(r["test_acc"]) <= 1 and "hidden.2=" in r["learned_widths"] for r in rows)
    for r in rows:  # SG keeps the sweep's width in every layer; ASGL learns its widths away from it
        learned = json.loads((Path(r["run_dir"]) / "summary.json").read_text())["neurons"]["widths"]
        assert set(learned) == {"features.0.2", "features.2.2", "hidden.2"}
        moved = [abs(w / float(r["width"]) - 1) for w in learned.values()]
        if r["method"] == "sg":
            assert max(moved) < 1e-6, (r, learned)
        else:
            assert min(moved) > 1e-5, (r, learned)
    assert (out / "sweep.png").stat().st_size > 0
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 4

    # a finished run is skipped; a run folder without summary is resumed from its checkpoint
    (runs[0] / "summary.json").unlink()
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert sorted(p for p in out.iterdir() if p.is_dir()) == runs
    assert (runs[0] / "summary.json").exists()
    assert list(csv.DictReader((out / "sweep.csv").open())) == rows

    # a different recipe over the same folder is refused
    changed = runner.invoke(app, args + ["--set", "model.hidden=9"])
    assert changed.exit_code == 2 and "different recipe" in changed.output

    # the runs recorded gradient cosines every epoch: plot them
    record = json.loads((runs[0] / "metrics.jsonl").read_text().splitlines()[0])
    assert set(record["grad_cosine"]) == {"sg", "asgl", "analog"}
    png = tmp_path / "cos.png"
    plotted = runner.invoke(
        app, ["diagnose", "plot", str(runs[0]), str(runs[2]), "--out", str(png)], env={"COLUMNS": "200"}
    )
    assert plotted.exit_code == 0, plotted.output
    assert "fixed α" in plotted.output and "learnable α" in plotted.output and png.stat().st_size > 0


def test_sweep_rejects_bad_lists(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["sweep", "alpha", "digits_quick", "--widths", "1,x", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "--widths" in bad.output
    bad = runner.invoke(app, ["sweep", "alpha", "digits_quick", "--methods", "sg,foo", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "foo" in bad.output


def test_sweep_with_two_seeds_reports_mean_and_std(tmp_path):
    out = tmp_path / "sweep"
    args = ["sweep", "alpha", "digits_quick", "--widths", "2", "--methods", "asgl", "--seeds", "2", "--out", str(out)]
    for item in TINY[:5]:  # no per-epoch diagnosis
        args += ["--set", item]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["method"], float(r["width"]), r["seed"]) for r in rows] == [("asgl", 2.0, "0"), ("asgl", 2.0, "1")]
    base = load_recipe("digits_quick").run.seed
    configs = [(Path(r["run_dir"]) / "config.resolved.toml").read_text() for r in rows]
    assert [f"seed = {base + i}\n" in c for i, c in enumerate(configs)] == [True, True]
    widths = [json.loads((Path(r["run_dir"]) / "summary.json").read_text())["neurons"]["widths"] for r in rows]
    assert widths[0] != widths[1], "the two seeds trained the same run"
    accs = [100 * float(r["test_acc"]) for r in rows]
    assert f"{statistics.fmean(accs):.2f} ± {statistics.pstdev(accs):.2f}" in result.output


def test_sweep_without_validation_split(tmp_path):
    """A recipe that trains on its whole training set (as the parity recipes do): every cell finishes, the CSV
    leaves val_acc empty and the table shows a dash."""
    out = tmp_path / "sweep"
    args = ["sweep", "alpha", "digits_quick", "--widths", "1,2", "--methods", "sg", "--out", str(out)]
    for item in [*TINY[:5], "train.val_fraction=0", "train.select=last"]:
        args += ["--set", item]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["width"], r["val_acc"]) for r in rows] == [("1", ""), ("2", "")]
    assert all(0 <= float(r["test_acc"]) <= 1 for r in rows)
    table = [line for line in result.output.splitlines() if line.strip(" │").startswith("sg")]
    assert len(table) == 2 and all(line.split("│")[4].strip() == "—" for line in table), result.output
