"""Import of the paper authors' checkpoints (the ``best_net`` state dict of their ``.pth`` files).

The mapping is a table of *units* (one conv, norm, linear or LIF layer each), generated from the model
layout, that names every key on both sides (docs/parity.md shows it for the published networks):

    unit     authors' key                              asgl key                value
    conv     <ref>.layer.weight                        <asgl>.weight           as is
    norm     <ref>.layer.{weight,bias,running_mean,    <asgl>.<same>           as is
             running_var,num_batches_tracked}
    linear   <ref>.layer.{weight,bias}                 <asgl>.<same>           as is
    lif      <ref>.cell.decay                          <asgl>.decay_logit      logit d, as is
    lif      <ref>.cell.spike_fn.inv_sg.alpha          <asgl>.width.param      slope -> asgl's width storage

Unit prefixes (authors -> asgl); ``i`` counts BasicBlocks from 1 over all stages:

    resnet18/19/34  conv0.{0,1}.layer, conv0.2              -> features.0.{0.0, 1.0, 2}
                    layer{s}.{b}.conv1/bn1/spike1           -> features.{i}.residual.0.{0.0, 1.0, 2}
                    layer{s}.{b}.conv2/bn2                  -> features.{i}.residual.{1.0, 2.0}
                    layer{s}.{b}.shortcut.{0,1}.layer       -> features.{i}.shortcut.{0.0, 1.0}  (when present)
                    layer{s}.{b}.spike2                     -> features.{i}.lif
    resnet18/34     classifier.0.layer                      -> head.1
    resnet19        classifier.0.layer / .1 / .2.layer      -> head.0.0 / head.1 / head.2.1
    vggsnn2         feature.{n, n+1}.layer, feature.{n+2}   -> features.{m}.{0.0, 1.0, 2}  (a pool takes one
                                                               index on each side and has no keys)
                    classifier.0.layer                      -> head.1

Neuron values: the decay is stored as its logit d (gamma = sigmoid(d)). Every LIF layer of the authors'
networks learns its own decay (their cell keeps a copy of the value it is given), so each layer's key goes
to that layer's ``decay_logit``. A network whose decay is fixed has no decay key: the recipe's
``neuron.decay`` is used, and ``neuron.learn_decay = false`` says so. The sigmoid's stored value is the
slope k = 1/alpha itself, the rectangle's is log k; asgl keeps log k (``surrogate.storage = "log_slope"``)
or k (``"raw_slope"``, sigmoid only). The threshold is not in the file: the recipe's is kept. A file whose
keys do not fit is refused, naming the first missing and the first unexpected key.

The file is read without running code: tensors and plain values only, plus ``argparse.Namespace`` (a bag
of plain attributes: the command line that the authors' DVS script saves under ``config``). Any other
class in the file is refused, unexecuted.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from asgl.config import Recipe, recipe_to_toml
from asgl.engine.checkpoint import read_torch_file
from asgl.errors import CheckpointError

UnitKind = Literal["conv", "norm", "linear", "lif"]
Transform = Literal["copy", "slope"]

REFERENCE_MODELS = ("resnet18", "resnet19", "resnet34", "vggsnn2")
REFERENCE_FAMILIES = ("sigmoid", "rectangle")
# the authors save {"best_net": state dict, "best_acc", "best_epoch", ...} ("final_model" with --save_last);
# other wrappers are accepted too
STATE_KEYS = ("best_net", "final_model", "net", "state_dict", "model")
NORM_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class ReferenceImportError(CheckpointError):
    """An authors' checkpoint that cannot be imported; the message is meant for the user as it is."""


@dataclass(frozen=True)
class Unit:
    reference: str  # module prefix in the authors' state dict
    asgl: str  # module prefix in the asgl model
    kind: UnitKind


@dataclass(frozen=True)
class KeyRule:
    reference: str  # full authors' key
    asgl: str  # full asgl key
    transform: Transform


# ---------------------------------------------------------------- the mapping table


def _conv_norm_lif(conv: str, bn: str, spike: str, asgl: str) -> list[Unit]:
    return [Unit(conv, f"{asgl}.0.0", "conv"), Unit(bn, f"{asgl}.1.0", "norm"), Unit(spike, f"{asgl}.2", "lif")]


def _resnet_units(model: nn.Module, depths: tuple[int, ...], hidden: bool) -> list[Unit]:
    units = _conv_norm_lif("conv0.0.layer", "conv0.1.layer", "conv0.2", "features.0")
    i = 0
    for s, depth in enumerate(depths, start=1):
        for b in range(depth):
            i += 1
            ref, asgl = f"layer{s}.{b}", f"features.{i}"
            units += _conv_norm_lif(f"{ref}.conv1.layer", f"{ref}.bn1.layer", f"{ref}.spike1", f"{asgl}.residual.0")
            units += [Unit(f"{ref}.conv2.layer", f"{asgl}.residual.1.0", "conv")]
            units += [Unit(f"{ref}.bn2.layer", f"{asgl}.residual.2.0", "norm")]
            if not isinstance(model.features[i].shortcut, nn.Identity):
                units += [Unit(f"{ref}.shortcut.0.layer", f"{asgl}.shortcut.0.0", "conv")]
                units += [Unit(f"{ref}.shortcut.1.layer", f"{asgl}.shortcut.1.0", "norm")]
            units.append(Unit(f"{ref}.spike2", f"{asgl}.lif", "lif"))
    if not hidden:
        return units + [Unit("classifier.0.layer", "head.1", "linear")]
    return units + [
        Unit("classifier.0.layer", "head.0.0", "linear"),
        Unit("classifier.1", "head.1", "lif"),
        Unit("classifier.2.layer", "head.2.1", "linear"),
    ]


def _vgg_units(layers: tuple[int | str, ...]) -> list[Unit]:
    from asgl.models.vgg import POOL

    units: list[Unit] = []
    n = 0  # index in the authors' flat feature Sequential: conv, bn, LIF = 3 entries, a pool = 1
    for m, item in enumerate(layers):
        if item != POOL:
            units += _conv_norm_lif(f"feature.{n}.layer", f"feature.{n + 1}.layer", f"feature.{n + 2}", f"features.{m}")
        n += 1 if item == POOL else 3
    return units + [Unit("classifier.0.layer", "head.1", "linear")]


def check_importable(recipe: Recipe) -> None:
    """Raise :class:`ReferenceImportError` unless the recipe describes a network the authors published."""
    name = recipe.model.name
    if name not in REFERENCE_MODELS:
        raise ReferenceImportError(
            f"model.name = {name!r}: the authors' checkpoints can be imported for {', '.join(REFERENCE_MODELS)}"
        )
    if recipe.neuron.norm != "tdbn":
        raise ReferenceImportError(f"neuron.norm = {recipe.neuron.norm!r}: the authors' networks use tdbn")
    if recipe.surrogate.family not in REFERENCE_FAMILIES:
        raise ReferenceImportError(
            f"surrogate.family = {recipe.surrogate.family!r}: the authors have {', '.join(REFERENCE_FAMILIES)} only"
        )


def reference_units(recipe: Recipe, model: nn.Module) -> list[Unit]:
    """The unit table of the recipe's model (see the module docstring)."""
    check_importable(recipe)
    if recipe.model.name == "vggsnn2":
        from asgl.models.vgg import VGGS

        return _vgg_units(VGGS["vggsnn2"].layers)
    from asgl.models.resnet import RESNETS

    layout = RESNETS[recipe.model.name]
    return _resnet_units(model, layout.depths, layout.hidden is not None)


def key_rules(units: list[Unit], asgl_keys: set[str], learn_decay: bool) -> list[KeyRule]:
    """One rule per key the authors' file holds for these units, in the file's order.

    Conv and linear biases exist on both sides or neither; the decay is in the file only when it is learned.
    """
    rules = []
    for u in units:
        if u.kind == "lif":
            if learn_decay:
                rules.append(KeyRule(f"{u.reference}.cell.decay", f"{u.asgl}.decay_logit", "copy"))
            rules.append(KeyRule(f"{u.reference}.cell.spike_fn.inv_sg.alpha", f"{u.asgl}.width.param", "slope"))
            continue
        suffixes = NORM_SUFFIXES if u.kind == "norm" else ("weight", "bias")
        rules += [
            KeyRule(f"{u.reference}.{s}", f"{u.asgl}.{s}", "copy") for s in suffixes if f"{u.asgl}.{s}" in asgl_keys
        ]
    return rules


# ---------------------------------------------------------------- values


def slope_to_param(value: Tensor, family: str, storage: str) -> Tensor:
    """The authors' ``inv_sg.alpha`` (k for the sigmoid, log k for the rectangle) -> asgl's width parameter."""
    if family == "rectangle" or storage == "raw_slope":  # the same storage on both sides
        return value
    if not bool((value > 0).all()):
        raise ValueError(f"sigmoid slopes {value.flatten()[:4].tolist()} are not all > 0")
    return torch.log(value)


def read_reference(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict in an authors' file, read without running code (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise ReferenceImportError(f"reference checkpoint not found: {p}")
    obj = read_torch_file(p, allowed=(argparse.Namespace,))

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


def _layout_error(recipe: Recipe, missing: list[str], unexpected: list[str]) -> ReferenceImportError:
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing (first: {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (first: {unexpected[0]})")
    hint = ""
    if any(k.endswith(".cell.decay") for k in missing + unexpected):
        hint = "; a file with learned decays needs neuron.learn_decay = true, one without needs false"
    return ReferenceImportError(
        f"the file does not fit the authors' {recipe.model.name} layout: {', '.join(parts)}{hint} "
        "(key table: asgl/engine/reference_import.py)"
    )


def map_reference_state(reference: dict[str, Tensor], recipe: Recipe, model: nn.Module) -> dict[str, Tensor]:
    """The authors' state dict as a full state dict of ``model``; raises naming the first problem."""
    target = model.state_dict()
    rules = key_rules(reference_units(recipe, model), set(target), recipe.neuron.learn_decay)
    expected = {r.reference for r in rules}
    missing = [r.reference for r in rules if r.reference not in reference]
    unexpected = [k for k in reference if k not in expected]
    if missing or unexpected:
        raise _layout_error(recipe, missing, unexpected)
    mapped: dict[str, Tensor] = {}
    for rule in rules:
        value, want = reference[rule.reference], target[rule.asgl]
        fits = value.shape == want.shape or (rule.transform == "slope" and value.numel() == want.numel())
        if not fits:
            raise ReferenceImportError(
                f"{rule.reference} has shape {list(value.shape)} but {recipe.model.name} needs {list(want.shape)} "
                f"({rule.asgl}): does the recipe match the network (classes, granularity)?"
            )
        if rule.transform == "slope":
            try:
                value = slope_to_param(value, recipe.surrogate.family, recipe.surrogate.storage)
            except ValueError as e:
                raise ReferenceImportError(
                    f"{rule.reference}: {e}; import with --set surrogate.storage=raw_slope"
                ) from None
        mapped[rule.asgl] = value.reshape(want.shape).to(want.dtype).clone()
    return {**target, **mapped}


def import_reference(source: str | os.PathLike, recipe: Recipe, out: str | os.PathLike) -> tuple[Path, int]:
    """Write ``out``, an asgl checkpoint at epoch 0 holding the authors' weights of ``source``.

    The model comes from ``recipe`` alone (no data is read); the optimiser states are fresh, so
    ``asgl eval`` evaluates it and ``asgl train --resume`` fine-tunes it. Returns (path, tensors imported).
    """
    from asgl.builders import build_model, describe_data
    from asgl.engine.checkpoint import save_checkpoint
    from asgl.engine.trainer import RunningSums, rng_state
    from asgl.optim import build_optimizers

    check_importable(recipe)
    reference = read_reference(source)
    torch.manual_seed(recipe.run.seed)
    model = build_model(recipe, describe_data(recipe))
    model.load_state_dict(map_reference_state(reference, recipe, model))
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
