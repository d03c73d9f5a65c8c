"""asgl bench: the training-step benchmark on synthetic data (structure and memory accounting, not speed)."""

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

import asgl.bench
from asgl.bench import relu_network, run_bench, synthetic_batch
from asgl.builders import build_model, describe_data
from asgl.config import RecipeError, load_recipe
from asgl.neuron import lif_layers
from asgl_cli.main import app

TINY = ["train.time_steps=2", "model.hidden=16", "run.device=cpu"]


def test_relu_network_swaps_every_lif_and_keeps_weights():
    recipe = load_recipe("digits_quick", TINY)
    model = build_model(recipe, describe_data(recipe))
    relu = relu_network(model)
    assert lif_layers(model) and not lif_layers(relu)
    assert sum(isinstance(m, torch.nn.ReLU) for m in relu.modules()) == len(lif_layers(model))
    conv = dict(model.named_parameters())["features.0.0.0.weight"]
    assert torch.equal(dict(relu.named_parameters())["features.0.0.0.weight"], conv)
    x, _ = synthetic_batch(describe_data(recipe), 3, torch.device("cpu"))
    assert relu(x).shape == model(x).shape == (2, 3, 10)


def test_run_bench_reports_every_variant_and_the_memory_order():
    result = run_bench(load_recipe("digits_quick", TINY), batch_size=4, repeats=2, warmup=1)
    by = {v.variant: v for v in result.variants}
    assert set(by) == {"fused", "cpu_kernel", "stepwise", "relu"} and "triton" in result.skipped
    assert all(len(v.times_ms) == 2 and 0 < v.min_ms <= v.median_ms for v in by.values())
    # saved-for-backward bytes are deterministic: fused and the CPU kernel keep u only (the mask is regenerated),
    # stepwise its whole graph, ReLU less
    assert by["relu"].memory_bytes < by["fused"].memory_bytes < by["stepwise"].memory_bytes
    assert by["cpu_kernel"].memory_bytes == by["fused"].memory_bytes
    assert result.memory_kind == "cpu_saved_for_backward" and result.input_shape == [4, 1, 8, 8]  # 8x8 grey digits


def test_timings_are_the_timed_repeats_of_each_variant(monkeypatch):
    """A fake clock that each variant's step moves by a scripted time: the warm-up step is left out and the
    medians, quartiles, minima and ratios are those of the script, worked out by hand."""
    script = {"fused": [900.0, 3.0, 5.0, 4.0], "stepwise": [900.0, 12.0, 20.0, 8.0], "relu": [900.0, 1.0, 2.0, 1.5]}
    now = [0.0]
    monkeypatch.setattr(asgl.bench, "time", SimpleNamespace(perf_counter=lambda: now[0], process_time=lambda: now[0]))
    real_step = asgl.bench._Step.__call__

    def scripted_step(step, x, y):
        real_step(step, x, y)
        relu = any(isinstance(m, torch.nn.ReLU) for m in step.model.modules())
        now[0] += script["relu" if relu else lif_layers(step.model)[0][1].backend].pop(0) / 1e3

    monkeypatch.setattr(asgl.bench._Step, "__call__", scripted_step)
    variants = ("fused", "stepwise", "relu")
    result = run_bench(load_recipe("digits_quick", TINY), batch_size=2, repeats=3, warmup=1, variants=variants)
    by = {v.variant: v for v in result.variants}
    assert not any(script.values())  # every scripted step ran
    expected = {"fused": (4, 3.5, 4.5, 3), "stepwise": (12, 10, 16, 8), "relu": (1.5, 1.25, 1.75, 1)}
    for name, (median, q25, q75, fastest) in expected.items():
        v = by[name]
        assert (v.median_ms, v.q25_ms, v.q75_ms, v.min_ms) == pytest.approx((median, q25, q75, fastest))
        assert v.cpu_median_ms == pytest.approx(median)
    assert result.ratios["stepwise_over_fused"] == pytest.approx(3.0)
    assert result.ratios["fused_over_relu"] == pytest.approx(4 / 1.5)
    assert result.ratios["stepwise_over_relu"] == pytest.approx(8.0)
    assert result.ratios["cpu_time_stepwise_over_fused"] == pytest.approx(3.0)


def test_recurrent_model_skips_the_relu_variant_with_a_reason():
    recipe = load_recipe("shd_rnn", ["train.time_steps=2", "model.hidden=8", "run.device=cpu"])
    result = run_bench(recipe, batch_size=2, repeats=1, warmup=0, variants=("fused", "relu"))
    assert [v.variant for v in result.variants] == ["fused"]
    assert "recurrent" in result.skipped["relu"]


def test_bad_variant_is_a_user_error():
    with pytest.raises(RecipeError, match="unknown bench variant"):
        run_bench(load_recipe("digits_quick", TINY), batch_size=2, variants=("fused", "cudnn"))


def test_cli_prints_json_and_table():
    args = ["bench", "digits_quick", "-b", "2", "-r", "1", "--warmup", "0", "--variants", "fused,relu"]
    args += [a for s in TINY for a in ("--set", s)]
    out = CliRunner().invoke(app, args + ["--json", "-"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.stdout)
    assert [v["variant"] for v in record["variants"]] == ["fused", "relu"] and record["ratios"]["fused_over_relu"] > 0
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "SNN (fused) step / ReLU step" in table.stdout
    bad = CliRunner().invoke(app, args + ["--model", "no_such_net"])
    assert bad.exit_code == 2 and "no_such_net" in bad.output


def test_cli_json_file_gets_the_record_and_the_screen_the_table(tmp_path):
    target = tmp_path / "bench.json"
    args = ["bench", "digits_quick", "-b", "3", "-r", "2", "--warmup", "0", "--variants", "fused,relu"]
    out = CliRunner().invoke(app, args + [a for s in TINY for a in ("--set", s)] + ["--json", str(target)])
    assert out.exit_code == 0, out.output
    record = json.loads(target.read_text())
    assert [v["variant"] for v in record["variants"]] == ["fused", "relu"]
    assert record["batch_size"] == 3 and record["input_shape"] == [3, 1, 8, 8] and record["repeats"] == 2
    assert all(len(v["times_ms"]) == 2 for v in record["variants"])
    assert "SNN (fused) step / ReLU step" in out.stdout and not out.stdout.lstrip().startswith("{")


@pytest.mark.parametrize("backend", ["fused", "stepwise"])
def test_model_with_lif_compiles_to_one_graph(backend):
    """torch.compile captures the whole network, fused LIF autograd function included, without graph breaks
    (aot_eager: the capture and autograd split that inductor also uses, without its slow C++ build)."""

    recipe = load_recipe("digits_quick", TINY)
    torch.manual_seed(0)
    model = build_model(recipe, describe_data(recipe))
    for _, layer in lif_layers(model):
        layer.backend = backend
    x, _ = synthetic_batch(describe_data(recipe), 3, torch.device("cpu"))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    results = []
    for net in (model, compiled):
        torch.manual_seed(5)  # the same masks (global RNG) for both
        out = net(x)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
        model.zero_grad()
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)
    torch._dynamo.reset()


def test_bf16_autocast_step_keeps_fp32_neuron_state():
    recipe = load_recipe("digits_quick", TINY + ["train.amp=bf16"])
    torch.manual_seed(0)
    model = build_model(recipe, describe_data(recipe))
    x, y = synthetic_batch(describe_data(recipe), 4, torch.device("cpu"))
    seen = []
    for _, layer in lif_layers(model):
        layer.register_forward_hook(lambda m, inp, out: seen.append((inp[0].dtype, out.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float().mean(0), y).backward()
    assert seen and all(d == (torch.bfloat16, torch.bfloat16) for d in seen)  # bf16 in and out, fp32 inside
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    result = run_bench(recipe, batch_size=2, repeats=1, warmup=0, variants=("fused",))
    assert result.amp == "bf16" and result.variants[0].median_ms > 0


def test_compiled_variant_is_reported_when_asked_for():  # the default set is asserted above
    recipe = load_recipe("digits_quick", TINY)
    result = run_bench(recipe, batch_size=2, repeats=1, warmup=1, variants=("stepwise", "compiled"))
    by = {v.variant: v for v in result.variants}
    assert set(by) == {"stepwise", "compiled"} and "stepwise_over_compiled" in result.ratios
    assert by["compiled"].memory_bytes < by["stepwise"].memory_bytes  # u + mask only, like fused
