"""``--builder`` / ``--trust-code``: the user's consent to import the user builder a checkpoint names.

A checkpoint's stored recipe may name a user builder (``model.name = "package.module:function"``);
commands that read a checkpoint import it only when the user names the same path with ``--builder``, or
allows any with ``--trust-code`` (see :mod:`asgl.trust`).
"""

from __future__ import annotations

from typing import Optional

import typer

from asgl.trust import CodeTrust

BUILDER = typer.Option(
    None, "--builder", metavar="PKG.MOD:FN", help="Allow the checkpoint's user builder PKG.MOD:FN (imports it)."
)
TRUST_CODE = typer.Option(
    False, "--trust-code", metavar="", help="Allow any user builder the checkpoint names (imports its module)."
)


def code_trust(builder: Optional[str], trust_code: bool) -> CodeTrust:
    return CodeTrust((builder,) if builder else (), trust_code)


def trust_args(builder: Optional[str], trust_code: bool) -> list[str]:
    """The same consent as command-line arguments (for a command that starts another)."""
    return (["--builder", builder] if builder else []) + (["--trust-code"] if trust_code else [])
