"""benchmarks/bench_lif.py: every variant is timed, and the ratios are the ratios of its medians."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_lif.py"


@pytest.fixture(scope="module")
def bench_lif():
    spec = importlib.util.spec_from_file_location("bench_lif", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_lif"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("family", ["sigmoid", "rectangle"])
def test_every_variant_is_timed_and_ratios_are_of_medians(bench_lif, family):
    r = bench_lif.bench(3, (2, 4, 5, 5), ["fused", "stepwise"], repeats=2, device="cpu", warmup=1, family=family)
    times = r["times"]
    assert {"relu", "fused_asgl", "fused_sg", "stepwise_asgl", "stepwise_sg"} <= set(times)
    for t in times.values():
        assert 0 < t["fwd_ms"] <= t["ms"] and t["saved_MiB"] >= 0
    assert times["fused_asgl"]["saved_MiB"] < times["stepwise_asgl"]["saved_MiB"]  # fused keeps u only
    relu = times["relu"]["ms"]
    for backend in ("fused", "stepwise"):
        asgl, sg = times[f"{backend}_asgl"]["ms"], times[f"{backend}_sg"]["ms"]
        assert r["ratios"][f"{backend}_asgl_over_sg"] == pytest.approx(asgl / sg)
        assert r["ratios"][f"{backend}_asgl_over_relu"] == pytest.approx(asgl / relu)
    assert r["family"] == family
