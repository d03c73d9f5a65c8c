"""The hybrid spike (docs/method.md#the-hybrid-spike): forward/backward, straight-through width gradient, masks."""

import math

import pytest
import torch

from asgl.spike import (
    MaskDraw,
    element_bits,
    heaviside,
    hybrid_spike,
    materialize_mask,
    new_mask_draw,
    sg_spike,
    step_key,
    step_mask_of,
)
from asgl.surrogates import SURROGATES

SIG = SURROGATES["sigmoid"]


def test_heaviside_includes_zero():
    assert heaviside(torch.tensor([-1e-6, 0.0, 2.0])).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("family", sorted(SURROGATES))
def test_hybrid_forward_and_input_gradient(family):
    s = SURROGATES[family]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    mask = step_mask_of(new_mask_draw(0.3, g), 0, x.shape, x.device)
    out = hybrid_spike(x, k, s, mask)
    xd = x.detach()
    expected = torch.where(mask, heaviside(xd), s.H(xd, k.detach()))
    assert torch.equal(out.detach(), expected)
    gx, gk = torch.autograd.grad(out.sum(), (x, k))
    torch.testing.assert_close(gx, s.h(xd, k.detach()))
    # width gradient: dH/dk summed over every element (straight-through), = sum x f(kx)
    torch.testing.assert_close(gk, (xd * s.density(k.detach() * xd)).sum())
    assert 0.25 < (~mask).float().mean().item() < 0.35


def test_width_gradient_even_at_p_zero_and_analog_option():
    x = torch.randn(1000, dtype=torch.float64)
    k = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    all_spikes = torch.ones(1000, dtype=torch.bool)
    (gk,) = torch.autograd.grad(hybrid_spike(x, k, SIG, all_spikes).sum(), k)
    assert gk.abs().item() > 0
    mask = torch.rand(1000, generator=torch.Generator().manual_seed(1)) > 0.5
    xr = x.clone().requires_grad_()
    out = hybrid_spike(xr, k, SIG, mask, width_grad="analog")
    gx, gk = torch.autograd.grad(out.sum(), (xr, k))
    torch.testing.assert_close(gk, (x * SIG.density(0.8 * x))[~mask].sum())
    torch.testing.assert_close(gx, SIG.h(x, 0.8))  # input gradient unchanged
    (gk0,) = torch.autograd.grad(hybrid_spike(x, k, SIG, all_spikes, width_grad="analog").sum(), k, allow_unused=True)
    assert gk0 is None or gk0.item() == 0


def test_p_extremes_and_sg():
    x = torch.randn(500)
    k = torch.tensor(2.0)
    spiking, analog = (step_mask_of(new_mask_draw(p, None), 0, x.shape, x.device) for p in (0.0, 1.0))
    assert spiking.all() and not analog.any()
    assert torch.equal(hybrid_spike(x, k, SIG, spiking), heaviside(x))
    torch.testing.assert_close(hybrid_spike(x, k, SIG, analog), SIG.H(x, k))
    xr = x.clone().requires_grad_()
    out = sg_spike(xr, k, SIG)
    assert torch.equal(out.detach(), heaviside(x))
    (gx,) = torch.autograd.grad(out.sum(), xr)
    torch.testing.assert_close(gx, SIG.h(x, k))


def test_mask_is_seedable():
    draws = [new_mask_draw(0.4, torch.Generator().manual_seed(seed)) for seed in (7, 7, 8)]
    a, b, c = (materialize_mask(draw, (3, 100), "cpu") for draw in draws)
    assert torch.equal(a, b) and not torch.equal(a, c)


def _splitmix64(seed: int, counter: int) -> int:
    """splitmix64 written from its definition with Python integers (no wrap-around tricks)."""
    m = (1 << 64) - 1
    z = (seed + (counter + 1) * 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def _lowbias32(x: int) -> int:
    """Wellons' 32-bit mixer (hash-prospector "lowbias32" constants) with Python integers."""
    m = (1 << 32) - 1
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & m
    x ^= x >> 15
    x = (x * 0x735A2D97) & m
    return x ^ (x >> 15)


def test_mask_bits_follow_their_definition():
    """Step t's key is splitmix64(seed, offset + t); element i's word is two keyed rounds of lowbias32."""
    seed = (1 << 62) - 12345
    for counter in (0, 1, 10**12, 2**62):
        key = _splitmix64(seed, counter)
        assert step_key(seed, counter) == key
        index = [0, 1, 2, 1000, 2**31 + 5, 2**32 - 1]
        expected = [_lowbias32(_lowbias32(i ^ (key & 0xFFFFFFFF)) ^ (key >> 32)) for i in index]
        assert element_bits(key, torch.tensor(index)).tolist() == expected
    draw = MaskDraw(0.37, seed, offset=3)
    bits = [_lowbias32(_lowbias32(i ^ (k & 0xFFFFFFFF)) ^ (k >> 32)) for k in draw.keys(2) for i in range(40)]
    expected_mask = torch.tensor([b >= math.ceil(0.37 * 2**32) for b in bits]).view(2, 40)
    assert torch.equal(materialize_mask(draw, (2, 5, 8), "cpu").view(2, 40), expected_mask)


def test_mask_statistics():
    p = 0.3
    n_steps, n = 4, 2**18  # > 1e6 draws
    mask = materialize_mask(MaskDraw(p, seed=123456789), (n_steps, n), "cpu").double()
    mean, sigma = mask.mean().item(), math.sqrt(p * (1 - p) / mask.numel())
    assert abs(mean - (1 - p)) < 4 * sigma
    limit = 4 / math.sqrt(n)  # correlation of independent draws: ~N(0, 1/n)
    for a, b in ((mask[:, :-1], mask[:, 1:]), (mask[:-1], mask[1:])):  # neighbouring elements, steps
        assert abs(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()) < limit
    other = materialize_mask(MaskDraw(p, seed=123456790), (n_steps, n), "cpu").double()
    assert abs(torch.corrcoef(torch.stack([mask.flatten(), other.flatten()]))[0, 1].item()) < limit


def test_mask_draw_is_a_pure_function_of_seed_and_offset():
    draw = MaskDraw(0.4, seed=99)
    whole = materialize_mask(draw, (3, 50), "cpu")
    assert torch.equal(whole, materialize_mask(draw, (3, 50), "cpu"))
    assert torch.equal(whole[1:], materialize_mask(MaskDraw(0.4, 99, offset=1), (2, 50), "cpu"))  # step t: offset + t
    assert not torch.equal(whole, materialize_mask(MaskDraw(0.4, seed=100), (3, 50), "cpu"))
    assert materialize_mask(MaskDraw(0.0, 5), (2, 100), "cpu").all()
    assert not materialize_mask(MaskDraw(1.0, 5), (2, 100), "cpu").any()


def test_mask_seed_comes_from_the_generator():
    g = torch.Generator().manual_seed(11)
    state = g.get_state()
    first, second = new_mask_draw(0.2, g), new_mask_draw(0.2, g)
    assert first != second  # the generator advanced
    g.set_state(state)  # a resumed run restores the generator and replays the same masks
    assert new_mask_draw(0.2, g) == first
    torch.manual_seed(5)
    a = new_mask_draw(0.2, None)
    torch.manual_seed(5)
    assert new_mask_draw(0.2, None) == a  # None = the global RNG, saved in checkpoints


def test_ranks_draw_independent_masks_from_one_generator_state():
    """DDP ranks share the RNG state (a resume restores one state on every rank): the stream (rank) must
    still give each its own mask, uncorrelated with the others, and consume the generator alike."""
    states, masks = [], []
    for stream in (0, 1, 2):
        g = torch.Generator().manual_seed(3)
        draw = new_mask_draw(0.5, g, stream)
        states.append(g.get_state())
        masks.append(materialize_mask(draw, (4, 50_000), "cpu").double().flatten())
    assert all(torch.equal(states[0], s) for s in states[1:])  # the generator advanced the same way
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert not torch.equal(masks[a], masks[b])
        assert abs(torch.corrcoef(torch.stack([masks[a], masks[b]]))[0, 1].item()) < 4 / math.sqrt(200_000)
    g = torch.Generator().manual_seed(3)
    assert new_mask_draw(0.5, g, 1) == new_mask_draw(0.5, torch.Generator().manual_seed(3), 1)  # reproducible
