"""NIR export, checked by another library: snnTorch imports the file and must reproduce asgl's network.

snnTorch's importer runs each NIR LIF as ``mem = beta * mem + input`` with ``beta = 1 - dt / tau``
(dt = 1e-4 fixed), the input scaled by ``r * dt / tau``, spike at ``mem > threshold``, reset to zero:
with the exported tau = dt / (1 - gamma) and r = tau / dt this is asgl's recursion, which the tests check
on the imported modules' parameters before comparing predictions and spikes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from asgl.builders import build_data, build_model
from asgl.config import load_recipe
from asgl.losses import predict
from asgl.neuron import lif_layers
from asgl_cli.main import app

nir = pytest.importorskip("nir", reason="NIR export needs the export extra: pip install 'asgl[export]'")
snntorch = pytest.importorskip("snntorch", reason="the import check needs snnTorch: pip install 'asgl[nir-check]'")
from snntorch import utils as snn_utils  # noqa: E402
from snntorch.import_nir import import_from_nir  # noqa: E402

from asgl.analysis.nir_export import to_nir  # noqa: E402

QUICK = ["run.device=cpu", "train.epochs=2", "model.hidden=64"]


def asgl_run(model: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-step logits [T, N, K] and each LIF layer's spikes [T, N, ...] (bool) of the eval-mode model."""
    spikes = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, out, name=name: spikes.__setitem__(name, out != 0))
        for name, layer in lif_layers(model)
    ]
    with torch.no_grad():
        logits = model.eval()(images)
    for hook in hooks:
        hook.remove()
    return logits, spikes


def imported_run(path: Path, images: torch.Tensor, steps: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The same through snnTorch's import of the file: one image at a time (NIR shapes carry no batch
    axis), ``steps`` steps of the image (direct encoding) from a zero state."""
    net = import_from_nir(nir.read(str(path)))
    neurons = {name: m for name, m in net.named_modules() if isinstance(m, snntorch.Leaky)}
    seen: dict[str, list] = {name: [] for name in neurons}
    for name, m in neurons.items():
        m.register_forward_hook(lambda m, i, out, name=name: seen[name].append(out != 0))
    logits = []
    with torch.no_grad():
        for image in images:
            snn_utils.reset(net)
            logits.append(torch.stack([net(image)[0] for _ in range(steps)]))
    per_image = {name: torch.stack(s).unflatten(0, (len(images), steps)).transpose(0, 1) for name, s in seen.items()}
    return torch.stack(logits, 1), per_image


def check_agreement(model: torch.nn.Module, path: Path, images: torch.Tensor, steps: int) -> float:
    """Check the imported parameters, print and return the prediction agreement and per-layer spike agreement."""
    net = import_from_nir(nir.read(str(path)))
    imported = {name.replace("_", "."): m for name, m in net.named_modules() if isinstance(m, snntorch.Leaky)}
    layers = dict(lif_layers(model))
    assert set(imported) == set(layers)
    for name, layer in layers.items():  # the importer's discretisation coincides with asgl's step
        assert torch.allclose(imported[name].beta.float(), layer.decay().detach().expand_as(imported[name].beta))
        assert float(imported[name].threshold) == pytest.approx(float(layer.theta().detach()), rel=1e-6)
        assert imported[name].reset_mechanism == "zero"
    ours, our_spikes = asgl_run(model, images)
    theirs, their_spikes = imported_run(path, images, steps)
    agreement = (predict(ours) == predict(theirs)).float().mean().item()
    print(f"\nprediction agreement {agreement:.2%} on {len(images)} images")
    for name, spikes in our_spikes.items():
        same = (spikes == their_spikes[name.replace(".", "_")]).float().mean().item()
        print(f"  {name}: spike agreement {same:.4%}, firing rate {spikes.float().mean().item():.3f}")
        assert same >= 0.999, name
    return agreement


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    """digits_quick trained 2 epochs with threshold 0.5, learned: spike amplitude and threshold both != 1."""
    from asgl.engine.trainer import train

    recipe = load_recipe("digits_quick", QUICK + ["neuron.threshold=0.5", "neuron.learn_threshold=true"])
    return train(recipe, tmp_path_factory.mktemp("runs")).run_dir / "checkpoints" / "best.pt"


@pytest.mark.slow
def test_digits_export_reproduced_by_snntorch(digits_checkpoint, tmp_path):
    out = tmp_path / "digits.nir"
    result = CliRunner().invoke(app, ["export", "--ckpt", str(digits_checkpoint), "--format", "nir", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(digits_checkpoint, weights_only=False)
    recipe = load_recipe("digits_quick", QUICK + ["neuron.threshold=0.5", "neuron.learn_threshold=true"])
    data = build_data(recipe)
    model = build_model(recipe, data.info)
    model.load_state_dict(ckpt["model"])
    assert any(float(layer.theta().detach()) != 0.5 for _, layer in lif_layers(model))  # the threshold was learned
    images = torch.stack([image for image, _ in data.test])
    assert check_agreement(model, out, images, data.info.time_steps) >= 0.99


def randomise_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Statistics and affine parameters away from their defaults (folding is exercised), gains that make spikes."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            m.weight.data.copy_(2.0 + torch.rand(n, generator=gen))
            m.bias.data.copy_(0.3 * torch.randn(n, generator=gen))


def test_resnet_with_residual_sums_reproduced_by_snntorch(tmp_path):
    """ResNet-18 (identity and 1x1-conv shortcuts, the sums as edges into the block LIF) on 16 digits."""
    recipe = load_recipe("digits_quick", ["model.name=resnet18", "train.time_steps=2"])
    data = build_data(recipe)
    torch.manual_seed(0)
    model = build_model(recipe, data.info).eval()
    randomise_norms(model)
    graph = to_nir(model, (1, 8, 8))
    sums = [name for name in graph.nodes if sum(dst == name for _, dst in graph.edges) == 2]
    assert len(sums) == 8  # every block's LIF reads its residual and its shortcut
    nir.write(str(tmp_path / "resnet.nir"), graph)
    images = torch.stack([data.test[i][0] for i in range(16)])
    assert check_agreement(model, tmp_path / "resnet.nir", images, 2) >= 0.99


def test_amplitude_reaches_identity_shortcuts_through_a_scale_node():
    recipe = load_recipe("digits_quick", ["model.name=resnet18", "neuron.threshold=0.5"])
    model = build_model(recipe, build_data(recipe).info).eval()
    graph = to_nir(model, (1, 8, 8))
    scales = {name: node for name, node in graph.nodes.items() if isinstance(node, nir.Scale)}
    # blocks 1 and 2 of the first stage and the second block of the other three have identity shortcuts
    assert len(scales) == 5
    assert all(np.all(node.scale == 0.5) for node in scales.values())


def assert_refused(result, *expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    for text in expected:
        assert text in result.output, result.output


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("neuron.reset=soft", ("layer features.0.2", "neuron.reset = 'soft'")),
        ("neuron.norm=bntt", ("layer features.0.1", "neuron.norm = 'bntt'")),
    ],
)
def test_export_refuses_what_nir_cannot_express(tmp_path, override, expected):
    from conftest import TINY, set_args

    runner = CliRunner()
    trained = runner.invoke(app, ["train", "digits_quick", *set_args(TINY + [override]), "--out", str(tmp_path)])
    assert trained.exit_code == 0, trained.output
    (run,) = tmp_path.iterdir()
    out = tmp_path / "net.nir"
    assert_refused(runner.invoke(app, ["export", "--ckpt", str(run), "--out", str(out)]), *expected)
    assert not out.exists()


def test_export_refuses_other_networks_and_formats(tmp_path):
    from asgl.errors import ExportUnsupported

    with pytest.raises(ExportUnsupported, match="Sequential: NIR export covers"):
        to_nir(torch.nn.Sequential(torch.nn.Linear(2, 2)), (2,))
    result = CliRunner().invoke(app, ["export", "--ckpt", str(tmp_path), "--format", "onnx", "--out", "x.onnx"])
    assert result.exit_code == 2 and "onnx" in result.output


def test_exported_lif_integrated_by_euler_is_asgl_recursion():
    """NIR's LIF equation stepped by forward Euler with the exported tau, r, v_leak, threshold, reset, dt:
    the same spikes as asgl's LIF layer on random currents (leak and threshold away from 0.5 and 1)."""
    recipe = load_recipe("digits_quick", ["neuron.decay=0.8", "neuron.threshold=0.7"])
    model = build_model(recipe, build_data(recipe).info).eval()
    dt = 3e-3
    graph = to_nir(model, (1, 8, 8), dt=dt)
    node = graph.nodes["hidden.2"]
    gen = torch.Generator().manual_seed(0)
    current = torch.randn(12, 5, 128, generator=gen).abs() * 0.6  # [T, B, neurons]
    with torch.no_grad():
        expected = model.hidden[2](current) != 0
    v = np.zeros((5, 128))
    spikes = []
    for t in range(12):
        v = v + dt / node.tau * (node.v_leak - v + node.r * current[t].numpy())
        z = v > node.v_threshold
        v = np.where(z, node.v_reset, v)
        spikes.append(z)
    assert expected.any() and not expected.all()
    assert np.array_equal(np.stack(spikes), expected.numpy())
