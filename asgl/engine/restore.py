"""From a checkpoint back to its recipe and model: the one rebuild behind resume, ``asgl eval`` and diagnosis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asgl.builders import build_data, build_model, describe_data
from asgl.config import Recipe, RecipeError, apply_overrides, read_stored_recipe, recipe_to_dict, validate_recipe
from asgl.data import DataBundle, DataInfo
from asgl.engine.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint_path
from asgl.trust import CodeTrust, check_stored_builder

# keys a resumed run may change: they do not alter what is computed
RESUME_SAFE_KEYS = (
    "run.device",
    "run.threads",
    "data.root",
    "data.cache_dir",
    "data.num_workers",
    "data.pin_memory",
    "data.persistent_workers",
    "train.eval_batch_size",
    "train.checkpoint_every_steps",
    "train.nan_policy",
    "train.log_every",
    "train.compile",
)


@dataclass(frozen=True)
class Stored:
    """A checkpoint file, its contents and the recipe stored in it (with resume-safe overrides applied)."""

    path: Path
    state: dict[str, Any]
    recipe: Recipe


@dataclass
class Restored:
    """A checkpoint rebuilt: its recipe's data and its model with the stored weights (on CPU)."""

    stored: Stored
    data: DataBundle
    model: nn.Module


def open_checkpoint(
    checkpoint: str | Path, overrides: list[str] | None = None, trust: CodeTrust = CodeTrust()
) -> Stored:
    """Read ``checkpoint`` (a ``.pt`` file or a run folder) and its recipe; ``overrides`` may only touch
    :data:`RESUME_SAFE_KEYS` (anything else would no longer match the stored weights and optimiser state).
    A stored user builder is refused unless ``trust`` allows it: reading a file imports no code by itself."""
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key not in RESUME_SAFE_KEYS:
            raise RecipeError(
                f"--set {key} cannot change when resuming (the run would no longer match its checkpoint); "
                f"changeable: {', '.join(RESUME_SAFE_KEYS)}"
            )
    path = resolve_checkpoint_path(checkpoint)
    state = load_checkpoint(path)
    raw = apply_overrides(read_stored_recipe(state["recipe"]), overrides or [])
    recipe = validate_recipe(raw, f"stored in {path}", overrides or [])
    check_stored_builder(recipe.model.name, path, trust)
    return Stored(path, state, recipe)


def build_model_for(recipe: Recipe, info: DataInfo, stored: Stored | None = None) -> nn.Module:
    """The recipe's model initialised under ``run.seed`` (global RNG); the weights of ``stored`` when given."""
    torch.manual_seed(recipe.run.seed)  # the weights do not depend on what drew from the RNG before
    model = build_model(recipe, info)
    if stored is not None:
        misfit = state_misfit(model.state_dict(), stored.state["model"])
        if misfit:
            raise CheckpointError(f"checkpoint {stored.path} does not fit the model of its recipe: {misfit}")
        model.load_state_dict(stored.state["model"])
    return model


def state_misfit(expected: dict[str, torch.Tensor], given: dict[str, Any]) -> str:
    """What keeps ``given`` from loading into a model whose state dict is ``expected`` ("" when it fits)."""

    def names(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [k for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    parts = [f"{what} {names(keys)}" for what, keys in
             (("missing", missing), ("unexpected", unexpected), ("other shape:", shapes)) if keys]  # fmt: skip
    return "; ".join(parts)


def restore(checkpoint: str | Path, trust: CodeTrust = CodeTrust()) -> Restored:
    """The checkpoint's recipe, data and model with its weights: what ``asgl eval`` and diagnosis start from."""
    stored = open_checkpoint(checkpoint, trust=trust)
    model = build_model_for(stored.recipe, describe_data(stored.recipe), stored)  # a wrong checkpoint fails first
    return Restored(stored, build_data(stored.recipe), model)


def recipe_differences(a: Recipe, b: Recipe) -> list[str]:
    """Dotted keys whose values differ between two recipes."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    fa, fb = flat(recipe_to_dict(a)), flat(recipe_to_dict(b))
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))
