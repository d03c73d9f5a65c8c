"""``asgl diagnose gradients | plot``: training vs true SNN gradients (docs/method.md#gradient-diagnosis)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from asgl.terminal import make_console, pack, say, words
from asgl_cli.errors import user_errors
from asgl_cli.sweep import parse_list
from asgl_cli.trust import BUILDER, TRUST_CODE, code_trust

if TYPE_CHECKING:
    from asgl.diagnose.gradients import GradientSettings
    from asgl.diagnose.report import Diagnosis, Subject

app = typer.Typer(help="Gradient and dynamics diagnosis of spiking networks.", no_args_is_help=True)


@app.command("gradients")
@user_errors
def gradients(
    recipe: Optional[str] = typer.Argument(
        None, help="Recipe (diagnoses its freshly initialised model); or use --ckpt."
    ),
    ckpt: Optional[Path] = typer.Option(None, "--ckpt", help="Checkpoint file or run folder to diagnose."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key (RECIPE only, repeatable)."),
    batches: int = typer.Option(4, "--batches", min=1, help="K fixed validation minibatches."),
    directions: int = typer.Option(32, "--directions", min=1, help="R random unit directions per layer."),
    coords: Optional[int] = typer.Option(
        None, "--coords", min=1, help="S sampled coordinates per layer instead of directions."
    ),
    eps: float = typer.Option(0.1, "--eps", help="Finite-difference step (L2 norm of the weight step)."),
    layers: Optional[str] = typer.Option(
        None, "--layers", help="Comma-separated conv/linear module names (default all)."
    ),
    mask_draws: int = typer.Option(
        1, "--mask-draws", min=1, help="ASGL gradient averaged over this many seeded masks."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the probes and the masks."),
    float64: bool = typer.Option(False, "--float64", metavar="", help="Run the diagnosis in double precision."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda[:N] or auto."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Output folder (default: <run>/diagnose-e<epoch> or <out_dir>/<name>-diagnose)."
    ),
    builder: Optional[str] = BUILDER,
    trust_code: bool = TRUST_CODE,
) -> None:
    """Cosine and norm ratio of g_SG, g_ASGL and g_analog against finite differences of the pure-SNN loss,
    per layer; per-layer dynamics; the hybrid-vs-SNN accuracy gap. Writes CSV, JSON and PNG files."""
    from asgl.config import RecipeError, load_recipe

    if (recipe is None) == (ckpt is None):
        raise RecipeError("give either a RECIPE or --ckpt PATH (exactly one)")
    if eps <= 0:
        raise RecipeError(f"--eps {eps:g}: the finite-difference step must be > 0")
    if ckpt is not None and overrides:
        raise RecipeError("--set applies to a RECIPE; a checkpoint is diagnosed with its stored recipe")
    cfg = load_recipe(recipe, overrides) if recipe is not None else None

    from asgl.diagnose.gradients import GradientSettings
    from asgl.diagnose.report import diagnose, diagnosis_folder, load_subject, write_diagnosis

    settings = GradientSettings(
        batches,
        directions,
        coords,
        eps,
        tuple(parse_list(layers, "layers")) if layers else None,
        mask_draws,
        seed,
        float64,
    )
    subject = load_subject(cfg, ckpt, batches, device, code_trust(builder, trust_code))
    try:
        result = diagnose(subject, settings)
    except ValueError as e:  # unknown layer names, empty split
        raise RecipeError(str(e)) from None
    files = write_diagnosis(result, subject, out or diagnosis_folder(subject))
    print_diagnosis(subject, settings, result, files)


def print_diagnosis(subject: Subject, settings: GradientSettings, result: Diagnosis, files: list[Path]) -> None:
    """The gradient table, the dynamics table and the accuracy gap (stdout)."""
    console = make_console()
    eps = settings.eps
    g = result.gradients
    probe = f"{settings.coords} coordinates" if settings.coords else f"{settings.directions} directions"
    k = len(subject.batches)
    say(console, f"{subject.source}, epoch {subject.epoch}", markup=False)
    say(console, f"cosine / norm ratio vs FD ({probe}, ε = {eps:g}, K = {k})", markup=False)
    if k < settings.batches:
        say(console, f"--batches {settings.batches} lowered to K = {k}: the validation split holds {k} batches")
    table = Table()
    table.add_column("layer")
    table.add_column("FD zeros", justify="right")
    methods = list(dict.fromkeys(c.method for c in g.comparisons))
    for m in methods:
        table.add_column(m, justify="right")
    cell = {(c.layer, c.method): c for c in g.comparisons}
    for layer in dict.fromkeys(c.layer for c in g.comparisons):
        table.add_row(
            layer,
            f"{g.zero_fraction[layer]:.0%}",
            *(f"{cell[layer, m].cosine:+.3f} / {cell[layer, m].norm_ratio:.3g}" for m in methods),
            end_section=layer == list(g.layer_sizes)[-1],
        )
    console.print(table)

    dyn = Table(title="LIF dynamics (pure SNN forward)")
    for col in ("layer", "width α", "firing rate", "in window", "E|H−Θ|"):
        dyn.add_column(col, justify="left" if col == "layer" else "right")
    for d in result.dynamics:
        dyn.add_row(d.layer, f"{d.width:.4g}", f"{d.firing_rate:.3f}", f"{d.in_window:.3f}", f"{d.smoothing_error:.3f}")
    console.print(dyn)
    gap = (
        f"accuracy on the {len(subject.batches)} batches: hybrid (p = {subject.noise_prob:g}) {result.hybrid_acc:.2%}, "
        f"pure SNN {result.snn_acc:.2%}, gap {100 * (result.hybrid_acc - result.snn_acc):+.2f} points"
    )
    for line in pack(words(gap), console.width):
        console.print(line, markup=False)
    say(console, "wrote " + ", ".join(str(f) for f in files), markup=False)


@app.command("plot")
@user_errors
def plot(
    runs: list[Path] = typer.Argument(
        ..., help="Run folders trained with train.diagnose_every > 0, or folders of `diagnose gradients`."
    ),
    method: str = typer.Option("asgl", "--method", help="Which recorded gradient: sg, asgl or analog."),
    out: Path = typer.Option(Path("cosine.png"), "--out", help="PNG file to write."),
) -> None:
    """Cosine to the true SNN gradient over epochs, one line per run (labelled learnable / fixed width).

    A folder written by `asgl diagnose gradients` counts as a run of one point (its checkpoint's epoch)."""
    from asgl.diagnose.plots import plot_curves
    from asgl.diagnose.report import cosine_curve

    curves: dict[str, tuple[list[int], list[float]]] = {}
    for run in runs:
        epochs, cosines, learnable = cosine_curve(run, method)
        kind = {True: "learnable α", False: "fixed α", None: "α ?"}[learnable]
        curves[f"{run.name} ({kind})"] = (epochs, cosines)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, out, f"cosine(g_{method}, FD reference)")
    table = Table(title=f"cosine(g_{method}, FD reference) per epoch")
    table.add_column("run")
    table.add_column("epochs", justify="right")
    table.add_column("first", justify="right")
    table.add_column("last", justify="right")
    table.add_column("mean", justify="right")
    for label, (xs, ys) in curves.items():
        table.add_row(label, str(len(xs)), f"{ys[0]:.3f}", f"{ys[-1]:.3f}", f"{sum(ys) / len(ys):.3f}")
    console = make_console()
    console.print(table)
    say(console, f"wrote {out}", markup=False)
