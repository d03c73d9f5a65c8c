"""Import of the reference implementation's checkpoints (``best_net`` state dicts) as asgl checkpoints.

The mapping is an explicit table of *units* (one stateless layer or one LIF layer each), generated
from the asgl model's own structure, so that it names every key of both sides:

    unit kind   reference key                      asgl key             value
    conv        <ref>.weight                       <asgl>.weight        as is
    norm        <ref>.{weight,bias,running_mean,   <asgl>.<same>        as is
                running_var,num_batches_tracked}
    linear      <ref>.{weight,bias}                <asgl>.<same>        as is
    lif         <ref>.cell.decay                   <asgl>.decay_logit   logit d, copied (or gamma, see below)
    lif         <ref>.cell.spike_fn.inv_sg.alpha   <asgl>.width.param   slope k -> asgl's width storage

Unit prefixes (reference -> asgl); ``i`` counts BasicBlocks from 1, ``s``/``b`` are stage/block:

    resnet18  conv0.0.layer / conv0.1.layer / conv0.2   -> features.0.0.0 / features.0.1.0 / features.0.2
              layer{s}.{b}.conv1.{0.layer,1.layer,2}     -> features.{i}.residual.0.{0.0,1.0,2}
              layer{s}.{b}.conv2.{0.layer,1.layer}       -> features.{i}.residual.{1.0,2.0}
              layer{s}.{b}.shortcut.{0.layer,1.layer}    -> features.{i}.shortcut.{0.0,1.0}  (when present)
              layer{s}.{b}.act                           -> features.{i}.lif
              fc.layer                                   -> head.1
    vggsnn2   conv{j}.{0.layer,1.layer,2}  (j-th conv)   -> features.{n}.{0.0,1.0,2}  (n-th feature module)
              fc.layer                                   -> head.1

Only the stem and LIF key names (``conv0.0.layer.weight``, ``conv0.1.layer.*``, ``conv0.2.cell.decay``,
``...spike_fn.inv_sg.alpha``) are known; the others follow the same convention by assumption. A file
that differs is refused with every unmapped, missing and mis-shaped key listed, so the table can be
corrected in one place (:func:`reference_units`).

Values: the reference stores the leak as its logit d, gamma = sigmoid(d) (docs/method.md#the-lif-neuron; the default
``--decay-stored logit`` copies it); ``--decay-stored gamma`` converts files that keep gamma itself; its slope k = 1/alpha raw for the sigmoid
and as log k for the rectangle; asgl keeps log k (``surrogate.storage = "log_slope"``) or k
(``"raw_slope"``, sigmoid only). Thresholds are not in the reference's file: the recipe's are kept.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from asgl.config import Recipe, recipe_to_toml
from asgl.engine.checkpoint import CheckpointError

UnitKind = Literal["conv", "norm", "linear", "lif"]
DecayStored = Literal["gamma", "logit"]

REFERENCE_MODELS = ("resnet18", "vggsnn2")
REFERENCE_FAMILIES = ("sigmoid", "rectangle")
# nested state dicts are looked up under these keys when the file is not a state dict itself
STATE_KEYS = ("best_net", "net", "state_dict", "model")

# unit kind -> reference parameter suffix -> (asgl suffix, value transform)
SUFFIXES: dict[str, dict[str, tuple[str, str]]] = {
    "conv": {"weight": ("weight", "copy")},
    "norm": {s: (s, "copy") for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")},
    "linear": {"weight": ("weight", "copy"), "bias": ("bias", "copy")},
    "lif": {"cell.decay": ("decay_logit", "decay"), "cell.spike_fn.inv_sg.alpha": ("width.param", "slope")},
}
# asgl keys a reference file may lack: the model's own values are kept
OPTIONAL_SUFFIXES = (".threshold", ".num_batches_tracked")


class ReferenceImportError(CheckpointError):
    """A reference checkpoint that cannot be imported; the message is meant for the user as it is."""


@dataclass(frozen=True)
class Unit:
    reference: str  # module prefix in the reference's state dict
    asgl: str  # module prefix in the asgl model
    kind: UnitKind


@dataclass(frozen=True)
class KeyRule:
    reference: str  # full reference key
    asgl: str  # full asgl key
    transform: str  # copy | decay | slope


# ---------------------------------------------------------------- the mapping table


def _conv_norm_lif(ref: str, asgl: str) -> list[Unit]:
    return [
        Unit(f"{ref}.0.layer", f"{asgl}.0.0", "conv"),
        Unit(f"{ref}.1.layer", f"{asgl}.1.0", "norm"),
        Unit(f"{ref}.2", f"{asgl}.2", "lif"),
    ]


def _resnet_units(model: nn.Module, depths: tuple[int, ...]) -> list[Unit]:
    units = _conv_norm_lif("conv0", "features.0")
    i = 0
    for s, depth in enumerate(depths, start=1):
        for b in range(depth):
            i += 1
            ref, asgl = f"layer{s}.{b}", f"features.{i}"
            units += _conv_norm_lif(f"{ref}.conv1", f"{asgl}.residual.0")
            units += [
                Unit(f"{ref}.conv2.0.layer", f"{asgl}.residual.1.0", "conv"),
                Unit(f"{ref}.conv2.1.layer", f"{asgl}.residual.2.0", "norm"),
            ]
            if not isinstance(model.features[i].shortcut, nn.Identity):
                units += [
                    Unit(f"{ref}.shortcut.0.layer", f"{asgl}.shortcut.0.0", "conv"),
                    Unit(f"{ref}.shortcut.1.layer", f"{asgl}.shortcut.1.0", "norm"),
                ]
            units.append(Unit(f"{ref}.act", f"{asgl}.lif", "lif"))
    return units + [Unit("fc.layer", "head.1", "linear")]


def _vgg_units(model: nn.Module) -> list[Unit]:
    from asgl.neuron import LIF

    units: list[Unit] = []
    convs = [n for n, m in enumerate(model.features) if isinstance(m, nn.Sequential) and isinstance(m[-1], LIF)]
    for j, n in enumerate(convs):
        units += _conv_norm_lif(f"conv{j}", f"features.{n}")
    return units + [Unit("fc.layer", "head.1", "linear")]


def check_importable(recipe: Recipe) -> None:
    """Raise :class:`ReferenceImportError` unless the recipe describes a network the reference has."""
    name = recipe.model.name
    if name not in REFERENCE_MODELS:
        raise ReferenceImportError(
            f"model.name = {name!r}: reference checkpoints can be imported for {', '.join(REFERENCE_MODELS)}"
        )
    if recipe.neuron.norm not in ("tdbn", "threshold_bn"):
        raise ReferenceImportError(f"neuron.norm = {recipe.neuron.norm!r}: the reference uses tdbn (one BN over T·B)")
    if recipe.surrogate.family not in REFERENCE_FAMILIES:
        raise ReferenceImportError(
            f"surrogate.family = {recipe.surrogate.family!r}: the reference has {', '.join(REFERENCE_FAMILIES)} only"
        )


def reference_units(recipe: Recipe, model: nn.Module) -> list[Unit]:
    """The unit table of the recipe's model (see the module docstring)."""
    check_importable(recipe)
    if recipe.model.name == "resnet18":
        from asgl.models.resnet import RESNETS

        return _resnet_units(model, RESNETS[recipe.model.name].depths)
    return _vgg_units(model)


def key_rules(units: list[Unit], asgl_keys: set[str]) -> dict[str, KeyRule]:
    """reference key -> rule, for every unit parameter the asgl model has."""
    rules = {}
    for unit in units:
        for ref_suffix, (asgl_suffix, transform) in SUFFIXES[unit.kind].items():
            asgl_key = f"{unit.asgl}.{asgl_suffix}"
            if asgl_key in asgl_keys:
                ref_key = f"{unit.reference}.{ref_suffix}"
                rules[ref_key] = KeyRule(ref_key, asgl_key, transform)
    return rules


# ---------------------------------------------------------------- value transforms


def decay_to_logit(value: Tensor, stored: DecayStored) -> Tensor:
    """Reference leak -> asgl's decay logit; raises ValueError for gamma outside (0, 1)."""
    if stored == "logit":
        return value
    if not bool(((value > 0) & (value < 1)).all()):
        raise ValueError(f"leak values {value.flatten()[:4].tolist()} are not in (0, 1)")
    return torch.logit(value.double()).to(value.dtype)


def slope_to_param(value: Tensor, family: str, storage: str) -> Tensor:
    """Reference ``inv_sg.alpha`` (k for sigmoid, log k for rectangle) -> asgl's width parameter."""
    if family == "rectangle" or storage == "raw_slope":  # same storage on both sides (raw_slope: sigmoid only)
        return value
    if not bool((value > 0).all()):
        raise ValueError(f"sigmoid slopes {value.flatten()[:4].tolist()} are not all > 0")
    return torch.log(value)


# ---------------------------------------------------------------- reading and mapping


def read_reference(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict in a reference file, loaded with ``torch.load(weights_only=True)`` only."""
    p = Path(path)
    if not p.is_file():
        raise ReferenceImportError(f"reference checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ReferenceImportError(
            f"refused to load {p}: it is not a plain tensor file (it may reference Python objects or code); "
            "asgl loads files with torch.load(weights_only=True) only"
        ) from None
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, zipfile.BadZipFile, OSError) as e:
        raise ReferenceImportError(f"cannot read {p} as a PyTorch file ({type(e).__name__})") from None

    def is_state_dict(x: Any) -> bool:
        return isinstance(x, dict) and bool(x) and all(isinstance(v, Tensor) for v in x.values())

    if not is_state_dict(obj):
        nested = [obj[k] for k in STATE_KEYS if isinstance(obj, dict) and is_state_dict(obj.get(k))]
        if not nested:
            raise ReferenceImportError(
                f"{p} holds no state dict (expected a dict of tensors, or one under {', '.join(STATE_KEYS)})"
            )
        obj = nested[0]
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return obj


def _listing(title: str, items: list[str], limit: int = 12) -> str:
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}): " + ", ".join(items[:limit]) + more


def map_reference_state(
    reference: dict[str, Tensor], recipe: Recipe, model: nn.Module, decay_stored: DecayStored = "logit"
) -> dict[str, Tensor]:
    """The reference state dict as a full state dict of ``model``; raises listing every problem."""
    target = model.state_dict()
    rules = key_rules(reference_units(recipe, model), set(target))
    mapped: dict[str, Tensor] = {}
    unmapped, shapes, values = [], [], []
    for key, value in reference.items():
        rule = rules.get(key)
        if rule is None:
            unmapped.append(key)
            continue
        expected = target[rule.asgl]
        if value.shape != expected.shape and not (value.numel() == expected.numel() == 1):
            shapes.append(f"{key} {list(value.shape)} -> {rule.asgl} {list(expected.shape)}")
            continue
        try:
            if rule.transform == "decay":
                value = decay_to_logit(value, decay_stored)
            elif rule.transform == "slope":
                value = slope_to_param(value, recipe.surrogate.family, recipe.surrogate.storage)
        except ValueError as e:
            values.append(f"{key}: {e}")
            continue
        mapped[rule.asgl] = value.reshape(expected.shape).to(expected.dtype)
    missing = [
        ref for ref, rule in rules.items() if rule.asgl not in mapped and not rule.asgl.endswith(OPTIONAL_SUFFIXES)
    ]
    if unmapped or missing or shapes or values:
        lines = [f"cannot import the reference state dict into {recipe.model.name}:"]
        if unmapped:
            lines.append(_listing("keys with no place in the asgl model", unmapped))
        if missing:
            lines.append(_listing("keys the asgl model needs but the file lacks", missing))
        if shapes:
            lines.append(_listing("shape mismatches (does the recipe match the network?)", shapes))
        if values:
            lines.append(_listing("values", values))
            lines.append(
                "  leaks outside (0, 1) are not gammas: drop --decay-stored gamma (logits are the default); sigmoid slopes <= 0 need "
                "--set surrogate.storage=raw_slope"
            )
        lines.append("the key mapping is documented in asgl/engine/reference_import.py")
        raise ReferenceImportError("\n".join(lines))
    return {**target, **mapped}


def import_reference(
    source: str | os.PathLike, recipe: Recipe, out: str | os.PathLike, decay_stored: DecayStored = "logit"
) -> tuple[Path, int]:
    """Write ``out``, an asgl checkpoint at epoch 0 holding the reference weights of ``source``.

    The model and its data shape come from ``recipe``; the optimiser states are fresh, so ``asgl eval``
    evaluates it and ``asgl train --resume`` fine-tunes it. Returns (path, number of imported tensors).
    """
    from asgl.data import build_data
    from asgl.engine.checkpoint import save_checkpoint
    from asgl.engine.trainer import RunningSums, rng_state
    from asgl.models import build_model
    from asgl.optim import build_optimizers

    check_importable(recipe)
    reference = read_reference(source)
    torch.manual_seed(recipe.run.seed)
    model = build_model(recipe, build_data(recipe).info)
    model.load_state_dict(map_reference_state(reference, recipe, model, decay_stored))
    payload = {
        "recipe": recipe_to_toml(recipe),
        "model": model.state_dict(),
        **build_optimizers(model, recipe.optim, recipe.train.epochs).state_dict(),
        "scaler": {},
        "epoch": 0,
        "step": 0,
        "running": vars(RunningSums()),
        "best": {"val_acc": -1.0, "epoch": 0},
        "rng": rng_state(),
        "imported_from": str(Path(source).resolve()),
    }
    return save_checkpoint(payload, out), len(reference)
