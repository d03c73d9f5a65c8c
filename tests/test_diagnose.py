"""Gradient diagnosis: the FD estimator, the spike regimes, dynamics, and `asgl diagnose gradients` end to end."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from asgl.config import validate_recipe
from asgl.diagnose.dynamics import layer_dynamics, membrane
from asgl.diagnose.gradients import (
    GradientSettings,
    central_differences,
    cosine_and_ratio,
    diagnose_gradients,
    method_gradient,
    probe_directions,
    spike_regime,
    weight_layers,
)
from asgl.layers import TimeFold
from asgl.losses import mean_ce
from asgl.neuron import lif_layers, neuron_from_config
from asgl_cli.main import app

TINY = ["data.subset=32", "model.hidden=8", "train.batch_size=16", "train.time_steps=2"]


def test_fd_recovers_gradient_of_smooth_function():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, generator=g, dtype=torch.float64)
    a, b = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)

    def f() -> float:
        return float((torch.sin(w) * a).sum() + (w @ b) ** 2)

    grad = torch.cos(w) * a + 2 * (w @ b) * b
    for coords in (False, True):
        probes = probe_directions(50, 20, coords, g).double()
        assert torch.allclose(probes.norm(dim=1), torch.ones(20, dtype=torch.float64))
        fd = central_differences(f, w, probes, 1e-4)
        cos, ratio = cosine_and_ratio(probes @ grad, fd)
        assert cos > 0.99 and abs(ratio - 1) < 1e-3
    assert torch.equal(w, torch.randn(50, generator=torch.Generator().manual_seed(0), dtype=torch.float64))


def tiny_snn(spike: str = "asgl") -> nn.Module:
    recipe = validate_recipe({"neuron": {"spike": spike, "norm": "none"}, "surrogate": {"width": 1.0}})
    torch.manual_seed(0)
    return nn.Sequential(
        TimeFold(nn.Linear(6, 12)),
        neuron_from_config(recipe.neuron, recipe.surrogate, (12,), 0.2),
        TimeFold(nn.Linear(12, 3)),
    ).double()


def batches(n: int = 2) -> list:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(3, 8, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
        for _ in range(n)
    ]


def test_analog_gradient_matches_finite_differences():
    model, data = tiny_snn(), batches()
    sg_width = 1.0
    params = list(weight_layers(model).values())
    analog = method_gradient(model, "analog", params, data, mean_ce, sg_width, 0.2)
    full_noise = method_gradient(model, "asgl", params, data, mean_ce, sg_width, 1.0)
    for a, b in zip(analog, full_noise):
        assert torch.allclose(a, b)  # p = 1 is the analog network

    def analog_loss() -> float:
        with spike_regime(model, "analog"), torch.no_grad():
            return sum(float(mean_ce(model(x), y)) for x, y in data) / len(data)

    probes = probe_directions(params[0].numel(), 10, False, torch.Generator().manual_seed(2)).double()
    fd = central_differences(analog_loss, params[0], probes, 1e-5)
    cos, ratio = cosine_and_ratio(probes @ analog[0].flatten(), fd)
    assert cos > 0.999 and abs(ratio - 1) < 1e-3


def test_readout_gradient_of_sg_equals_reference():
    """The head sees binary spikes in both the pure SNN and the SG forward: its FD and SG gradients agree,
    which only holds when the reference and the training gradient use the same function."""
    model, data = tiny_snn(), batches()
    sg_width = 1.0
    settings = GradientSettings(batches=2, directions=8, eps=1e-4, float64=True)
    report = diagnose_gradients(model, data, mean_ce, sg_width, 0.2, settings)
    head = {c.method: c for c in report.comparisons if c.layer == "2.0"}
    assert head["sg"].cosine > 0.999 and abs(head["sg"].norm_ratio - 1) < 1e-3
    assert report.zero_fraction["2.0"] == 0
    assert report.zero_fraction["0.0"] > 0.5  # a tiny step flips no spike: the SNN loss is flat


def test_diagnosis_leaves_model_and_rng_alone():
    model, data = tiny_snn(), batches()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    sg_width = 3.0
    diagnose_gradients(model, data, mean_ce, sg_width, 0.2, GradientSettings(batches=1, directions=2))
    with spike_regime(model, "sg", noise_prob=0.7, fixed_width=sg_width):
        ((_, layer),) = lif_layers(model)
        assert layer.spike == "sg" and layer.training and not model[0].training
        assert torch.allclose(layer.width.width(), torch.tensor(3.0, dtype=torch.float64))
    assert layer.spike == "asgl" and layer.noise_prob == 0.2 and model[0].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_membrane_reproduces_eval_spikes_and_dynamics():
    model, data = tiny_snn(), batches(1)
    ((_, layer),) = lif_layers(model)
    model.eval()
    current = model[0](data[0][0])
    x = membrane(layer, current)
    assert torch.equal((x >= 0).double() * layer.theta(), layer(current))
    (row,) = layer_dynamics(model, data)
    assert abs(row.firing_rate - float((x >= 0).double().mean())) < 1e-12
    assert abs(row.width - 1.0) < 1e-6
    # sigmoid at width 1 (k = 1): 90 % of its mass within |x| <= ln 19; H(x) = sigmoid(x)
    inside = float((x.abs() <= math.log(19)).double().mean())
    assert abs(row.in_window - inside) < 1e-12
    error = float((torch.sigmoid(x) - (x >= 0).double()).abs().mean().detach())
    assert 0.01 < error and abs(row.smoothing_error - error) < 1e-12


def test_cli_diagnose_gradients_writes_files(tmp_path):
    out = tmp_path / "diag"
    args = ["diagnose", "gradients", "digits_quick", "--batches", "1", "--directions", "2", "--out", str(out)]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "gradients.csv").open()))
    assert {r["method"] for r in rows} == {"sg", "asgl", "analog"}
    assert {r["layer"] for r in rows} >= {"overall", "head.1"}
    dyn = list(csv.DictReader((out / "dynamics.csv").open()))
    assert [d["layer"] for d in dyn] == ["features.0.2", "features.2.2", "hidden.2"]
    assert 0 <= json.loads((out / "diagnosis.json").read_text())["snn_acc"] <= 1
    assert (out / "gradients.png").stat().st_size > 0 and (out / "dynamics.png").stat().st_size > 0


def test_cli_diagnose_gradients_of_a_checkpoint_then_plot_its_folder(tmp_path):
    from conftest import set_args

    runner = CliRunner()
    # 36 steps: enough for the norms' running statistics to let spikes through in eval mode (finite cosines)
    overrides = TINY + ["data.subset=320", "train.batch_size=8", "train.epochs=1"]
    trained = runner.invoke(app, ["train", "digits_quick", *set_args(overrides), "--out", str(tmp_path)])
    assert trained.exit_code == 0, trained.output
    (run,) = tmp_path.iterdir()
    args = ["diagnose", "gradients", "--ckpt", str(run), "--batches", "1", "--directions", "2"]
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = run / "diagnose-e1"  # the checkpoint holds 1 finished epoch: epochs are 1-based
    summary = json.loads((out / "diagnosis.json").read_text())
    assert summary["epoch"] == 1 and summary["source"] == str(run / "checkpoints" / "last.pt")
    assert summary["learnable"] is True and summary["noise_prob"] == 0.2
    overall = {r["method"]: float(r["cosine"]) for r in csv.DictReader((out / "gradients.csv").open())
               if r["layer"] == "overall"}  # fmt: skip
    assert set(overall) == {"sg", "asgl", "analog"} and all(math.isfinite(c) for c in overall.values())
    assert summary["grad_cosine"] == pytest.approx(overall)

    png = tmp_path / "cos.png"
    plotted = runner.invoke(app, ["diagnose", "plot", str(out), "--out", str(png)], env={"COLUMNS": "200"})
    assert plotted.exit_code == 0, plotted.output
    assert f"{overall['asgl']:.3f}" in plotted.output and "learnable α" in plotted.output
    assert png.stat().st_size > 0


def test_cli_diagnose_rejects_bad_input(tmp_path):
    runner = CliRunner()
    both = runner.invoke(app, ["diagnose", "gradients", "digits_quick", "--ckpt", str(tmp_path)])
    assert both.exit_code == 2 and "exactly one" in both.output
    layers = runner.invoke(
        app,
        [
            "diagnose",
            "gradients",
            "digits_quick",
            "--layers",
            "nope",
            "--batches",
            "1",
            "--directions",
            "1",
            "--out",
            str(tmp_path),
            *sum((["--set", s] for s in TINY), []),
        ],
    )
    assert layers.exit_code == 2 and "unknown layer" in layers.output
