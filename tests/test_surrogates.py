"""Surrogates (docs/method.md#surrogate-families-and-widths): unit area, H' = h by autograd, H(0) = ½, widths."""

import math

import pytest
import torch

from asgl.surrogates import SURROGATES, SurrogateWidth, width_shape

FAMILIES = sorted(SURROGATES)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 5.0])
def test_unit_area(family, alpha):
    s = SURROGATES[family]
    k = 1.0 / alpha
    edges = torch.linspace(-2000 * alpha, 2000 * alpha, 2_000_001, dtype=torch.float64)  # ±alpha/2 are edges
    mid = (edges[1:] + edges[:-1]) / 2
    area = (s.h(mid, k) * (edges[1] - edges[0])).sum().item()  # midpoint rule
    tol = 2e-3 if family == "arctan" else 1e-5  # arctan's tails decay as 1/x^2
    assert abs(area - 1.0) < tol


@pytest.mark.parametrize("family", FAMILIES)
def test_derivative_matches_autograd(family):
    s = SURROGATES[family]
    k = torch.tensor(0.7, dtype=torch.float64)
    x = torch.linspace(-4, 4, 801, dtype=torch.float64)
    x = x[(x.abs() - 0.5 / 0.7).abs() > 1e-6]  # rectangle kinks: derivative undefined exactly there
    x = x[(x.abs() - 1 / 0.7).abs() > 1e-6].requires_grad_()
    (grad,) = torch.autograd.grad(s.H(x, k).sum(), x)
    torch.testing.assert_close(grad, s.h(x.detach(), k))


@pytest.mark.parametrize("family", FAMILIES)
def test_half_at_zero_monotone_and_limits(family):
    s = SURROGATES[family]
    assert s.H(torch.zeros(1), 3.0).item() == pytest.approx(0.5)
    x = torch.linspace(-5, 5, 1001)
    H = s.H(x, 2.0)
    assert bool((H[1:] >= H[:-1]).all())
    # alpha -> 0: H tends to the Heaviside step away from 0
    sharp = s.H(torch.tensor([-0.1, 0.1]), 1e4)
    assert sharp[0].item() < 1e-3 and sharp[1].item() > 1 - 1e-3


def test_formulas_of_spec():
    x = torch.tensor([-0.3, 0.0, 0.2, 0.5, 1.0])
    k = 2.0
    torch.testing.assert_close(SURROGATES["sigmoid"].H(x, k), torch.sigmoid(k * x))
    torch.testing.assert_close(SURROGATES["rectangle"].H(x, k), torch.clamp(k * x + 0.5, 0, 1))
    torch.testing.assert_close(SURROGATES["tanh"].H(x, k), 0.5 * torch.tanh(k * x) + 0.5)
    torch.testing.assert_close(SURROGATES["arctan"].H(x, k), torch.atan(math.pi / 2 * k * x) / math.pi + 0.5)
    alpha = 1 / k
    torch.testing.assert_close(SURROGATES["triangle"].h(x, k), (1 / alpha) * torch.clamp(1 - x.abs() / alpha, min=0))
    # rectangle: k on |x| <= alpha/2, boundary included
    rect = SURROGATES["rectangle"].h(torch.tensor([0.25, 0.2500001, -0.25]), k)
    assert rect.tolist() == [2.0, 0.0, 2.0]


@pytest.mark.parametrize("family", FAMILIES)
def test_window_holds_90_percent_of_mass(family):
    s = SURROGATES[family]
    w = torch.tensor(s.window, dtype=torch.float64)
    assert (s.step(w) - s.step(-w)).item() == pytest.approx(0.9, abs=1e-9)


def test_width_storage_and_granularity():
    w = SurrogateWidth((8, 5, 5), "rectangle", width=4.0)
    assert w.param.shape == () and w.param.item() == pytest.approx(math.log(0.25))
    assert w.slope().item() == pytest.approx(0.25) and w.width().item() == pytest.approx(4.0)
    assert width_shape("channel", (8, 5, 5)) == (8, 1, 1)
    assert width_shape("channel", (16,)) == ()
    assert width_shape("neuron", (8, 5, 5)) == (8, 5, 5)
    raw = SurrogateWidth((3,), "sigmoid", width=5.0, storage="raw_slope")
    assert raw.param.item() == pytest.approx(0.2) and isinstance(raw.param, torch.nn.Parameter)
    fixed = SurrogateWidth((3,), learnable=False)
    assert not isinstance(fixed.param, torch.nn.Parameter) and "param" in dict(fixed.named_buffers())


def test_raw_slope_only_for_sigmoid():
    with pytest.raises(ValueError, match="raw_slope"):
        SurrogateWidth((3,), "rectangle", storage="raw_slope")
