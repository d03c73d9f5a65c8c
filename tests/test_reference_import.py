"""``asgl import-reference`` on files in the authors' real layout, with no dataset anywhere.

The files are built from tests/data/reference_layouts.txt (the authors' checkpoint layout, key by key:
names, shapes, dtypes) with a decay and a width of its own in every LIF layer, and saved as the authors save
them (``best_net`` in a dict with ``optimizer``, ``traces`` and, from the DVS script, ``config``: an
``argparse.Namespace``). The imported network is compared with an independent re-implementation of the
authors' eval-mode forward written here from that description (conv / BN / LIF with the stored
parametrisation, hard reset, spike amplitude = threshold, time mean of the head outputs), and value by
value with the file, pairing layers by their order in the file, not through the importer's key table.
The files' networks fire in every layer, and every layer's decay moves their logits: a wrong decay in any
layer would show.
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typer.testing import CliRunner

from asgl.builders import build_model, describe_data
from asgl.config import load_recipe
from asgl.engine.checkpoint import load_checkpoint
from asgl.engine.reference_import import check_importable
from asgl.neuron import lif_layers
from asgl_cli.main import app

LAYOUTS = Path(__file__).parent / "data" / "reference_layouts.txt"
SECTIONS = {"ResNet-18": "resnet18", "ResNet-19": "resnet19", "VGGSNN2": "vggsnn2"}
VGGSNN2_LAYERS = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A")  # the published layout


@dataclass(frozen=True)
class Entry:
    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype


def read_layouts() -> dict[str, list[Entry]]:
    """Network -> its keys in the file's order, parsed from the listing."""
    layouts: dict[str, list[Entry]] = {}
    current: list[Entry] = []
    for line in LAYOUTS.read_text().splitlines():
        if line.startswith("## "):
            current = layouts.setdefault(SECTIONS[line[3:].split(",")[0]], [])
        elif line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            dims = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
            current.append(Entry(key, dims, getattr(torch, dtype.split(" ")[0])))
    return layouts


def resnet34_layout(resnet18: list[Entry]) -> list[Entry]:
    """ResNet-34 by the same naming: stages of 3, 4, 6, 3 blocks; extra blocks are named like block 1."""
    out = [e for e in resnet18 if not e.key.startswith("layer") and not e.key.startswith("classifier")]
    for stage, depth in enumerate((3, 4, 6, 3), start=1):
        for block in range(depth):
            source = f"layer{stage}.{min(block, 1)}."
            out += [
                Entry(e.key.replace(source, f"layer{stage}.{block}.", 1), e.shape, e.dtype)
                for e in resnet18
                if e.key.startswith(source)
            ]
    return out + [e for e in resnet18 if e.key.startswith("classifier")]


LAYOUT = read_layouts()
LAYOUT["resnet34"] = resnet34_layout(LAYOUT["resnet18"])


def test_listing_parsed_in_full() -> None:
    assert {k: len(v) for k, v in LAYOUT.items()} == {"resnet18": 156, "resnet19": 152, "vggsnn2": 57, "resnet34": 284}


# ---------------------------------------------------------------- files in the authors' layout


def authors_state(entries: list[Entry], rectangle: bool, seed: int) -> dict[str, Tensor]:
    """A trained-looking state dict in the layout: every LIF layer has a decay and a width of its own."""
    g = torch.Generator().manual_seed(seed)
    keys = {e.key for e in entries}
    state: dict[str, Tensor] = {}
    for e in entries:
        is_bn = e.key.rsplit(".", 1)[0] + ".running_mean" in keys
        if e.key.endswith(".cell.decay"):  # logit d in [-1, 2]: gamma from 0.27 to 0.88
            state[e.key] = 3 * torch.rand(e.shape, generator=g) - 1
        elif e.key.endswith("inv_sg.alpha"):  # rectangle: log k in [-1, 1]; sigmoid: k in [0.15, 1.5]
            u = torch.rand(e.shape, generator=g)
            state[e.key] = 2 * u - 1 if rectangle else 0.15 + 1.35 * u
        elif e.dtype == torch.int64:
            state[e.key] = torch.tensor(int(torch.randint(1, 10_000, (), generator=g)))
        elif e.key.endswith("running_var"):
            state[e.key] = 0.5 + torch.rand(e.shape, generator=g)
        elif e.key.endswith("running_mean"):
            state[e.key] = 0.3 * torch.randn(e.shape, generator=g)
        elif is_bn:  # BN affine: gains around 1, biases that push some neurons over the threshold
            base, spread = (1.0, 0.8) if e.key.endswith("weight") else (0.2, 0.8)
            state[e.key] = base + spread * (torch.rand(e.shape, generator=g) - 0.5)
        else:  # conv / linear weights and the linear bias
            fan_in = math.prod(e.shape[1:]) if len(e.shape) > 1 else 10
            state[e.key] = torch.randn(e.shape, generator=g) * math.sqrt(2 / fan_in)
        assert state[e.key].shape == e.shape and state[e.key].dtype == e.dtype, e.key
    return state


def authors_command_line() -> argparse.Namespace:
    """What the authors' DVS script saves under 'config': its parsed arguments, plain values only."""
    return argparse.Namespace(
        seed=200, arch="VGGSNN2", dataset="CIFAR10_DVS_Aug", lr=0.1, wd=1e-3, T=10, act="mns_rec", alpha=1.0,
        p=0.1, decay=None, thresh=0.5, train_width=True, lr_milestone=[30, 70, 90, 95],
        ns_milestone=(0, 0.2, 0.4), cmd=[" --seed 200", " --T 10"], device="cuda:0",
    )  # fmt: skip


def save_authors_file(path: Path, state: dict[str, Tensor], config: object = None) -> Path:
    """Saved as the authors save: the state dict under 'best_net' with their other keys ('config' when given)."""
    weight = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    weight.sum().backward()
    opt.step()
    trace = {"acc": [1.0, 15.9, 54.1], "loss": [4.6, 3.1, 1.8]}
    extra = {"best_acc": 76.76, "best_epoch": 299, "best_train_acc": 95.0, "optimizer": opt.state_dict()}
    extra["traces"] = {"train": trace, "val": dict(trace)}
    torch.save({"best_net": state, **extra, **({} if config is None else {"config": config})}, path)
    return path


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


@dataclass
class Case:
    recipe: str
    overrides: tuple[str, ...]
    rectangle: bool
    theta: float
    input_shape: tuple[int, ...]  # ResNets take any image size; VGGSNN2's head needs 48x48 frames


CASES = {
    "resnet18": Case("cifar100_resnet18", (), False, 1.0, (2, 3, 16, 16)),
    "resnet19": Case("cifar100_resnet19", (), False, 1.0, (2, 3, 16, 16)),
    "resnet34": Case("cifar100_resnet18", ("model.name=resnet34",), False, 1.0, (2, 3, 8, 8)),
    "vggsnn2": Case("dvs_cifar10_vggsnn", ("train.time_steps=2",), True, 0.5, (2, 2, 2, 48, 48)),
}


@pytest.fixture(scope="module")
def empty_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("no_data")


def overrides(case: Case, root: Path) -> list[str]:
    return ["run.device=cpu", f"data.root={root}", *case.overrides]


def set_args(case: Case, root: Path) -> list[str]:
    return [a for item in overrides(case, root) for a in ("--set", item)]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory, empty_root: Path) -> dict:
    """name -> (case, authors' state, imported asgl model in eval mode); imported with no dataset on disk."""
    out = {}
    for name, case in CASES.items():
        folder = tmp_path_factory.mktemp(name)
        state = authors_state(LAYOUT[name], case.rectangle, seed=len(name))
        config = authors_command_line() if name == "vggsnn2" else None  # only their DVS script saves it
        source = save_authors_file(folder / "best.pth", state, config)
        target = folder / "imported.pt"
        result = cli("import-reference", source, "--recipe", case.recipe, "--out", target, *set_args(case, empty_root))
        assert result.exit_code == 0, result.output
        assert f"asgl eval --ckpt {target}" in result.output
        assert not any(empty_root.iterdir())  # nothing was read or written there
        ckpt = load_checkpoint(target)
        recipe = load_recipe(case.recipe, overrides(case, empty_root))
        model = build_model(recipe, describe_data(recipe))
        model.load_state_dict(ckpt["model"])
        out[name] = (case, state, model.eval(), recipe)
    return out


def test_fixture_files_hold_one_decay_and_width_per_layer(imported) -> None:
    _, state, _, _ = imported["resnet18"]
    decays = [float(v) for k, v in state.items() if k.endswith(".cell.decay")]
    widths = [float(v) for k, v in state.items() if k.endswith(".inv_sg.alpha")]
    assert len(set(decays)) == len(set(widths)) == 17
    _, vgg, _, _ = imported["vggsnn2"]
    assert not any(k.endswith(".cell.decay") for k in vgg)
    assert len({float(v) for k, v in vgg.items() if k.endswith(".inv_sg.alpha")}) == 8


# ---------------------------------------------------------------- the authors' forward, re-implemented


def lif(x: Tensor, decay_logit: Tensor | None, theta: float, rates: list[float]) -> Tensor:
    """Eval-mode LIF over [T, ...]: leak sigmoid(d) (0.5 when the file has no decay), hard reset, output theta*s.

    Appends the layer's firing rate (spikes per neuron and step) to ``rates``."""
    gamma = torch.sigmoid(decay_logit) if decay_logit is not None else 0.5
    u_prev, out = torch.zeros_like(x[0]), []
    for t in range(x.shape[0]):
        u = gamma * u_prev + x[t]
        s = (u >= theta).to(x.dtype)
        out.append(theta * s)
        u_prev = u * (1 - s)
    spikes = torch.stack(out)
    rates.append(float((spikes > 0).double().mean()))
    return spikes


def conv_bn(sd: dict[str, Tensor], conv: str, bn: str, x: Tensor, stride: int = 1) -> Tensor:
    """conv (no bias) then BN with running statistics, on the [T*B] fold of x [T, B, C, H, W]."""
    w = sd[f"{conv}.weight"]
    y = F.conv2d(x.flatten(0, 1), w, stride=stride, padding=w.shape[-1] // 2)
    y = F.batch_norm(y, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"], sd[f"{bn}.bias"])
    return y.unflatten(0, x.shape[:2])


def resnet_forward(sd: dict[str, Tensor], images: Tensor, time_steps: int, theta: float, rates: list[float]) -> Tensor:
    """images [B, 3, H, W] repeated T times -> time-mean logits [B, K]; each LIF layer's rate goes to ``rates``."""

    def spike(prefix: str, x: Tensor) -> Tensor:
        return lif(x, sd.get(f"{prefix}.cell.decay"), theta, rates)

    x = images.unsqueeze(0).repeat(time_steps, 1, 1, 1, 1)
    x = spike("conv0.2", conv_bn(sd, "conv0.0.layer", "conv0.1.layer", x))
    stages = sorted({int(k.split(".")[0][5:]) for k in sd if k.startswith("layer")})
    for s in stages:
        for b in sorted({int(k.split(".")[1]) for k in sd if k.startswith(f"layer{s}.")}):
            p, stride = f"layer{s}.{b}", 2 if s > 1 and b == 0 else 1
            h = spike(f"{p}.spike1", conv_bn(sd, f"{p}.conv1.layer", f"{p}.bn1.layer", x, stride))
            h = conv_bn(sd, f"{p}.conv2.layer", f"{p}.bn2.layer", h)
            if f"{p}.shortcut.0.layer.weight" in sd:
                x = conv_bn(sd, f"{p}.shortcut.0.layer", f"{p}.shortcut.1.layer", x, stride)
            x = spike(f"{p}.spike2", h + x)
    features = x.mean(dim=(-2, -1))  # global average pool: [T, B, C]
    if "classifier.2.layer.weight" in sd:  # ResNet-19: Linear -> LIF -> Linear, no biases
        hidden = spike("classifier.1", F.linear(features, sd["classifier.0.layer.weight"]))
        logits = F.linear(hidden, sd["classifier.2.layer.weight"])
    else:
        logits = F.linear(features, sd["classifier.0.layer.weight"], sd["classifier.0.layer.bias"])
    return logits.mean(0)


def vggsnn2_forward(sd: dict[str, Tensor], frames: Tensor, theta: float, rates: list[float]) -> Tensor:
    """frames [B, T, 2, 48, 48] -> time-mean of the per-step logits [B, K]; LIF rates go to ``rates``."""
    x, n = frames.transpose(0, 1), 0
    for item in VGGSNN2_LAYERS:
        if item == "A":
            x = F.avg_pool2d(x.flatten(0, 1), 2).unflatten(0, x.shape[:2])
            n += 1
        else:
            x = conv_bn(sd, f"feature.{n}.layer", f"feature.{n + 1}.layer", x)
            x = lif(x, sd.get(f"feature.{n + 2}.cell.decay"), theta, rates)
            n += 3
    return F.linear(x.flatten(2), sd["classifier.0.layer.weight"]).mean(0)


def authors_logits(name: str, state: dict[str, Tensor], x: Tensor, time_steps: int) -> tuple[Tensor, list[float]]:
    """The authors' eval logits [B, K] of ``x`` in float64, and the firing rate of each LIF layer in order."""
    sd = {k: (v.double() if v.is_floating_point() else v) for k, v in state.items()}
    rates: list[float] = []
    theta = CASES[name].theta
    if name == "vggsnn2":
        return vggsnn2_forward(sd, x, theta, rates), rates
    return resnet_forward(sd, x, time_steps, theta, rates), rates


def sample_inputs(case: Case) -> Tensor:
    return torch.rand(case.input_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("name", list(CASES))
def test_imported_network_gives_the_authors_logits(imported, name: str) -> None:
    case, state, model, recipe = imported[name]
    x = sample_inputs(case)
    expected, rates = authors_logits(name, state, x, recipe.train.time_steps)
    with torch.no_grad():
        got = copy.deepcopy(model).double()(x).mean(0)
    assert len(rates) == len(lif_layers(model)) and min(rates) > 0.02 and max(rates) < 0.98, rates  # all fire
    assert expected.std() > 0.1 and (expected[0] - expected[1]).abs().max() > 0.1  # spikes reach the head
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "resnet19"])
def test_every_layers_decay_moves_the_logits(imported, name: str) -> None:
    """A parity check that a wrong decay in any one layer would fail: each layer's decay changes the logits."""
    case, state, _, recipe = imported[name]
    x = sample_inputs(case)
    expected, _ = authors_logits(name, state, x, recipe.train.time_steps)
    decays = [k for k in state if k.endswith(".cell.decay")]
    assert len(decays) == len({float(state[k]) for k in decays}) == (17 if name == "resnet18" else 18)
    for key in decays:
        moved, _ = authors_logits(name, {**state, key: state[key] + 1.5}, x, recipe.train.time_steps)
        assert (moved - expected).abs().max() > 1e-2, key


def by_kind(entries: list[Entry]) -> dict[str, list[str]]:
    """Module prefixes of the file in its order: conv, norm, linear, LIF."""
    keys = [e.key for e in entries]
    shapes = {e.key: e.shape for e in entries}
    return {
        "conv": [k[: -len(".weight")] for k in keys if k.endswith(".weight") and len(shapes[k]) == 4],
        "norm": [k[: -len(".running_mean")] for k in keys if k.endswith(".running_mean")],
        "linear": [k[: -len(".weight")] for k in keys if k.endswith(".weight") and len(shapes[k]) == 2],
        "lif": [k[: -len(".cell.spike_fn.inv_sg.alpha")] for k in keys if k.endswith("inv_sg.alpha")],
    }


@pytest.mark.parametrize("name", list(CASES))
def test_every_value_lands_in_its_layer(imported, name: str) -> None:
    """The n-th conv / BN / linear / LIF of the file is the n-th of the asgl model, converted as documented."""
    case, sd, model, recipe = imported[name]
    kinds = by_kind(LAYOUT[name])
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    lifs = [layer for _, layer in lif_layers(model)]
    assert [len(convs), len(norms), len(linears), len(lifs)] == [len(kinds[k]) for k in kinds]
    for prefix, m in zip(kinds["conv"], convs):
        assert torch.equal(m.weight, sd[f"{prefix}.weight"]) and m.bias is None
    for prefix, m in zip(kinds["norm"], norms):
        for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(getattr(m, attr), sd[f"{prefix}.{attr}"]), f"{prefix}.{attr}"
    for prefix, m in zip(kinds["linear"], linears):
        assert torch.equal(m.weight, sd[f"{prefix}.weight"])
        assert (m.bias is None) == (f"{prefix}.bias" not in sd)
        assert m.bias is None or torch.equal(m.bias, sd[f"{prefix}.bias"])
    for prefix, layer in zip(kinds["lif"], lifs):
        stored = sd[f"{prefix}.cell.spike_fn.inv_sg.alpha"]
        slope = stored.exp() if case.rectangle else stored  # rectangle: log k; sigmoid: k itself
        torch.testing.assert_close(layer.width.slope().detach().reshape(-1), slope.reshape(-1))
        decay = sd.get(f"{prefix}.cell.decay", torch.tensor(0.0))  # no key: the recipe's 0.5, logit 0
        assert float(layer.decay_logit.detach()) == pytest.approx(float(decay)) and float(layer.threshold) == case.theta
    storage = recipe.surrogate.storage
    param = lifs[0].width.param.detach().reshape(-1)
    stored = sd[f"{kinds['lif'][0]}.cell.spike_fn.inv_sg.alpha"].reshape(-1)
    expected = stored.log() if storage == "log_slope" and not case.rectangle else stored
    torch.testing.assert_close(param, expected)
    assert lifs[0].decay_logit.requires_grad == recipe.neuron.learn_decay
    assert len({id(layer.decay_logit) for layer in lifs}) == len(lifs)  # one parameter per layer


def test_both_sigmoid_storages_are_covered() -> None:
    assert {load_recipe(CASES[n].recipe).surrogate.storage for n in ("resnet18", "resnet19")} == {
        "raw_slope",
        "log_slope",
    }


@pytest.mark.parametrize("name", ["cifar10_resnet18", "cifar100_resnet18", "cifar100_resnet19", "dvs_cifar10_vggsnn"])
def test_published_recipes_are_importable(name: str) -> None:
    check_importable(load_recipe(name))


# ---------------------------------------------------------------- refusals


def import_state(tmp_path: Path, empty_root: Path, name: str, state: dict[str, Tensor], *more: str):
    case = CASES[name]
    source = save_authors_file(tmp_path / "ref.pth", state)
    out = tmp_path / "out.pt"
    return cli("import-reference", source, "--recipe", case.recipe, "--out", out, *set_args(case, empty_root), *more)


def assert_refused(result, *expected: str) -> None:
    assert result.exit_code == 2, f"{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    text = " ".join(result.output.split())
    for item in expected:
        assert item in text, f"{item!r} not in:\n{result.output}"


@pytest.fixture(scope="module")
def vgg_state() -> dict[str, Tensor]:
    return authors_state(LAYOUT["vggsnn2"], rectangle=True, seed=5)


def test_wrong_layout_names_first_missing_and_first_unexpected(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    state = dict(vgg_state)
    state["feature.3.weight"] = state.pop("feature.3.layer.weight")  # a guessed name
    del state["classifier.0.layer.weight"]
    result = import_state(tmp_path, empty_root, "vggsnn2", state)
    assert_refused(
        result, "2 key(s) missing (first: feature.3.layer.weight)", "1 unexpected key(s) (first: feature.3.weight)"
    )
    assert not (tmp_path / "out.pt").exists()


def test_file_of_another_network_is_refused(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    state = {k: v for k, v in vgg_state.items()}
    case = CASES["resnet18"]
    source = save_authors_file(tmp_path / "ref.pth", state)
    result = cli(
        "import-reference", source, "--recipe", case.recipe, "--out", tmp_path / "o.pt", *set_args(case, empty_root)
    )
    assert_refused(result, "missing (first: conv0.0.layer.weight)", "unexpected key(s) (first: feature.0.layer.weight)")


def test_decay_in_file_must_match_the_recipe(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    result = import_state(tmp_path, empty_root, "vggsnn2", vgg_state, "--set", "neuron.learn_decay=true")
    assert_refused(result, "first: feature.2.cell.decay", "neuron.learn_decay")


def test_shape_mismatch_names_the_key(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    state = dict(vgg_state, **{"classifier.0.layer.weight": torch.zeros(11, 4608)})
    assert_refused(import_state(tmp_path, empty_root, "vggsnn2", state), "classifier.0.layer.weight", "[11, 4608]")


def test_negative_sigmoid_slope_needs_raw_storage(tmp_path: Path, empty_root: Path) -> None:
    state = authors_state(LAYOUT["resnet19"], rectangle=False, seed=3)
    state["conv0.2.cell.spike_fn.inv_sg.alpha"] = torch.tensor([-0.2])  # nothing keeps the authors' k positive
    refused = import_state(tmp_path, empty_root, "resnet19", state)  # cifar100_resnet19 stores log k
    assert_refused(refused, "conv0.2.cell.spike_fn.inv_sg.alpha", "surrogate.storage=raw_slope")
    accepted = import_state(tmp_path, empty_root, "resnet19", state, "--set", "surrogate.storage=raw_slope")
    assert accepted.exit_code == 0, accepted.output


def test_plain_and_data_parallel_state_dicts_accepted(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    case = CASES["vggsnn2"]
    source = tmp_path / "plain.pth"
    torch.save({f"module.{k}": v for k, v in vgg_state.items()}, source)
    result = cli(
        "import-reference", source, "--recipe", case.recipe, "--out", tmp_path / "o.pt", *set_args(case, empty_root)
    )
    assert result.exit_code == 0, result.output


def test_unsupported_model_refused(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    result = import_state(tmp_path, empty_root, "vggsnn2", vgg_state, "--set", "model.name=vgg11")
    assert_refused(result, "resnet18, resnet19, resnet34, vggsnn2")


class CodePayload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


class CommandLineWithCode(argparse.Namespace):
    """Looks like the authors' config, but is another class (pickled by its own name) whose rebuild runs code."""

    def __setstate__(self, state: dict) -> None:
        Path(state["marker"]).mkdir()
        vars(self).update(state)


def test_file_carrying_code_refused_unexecuted(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    marker = tmp_path / "code-ran"
    result = import_state(tmp_path, empty_root, "vggsnn2", {**vgg_state, "hook": CodePayload(marker)})
    assert_refused(result, "refused")
    assert not marker.exists()


@pytest.mark.parametrize("where", ["config", "inside_namespace", "namespace_subclass"])
def test_config_carrying_code_refused_unexecuted(tmp_path: Path, empty_root: Path, vgg_state, where: str) -> None:
    """Only argparse.Namespace itself is let through, and whatever it holds is still checked."""
    marker = tmp_path / "code-ran"
    config = {
        "config": CodePayload(marker),
        "inside_namespace": argparse.Namespace(seed=200, hook=CodePayload(marker)),
        "namespace_subclass": CommandLineWithCode(marker=str(marker)),
    }[where]
    source = save_authors_file(tmp_path / "ref.pth", vgg_state, config)
    case = CASES["vggsnn2"]
    result = cli(
        "import-reference", source, "--recipe", case.recipe, "--out", tmp_path / "o.pt", *set_args(case, empty_root)
    )
    assert_refused(result, "refused to load", "possibly code")
    assert not marker.exists() and not (tmp_path / "o.pt").exists()


def test_authors_config_does_not_widen_other_loads(tmp_path: Path, vgg_state) -> None:
    """argparse.Namespace is allowed for import-reference only: an asgl checkpoint holding one is refused."""
    from asgl.engine.checkpoint import CheckpointError

    path = tmp_path / "ckpt.pt"
    torch.save({"asgl_checkpoint": 2, "model": vgg_state, "config": authors_command_line()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(path)


def random_bytes(source: Path) -> bytes:
    return (
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()
    )


def first_half(source: Path) -> bytes:
    save_authors_file(source, authors_state(LAYOUT["vggsnn2"], rectangle=True, seed=5), authors_command_line())
    data = source.read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    "content",
    [lambda _: b"", lambda _: b"not a checkpoint\n", random_bytes, first_half],
    ids=["empty", "text", "random", "truncated"],
)
def test_unreadable_file(tmp_path: Path, empty_root: Path, content) -> None:
    source = tmp_path / "ref.pth"
    source.write_bytes(content(source))
    case = CASES["vggsnn2"]
    result = cli(
        "import-reference", source, "--recipe", case.recipe, "--out", tmp_path / "o.pt", *set_args(case, empty_root)
    )
    assert_refused(result, str(source), "truncated or corrupt")


def test_existing_out_needs_force(tmp_path: Path, empty_root: Path, vgg_state) -> None:
    (tmp_path / "out.pt").write_bytes(b"keep me")
    assert_refused(import_state(tmp_path, empty_root, "vggsnn2", vgg_state), "--force")
    assert (tmp_path / "out.pt").read_bytes() == b"keep me"
