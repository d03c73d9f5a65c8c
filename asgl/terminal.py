"""Terminal text that survives 80 columns and a pipe: lines are packed from whole tokens, so nothing a user
may copy (a path, a URL, a `backquoted command`) is ever split across lines."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.cells import cell_len
from rich.console import Console

_WORD = re.compile(r"`[^`]*`|\S+")


def make_console(stderr: bool = False) -> Console:
    """A console that never wraps what it prints (the caller lays lines out with :func:`pack`); colour only on a
    terminal, plain text through a pipe."""
    return Console(stderr=stderr, soft_wrap=True)


def words(text: str) -> list[str]:
    """Whitespace-separated words of ``text``; a `backquoted command` stays one word."""
    return _WORD.findall(text)


def pack(tokens: Sequence[str], width: int, sep: str = " ", indent: str = "") -> list[str]:
    """Lines of whole ``tokens`` joined by ``sep``, each at most ``width`` columns unless one token alone is
    wider (it then stands on its own line, unsplit); lines after the first start with ``indent``."""
    lines: list[str] = []
    line: str | None = None
    for token in tokens:
        if line is None:
            line = token
        elif cell_len(line + sep + token) <= width:
            line += sep + token
        else:
            lines.append(line)
            line = indent + token
    return lines if line is None else [*lines, line]
