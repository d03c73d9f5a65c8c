"""Which code a file may make asgl import.

Importing a module runs its code. A recipe the user passes is theirs to run, but the recipe stored in a
checkpoint travels with the file, and it may name a user builder (``model.name = "package.module:function"``,
see :mod:`asgl.models.custom`). asgl imports such a builder only with the user's consent: its import path
named on the command line (``--builder``), or any (``--trust-code``). This module imports nothing heavy, so
the CLI can state the consent before torch is loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from asgl.errors import CheckpointError


def is_import_path(model_name: str) -> bool:
    """Whether ``model.name`` names a user builder ("package.module:function") rather than a bundled model."""
    return ":" in model_name


@dataclass(frozen=True)
class CodeTrust:
    """The user builders a file may make asgl import: those the user named, or any (``trust_any``).
    The default trusts none."""

    builders: tuple[str, ...] = ()
    trust_any: bool = False

    def allows(self, path: str) -> bool:
        return self.trust_any or path in self.builders


class UntrustedCode(CheckpointError):
    """A file whose recipe names a user builder that the user did not allow (nothing was imported)."""


def check_stored_builder(model_name: str, source: str | os.PathLike, trust: CodeTrust) -> None:
    """Refuse a stored ``model.name`` that would import a module the user did not name."""
    if is_import_path(model_name) and not trust.allows(model_name):
        raise UntrustedCode(
            f"checkpoint {source} wants to import module {model_name.partition(':')[0]!r} "
            f"(model.name = {model_name!r}); nothing was imported: pass --builder {model_name} "
            "(or --trust-code) if you trust that code"
        )
