"""User model builders named in the recipe: ``model.name = "my_package.my_module:build"``.

The builder is a function ``(recipe, info) -> nn.Module`` (``info``: :class:`asgl.data.DataInfo`) whose
module is importable (an installed package, or a folder on ``PYTHONPATH``). Like the bundled models,
it takes the loader's input and returns per-step logits ``[T, B, K]``.

A checkpoint's stored recipe imports its builder only with the user's consent (see :mod:`asgl.trust`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from asgl.config import Recipe, RecipeError  # a user builder takes the whole recipe
from asgl.data import DataInfo


def import_builder(path: str) -> Callable[[Recipe, DataInfo], nn.Module]:
    """The function named by ``"package.module:function"`` (raises :class:`RecipeError` naming what is missing)."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RecipeError(f"model.name = {path!r}: a user builder is written 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RecipeError(
            f"model.name = {path!r}: cannot import {module_name!r} ({e}); install its package or put its folder "
            "on PYTHONPATH"
        ) from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        found = "nothing" if builder is None else type(builder).__name__
        raise RecipeError(f"model.name = {path!r}: {module_name} has no function {attr!r} (found {found})")
    return builder
