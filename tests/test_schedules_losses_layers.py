"""p milestones (docs/method.md#the-noise-schedule), LR schedules and losses against their formulas, readouts by hand,
norms and the time fold."""

import math

import pytest
import torch
import torch.nn.functional as F

from asgl.config import NoiseConfig, OptimConfig, TrainConfig
from asgl.layers import PerStepNorm, TimeFold, make_norm, to_time_major
from asgl.losses import build_loss, mean_ce, predict, reduce_time, tet_loss
from asgl.schedules import build_lr_scheduler, noise_milestones, noise_prob_at


def test_default_milestones_for_300_epochs():
    assert noise_milestones(NoiseConfig(), 300) == [0, 60, 120, 180, 240, 285]


def test_noise_prob_applied_after_each_milestone_epoch():
    cfg = NoiseConfig(prob=0.4, factor=0.5)
    probs = [noise_prob_at(e, cfg, 300) for e in range(300)]
    assert probs[0] == 0.4  # multiplied after epoch 0
    assert probs[1] == pytest.approx(0.2) and probs[60] == pytest.approx(0.2) and probs[61] == pytest.approx(0.1)
    assert probs[299] == pytest.approx(0.4 * 0.5**6)


def test_unset_factor_is_constant_and_rises_clip_at_one():
    assert {noise_prob_at(e, NoiseConfig(prob=0.2), 300) for e in range(300)} == {0.2}
    rise = NoiseConfig(prob=0.3, factor=2.0, milestone_epochs=[30, 70, 90, 95])
    assert [noise_prob_at(e, rise, 100) for e in (30, 31, 71, 91, 99)] == pytest.approx([0.3, 0.6, 1.0, 1.0, 1.0])
    # duplicate milestones multiply once per epoch
    assert noise_milestones(NoiseConfig(milestones=[0.0, 0.001]), 10) == [0]


def test_factor_without_milestones_is_an_error():
    with pytest.raises(ValueError, match="no milestones"):
        NoiseConfig(factor=0.5, milestones=[])


def test_cosine_lr_reaches_zero_and_warmup():
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = build_lr_scheduler(opt, OptimConfig(), epochs=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1)
    warm = build_lr_scheduler(opt2, OptimConfig(warmup_epochs=2), epochs=10)
    first = opt2.param_groups[0]["lr"]
    opt2.step()
    warm.step()
    assert first == pytest.approx(0.1 / 3) and opt2.param_groups[0]["lr"] > first


def test_ce_on_time_mean_and_tet_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 0])
    ce = build_loss(TrainConfig(loss="ce"))(logits, y)
    torch.testing.assert_close(ce, F.cross_entropy(logits.mean(0), y))
    lam, phi = 0.1, 1.0
    expected = (1 - lam) * sum(F.cross_entropy(logits[t], y) for t in range(3)) / 3 + lam * ((logits - phi) ** 2).mean()
    torch.testing.assert_close(tet_loss(logits, y, lam, phi), expected)
    torch.testing.assert_close(predict(logits), logits.mean(0).argmax(-1))


def test_time_fold_and_norms():
    x = torch.randn(3, 2, 4, 5, 5)
    conv = torch.nn.Conv2d(4, 6, 3, padding=1)
    folded = TimeFold(conv)(x)
    torch.testing.assert_close(folded[1], conv(x[1]))
    tdbn = make_norm("tdbn", 4, 3).train()
    y = tdbn(x)
    torch.testing.assert_close(y.mean(dim=(0, 1, 3, 4)), torch.zeros(4), atol=1e-5, rtol=0)  # stats over T·B
    assert isinstance(make_norm("bntt", 4, 3), PerStepNorm) and len(make_norm("bntt", 4, 3).norms) == 3
    step = make_norm("step", 4, 3).train()
    per_step = step(x)
    torch.testing.assert_close(per_step[2].mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    thr = make_norm("threshold_bn", 4, 3, threshold=0.5)
    assert torch.equal(thr[0].weight.data, torch.full((4,), 0.5))
    assert isinstance(make_norm("none", 4, 3), torch.nn.Identity)


def test_to_time_major():
    img = torch.randn(2, 3, 8, 8)
    tm = to_time_major(img, 4)
    assert tm.shape == (4, 2, 3, 8, 8) and torch.equal(tm[3], img)
    ev = torch.randn(2, 5, 2, 8, 8)
    assert torch.equal(to_time_major(ev, 5)[4, 1], ev[1, 4])
    with pytest.raises(ValueError, match="T=4"):
        to_time_major(ev, 4)


def lrs_per_epoch(optim: OptimConfig, epochs: int) -> list[float]:
    """The main optimiser's LR during each 0-based epoch (the scheduler is stepped once per epoch)."""
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=optim.lr)
    sched = build_lr_scheduler(opt, optim, epochs)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_cosine_restarts_lr_follows_the_closed_form():
    optim = OptimConfig(lr=0.2, schedule="cosine_restarts", restart_epochs=4)
    expected = [0.2 * (1 + math.cos(math.pi * (e % 4) / 4)) / 2 for e in range(12)]
    assert lrs_per_epoch(optim, 12) == pytest.approx(expected, abs=1e-12)
    assert expected[4] == expected[8] == 0.2  # the restarts


def test_step_lr_follows_the_closed_form():
    optim = OptimConfig(lr=0.2, schedule="step", step_epochs=3, step_gamma=0.5)
    expected = [0.2 * 0.5 ** (e // 3) for e in range(10)]
    assert lrs_per_epoch(optim, 10) == pytest.approx(expected, abs=1e-12)


# logits [T=3, B=2, K=3], written out so that the readouts can be read off by hand
LOGITS = torch.tensor(
    [
        [[1.0, 5.0, 0.0], [9.0, 0.0, 0.0]],
        [[3.0, 1.0, 0.0], [0.0, 4.0, 0.0]],
        [[0.0, 2.0, 6.0], [1.0, 3.0, 1.0]],
    ]
)


@pytest.mark.parametrize(
    ("readout", "reduced", "prediction"),
    [
        ("mean", [[4 / 3, 8 / 3, 2.0], [10 / 3, 7 / 3, 1 / 3]], [1, 0]),
        ("last", [[0.0, 2.0, 6.0], [1.0, 3.0, 1.0]], [2, 1]),
        ("max", [[3.0, 5.0, 6.0], [9.0, 4.0, 1.0]], [2, 0]),
    ],
)
def test_readouts_by_hand(readout, reduced, prediction):
    target = torch.tensor([0, 2])
    torch.testing.assert_close(reduce_time(LOGITS, readout), torch.tensor(reduced))
    assert predict(LOGITS, readout).tolist() == prediction
    torch.testing.assert_close(mean_ce(LOGITS, target, readout), F.cross_entropy(torch.tensor(reduced), target))
    loss = build_loss(TrainConfig(loss="ce"), readout)(LOGITS, target)
    torch.testing.assert_close(loss, F.cross_entropy(torch.tensor(reduced), target))
