"""The hybrid spike (docs/method.md#the-hybrid-spike): forward/backward, straight-through width gradient, masks."""

import pytest
import torch

from asgl.spike import asgl_spike, draw_mask, heaviside, hybrid_spike, sg_spike
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
    mask = draw_mask(x.shape, 0.3, g, x.device)
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
    assert torch.equal(asgl_spike(x, k, SIG, 0.0), heaviside(x))
    torch.testing.assert_close(asgl_spike(x, k, SIG, 1.0), SIG.H(x, k))
    xr = x.clone().requires_grad_()
    out = sg_spike(xr, k, SIG)
    assert torch.equal(out.detach(), heaviside(x))
    (gx,) = torch.autograd.grad(out.sum(), xr)
    torch.testing.assert_close(gx, SIG.h(x, k))


def test_mask_is_seedable():
    a = draw_mask((3, 100), 0.4, torch.Generator().manual_seed(7), torch.device("cpu"))
    b = draw_mask((3, 100), 0.4, torch.Generator().manual_seed(7), torch.device("cpu"))
    c = draw_mask((3, 100), 0.4, torch.Generator().manual_seed(8), torch.device("cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)
