"""Spike statistics and synaptic operations against counts made by hand with explicit loops."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from asgl.analysis.stats import conv2d_synaptic_ops, count_activity, summarize
from asgl.config import LIFConfig, SurrogateConfig
from asgl.layers import TimeFold
from asgl.neuron import neuron_from_config


def loop_conv_ops(x: torch.Tensor, conv: nn.Conv2d) -> int:
    """For every non-zero input element, count the output elements whose window contains it."""
    n, c_in, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group_in, per_group_out = c_in // conv.groups, conv.out_channels // conv.groups
    ops = 0
    for b, c, i, j in itertools.product(range(n), range(c_in), range(h), range(w)):
        if x[b, c, i, j] == 0:
            continue
        for oy, ox, ky, kx in itertools.product(range(out_h), range(out_w), range(kh), range(kw)):
            if oy * sh - ph + ky * dh == i and ox * sw - pw + kx * dw == j:
                ops += per_group_out  # every output channel of the input's group
    assert per_group_in * conv.groups == c_in
    return ops


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=(3, 2), stride=(2, 1), padding=(0, 1), dilation=(1, 2)),
        dict(kernel_size=3, padding=2, groups=2),
        dict(kernel_size=1, stride=2),
    ],
)
def test_conv_ops_equal_explicit_loops(kwargs):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 5, 6, generator=gen)
    x[x < 0.6] = 0  # sparse, with zeros at the borders too
    conv = nn.Conv2d(4, 6, bias=False, **kwargs)
    assert conv2d_synaptic_ops(x, conv) == loop_conv_ops(x, conv)


def test_conv_ops_exact_for_low_precision_inputs():
    """Under AMP the inputs are bf16, whose integers are exact only to 256; a window here holds up to 576."""
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 64, 6, 6, generator=gen) < 0.9).float()
    conv = nn.Conv2d(64, 8, 3, padding=1, bias=False)
    assert conv2d_synaptic_ops(x.bfloat16(), conv) == loop_conv_ops(x, conv)


class TinyNet(nn.Module):
    """conv 1->2 (3x3, pad 1) -> LIF -> flatten -> linear 32->3; input [T, B, 1, 4, 4]."""

    def __init__(self):
        super().__init__()
        self.conv = TimeFold(nn.Conv2d(1, 2, 3, padding=1, bias=False))
        self.lif = neuron_from_config(
            LIFConfig(decay=0.5, threshold=1.0, learn_decay=False), SurrogateConfig(), (2, 4, 4)
        )
        self.fc = TimeFold(nn.Flatten(), nn.Linear(32, 3, bias=False))
        with torch.no_grad():
            self.conv[0].weight.copy_(torch.tensor([0.6, -0.2]).view(2, 1, 1, 1) * torch.ones(2, 1, 3, 3))
            self.fc[1].weight.fill_(1.0)

    def forward(self, x):
        return self.fc(self.lif(self.conv(x)))


def test_tiny_network_counts_by_hand():
    """T = 2, one sample: a 4x4 image with 3 non-zero pixels, ones-kernels so the currents are countable."""
    image = torch.zeros(1, 1, 4, 4)
    image[0, 0, 0, 0], image[0, 0, 1, 1], image[0, 0, 3, 2] = 1.0, 1.0, 2.0
    x = image.unsqueeze(0).expand(2, 1, 1, 4, 4)  # direct encoding, T = 2
    net = TinyNet().eval()
    with torch.no_grad(), count_activity(net) as activity:
        net(x)

    # conv (first layer, MACs): each non-zero pixel reaches the 3x3 positions around it inside the 4x4 map,
    # in both output channels: (0,0) -> 4, (1,1) -> 9, (3,2) -> 6 positions; x2 channels x2 steps
    expected_macs = (4 + 9 + 6) * 2 * 2
    # LIF by hand: channel 1 has negative current, never spikes; channel 0 current = 0.6 * (sum of the
    # pixels in the 3x3 window), u = 0.5 u~ + I, spike at u >= 1, reset to 0
    window = [[sum(image[0, 0, i, j] for i in range(r - 1, r + 2) for j in range(c - 1, c + 2) if 0 <= i < 4 and 0 <= j < 4)
               for c in range(4)] for r in range(4)]  # fmt: skip
    spikes_per_step = [0, 0]
    for r, c in itertools.product(range(4), range(4)):
        u = 0.0
        for t in range(2):
            u = 0.5 * u + 0.6 * float(window[r][c])
            if u >= 1.0:
                spikes_per_step[t] += 1
                u = 0.0
    spikes = sum(spikes_per_step)
    assert spikes > 0
    stats = summarize(activity, samples=1)
    assert stats.firing_rates == {"lif": pytest.approx(spikes / (32 * 2))}
    conv_ops, fc_ops = stats.layers
    assert (conv_ops.name, conv_ops.op, conv_ops.ops) == ("conv.0", "mac", expected_macs)
    assert (fc_ops.name, fc_ops.op, fc_ops.ops) == ("fc.1", "ac", spikes * 3)  # each spike reaches 3 outputs
    # as an ANN: conv 2 channels x 16 positions x 9 weights, linear 32 x 3, one pass
    assert conv_ops.ann_macs == 2 * 16 * 9 and fc_ops.ann_macs == 32 * 3
    assert stats.snn_energy_pj == pytest.approx(expected_macs * 4.6 + spikes * 3 * 0.9)
    assert stats.ann_energy_pj == pytest.approx((2 * 16 * 9 + 32 * 3) * 4.6)


def test_counts_are_per_sample_and_hooks_are_removed():
    net = TinyNet().eval()
    x = torch.rand(2, 4, 1, 4, 4)
    with torch.no_grad(), count_activity(net) as four:
        net(x)
    with torch.no_grad(), count_activity(net) as one:
        net(x[:, :1])
    net(x)  # no hooks left: nothing more is counted
    # dense input: per channel, corners reach 4 positions, edges 6, the 4 inner pixels 9: 16 + 48 + 36 = 100
    assert four.synapses["conv.0"].ops == 2 * 4 * 2 * 100  # T x B x channels x 100
    per_sample = summarize(four, samples=4)
    assert per_sample.layers[0].ops == four.synapses["conv.0"].ops / 4
    assert one.synapses["conv.0"].ops == four.synapses["conv.0"].ops / 4


def test_eval_stats_json_on_a_digits_checkpoint(tmp_path):
    """`asgl eval --stats --json`: the first conv's MACs from the images' non-zero pixels, counted by formula."""
    import json

    from conftest import TINY, set_args
    from typer.testing import CliRunner

    from asgl.builders import build_data
    from asgl.config import load_recipe
    from asgl_cli.main import app

    runner = CliRunner()
    trained = runner.invoke(app, ["train", "digits_quick", *set_args(TINY), "--out", str(tmp_path)])
    assert trained.exit_code == 0, trained.output
    (run,) = tmp_path.iterdir()
    args = ["eval", "--ckpt", str(run), "--stats", "--json", "--energy-ac", "1", "--energy-mac", "10"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)["stats"]

    test = build_data(load_recipe("digits_quick", TINY)).test
    reach = torch.tensor([2, 3, 3, 3, 3, 3, 3, 2])  # output rows (cols) a pixel row (col) reaches, 3x3 pad 1
    pixel_reach = reach[:, None] * reach[None, :]
    expected = sum(int((pixel_reach * (image[0] != 0)).sum()) for image, _ in test) * 16 * 2 / len(test)  # x C x T
    first, *rest = stats["layers"]
    assert (first["op"], first["ops"]) == ("mac", pytest.approx(expected))
    head = rest[-1]  # reads the 16 hidden neurons' spikes, 10 outputs each, over T = 2 steps
    assert head["ops"] == pytest.approx(stats["firing_rates"]["hidden.2"] * 16 * 2 * 10)
    assert stats["accumulates"] == pytest.approx(sum(layer["ops"] for layer in rest))
    assert stats["snn_energy_pj"] == pytest.approx(stats["accumulates"] * 1 + stats["macs"] * 10)
    assert stats["ann_energy_pj"] == pytest.approx(stats["ann_macs"] * 10)
    assert stats["energy_ratio"] == pytest.approx(stats["ann_energy_pj"] / stats["snn_energy_pj"])
    table = runner.invoke(app, ["eval", "--ckpt", str(run), "--stats"])
    assert table.exit_code == 0 and "ANN / SNN energy" in table.output and "hidden.2" in table.output
