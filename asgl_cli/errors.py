"""User errors: one clear message on stderr and exit code 2, never a traceback.

Every message meant for the user is an :class:`asgl.errors.UserError` (torch-free to import).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from asgl.errors import UserError
from asgl.terminal import say

err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise."""
    say(err_console, Text.assemble(("error: ", "bold red"), message))
    return typer.Exit(code)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command so that user errors exit 2 with their message (other errors stay bugs)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as e:
            if isinstance(e, UserError):
                raise fail(str(e)) from None
            raise

    return wrapper
