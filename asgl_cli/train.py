"""``asgl train``: run a recipe, or resume a run."""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from asgl.terminal import make_console, say
from asgl_cli.errors import fail, user_errors
from asgl_cli.trust import BUILDER, TRUST_CODE, code_trust, trust_args

if TYPE_CHECKING:
    from rich.console import Console

    from asgl.config import Recipe
    from asgl.engine.trainer import TrainResult
    from asgl.trust import CodeTrust


@user_errors
def train(
    recipe: Optional[str] = typer.Argument(None, help="Recipe file or bundled recipe name (optional with --resume)."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override a recipe key: --set surrogate.width=10 (repeatable)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Parent folder of the run folder (default: run.out_dir)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a run: its folder or a checkpoint file."),
    nproc: int = typer.Option(
        1, "--nproc", min=1, help="Train with N processes (DDP: one per GPU, gloo on CPU) via torchrun."
    ),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="Machines of a multi-node job (each runs this command)."),
    rdzv: Optional[str] = typer.Option(
        None, "--rdzv", help="host:port every node can reach, where the nodes meet (c10d rendezvous)."
    ),
    node_rank: Optional[int] = typer.Option(
        None, "--node-rank", min=0, help="Fix this machine's index (static rendezvous at --rdzv); node 0 writes."
    ),
    builder: Optional[str] = BUILDER,
    trust_code: bool = TRUST_CODE,
) -> None:
    """Train a recipe into a new run folder, or continue one with --resume."""
    from asgl.errors import UsageError

    check_flags(recipe, out, resume)
    given = load_given(recipe, overrides)
    if nproc > 1 or nnodes > 1:
        if "LOCAL_RANK" in os.environ:
            raise UsageError(
                "--nproc / --nnodes cannot be used inside torchrun: torchrun already started the processes"
            )
        launch = torchrun_launch(nproc, nnodes, node_rank, rdzv)
        if given is not None and resume is None:
            from asgl.engine.device import check_runtime

            check_runtime(given)  # before the processes start: one message, not one per rank
        relaunch_with_torchrun(launch, recipe, overrides, out, resume, trust_args(builder, trust_code))

    from asgl.engine.trainer import NonFiniteLossError, TrainingInterrupted

    console = make_console(stderr=True)
    try:
        result = run(recipe, given, overrides, out, resume, code_trust(builder, trust_code), console)
    except TrainingInterrupted as e:
        say(console, f"[yellow]interrupted:[/] {e}")
        raise typer.Exit(e.exit_code) from None
    except NonFiniteLossError as e:
        raise fail(str(e), code=1) from None
    except KeyboardInterrupt:  # Ctrl-C before the loop took over the signal, or a second one
        raise fail("interrupted; checkpoints already written are intact", code=130) from None
    from asgl.engine.distributed import from_env

    if from_env().is_main:  # under torchrun every process returns here; rank 0 reports
        print_result(result)


def check_flags(recipe: Optional[str], out: Optional[Path], resume: Optional[str]) -> None:
    """RECIPE, --out and --resume: a new run needs RECIPE; a resumed run stays in its own folder."""
    from asgl.errors import UsageError

    if resume is None and recipe is None:
        raise UsageError("give a RECIPE (file or bundled name), or --resume RUN_DIR to continue a run")
    if resume is not None and out is not None:
        raise UsageError("--out cannot be combined with --resume: a resumed run stays in its own folder")


def load_given(recipe: Optional[str], overrides: list[str]) -> Optional[Recipe]:
    """RECIPE with --set (None without RECIPE: a resume with the stored recipe)."""
    from asgl.config import load_recipe

    return load_recipe(recipe, overrides) if recipe is not None else None


def run(
    recipe: Optional[str],
    given: Optional[Recipe],
    overrides: list[str],
    out: Optional[Path],
    resume: Optional[str],
    trust: CodeTrust,
    console: Console,
) -> TrainResult:
    """Train ``given`` (RECIPE with --set), or resume the checkpoint ``resume`` with its stored recipe, which must
    equal ``given`` when RECIPE was named (its user builder allowed by ``trust``, or named by RECIPE)."""
    from asgl.config import RecipeError
    from asgl.diagnose.report import diagnosis_callbacks
    from asgl.engine.restore import recipe_differences
    from asgl.engine.trainer import resume as resume_training
    from asgl.engine.trainer import train as run_training

    if resume is None:
        return run_training(given, out_dir=out, console=console, callbacks=diagnosis_callbacks(given))

    def same_as_given(stored: Recipe) -> None:
        differing = recipe_differences(given, stored) if given is not None else []
        if differing:
            raise RecipeError(
                f"recipe {recipe} differs from the one stored in the checkpoint ({', '.join(differing)}); "
                "omit RECIPE to resume with the stored recipe"
            )

    if given is not None:  # the user named this recipe, and with it its user builder
        trust = replace(trust, builders=(*trust.builders, given.model.name))
    return resume_training(resume, overrides, trust, same_as_given, console, diagnosis_callbacks)


def print_result(result: TrainResult) -> None:
    """The result table of a finished run (stdout)."""
    cells = {
        "best epoch": str(result.best_epoch),
        "val acc (best)": f"{result.best_val_acc:.2%}",
        "test acc (best ckpt)": f"{result.test.accuracy:.2%}",
        "test loss": f"{result.test.loss:.4f}",
        "test samples": str(result.test.samples),
    }
    if math.isnan(result.best_val_acc):  # no validation split (train.val_fraction = 0)
        del cells["val acc (best)"]
    table = Table()
    for col in cells:
        table.add_column(col, justify="right")
    table.add_row(*cells.values())
    report = make_console()
    say(
        report, f"{result.summary['recipe']}: {result.run_dir}", markup=False
    )  # a title line: the path is never squeezed
    report.print(table)


def torchrun_launch(nproc: int, nnodes: int, node_rank: Optional[int], rdzv: Optional[str]) -> list[str]:
    """torchrun's options: one machine (``--standalone``), or ``nnodes`` machines meeting at ``rdzv``: c10d
    (torchrun orders the nodes), or static with ``node_rank`` (node 0 holds rank 0, which writes the run folder)."""
    from asgl.errors import UsageError

    per_node = ["--nproc-per-node", str(nproc)]
    if nnodes == 1:
        return ["--standalone", *per_node]
    if rdzv is None or not re.fullmatch(r"[^:\s]+:\d+", rdzv):
        raise UsageError(f"--nnodes {nnodes} needs --rdzv host:port (an address every node can reach), got {rdzv!r}")
    if node_rank is None:
        rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv, "--rdzv-id", f"asgl-{rdzv}"]
    elif node_rank < nnodes:
        host, port = rdzv.rsplit(":", 1)
        rendezvous = ["--node-rank", str(node_rank), "--master-addr", host, "--master-port", port]
    else:
        raise UsageError(f"--node-rank {node_rank} must be below --nnodes {nnodes}")
    return ["--nnodes", str(nnodes), *rendezvous, *per_node]


def relaunch_with_torchrun(
    launch: list[str],
    recipe: Optional[str],
    overrides: list[str],
    out: Optional[Path],
    resume: Optional[str],
    consent: list[str],
) -> None:
    """Replace this process by ``torchrun <launch> -m asgl_cli train ...`` (same arguments).

    exec, not a child process: signals (Ctrl-C, SIGTERM) reach torchrun, which passes them to every rank.
    """
    args = [sys.executable, "-m", "torch.distributed.run", *launch]
    args += ["-m", "asgl_cli", "train", *([recipe] if recipe else []), *consent]
    args += [a for item in overrides for a in ("--set", item)]
    args += ["--out", str(out)] if out is not None else []
    args += ["--resume", resume] if resume is not None else []
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, args)
