"""A small conv SNN for the 8x8 digits (and any small static-image dataset)."""

from __future__ import annotations

from torch import Tensor, nn

from asgl.data import DataInfo
from asgl.layers import TimeFold, to_time_major
from asgl.models.blocks import LayerFactories, conv_norm_lif


class DigitsConvNet(nn.Module):
    """conv 16 → pool → conv 32 → pool → fc hidden → fc classes, each conv/fc hidden with norm + neuron.

    Input [B, C, H, W] (H, W divisible by 4) → per-step logits [T, B, K].
    """

    def __init__(self, info: DataInfo, layers: LayerFactories, hidden: int = 240, dropout: float = 0.0):
        super().__init__()
        h, w = info.input_size
        self.time_steps = info.time_steps
        self.features = nn.Sequential(
            conv_norm_lif(layers, info.in_channels, 16, (h, w)),
            TimeFold(nn.AvgPool2d(2)),
            conv_norm_lif(layers, 16, 32, (h // 2, w // 2)),
            TimeFold(nn.AvgPool2d(2), nn.Flatten()),
        )
        flat = 32 * (h // 4) * (w // 4)
        self.hidden = nn.Sequential(
            TimeFold(nn.Linear(flat, hidden, bias=False)), layers.norm(hidden, 1), layers.neuron((hidden,))
        )
        self.head = TimeFold(nn.Dropout(dropout), nn.Linear(hidden, info.num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.hidden(self.features(to_time_major(x, self.time_steps))))
