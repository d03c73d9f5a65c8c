"""The ``asgl`` command: each command group lives in its own module, registered here in one line."""

from __future__ import annotations

import typer

from asgl_cli import bench, data, diagnose, evaluate, export, recipes, reference, sweep, train

app = typer.Typer(
    name="asgl",
    help="Adaptive Smoothing Gradient Learning for spiking neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

app.command("train")(train.train)
app.command("eval")(evaluate.eval_checkpoint)
app.command("bench")(bench.bench)
app.command("export")(export.export)
app.command("import-reference")(reference.import_reference)
app.add_typer(recipes.app, name="recipes")
app.add_typer(data.app, name="data")
app.add_typer(sweep.app, name="sweep")
app.add_typer(diagnose.app, name="diagnose")
