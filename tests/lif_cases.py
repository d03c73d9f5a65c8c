"""Inputs and cases shared by the tests of LIF backends against the stepwise reference."""

import torch

THETA = 0.8

CASES = [
    # family, mode, reset, amplitude threshold, width shape (layer, channel, neuron), width gradient
    ("sigmoid", "asgl", "hard", True, (), "all"),
    ("arctan", "asgl", "soft", False, (4, 3, 3), "analog"),
    ("tanh", "sg", "soft", True, (4, 1, 1), "all"),
    ("triangle", "analog", "hard", False, (4, 1, 1), "all"),
    ("rectangle", "heaviside", "soft", True, (), "all"),
]


def inputs(k_shape, dtype=torch.float32, shape=(6, 3, 4, 3, 3), seed=0):
    """(current [T, B, C, H, W], gamma, theta, k of ``k_shape``), all requiring gradients."""
    current = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 1.5
    gamma = torch.tensor(0.6, dtype=dtype)
    theta = torch.tensor(THETA, dtype=dtype)
    k = torch.linspace(0.5, 1.5, max(1, torch.Size(k_shape).numel()), dtype=dtype).reshape(k_shape)
    return [t.requires_grad_() for t in (current, gamma, theta, k)]


def output_and_grads(out, args):
    """The output and the gradients of ``args`` (zeros where unused) of a weighted sum of the output."""
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grads = torch.autograd.grad((out * weights).sum(), args, allow_unused=True)
    return out.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(args, grads)]


def assert_matches_stepwise(out, grads, ref_out, ref_grads, mode, amplitude):
    """A backend's output and gradients against the stepwise reference's; returns the binary positions."""
    binary = (ref_out == 0) | (ref_out == (THETA if amplitude else 1.0))
    assert torch.equal(out[binary], ref_out[binary])  # identical spikes (no u lands within rounding of θ here)
    assert mode == "analog" or binary.float().mean() > 0.5
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)  # analog values: fp32 rounding only
    for name, g, ref in zip(("current", "gamma", "theta", "k"), grads, ref_grads):
        torch.testing.assert_close(g, ref, atol=1e-4, rtol=1e-4, msg=name)
    assert grads[2].abs().sum() > 0  # the comparison is not between zeros
    if mode != "heaviside":  # Θ passes no gradient to u, so none to the current, decay or width
        assert all(g.abs().sum() > 0 for g in (grads[0], grads[1], grads[3]))
    return binary


def on_lif(backend):
    """A backend of asgl.neuron.BACKENDS (which runs any model) as a LIF function
    (current, gamma, theta, k, mask, spec) -> output."""
    from asgl.neuron_models import NEURONS

    return lambda current, gamma, theta, k, mask, spec: backend(NEURONS["lif"], current, (gamma, theta), k, mask, spec)
