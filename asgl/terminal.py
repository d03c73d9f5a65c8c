"""Terminal text that survives 80 columns and a pipe: lines are packed from whole tokens, so nothing a user
may copy (a path, a URL, a `backquoted command`) is ever split across lines."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

_WORD = re.compile(r"`[^`]*`|\S+")
Line = TypeVar("Line", str, Text)


def make_console(stderr: bool = False) -> Console:
    """A console that never wraps what it prints (the caller lays lines out with :func:`pack` or :func:`say`);
    colour only on a terminal, plain text through a pipe."""
    return Console(stderr=stderr, soft_wrap=True)


def words(text: Line) -> list[Line]:
    """Whitespace-separated words of ``text`` (styles kept); a `backquoted command` stays one word."""
    return [text[m.start() : m.end()] for m in _WORD.finditer(str(text))]


def pack(tokens: Sequence[Line], width: int, sep: str = " ", indent: str = "") -> list[Line]:
    """Lines of whole ``tokens`` joined by ``sep``, each at most ``width`` columns unless one token alone is
    wider (it then stands on its own line, unsplit); lines after the first start with ``indent``, unless the
    indent would push a token that fits the width alone past it."""
    lines: list[Line] = []
    line: Line | None = None
    for token in tokens:
        if line is None:
            line = token
        elif cell_len(f"{line}{sep}{token}") <= width:
            line = line + sep + token
        else:
            lines.append(line)
            lead = indent if cell_len(f"{indent}{token}") <= width or cell_len(str(token)) > width else ""
            line = token[:0] + lead + token  # token[:0]: an empty str or Text, so a Text keeps its type
    return lines if line is None else [*lines, line]


def say(console: Console, message: str | Text, indent: str = "  ", markup: bool = True) -> None:
    """Print a message (a str, with rich markup unless ``markup`` is False, or a Text). Through a pipe its lines
    stay whole, for grep; on a terminal each line is laid out by :func:`pack` to the terminal's width, after its
    own leading spaces, so the terminal never breaks a word, path, URL or `command` (one wider than the
    terminal stands alone on its line)."""
    text = console.render_str(message, markup=markup) if isinstance(message, str) else message
    if not console.is_terminal:
        console.print(text, soft_wrap=True)
        return
    for line in text.split("\n", allow_blank=True):
        lead = line.plain[: len(line.plain) - len(line.plain.lstrip())]
        for part in pack(words(line), console.width - len(lead), indent=indent) or [Text()]:
            console.print(Text(lead) + part, soft_wrap=True)
