"""``asgl data check`` (whether a recipe's dataset is in place) and ``asgl data get`` (download it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.text import Text

from asgl.terminal import make_console, pack, say, words
from asgl_cli.errors import user_errors

if TYPE_CHECKING:
    from asgl.data import DataProblem
    from asgl.data.download import Archive

app = typer.Typer(help="Dataset checks and downloads.", no_args_is_help=True)


@app.command("check")
@user_errors
def check(recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name.")) -> None:
    """List the recipe's data files and whether they are readable; exit 1 when something is missing."""
    from asgl.config import load_recipe

    cfg = load_recipe(recipe)
    from asgl.builders import check_data
    from asgl.data.download import ARCHIVES

    problems = check_data(cfg)
    console = make_console()
    where = f" in {cfg.data.root}" if hasattr(cfg.data, "root") else ""  # digits are embedded: no folder
    say(console, f"data {cfg.data.name}{where}", markup=False)
    _print_problems(console, problems)
    if not all(p.ok for p in problems):
        if cfg.data.name in ARCHIVES:
            console.print("download it with:")
            console.print(f"  asgl data get {recipe}", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command("get")
@user_errors
def get(
    recipe: str = typer.Argument(..., help="Recipe file or bundled recipe name."),
    overrides: list[str] = typer.Option([], "--set", help="Override a recipe key: --set data.root=/data (repeatable)."),
) -> None:
    """Download the recipe's dataset into data.root, verify its checksums and extract it.

    An interrupted download is resumed by the next run; ASGL_DATA_MIRROR=http://host:port fetches every file
    from that host instead (tests, local mirrors)."""
    from asgl.config import load_recipe

    cfg = load_recipe(recipe, overrides)
    from asgl.builders import check_data
    from asgl.data.download import NOT_FETCHED, DownloadError, archives

    console = make_console()
    if cfg.data.name == "digits":
        console.print(NOT_FETCHED["digits"])
        return
    try:
        todo = archives(cfg.data.name)
        root = Path(cfg.data.root).expanduser().resolve()
        say(console, f"data {cfg.data.name} into {root}", markup=False)
        if all(p.ok for p in check_data(cfg)):
            say(console, "already in place: every file checks out, nothing to download", markup=False)
            return
        for archive in todo:
            _fetch_and_unpack(console, archive, root)
    except DownloadError as e:
        raise DownloadError(str(e).replace("RECIPE`", f"{recipe}`")) from None
    problems = check_data(cfg)
    if all(p.ok for p in problems):
        say(console, "ready: every file checks out", markup=False)
        return
    _print_problems(console, [p for p in problems if not p.ok])
    raise typer.Exit(1)


def _print_problems(console: Console, problems: list[DataProblem]) -> None:
    for p in problems:
        status = Text("ok     ", "green") if p.ok else Text("missing", "red")
        say(console, Text.assemble(status, f" {p.path}", f"  {p.size}" if p.size else ""))
        for line in pack(words(p.message), console.width - 4):
            console.print(Text(f"    {line}"))


def _fetch_and_unpack(console: Console, archive: Archive, root: Path) -> None:
    """Download (rich progress bar on a terminal) and extract one archive; one quiet line per step."""
    from asgl.data import human_size
    from asgl.data.download import fetch, unpack

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn())
    started: list[int] = []  # the size on disk when the transfer began (none: an intact copy was there)
    quiet = not console.is_terminal
    with Progress(*columns, TimeRemainingColumn(), console=console, transient=True, disable=quiet) as bar:
        task = bar.add_task(archive.filename, total=None)

        def progress(done: int, total: int | None) -> None:
            started[:] = started or [done]
            bar.update(task, completed=done, total=total)

        path = fetch(archive, root, progress)
    how = "already here" if not started else f"resumed at {human_size(started[0])}" if started[0] else "downloaded"
    say(console, f"{path.name}: {human_size(path.stat().st_size)}, md5 ok ({how})", markup=False)
    made = unpack(path)
    say(console, f"extracted {', '.join(p.name for p in made)} into {path.parent}", markup=False)
