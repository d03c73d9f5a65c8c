"""User errors: one clear message on stderr and exit code 2, never a traceback.

An error type counts when its module is already imported (``sys.modules``): a command that failed
before importing torch cannot have raised a torch-side error, and checking costs no heavy import.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import typer
from rich.console import Console
from rich.text import Text

# module -> exception class whose message is written for the user
USER_ERRORS: dict[str, str] = {
    "asgl.config": "RecipeError",
    "asgl.data": "DataMissingError",
    "asgl.models": "ModelDataMismatch",
    "asgl.engine.checkpoint": "CheckpointError",
}

err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the Exit to raise."""
    err_console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    return typer.Exit(code)


def _user_error_types() -> tuple[type[BaseException], ...]:
    return tuple(getattr(sys.modules[m], name) for m, name in USER_ERRORS.items() if m in sys.modules)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a command so that user errors exit 2 with their message (other errors stay bugs)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as e:
            if isinstance(e, _user_error_types()):
                raise fail(str(e)) from None
            raise

    return wrapper
