"""DistributedDataParallel on CPU: 2 gloo processes under torchrun train (on one node or two), stop on SIGTERM and
resume exactly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY as CONFTEST_TINY

from asgl.engine import distributed
from asgl.engine.checkpoint import load_checkpoint
from asgl.engine.distributed import DistInfo, ShardedBatches
from asgl.engine.logging import read_metrics

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
# 48 samples in global batches of 16 (8 per process), 3 steps per epoch, one epoch
TINY = [*(item for item in CONFTEST_TINY if not item.startswith("train.epochs=")), "train.epochs=1"]
SET = [a for item in TINY for a in ("--set", item)]

# a worker that sends itself SIGTERM during its 2nd training step on every rank
INTERRUPTED_WORKER = """
import os, signal, sys
import torch
import asgl.engine.trainer as trainer
from asgl.config import load_recipe

real = trainer.build_loss
calls = {"n": 0}

def build(train_cfg, readout="mean"):
    fn = real(train_cfg, readout)
    def loss(logits, target):
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)
        return fn(logits, target)
    return loss

trainer.build_loss = build
try:
    trainer.train(load_recipe("digits_quick", sys.argv[2:]), out_dir=sys.argv[1])
except trainer.TrainingInterrupted as e:
    print(f"rank {os.environ['RANK']} stopped", flush=True)
    sys.exit(e.exit_code)
"""


def run(args: list[str], cwd: Path, launcher: list[str] = TORCHRUN) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(launcher + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def test_sharded_batches_split_every_batch_between_ranks():
    batches = [[0, 1, 2, 3, 4], [5, 6, 7, 8], [9]]
    shards = [list(ShardedBatches(batches, DistInfo(rank, 2))) for rank in (0, 1)]
    assert shards[0] == [[0, 2, 4], [5, 7], [9]] and shards[1] == [[1, 3], [6, 8], [9]]  # [9] repeated: same step count
    assert list(ShardedBatches(batches, DistInfo())) == batches


def test_single_process_helpers_are_no_ops(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    info, device = distributed.init(torch.device("cpu"))
    assert info == DistInfo() and info.is_main and not info.enabled and device == torch.device("cpu")
    assert distributed.all_reduce_sum([1.5, 2.0], info, device) == [1.5, 2.0]
    assert distributed.agreed_signal(None, info, device) is None and distributed.agreed_signal(15, info, device) == 15
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, info, device) is model
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert distributed.from_env() == DistInfo(3, 4, 0) and not distributed.from_env().is_main


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    # `asgl train --nproc 2` re-executes itself under torchrun with the same arguments
    proc = run(
        ["-m", "asgl_cli", "train", "digits_quick", "--nproc", "2", *SET, "--out", str(out)], out, [sys.executable]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = out.iterdir()  # one run folder: rank 0 alone creates it
    assert proc.stdout.count("best epoch") == 1  # the result table comes from rank 0 only
    return run_dir


def test_torchrun_two_gloo_processes_train(ddp_reference: Path):
    records = read_metrics(ddp_reference / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1]  # rank 0 logged the epoch once
    assert 0 < records[0]["train_loss"] < 10
    assert (
        load_checkpoint(ddp_reference)["epoch"],
        json.loads((ddp_reference / "summary.json").read_text())["epochs"],
    ) == (1, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_loopback_equal_one_node_of_two_processes(ddp_reference: Path, tmp_path: Path):
    """`asgl train --nnodes 2 --rdzv 127.0.0.1:PORT` on two "machines" of one gloo process each (c10d rendezvous)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    node = [
        sys.executable,
        "-m",
        "asgl_cli",
        "train",
        "digits_quick",
        "--nnodes",
        "2",
        "--rdzv",
        f"127.0.0.1:{free_port()}",
    ]
    nodes = [
        subprocess.Popen(
            [*node, *SET, "--out", str(tmp_path)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [n.communicate(timeout=240) for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    (run_dir,) = tmp_path.iterdir()  # global rank 0 alone wrote
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    assert strip(read_metrics(run_dir / "metrics.jsonl")) == strip(read_metrics(ddp_reference / "metrics.jsonl"))
    a, b = load_checkpoint(run_dir)["model"], load_checkpoint(ddp_reference)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_on_every_rank_then_resume_equals_uninterrupted(ddp_reference: Path, tmp_path: Path):
    (tmp_path / "worker.py").write_text(INTERRUPTED_WORKER)
    proc = run([str(tmp_path / "worker.py"), str(tmp_path / "runs"), *TINY], tmp_path)
    assert proc.returncode != 0 and proc.stdout.count("stopped") == 2, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    ckpt = load_checkpoint(run_dir)
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2)  # both ranks stopped after the same step; rank 0 saved it

    proc = run(["-m", "asgl_cli", "train", "--resume", str(run_dir)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "epoch_time"} for r in rs]  # noqa: E731
    assert strip(read_metrics(run_dir / "metrics.jsonl")) == strip(read_metrics(ddp_reference / "metrics.jsonl"))
    a, b = load_checkpoint(run_dir)["model"], load_checkpoint(ddp_reference)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# a worker whose training loss is 1 on rank 0 and 3 on rank 1 (zero gradient), and NaN on rank 1 at its 2nd step
NAN_ON_ONE_RANK_WORKER = """
import os, sys
import torch
import asgl.engine.trainer as trainer
from asgl.config import load_recipe

real = trainer.build_loss
calls = {"n": 0}

def build(train_cfg, readout="mean"):
    fn = real(train_cfg, readout)
    def loss(logits, target):
        value = fn(logits, target)
        if torch.is_grad_enabled():
            calls["n"] += 1
            value = value * 0 + (1.0 if os.environ["RANK"] == "0" else 3.0)
            if calls["n"] == 2 and os.environ["RANK"] == "1":
                return value * float("nan")
        return value
    return loss

trainer.build_loss = build
trainer.train(load_recipe("digits_quick", sys.argv[2:]), out_dir=sys.argv[1])
"""


@pytest.mark.slow
def test_nan_on_one_rank_is_skipped_by_every_rank_and_sums_are_reduced(tmp_path: Path):
    """Without agreement the healthy rank would step (and all-reduce gradients) alone and hang. The epoch's
    train loss is the mean over both ranks' samples: (1 * 16 + 3 * 16) / 32 over the 2 steps not skipped;
    rank 0 alone would report 1, summing the losses but not the sample counts 4."""
    (tmp_path / "worker.py").write_text(NAN_ON_ONE_RANK_WORKER)
    proc = run([str(tmp_path / "worker.py"), str(tmp_path / "runs"), *TINY, "train.nan_policy=skip"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    (record,) = read_metrics(run_dir / "metrics.jsonl")
    assert record["skipped_steps"] == 1
    assert record["train_loss"] == 2.0


def test_multi_node_options_become_torchrun_rendezvous_options():
    from asgl.errors import UsageError
    from asgl_cli.train import torchrun_launch

    assert torchrun_launch(2, 1, None, None) == ["--standalone", "--nproc-per-node", "2"]
    c10d = torchrun_launch(1, 2, None, "node0:29400")
    assert c10d[:2] == ["--nnodes", "2"] and c10d[c10d.index("--rdzv-endpoint") + 1] == "node0:29400"
    assert c10d[c10d.index("--rdzv-backend") + 1] == "c10d"
    static = torchrun_launch(4, 3, 2, "10.0.0.1:1234")
    assert static == ["--nnodes", "3", "--node-rank", "2", "--master-addr", "10.0.0.1", "--master-port", "1234",
                      "--nproc-per-node", "4"]  # fmt: skip
    for args, expected in [((1, 2, None, None), "needs --rdzv"), ((1, 2, 2, "h:1"), "below --nnodes 2")]:
        with pytest.raises(UsageError, match=expected):
            torchrun_launch(*args)
